#!/usr/bin/env bash
# Multi30k de→en with an attentional LSTM on BPE: train, score test_2016_flickr with beam 5 (sacrebleu BLEU,
# chrF and the BLEU signature), translate two sentences.
#
#   recipes/multi30k_seq2seq_attn.sh [DATA] [extra overrides...]
#
# DATA is a directory of train/val/test_2016_flickr.{de,en}[.gz] (e.g. ../shared/data/multi30k), or a
# Hugging Face dataset name; "hub" (the default) is bentrevett/multi30k. The hub needs network access.
# A quick check: recipes/multi30k_seq2seq_attn.sh ../shared/data/multi30k debug=smoke
set -euo pipefail
data=${1:-hub}
shift || true
seqtool=${SEQTOOL:-seqtool}
run_dir=runs/multi30k_seq2seq_attn/$(date +%Y%m%d-%H%M%S)

source_override=()
if [ -d "$data" ]; then
  source_override=("task.files.data_dir=$data" "task.hub.name=null")
elif [ "$data" != "hub" ]; then
  source_override=("task.hub.name=$data")
fi

$seqtool train experiment=multi30k_seq2seq_attn "run_dir=$run_dir" "${source_override[@]}" "$@"
$seqtool eval "$run_dir" --split test --beam 5
printf '%s\n' "Ein Mann fährt mit dem Fahrrad." "Zwei Hunde spielen im Schnee." |
  $seqtool decode "$run_dir" --input - --beam 5
echo "run directory: $run_dir (test hypotheses in $run_dir/hypotheses/test.txt, curves in $run_dir/plots/)"
