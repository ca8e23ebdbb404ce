#!/usr/bin/env bash
# Which attention, and where does it matter? A small LSTM seq2seq copies strings of 4-40 letters
# (task.synthetic.kind=copy, character tokens, the source read reversed as in Luong et al. 2015) with no
# attention, with Luong et al.'s global scores dot, general and concat (= Bahdanau et al.'s additive
# score in seqtool/models/attention.py), local-m and local-p, all in Luong's decoder order (attend from the
# new state h_t); and with the additive score in Bahdanau's order (attend from s_{t-1}, the context fed to
# the RNN step, no input feeding: model.decoder_order=bahdanau model.input_feeding=false); 3 seeds each.
# After training, `seqtool eval RUN --by-length` scores every run per bucket of source length, and
# `seqtool compare --by-length` draws exact match and chrF per bucket, one line per attention type.
# Writes docs/experiments/attention_types.md.
#
#   recipes/attention_types.sh [extra overrides...]
#
# Data: a synthetic task, not translation. Multi30k's sentences are short (few over 30 words), and the
# IWSLT14 valid set (../shared/data/iwslt14, up to 175 tokens) needs a model trained for hours before its
# long sentences say anything; copying strings of 4-40 characters spans short to long in minutes on a CPU.
# The CPU default is conf/experiment/attention_types.yaml (21 runs: 16 min 44 s measured on 2 cores shared
# with other jobs; the 15 runs before local_m and the Bahdanau order took 7 min alone). The GPU size is an
# override, e.g.
#   recipes/attention_types.sh model.hidden_size=256 task.synthetic.max_length=100 trainer.max_steps=5000 device=cuda
# BUCKETS (default 8,16,24,32) are the upper edges of the source-length buckets. Quick check: add debug=smoke.
set -euo pipefail
source "$(dirname "$0")/lib/report.sh"
REPORT_EXTRA=("$@")
BUCKETS=${BUCKETS:-8,16,24,32}

report_begin attention_types "An encoder-decoder that must squeeze the whole source into one vector degrades \
as the source grows; attention (global dot, general or concat/additive scores, local-m or local-p) lets the \
decoder look back at every source position, and helps the more the longer the input (Bahdanau et al. 2015, \
Fig. 2; Luong et al. 2015, Fig. 6). Luong et al. find the dot score works well for global attention and \
local-p with the general score the best overall, above local-m (a window at p_t = t). Computing the context \
from the new decoder state (Luong et al.) rather than the previous one, fed into the RNN step (Bahdanau et \
al.), is a simplification that Luong et al. (§3.1) do not report as costing accuracy."
report_sweep types experiment=attention_types model.attention=none,dot,general,concat,local_m,local_p \
  "seed=${SEEDS:-1,2,3}"
report_sweep bahdanau experiment=attention_types model.attention=additive model.decoder_order=bahdanau \
  model.input_feeding=false "seed=${SEEDS:-1,2,3}"
SWEEPS=(types "$REPORT_RUNS/bahdanau")  # every table and plot compares both sweeps' runs
BY=(--by attention,decoder_order)

# Every run scored per source-length bucket on the whole validation set (greedy, the best checkpoint by chrF):
# RUN/eval/by_length_val.json, which compare --by-length reads.
report_eval types --greedy --by-length --buckets "$BUCKETS"
report_eval bahdanau --greedy --by-length --buckets "$BUCKETS"

report_table "Copy, 4-40 letters: validation exact match (%), chrF and loss, best evaluation of each run" \
  "${SWEEPS[@]}" --metric val_exact_match --metrics val_exact_match,val_chrf,val_loss "${BY[@]}"
report_plot attention_types_by_length.png "exact match (%) per source-length bucket (letters), mean and range \
over the seeds; seqtool eval --by-length on the whole validation set" "${SWEEPS[@]}" --by-length exact_match \
  "${BY[@]}"
