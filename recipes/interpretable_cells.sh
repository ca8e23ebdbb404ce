#!/usr/bin/env bash
# Interpretable cells (Karpathy, Johnson & Fei-Fei 2015, "Visualizing and understanding recurrent
# networks"): a one-layer char-LSTM trained on Python source (the embedded default corpus) and on tiny
# Shakespeare. On the first 1,000 characters of each validation split every cell's tanh(c) is compared
# with four signals of the text (inside a string, column, indentation, bracket depth; seqtool.activations)
# and each signal's best unit is drawn as the text coloured by it. The control is the same network
# untrained (one step at the warm-up learning rate): random cells correlate with some signals too.
# Writes docs/experiments/interpretable_cells.md and its PNGs in docs/experiments/img/.
#
#   recipes/interpretable_cells.sh [SHAKESPEARE] [extra overrides...]    SHAKESPEARE: a text file,
#                                         default ../shared/data/tinyshakespeare/input.txt
#
# The CPU default (~12 min on 2 cores) is conf/experiment/interpretable_cells.yaml: 256 cells and 1200
# steps per corpus; the GPU size is an override, e.g.
#   recipes/interpretable_cells.sh input.txt model.hidden_size=512 trainer.max_steps=10000 device=cuda
# Quick check: add debug=smoke.
set -euo pipefail
source "$(dirname "$0")/lib/report.sh"
shakespeare=../shared/data/tinyshakespeare/input.txt
if [[ $# -gt 0 && $1 != *=* ]]; then
  shakespeare=$1
  shift
fi
REPORT_EXTRA=("$@")
JOBS=1 # one run after another

lstm=(experiment=interpretable_cells trainer.progress=false trainer.tensorboard=false)
untrained=(trainer.max_steps=1 trainer.eval_every=1) # placed last: one step whatever the extra overrides say

# One run and its units: seqtool train, then seqtool decode --plot-activations RUN/units.
cells_run() {
  local name=$1
  shift
  local train=(train "$@" "run_dir=$REPORT_RUNS/$name")
  local decode=(decode "$REPORT_RUNS/$name" --plot-activations "$REPORT_RUNS/$name/units")
  REPORT_COMMANDS+=("seqtool ${train[*]}" "seqtool ${decode[*]}")
  [ -z "${REUSE:-}" ] || return 0 # the report of runs made before (recipes/lib/report.sh)
  $seqtool "${train[@]}"
  $seqtool "${decode[@]}"
}

# The report's table, images and verdict, read from the runs' units.json and metrics.jsonl.
cells_report() {
  ${PYTHON:-python3} - "$1" "$REPORT_RUNS" <<'PY'
import json, pathlib, sys
mode, runs = sys.argv[1], pathlib.Path(sys.argv[2])
corpora = {"python": "Python source", "shakespeare": "tiny Shakespeare"}
signals = {"quote": "inside a string", "column": "column", "indent": "indentation", "brackets": "bracket depth"}
def units(run):
    return json.loads((runs / run / "units" / "units.json").read_text())
def last(run, key):  # the last logged value of a metrics.jsonl key
    rows = [json.loads(l) for l in (runs / run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return [r[key] for r in rows if key in r][-1]
def cell(pick):
    return "—" if pick is None else f"{pick['layer']}:{pick['unit']}"
def r(pick):
    return "—" if pick is None else f"{pick['correlation']:+.2f}"
def tracked(corpus):  # |r| > 0.5, and 0.1 above the untrained network's best unit for the signal
    trained, control = units(corpus), units(f"{corpus}_untrained")
    return [(name, pick["correlation"], abs((control[name] or {"correlation": 0})["correlation"]))
            for name, pick in trained.items()
            if pick and abs(pick["correlation"]) > 0.5
            and abs(pick["correlation"]) >= abs((control[name] or {"correlation": 0})["correlation"]) + 0.1]
if mode == "table":
    print("| signal | " + " | ".join(f"{c}: unit | r | untrained r" for c in corpora.values()) + " |")
    print("| --- " * (1 + 3 * len(corpora)) + "|")
    for name, label in signals.items():
        row = []
        for corpus in corpora:
            pick, control = units(corpus)[name], units(f"{corpus}_untrained")[name]
            row += [cell(pick), r(pick), r(control)]
        print(f"| {label} | " + " | ".join(row) + " |")
    for key, label, shown in (("val_bpc", "val bits per char", "{:.3f}"), ("time", "train minutes", "{:.1f}")):
        row = []
        for corpus in corpora:
            scale = 60 if key == "time" else 1
            row += ["", shown.format(last(corpus, key) / scale), shown.format(last(f"{corpus}_untrained", key) / scale)]
        print(f"| *{label}* | " + " | ".join(row) + " |")
elif mode == "signals":  # how the signals themselves co-vary over the text that was read
    import numpy as np
    from seqtool.activations import signals as signals_of
    parts = []
    for corpus, label in corpora.items():
        text = (runs / corpus / "units" / "text.txt").read_text(encoding="utf-8")
        varying = {signals[n]: v for n, v in signals_of(text).items() if np.ptp(v) > 0}
        names = list(varying)
        pairs = [f"{a}–{b} {np.corrcoef(varying[a], varying[b])[0, 1]:+.2f}"
                 for i, a in enumerate(names) for b in names[i + 1:]]
        parts.append(f"{label}: " + (", ".join(pairs) or "only one signal varies"))
    print("The signals move together, so one cell can be the best for several of them (Pearson r between "
          "the signals over the same characters): " + "; ".join(parts) + ".")
elif mode == "images":  # source, image name, caption
    for corpus, label in corpora.items():
        for name, pick in units(corpus).items():
            if pick:
                print(f"{runs / corpus / 'units' / pick['png']}\tinterpretable_cells_{corpus}_{name}.png\t"
                      f"{label}, {signals[name]}: unit {pick['unit']} of layer {pick['layer']}, "
                      f"{pick['activation']}, r = {pick['correlation']:+.2f} (blue −1, white 0, red +1)")
else:
    found = {corpus: tracked(corpus) for corpus in corpora}
    parts = [f"{corpora[c]}: " + (", ".join(f"{signals[n]} (r = {t:+.2f}; untrained {u:.2f})" for n, t, u in f)
             or "none") for c, f in found.items()]
    verdict = ("The claim held here" if any(found.values()) else "The claim did not hold on this budget")
    text = (f"**Verdict (measured).** {verdict}. Signals a trained cell tracks with |r| > 0.5 and at least "
            "0.1 above the best cell of the untrained network: " + "; ".join(parts) + ".")
    for corpus, label in corpora.items():
        picked = {}
        for name, pick in units(corpus).items():
            if pick:
                picked.setdefault(f"{pick['layer']}:{pick['unit']}", []).append(signals[name])
        for cell_name, names in picked.items():
            if len(names) > 1:
                text += (f" On {label} one cell, {cell_name}, is the best for {', '.join(names)}: signals that "
                         "move together in this text, so read it as one cell, not several.")
        alone = [signals[n] for n, p in units(f"{corpus}_untrained").items() if p and abs(p["correlation"]) > 0.5]
        if alone:
            text += (f" The untrained network alone passes |r| > 0.5 on {label} for {', '.join(alone)}: "
                     "a threshold on |r| without the control would call random cells interpretable.")
    print(text)
PY
}

report_begin interpretable_cells "Some LSTM cells of a char LM track interpretable properties of the text: \
quotes, line position, indentation, bracket depth (Karpathy, Johnson & Fei-Fei 2015)."
cells_run python "${lstm[@]}" "${REPORT_EXTRA[@]}"
cells_run python_untrained "${lstm[@]}" "${REPORT_EXTRA[@]}" "${untrained[@]}"
cells_run shakespeare "${lstm[@]}" "task.path=$shakespeare" "${REPORT_EXTRA[@]}"
cells_run shakespeare_untrained "${lstm[@]}" "task.path=$shakespeare" "${REPORT_EXTRA[@]}" "${untrained[@]}"

report_text "A one-layer LSTM char LM on each corpus; its units read the first 1,000 characters of the \
corpus's validation split (\`seqtool decode RUN --plot-activations DIR\`). Per signal: the cell (layer:unit) \
whose tanh(c) has the largest |Pearson r| with the signal over those characters, its r, and the largest |r| \
of any cell of the same network untrained. The signals are the state after each character: 1 inside a \
string literal, the column, the leading spaces so far on the line, the open brackets ((, [, {); — where \
the signal is constant over the text (tiny Shakespeare has no indentation, no brackets and no quoted \
strings: its ' are apostrophes)."
report_text "$(cells_report table)"
report_text "$(cells_report signals)"
while IFS=$'\t' read -r source name caption; do
  cp "$source" "$REPORT_DIR/img/$name"
  report_image "$name" "$caption"
done < <(cells_report images)
report_text "$(cells_report verdict)"
report_end
