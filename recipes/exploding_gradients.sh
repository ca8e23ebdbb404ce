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

summary=$(${PYTHON:-python3} - "$REPORT_RUNS/clipping" <<'PY'
import json, math, pathlib, sys, yaml
root = pathlib.Path(sys.argv[1])
rows = {}
for sweep in sorted(root.iterdir()):
    if not (sweep / "sweep.yaml").is_file():
        continue
    for job in yaml.safe_load((sweep / "sweep.yaml").read_text())["jobs"]:
        cell = job["name"].split("cell=")[1].split(",")[0]
        metrics = sweep / job["name"] / "metrics.jsonl"
        records = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
        norms = [r["grad_norm"] for r in records if math.isfinite(r.get("grad_norm", math.nan))]
        mse = [r["val_mse"] for r in records if "val_mse" in r]
        rows.setdefault((cell, sweep.name), []).append(
            (job.get("failure") == "diverged", max(norms, default=math.nan), min(mse, default=math.nan)))
lines, unclipped, clipped = [], [0, 0], [0, 0]
for (cell, clipping), runs in sorted(rows.items()):
    diverged = sum(d for d, _, _ in runs)
    counter = unclipped if clipping == "none" else clipped
    counter[0], counter[1] = counter[0] + diverged, counter[1] + len(runs)
    peak = max(p for _, p, _ in runs)
    best = [m for _, _, m in runs if math.isfinite(m)]
    lines.append(f"| {cell} | {clipping} | {diverged} of {len(runs)} | {peak:.3g} | "
                 + (f"{min(best):.3g} |" if best else "— |"))
print("| cell | clipping | diverged (non-finite loss) | largest finite pre-clip norm | best val MSE of any seed |")
print("|---|---|---|---|---|")
print("\n".join(lines))
held = unclipped[0] > 0 and clipped[0] == 0
print(f"\n**Verdict (measured).** Without clipping {unclipped[0]} of {unclipped[1]} runs diverged; with clipping "
      f"(by norm or by value) {clipped[0]} of {clipped[1]} did. "
      + ("The claim held here: clipping was what kept SGD training from blowing up." if held else
         "The claim did not hold as stated on this budget (see the table)."))
PY
)
report_text "$summary"
report_text "**What differs from the paper.** Pascanu et al. (2013) train for many thousands of SGD steps; \
this CPU default takes 600 at a fixed learning rate of 0.5 with momentum 0.9 (chosen before any run, not \
tuned), which is enough to show the explosion and its cure but not to solve the adding problem at lag \
100: every clipped configuration ends near the chance MSE of 0.167 (the RNN clipped by value above it). \
The LSTM blows up without clipping too here: plain SGD at this rate is too large a step for either cell, \
so read the comparison as clipped against unclipped, not LSTM against RNN (that is long_dependencies)."
report_end