report_plot attention_types_by_length_chrf.png "chrF per source-length bucket: graded where exact match is 0" \
  "${SWEEPS[@]}" --by-length chrf "${BY[@]}"
report_plot attention_types_curves.png "validation exact match per evaluation" "${SWEEPS[@]}" \
  --curve val_exact_match "${BY[@]}"

verdict=$(${PYTHON:-python3} - "$REPORT_RUNS/types" "$REPORT_RUNS/bahdanau" <<'PY'
import json, os, pathlib, shlex, subprocess, sys
from collections import defaultdict
sweeps = sys.argv[1:]
seqtool = shlex.split(os.environ.get("SEQTOOL", "seqtool"))
out = subprocess.run(seqtool + ["compare", *sweeps, "--format", "json", "--metric", "val_exact_match",
                                "--by", "attention,decoder_order"], capture_output=True, text=True,
                     check=True).stdout
def label(config):  # the attention type, and the decoder order where it is Bahdanau's
    kind, order = str(config["model.attention"]), str(config["model.decoder_order"])
    return kind if order == "luong" else f"{kind}-{order}"
compared = json.loads(out)["rows"]
rows = {label(row["config"]): row["metrics"]["val_exact_match"] for row in compared}
kind_of = {pathlib.Path(run).name: label(row["config"]) for row in compared for run in row["runs"]}
overall = {kind: metric["best"] for kind, metric in rows.items()}
last = int(max(step for metric in rows.values() for step in metric["best_step"]["values"]))  # the last evaluation
steps = [step for kind, metric in rows.items() if kind != "none" for step in metric["best_step"]["values"]]
rising = sum(step == last for step in steps)  # attention runs at their best when training stopped
# per type and bucket: the scores of its seeds (seqtool eval --by-length, the last bucket the longest)
buckets, scores = [], defaultdict(lambda: defaultdict(list))
for record_file in sorted(f for sweep in sweeps for f in pathlib.Path(sweep).glob("*/eval/by_length_val.json")):
    kind = kind_of[record_file.parent.parent.name]
    for bucket in json.loads(record_file.read_text())["buckets"]:
        if bucket["bucket"] not in buckets:
            buckets.append(bucket["bucket"])
        for metric in ("exact_match", "chrf"):
            scores[kind][(bucket["bucket"], metric)].append(bucket[metric])
def mean(kind, bucket, metric):
    values = scores[kind][(bucket, metric)]
    return sum(values) / len(values)
short, long = buckets[0], buckets[-1]
types = [t for t in ("dot", "general", "concat", "local_m", "local_p", "additive-bahdanau") if t in scores]
none_short, none_long = mean("none", short, "chrf"), mean("none", long, "chrf")
degrades = none_long < none_short
gains = {t: (mean(t, short, "chrf") - none_short, mean(t, long, "chrf") - none_long) for t in types}
grows = [t for t, (at_short, at_long) in gains.items() if at_long > at_short]
ranking = sorted(overall, key=lambda t: -overall[t]["mean"])
def em(kind, bucket):
    return f"{mean(kind, bucket, 'exact_match'):.0f}"
def versus(a, b):  # "a X ± s vs b Y ± s: a ahead by D, more (or not more) than the seeds' spread"
    x, y = overall[a], overall[b]
    spread, gap = max(x["std"] or 0, y["std"] or 0), abs(x["mean"] - y["mean"])
    ahead = a if x["mean"] > y["mean"] else b
    return (f"{a} {x['mean']:.1f} ± {x['std'] or 0:.1f} vs {b} {y['mean']:.1f} ± {y['std'] or 0:.1f}: "
            + (f"{ahead} ahead by {gap:.1f} points, {'more' if gap > spread else 'no more'} than the larger "
               f"std over the seeds ({spread:.1f})" if gap else "tied"))
def local_windows():
    m, p = overall["local_m"]["mean"], overall["local_p"]["mean"]
    return (f" Local windows: {versus('local_m', 'local_p')}"
            + (" (Luong et al. find local-p better on English-German; copying's alignment is exactly "
               "local-m's p_t = t)." if m > p else " (as Luong et al. find local-p better)." if m < p else "."))
local = local_windows() if {"local_m", "local_p"} <= overall.keys() else ""
order = (f" Decoder order, additive score: {versus('additive-bahdanau', 'concat')} (Bahdanau's order without "
         "input feeding vs Luong's with it)." if {"additive-bahdanau", "concat"} <= overall.keys() else "")
print(
    "Validation exact match, mean ± std over the seeds (best evaluation): "
    + ", ".join(f"{t} {overall[t]['mean']:.1f} ± {overall[t]['std'] or 0:.1f}" for t in ranking) + ". "
    + f"Per source length (seqtool eval --by-length), shortest bucket ({short} letters) → longest ({long} letters): "
    + "; ".join(f"{t} exact match {em(t, short)} → {em(t, long)} %, chrF {mean(t, short, 'chrf'):.1f} → "
                f"{mean(t, long, 'chrf'):.1f}" for t in ["none", *types]) + ". "
    + f"The no-attention model {'degrades' if degrades else 'does not degrade'} with length (chrF "
    + f"{none_short:.1f} → {none_long:.1f}). Gain of attention over none in chrF, shortest → longest bucket: "
    + ", ".join(f"{t} {a:+.1f} → {b:+.1f}" for t, (a, b) in gains.items()) + ". "
    + ("The claim held: the no-attention model degrades with length and every attention type gains more on "
       "the longest sources than on the shortest." if degrades and len(grows) == len(types) else
       f"The claim held in part: the gain grows with length for {', '.join(grows) or 'no attention type'}"
       f"{'' if degrades else ', and the no-attention model does not degrade'}." if degrades or grows else
       "The claim did not hold on this budget.")
    + f" {rising} of {len(steps)} attention runs were at their best exact match at the last evaluation "
    + f"(step {last})."
    + local + order
    + f" Best attention here: {ranking[0]}"
    + (" (as Luong et al. find local-p best)." if ranking[0] == "local_p" else
       " (Luong et al.: dot the best global score, local-p the best overall)."))
PY
)
report_text "**Verdict (measured).** $verdict"
report_text "**What differs from the papers.** Bahdanau et al. (2015) and Luong et al. (2015) translate \
English-French and English-German (WMT, millions of sentence pairs, recurrent networks of 1000 units, days of \
GPU training) and score BLEU by sentence length; here a one-layer LSTM of 64 units copies random letter \
strings for 800 steps of at most 1,024 tokens each, and the scores are exact match and chrF (BLEU of \
one unbroken 'word' per line is 0). Copying needs exactly the monotone alignment that attention provides, so \
the gap is larger than Bahdanau et al.'s on real language, and the ranking of the scores reflects how fast each learns that \
alignment in 800 steps rather than translation quality. Bahdanau et al.'s RNNsearch-50 keeps its BLEU up \
to sentences of 50 words and more; here the attention models, too, lose exact match on the longest strings \
after 800 steps, where one wrong letter fails a whole line (their chrF falls much less). Local-p here \
predicts its window centre with the general score inside it, as Luong et al.'s local-p, but renormalises the \
weights over the window (D = 5); local-m uses the same general score and D, its centre p_t = t stopping at the \
last source token (a copy's target, with its end token, is as long as its source, so it never has to). Bahdanau et al.'s \
RNNsearch is a bidirectional GRU of 1000 units with a maxout output layer; here the Bahdanau-order run keeps \
this recipe's unidirectional LSTM over the reversed source and the bridge to the decoder's first state, and its \
output layer is tanh(W_c [c_i; s_i; E y_{i-1}]): what differs from the concat run is where the context is \
computed (from s_{i-1}), what the RNN reads (c_i in place of the fed-back h̃_{i-1}) and the E y_{i-1} in the \
output layer. Luong et al.'s source reversal is kept in every \
configuration (recipes/source_reversal.sh measures what it does without attention)."
report_end
