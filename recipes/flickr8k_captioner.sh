#!/usr/bin/env bash
# Show, Attend and Tell on Flickr8k: train on the standard split's train images, score its test images
# (BLEU-1..4 as JSON), caption a few test images with beam 3 and draw their attention overlays.
#
#   recipes/flickr8k_captioner.sh IMAGE_DIR TEXT_DIR [extra overrides...]
#
# IMAGE_DIR holds the Flickr8k JPEGs (Flicker8k_Dataset/, about 1 GB, which you supply); TEXT_DIR the text
# release: Flickr8k.token.txt (or .gz) and Flickr_8k.{train,dev,test}Images.txt, e.g. ../shared/data/flickr8k_text.
# Images the captions name but IMAGE_DIR lacks are skipped and counted, so a part of the images works too:
#   recipes/flickr8k_captioner.sh ../shared/data/flickr8k_1k/images ../shared/data/flickr8k_text trainer.max_steps=1500
# The experiment is sized for one GPU (20k steps); on a CPU shrink it (see docs/captioning.md).
set -euo pipefail
images=${1:?usage: recipes/flickr8k_captioner.sh IMAGE_DIR TEXT_DIR [overrides...]}
text=${2:?usage: recipes/flickr8k_captioner.sh IMAGE_DIR TEXT_DIR [overrides...]}
shift 2
images=$(cd "$images" && pwd)  # absolute, so eval and decode find them from anywhere
text=$(cd "$text" && pwd)
tokens=$text/Flickr8k.token.txt
[[ -f $tokens ]] || tokens=$tokens.gz
seqtool=${SEQTOOL:-seqtool}
run_dir=runs/flickr8k_captioner/$(date +%Y%m%d-%H%M%S)

$seqtool train experiment=flickr8k_captioner "task.files.image_dir=$images" "task.files.captions=$tokens" \
  "task.files.splits_dir=$text" "run_dir=$run_dir" "$@"
$seqtool eval "$run_dir" --split test --json
mkdir -p "$run_dir/decode_inputs"  # the first 4 test images that IMAGE_DIR has
found=0
while read -r name && ((found < 4)); do
  if [[ -f $images/$name ]]; then
    ln -sf "$images/$name" "$run_dir/decode_inputs/$name"
    found=$((found + 1))
  fi
done <"$text/Flickr_8k.testImages.txt"
$seqtool decode "$run_dir" --input "$run_dir/decode_inputs" --beam 3 --plot-attention "$run_dir/plots/attention"
echo "run directory: $run_dir (attention overlays in $run_dir/plots/attention/)"
