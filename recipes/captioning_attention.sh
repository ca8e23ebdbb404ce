#!/usr/bin/env bash
# Does soft attention help a captioner? Show, Attend and Tell (Xu et al. 2015) on the generated shapes,
# where the caption names which shape is where: the captioner with soft attention over its 8×8 feature
# grid against the same network with model.attention=none (every word sees the mean feature only),
# 3 seeds each; validation BLEU-4, CIDEr-D, exact match and scene agreement while training, the test split
# with beam 3, and one attention map. Writes docs/experiments/captioning_attention.md.
#
#   recipes/captioning_attention.sh [extra overrides...]
#
# The images are generated (seqtool.data.shapes): nothing to download. The CPU default (5 min 41 s measured
# on 2 shared cores) is conf/experiment/captioning_attention.yaml: experiment=shapes_captioner's model for
# 400 steps of 32 captions. The GPU size is an override, e.g.
#   recipes/captioning_attention.sh trainer.max_steps=5000 task.shapes.train_size=20000 device=cuda
# Quick check: add debug=smoke.
set -euo pipefail
source "$(dirname "$0")/lib/report.sh"
REPORT_EXTRA=("$@")

report_begin captioning_attention "A captioner that attends over the image's feature grid at every word \
describes images better than the same network fed one mean feature, most of all where the caption must \
say which object is where (Xu et al. 2015, \"Show, Attend and Tell\")."
# seed first: Hydra runs the jobs seed by seed, so each attention run trains beside a no-attention one
report_sweep models "seed=${SEEDS:-1,2,3}" experiment=captioning_attention model.attention=soft,none

# every run's test split with beam 3 (appended to RUN/eval/evals.jsonl, read by compare --evals)
report_eval models --split test --beam 3

report_table "Shapes, validation while training (200 images, greedy; BLEU-n and CIDEr-D against the 3 \
references; exact match: the caption is one of them; scene agreement: it is true of the picture)" models \
  --by attention --metric val_bleu4 --metrics val_bleu4,val_cider_d,val_exact_match,val_scene_agreement,val_loss
report_table "Shapes, test split (500 images, beam 3), after training" models --evals --split test \
  --by attention --metric test_bleu4 --metrics test_bleu1,test_bleu4,test_cider_d,test_exact_match,test_scene_agreement
report_plot captioning_attention_bleu4.png "validation BLEU-4 per evaluation (mean and range over the seeds)" \
  models --curve val_bleu4 --by attention

