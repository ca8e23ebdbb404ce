#!/usr/bin/env bash
# Curriculum learning and scheduled sampling. Competence-based curriculum (none, linear, sqrt; Platanios
# et al. 2019) on a translation task (reversing strings of 4-24 letters, by source length) and on the
# char LM (tiny Shakespeare, by segment length); scheduled sampling (none, linear, inverse sigmoid;
# Bengio et al. 2015) for seq2seq_attn. 3 seeds each. Writes docs/experiments/curriculum.md.
#
#   recipes/curriculum.sh [CORPUS] [extra overrides...]   CORPUS: ../shared/data/tinyshakespeare/input.txt
#
# The CPU default (~10 min on 2 cores) is conf/experiment/curriculum.yaml and cell_options.yaml.
# Quick check: add debug=smoke.
set -euo pipefail
source "$(dirname "$0")/lib/report.sh"
corpus=../shared/data/tinyshakespeare/input.txt
if [ $# -gt 0 ] && [[ $1 != *=* ]]; then corpus=$1; shift; fi
REPORT_EXTRA=("$@")
seeds="seed=${SEEDS:-1,2,3}"

report_begin curriculum "Presenting easy examples first (a competence-based curriculum) reaches a given \
quality in fewer steps than random order (Platanios et al. 2019), and scheduled sampling, feeding the \
decoder its own predictions more and more often, closes the gap between training and decoding (Bengio \
et al. 2015)."
report_sweep translation experiment=curriculum trainer.curriculum.kind=none,linear,sqrt "$seeds"
report_sweep charlm experiment=cell_options "task.path=$corpus" trainer.curriculum.kind=none,linear,sqrt \
  trainer.curriculum.steps=400 "$seeds"
report_sweep sampling experiment=curriculum trainer.teacher_forcing.kind=none,linear,inverse_sigmoid "$seeds"

report_table "Curriculum on reverse (validation exact match, %)" translation --metric val_exact_match \
  --metrics val_exact_match,val_loss --by curriculum.kind
report_plot curriculum_translation.png "reverse: validation exact match per evaluation (mean and range over the \
seeds); competence reaches 1 at step 400" translation --curve val_exact_match --by curriculum.kind
report_table "Curriculum on the char LM (validation bits per character)" charlm --metric val_bpc \
  --metrics val_bpc --by curriculum.kind
report_plot curriculum_charlm.png "char LM: validation bpc per evaluation" charlm --curve val_bpc --by curriculum.kind
report_table "Scheduled sampling on reverse (validation exact match, %)" sampling --metric val_exact_match \
  --metrics val_exact_match,val_loss --by teacher_forcing.kind
report_plot curriculum_sampling.png "reverse: validation exact match with scheduled sampling" sampling \
  --curve val_exact_match --by teacher_forcing.kind

verdict=$(${PYTHON:-python3} - "$REPORT_RUNS" <<'PY'
import json, os, pathlib, shlex, subprocess, sys
runs = pathlib.Path(sys.argv[1])
seqtool = shlex.split(os.environ.get("SEQTOOL", "seqtool"))
EVERY = 50  # the evaluation interval of conf/experiment/curriculum.yaml: steps finer than it are not resolved

def best(sweep, metric, key):
    """configuration -> (mean, std) of the best metric over the seeds."""
    out = subprocess.run(seqtool + ["compare", str(runs / sweep), "--format", "json", "--metric", metric,
                                    "--by", key], capture_output=True, text=True, check=True).stdout
    return {str(next(iter(row["config"].values()))): (row["metrics"][metric]["best"]["mean"],
                                                      row["metrics"][metric]["best"]["std"] or 0.0)
            for row in json.loads(out)["rows"]}

def first_step(sweep, key, goal):
    """configuration -> mean over the seeds of the first evaluated step with exact match >= goal."""
    found = {}
    for metrics in sorted((runs / sweep).glob("*/metrics.jsonl")):
        name = metrics.parent.name.split(key + "=")[1].split(",")[0]
        points = [(r["step"], r["val_exact_match"]) for r in map(json.loads, metrics.read_text().splitlines())
                  if "val_exact_match" in r]
        found.setdefault(name, []).append(next((s for s, v in points if v >= goal), float("inf")))
    return {name: sum(steps) / len(steps) for name, steps in found.items()}

def versus(table, name, higher):
    (m, s), (m0, s0) = table[name], table["none"]
    if abs(m - m0) <= s + s0:
        return f"{name} {m:.3g} vs none {m0:.3g}: within the seeds' spread"
    better = (m > m0) == higher
    return f"{name} {m:.3g} vs none {m0:.3g}: {'better' if better else 'worse'}"

steps = first_step("translation", "kind", 50)
reverse = best("translation", "val_exact_match", "trainer.curriculum.kind")
charlm = best("charlm", "val_bpc", "trainer.curriculum.kind")
sampling = best("sampling", "val_exact_match", "trainer.teacher_forcing.kind")
sooner = [n for n in ("linear", "sqrt") if steps["none"] - steps[n] > EVERY]
print("Reverse, mean first step at >= 50 % exact match: "
      + ", ".join(f"{n} {steps[n]:.0f}" for n in ("none", "linear", "sqrt")) + f" (evaluated every {EVERY}); "
      + "best exact match " + "; ".join(versus(reverse, n, True) for n in ("linear", "sqrt")) + ". "
      + "Char LM best bpc " + "; ".join(versus(charlm, n, False) for n in ("linear", "sqrt")) + ". "
      + "Scheduled sampling best exact match " + "; ".join(versus(sampling, n, True) for n in ("linear", "inverse_sigmoid")) + ". "
      + (f"The curriculum claim held on reverse for {' and '.join(sooner)}." if sooner else
         "The curriculum claim did not hold on this budget: no schedule reached 50 % exact match more than one "
         "evaluation sooner than random order, nor ended better."))
PY
)
report_text "**Verdict (measured).** $verdict"
report_text "**What differs from the papers.** Platanios et al. (2019) report faster convergence for Transformers \
and RNNs on WMT and IWSLT, where sentence length spans a wide range and training runs for tens of \
thousands of steps; here reverse of 4-24 letters is learned by every schedule within a few hundred steps, \
so there is little for a curriculum to speed up, and the char LM's segment-length curriculum only shortens \
the early segments. Bengio et al. (2015) measure scheduled sampling on captioning, parsing and speech \
with long outputs, where exposure bias matters more than on a 600-step reverse task."
report_end
