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
width, and depth, layer normalisation, weight normalisation, variational dropout and a forget-gate bias \
of 1 help further (Karpathy et al. 2015; Jozefowicz et al. 2015; Ba et al. 2016; Salimans & Kingma \
2016; Gal & Ghahramani 2016)."
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

verdict=$(${PYTHON:-python3} - "$REPORT_RUNS" <<'PY'
import json, os, shlex, subprocess, sys
seqtool = shlex.split(os.environ.get("SEQTOOL", "seqtool"))
keys = "cell,num_layers,layer_norm,weight_norm,dropout,variational_dropout,forget_bias"
out = subprocess.run(seqtool + ["compare", sys.argv[1], "--format", "json", "--metric", "val_bpc", "--by", keys],
                     capture_output=True, text=True, check=True).stdout
rows = [({k.rsplit(".", 1)[-1]: v for k, v in row["config"].items()}, row["metrics"]["val_bpc"]["best"]["mean"])
        for row in json.loads(out)["rows"]]
reference = dict(cell="lstm", num_layers=1, layer_norm=False, weight_norm=False, dropout=0.0,
                 variational_dropout=False, forget_bias=1.0)
def bpc(**change):
    wanted = reference | change
    return next((value for config, value in rows if config == wanted), None)
lstm, rnn, gru = bpc(), bpc(cell="rnn"), bpc(cell="gru")
checks = [
    ("LSTM beats the RNN", lstm < rnn), ("GRU beats the RNN", gru < rnn),
    ("2 layers beat 1", bpc(num_layers=2) < lstm), ("3 layers beat 1", bpc(num_layers=3) < lstm),
    ("layer norm helps", bpc(layer_norm=True) < lstm), ("weight norm helps", bpc(weight_norm=True) < lstm),
    ("forget bias 1 beats 0", lstm < bpc(forget_bias=0.0)),
    ("variational beats plain dropout (0.25)", bpc(dropout=0.25, variational_dropout=True) < bpc(dropout=0.25)),
]
held = [name for name, ok in checks if ok]
failed = [name for name, ok in checks if not ok]
print(f"Best validation bpc, mean of the seeds: RNN {rnn:.3f}, LSTM {lstm:.3f}, GRU {gru:.3f}; one-layer LSTM with "
      f"layer norm {bpc(layer_norm=True):.3f}, weight norm {bpc(weight_norm=True):.3f}, forget bias 0 "
      f"{bpc(forget_bias=0.0):.3f}, 2 layers {bpc(num_layers=2):.3f}, 3 layers {bpc(num_layers=3):.3f}. "
      f"Held here: {', '.join(held) or 'none'}. Did not hold on this budget: {', '.join(failed) or 'none'}. "
      + ("Mixed verdict." if held and failed else "The claim held." if held else "The claim did not hold."))
PY
)
report_text "**Verdict (measured).** $verdict"
report_text "**What differs from the papers.** Karpathy et al. (2015) and Jozefowicz et al. (2015) train to \
convergence (tens of epochs, bpc near 1.3-1.5 on Shakespeare-sized text); this CPU default stops after \
600 steps of 32 x 64 characters, about one epoch of tiny Shakespeare, with one layer of 128 units, all \
chosen before any run. At that point every model is still far from converged (bpc 2.4-3.0), so the table \
ranks how fast each option learns early on rather than where it ends: deeper stacks and dropout, which pay \
off late, look worse here. For the paper-sized comparison add e.g. \
model.hidden_size=512 trainer.max_steps=10000 device=cuda."
report_end
