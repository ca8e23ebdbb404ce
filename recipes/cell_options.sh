#!/usr/bin/env bash
# Which recurrent cell and which cell options model characters best? A char LM on tiny Shakespeare:
# RNN vs LSTM vs GRU, depth 1/2/3, layer norm, weight norm, variational dropout, forget-gate bias 0 vs 1;
# validation bits per character over 3 seeds each. Writes docs/experiments/cell_options.md.
#
#   recipes/cell_options.sh [CORPUS] [extra overrides...]    CORPUS: ../shared/data/tinyshakespeare/input.txt
#
# The CPU default (~15 min on 2 cores) is conf/experiment/cell_options.yaml, a small model and a short
# run; the GPU size is an override, e.g.
#   recipes/cell_options.sh input.txt model.hidden_size=512 trainer.max_steps=5000 device=cuda
# Quick check: add debug=smoke.
set -euo pipefail
source "$(dirname "$0")/lib/report.sh"
corpus=../shared/data/tinyshakespeare/input.txt
if [ $# -gt 0 ] && [[ $1 != *=* ]]; then corpus=$1; shift; fi
REPORT_EXTRA=("$@")

small=(experiment=cell_options "task.path=$corpus" "seed=${SEEDS:-1,2,3}")   # conf/experiment/cell_options.yaml

report_begin cell_options "Gated cells (LSTM, GRU) model characters better than a vanilla RNN of the same \
width, and depth, layer normalisation and a forget-gate bias of 1 help further (Karpathy et al. 2015; \
Jozefowicz et al. 2015; Ba et al. 2016)."
report_sweep cells "${small[@]}" model.cell=rnn,lstm,gru
report_sweep depth "${small[@]}" model.num_layers=2,3
report_sweep layer_norm "${small[@]}" model.layer_norm=true
report_sweep weight_norm "${small[@]}" model.weight_norm=true
report_sweep dropout "${small[@]}" model.dropout=0.25 model.variational_dropout=false,true
report_sweep forget_bias "${small[@]}" model.forget_bias=0.0

report_table "Cells (one layer of 128, 600 steps)" cells --metric val_bpc --metrics val_bpc
report_plot cell_options_cells.png "validation bpc per evaluation, mean and range over the seeds" cells --curve val_bpc
report_table "Depth, layer norm, weight norm, dropout, forget bias (LSTM; the one-layer LSTM of the first table is the reference)" \
  . --metric val_bpc --metrics val_bpc --by cell,num_layers,layer_norm,weight_norm,dropout,variational_dropout,forget_bias

rnn=$(report_value cells val_bpc cell=rnn); lstm=$(report_value cells val_bpc cell=lstm)
gru=$(report_value cells val_bpc cell=gru)
report_text "**Verdict (measured).** Best validation bpc, mean over the seeds: RNN $rnn, LSTM $lstm, GRU $gru. \
$(python3 -c "r,l,g=$rnn,$lstm,$gru; print('The claim held here: both gated cells beat the vanilla RNN.' if max(l,g)<r else 'The claim did not hold on this budget: a gated cell did not beat the vanilla RNN.')" 2>/dev/null || echo "No verdict: a value is missing.")"
report_end