# where the first attention run looked, word by word: the first of 8 validation images whose caption
# relates two shapes (one relation, no "and"), else the first
job=$(ls -d "$REPORT_RUNS"/models/*"attention=soft"* | head -1)
[ -n "${REUSE:-}" ] || $seqtool decode "$job" --num 8 --beam 3 --plot-attention "$REPORT_RUNS/attention" \
  >"$REPORT_RUNS/attention.txt"
line=$(grep -n -E "(left of|right of|above|below)" "$REPORT_RUNS/attention.txt" | grep -v " and " | head -1 | cut -d: -f1 || true)
map=$(ls "$REPORT_RUNS"/attention/*.png | sed -n "${line:-1}p")
cp "$map" "$REPORT_DIR/img/captioning_attention_map.png"
report_image captioning_attention_map.png "soft attention, seed 1, beam 3, on the validation image \
$(basename "$map" .png), where it wrote \"$(sed -n "${line:-1}p" "$REPORT_RUNS/attention.txt" | cut -f2)\": the image, then one \
panel per word with α_t (8×8, upsampled) over it"

verdict=$(${PYTHON:-python3} - "$REPORT_RUNS/models" <<'PY'
import json, os, shlex, subprocess, sys
sweep = sys.argv[1]
seqtool = shlex.split(os.environ.get("SEQTOOL", "seqtool"))
def table(*options):
    out = subprocess.run(seqtool + ["compare", sweep, "--format", "json", "--by", "attention", *options],
                         capture_output=True, text=True, check=True).stdout
    return {next(iter(row["config"].values())): row for row in json.loads(out)["rows"]}
val_rows = table("--metric", "val_bleu4")
val = {model: row["metrics"] for model, row in val_rows.items()}
test = {model: row["metrics"] for model, row in table("--evals", "--split", "test", "--metric", "test_bleu4").items()}
params = {model: (row.get("params") or {}).get("mean") or 0 for model, row in val_rows.items()}
def best(rows, model, metric):
    found = rows[model].get(metric)
    return found["best"]["mean"] if found else None
def show(value):
    return "n/a" if value is None else f"{value:.1f}"
metrics = [("BLEU-4", "bleu4"), ("CIDEr-D", "cider_d"), ("exact match", "exact_match"),
           ("scene agreement", "scene_agreement")]
parts, wins = [], []
for label, name in metrics:
    soft, none = best(test, "soft", f"test_{name}"), best(test, "none", f"test_{name}")
    if soft is not None and none is not None:
        parts.append(f"{label} {show(soft)} against {show(none)}")
        wins.append(soft > none)
val_soft, val_none = best(val, "soft", "val_bleu4"), best(val, "none", "val_bleu4")
def per_seed(model):
    return ", ".join(f"{v:.1f}" for v in val[model]["val_bleu4"]["final"]["values"])
def last_step(run):
    return max(json.loads(line)["step"] for line in open(f"{run}/metrics.jsonl") if "val_bleu4" in line)
rising = sum(best_step == last_step(run) for row in val_rows.values()
             for best_step, run in zip(row["metrics"]["val_bleu4"]["best_step"]["values"], row["runs"]))
gap = abs(best(test, "soft", "test_bleu4") - best(test, "none", "test_bleu4"))
spread = max(test[model]["test_bleu4"]["best"]["std"] or 0.0 for model in test)
print(f"Test split (beam 3, mean of the seeds), soft attention against none: {'; '.join(parts)}. "
      f"Validation BLEU-4 at the last step, seed by seed: soft {per_seed('soft')}; none {per_seed('none')} "
      f"(best, mean of the seeds: {show(val_soft)} against {show(val_none)}); {rising} of {sum(len(r['runs']) for r in val_rows.values())} "
      f"runs were best at their last evaluation, still learning. The attention MLP adds "
      f"{params['soft'] - params['none']:,.0f} parameters ({params['soft']:,.0f} against {params['none']:,.0f}). "
      + ("The claim held here: attention is ahead on every test metric." if wins and all(wins)
         else "Mixed: attention is ahead on some test metrics only." if any(wins)
         else "The claim did not hold on this budget.")
      + (f" The test BLEU-4 gap ({gap:.1f}) is within the seeds' spread (standard deviation up to {spread:.1f})."
         if gap < spread else ""))
PY
)
report_text "**Verdict (measured).** $verdict"
report_text "**What differs from the paper.** Xu et al. (2015) caption photographs (Flickr8k, Flickr30k, \
COCO) from the 14×14×512 features of a VGG network pretrained on ImageNet (L = 196 positions), trained on \
a GPU, and report on Flickr8k BLEU-4 19.5 with soft attention; their comparison is with other published \
systems, not with the same network without attention. Here both sides are the same network, trained \
from scratch on 64×64 generated scenes of one to three shapes (an 8×8×64 grid, L = 64, the doubly \
stochastic penalty at λ = 0.02 instead of 1), for 400 steps of 32 captions (12,800 of the 18,000 \
training captions, 6,000 images × 3 references) on one CPU thread each. The shapes captions are short \
and come from a small grammar, so BLEU here is far higher than on photographs and says mostly whether \
the colours, kinds and relations are right. The size was fixed from the timing of \
experiment=shapes_captioner, before the measured run. The same pair trained for 1,500 steps (one seed \
each, 9 min 37 s and 11 min 42 s) was measured in [captioning.md](../captioning.md): 88.3 against 80.3 test \
BLEU-4 (beam 3), attention ahead from its first evaluation (step 500); the runs here stop at 400 steps, \
their learning rate decayed over 400 steps instead of 1,500. Flickr8k (../shared/data/flickr8k_1k, 753 \
training images) is not used: a captioner trained 19 minutes \
on it reached 7.9 test BLEU-4 ([captioning.md](../captioning.md)), learning the captions' language more \
than the images, too weak a signal for this budget."
report_end
