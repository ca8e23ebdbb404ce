#!/usr/bin/env bash
# PredRNN-V2 on Moving MNIST: train, evaluate on the test split (JSON), decode 4 val sequences with plots.
#
#   recipes/moving_mnist_predrnn.sh MNIST_DIR [extra overrides...]
#
# MNIST_DIR holds MNIST IDX files, e.g. ../shared/data/mnist (only the 10,000 t10k digits there: the first
# 8,000 make the training sequences, the last 2,000 the val/test ones). For the standard fixed test set add
#   task.test_npy=PATH/mnist_test_seq.npy task.test_sequences=10000
# The experiment is sized for one GPU (50k steps); on a CPU, shrink it, e.g.
#   recipes/moving_mnist_predrnn.sh ../shared/data/mnist trainer.max_steps=300 model.hidden_channels=16 model.num_layers=2
set -euo pipefail
mnist=${1:?usage: recipes/moving_mnist_predrnn.sh MNIST_DIR [overrides...]}
shift
mnist=$(cd "$mnist" && pwd)  # absolute, so eval and decode find it from anywhere
seqtool=${SEQTOOL:-seqtool}
run_dir=runs/moving_mnist_predrnn/$(date +%Y%m%d-%H%M%S)

$seqtool train experiment=moving_mnist_predrnn "task.mnist_path=$mnist" "run_dir=$run_dir" "$@"
$seqtool eval "$run_dir" --split test --json
$seqtool decode "$run_dir" --num 4 --output "$run_dir/decoded/predictions.npy" --plot "$run_dir/decoded"
echo "run directory: $run_dir (curves in $run_dir/plots/, frame strips and GIFs in $run_dir/decoded/)"
