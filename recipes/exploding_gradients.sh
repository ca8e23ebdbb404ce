#!/usr/bin/env bash
# Exploding gradients and clipping (Pascanu et al. 2013; the notes' "clipping vs exploding gradients"):
# a vanilla RNN and an LSTM trained by plain SGD on the adding problem at lag 100, with no clipping,
# clipping the global norm at 1, and clipping each element at 0.1; 3 seeds each. Draws the pre-clip
# gradient norm and the loss, counts the runs that diverge. Writes docs/experiments/exploding_gradients.md.
#
#   recipes/exploding_gradients.sh [extra overrides...]
#
# The CPU default takes ~10 min on 2 cores; the data are generated. Quick check: add debug=smoke.
set -euo pipefail
source "$(dirname "$0")/lib/report.sh"
REPORT_EXTRA=("$@")

base=(experiment=exploding_gradients model.cell=rnn,lstm "seed=${SEEDS:-1,2,3}")   # conf/experiment/exploding_gradients.yaml

report_begin exploding_gradients "Without clipping, a vanilla RNN trained by SGD on a long-lag task meets \
gradient norms that jump by orders of magnitude and can diverge; clipping the gradient (by norm or by \
value) keeps training stable (Pascanu et al. 2013)."
# Each sweep may hold diverged jobs (exit 3 inside the sweep): that is a result, not a failure.
report_sweep clipping/none "${base[@]}" trainer.clip_norm=null trainer.clip_value=null || true
report_sweep clipping/norm "${base[@]}" trainer.clip_norm=1.0 trainer.clip_value=null || true
report_sweep clipping/value "${base[@]}" trainer.clip_norm=null trainer.clip_value=0.1 || true

report_table "Adding problem, lag 100 (chance: MSE 0.167)" clipping --metric val_mse --by cell,clip_norm,clip_value \
  --metrics val_mse,val_accuracy
report_plot exploding_gradients_grad_norm.png "pre-clip gradient norm per step (log scale): mean and range over the seeds; \
× marks a non-finite value" clipping --curve grad_norm --by cell,clip_norm,clip_value
report_plot exploding_gradients_loss.png "training loss per step" clipping --curve loss --by cell,clip_norm,clip_value

diverged=$(cat "$REPORT_RUNS"/clipping/*/sweep.yaml | grep -c "failure: diverged" || true)
summary=$(${PYTHON:-python3} - "$REPORT_RUNS/clipping" <<'PY'
import json, math, pathlib, sys
rows = {}
for metrics in pathlib.Path(sys.argv[1]).glob("*/*/metrics.jsonl"):
    sweep, job = metrics.parts[-3], metrics.parts[-2]
    cell = job.split("cell=")[1].split(",")[0]
    norms = [r["grad_norm"] for r in map(json.loads, metrics.read_text().splitlines()) if "grad_norm" in r]
    finite = [n for n in norms if math.isfinite(n)]
    nonfinite = len(norms) - len(finite)
    rows.setdefault((cell, sweep), []).append((max(finite, default=float("nan")), nonfinite))
for (cell, sweep), runs in sorted(rows.items()):
    peak = max(p for p, _ in runs)
    broken = sum(1 for _, n in runs if n)
    print(f"{cell}, clipping {sweep}: largest pre-clip norm {peak:.3g}, runs with a non-finite norm {broken} of {len(runs)}.")
PY
)
report_text "**Measured.** $diverged of the runs stopped on a non-finite loss (\`trainer.on_nonfinite=stop\`). $summary"
report_end
