#!/usr/bin/env bash
# Karpathy's tiny Shakespeare with a 3x512 LSTM char-RNN: train, evaluate on val, print a sample.
#
#   recipes/shakespeare_char.sh [CORPUS] [extra overrides...]
#
# CORPUS is a local input.txt (e.g. ../shared/data/tinyshakespeare/input.txt); "hub" (the default)
# loads karpathy/tiny_shakespeare from the Hugging Face hub, which needs network access.
# On a CPU, shrink it: recipes/shakespeare_char.sh input.txt trainer.max_steps=600 model.hidden_size=256
set -euo pipefail
corpus=${1:-hub}
shift || true
seqtool=${SEQTOOL:-seqtool}
run_dir=runs/shakespeare_char/$(date +%Y%m%d-%H%M%S)

source_override=()
if [ "$corpus" != "hub" ]; then
  source_override=("task.path=$corpus" "task.hf_name=null")
fi

$seqtool train experiment=shakespeare_char "run_dir=$run_dir" "${source_override[@]}" "$@"
$seqtool eval "$run_dir" --split val
$seqtool decode "$run_dir" --prime "ROMEO:" --max-len 500 --temperature 0.8 --seed 1
echo "run directory: $run_dir (curves in $run_dir/plots/curves.png)"
