#!/usr/bin/env bash
# Show, Attend and Tell on the generated shapes: train, score the test split with beam 3 (BLEU-1..4, exact
# match as JSON), caption a few test images and draw where the model looked for each word.
#
#   recipes/shapes_captioner.sh [extra overrides...]
#
# The images are generated (seqtool.data.shapes), so nothing is downloaded. The same-size baseline without
# attention: add model.attention=none. Quick check: add debug=smoke.
set -euo pipefail
seqtool=${SEQTOOL:-seqtool}
run_dir=runs/shapes_captioner/$(date +%Y%m%d-%H%M%S)

$seqtool train experiment=shapes_captioner "run_dir=$run_dir" "$@"
$seqtool eval "$run_dir" --split test --beam 3 --json
$seqtool decode "$run_dir" --num 6 --beam 3 --plot-attention "$run_dir/plots/attention"
echo "run directory: $run_dir (attention overlays in $run_dir/plots/attention/)"
