#!/usr/bin/env bash
# Date normalisation with additive attention: train, score the test split with beam 5 (exact match), normalise
# a few dates and draw where the model looked while writing each character.
#
#   recipes/dates_attention.sh [extra overrides...]
#
# The data are generated (seqtool.data.synthetic), so nothing is downloaded. Quick check: add debug=smoke.
set -euo pipefail
seqtool=${SEQTOOL:-seqtool}
run_dir=runs/dates_attention/$(date +%Y%m%d-%H%M%S)

$seqtool train experiment=dates_attention "run_dir=$run_dir" "$@"
$seqtool eval "$run_dir" --split test --beam 5
printf '%s\n' "3rd of March 1999" "July 4, 1776" "Friday, 13 October 2023" "25.12.2000" |
  $seqtool decode "$run_dir" --input - --beam 5 --plot-attention "$run_dir/plots/attention"
echo "run directory: $run_dir (attention maps in $run_dir/plots/attention/)"
