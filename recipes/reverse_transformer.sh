#!/usr/bin/env bash
# String reversal with a 2-layer Transformer: train, score the test split with beam 5 (exact match), reverse a
# few strings and draw the last decoder layer's attention (an anti-diagonal when it has learned the task).
#
#   recipes/reverse_transformer.sh [extra overrides...]
#
# The data are generated (seqtool.data.synthetic), so nothing is downloaded. Quick check: add debug=smoke.
set -euo pipefail
seqtool=${SEQTOOL:-seqtool}
run_dir=runs/reverse_transformer/$(date +%Y%m%d-%H%M%S)

$seqtool train experiment=reverse_transformer "run_dir=$run_dir" "$@"
$seqtool eval "$run_dir" --split test --beam 5
printf '%s\n' "abcdefg" "jihgfedcba" "aabbccddee" |
  $seqtool decode "$run_dir" --input - --beam 5 --plot-attention "$run_dir/plots/attention"
echo "run directory: $run_dir (attention maps in $run_dir/plots/attention/)"
