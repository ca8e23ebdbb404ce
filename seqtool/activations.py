"""Which hidden units of a char LM track a property of the text (Karpathy, Johnson & Fei-Fei 2015,
"Visualizing and understanding recurrent networks"): `seqtool decode RUN --plot-activations DIR`.

A text is fed through the run's recurrent stack one character at a time (seqtool.diagnose's replay),
keeping every unit's activation after each character, all in [-1, 1]::

    text [T] -> embedding [1, T, E] -> replay -> values[k, t, j]      layer k, character t, unit j
        lstm:       tanh(c_t^k), the cell as the output gate sees it (tanh(LayerNorm(c)) with layer norm)
        rnn, gru:   h_t^k

Simple per-character signals of the text, each the state after reading character t (what a unit
reading left to right can know), are compared with every unit by Pearson's r over the text::

    text      f  (  '  a  '  ,  [  b  ]  )  ↵  ·  ·  y       (↵ a newline, · a space)
    quote     0  0  1  1  0  0  0  0  0  0  0  0  0  0       1 inside a string literal, from its opening
    column    0  1  2  3  4  5  6  7  8  9 10  0  1  2       quote (included) to its closing one (excluded);
    indent    0  0  0  0  0  0  0  0  0  0  0  1  2  2       the position in the line; leading spaces so
    brackets  0  1  1  1  1  1  2  2  1  0  0  0  0  0       far on the line; open (, [ and {

Each signal's pick is the unit (of any layer) with the largest |r|. DIR/units.json maps each signal to
{layer (from 1), unit (from 0), correlation, activation, png}, or to null when the signal does not vary
over the text; one PNG per pick draws the text coloured by the unit (with --unit: that unit's PNG alone,
and no png keys); DIR/text.txt holds the text read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seqtool.data.io import read_input
from seqtool.decode.settings import DecodeOptions
from seqtool.diagnose import layer_cells, replay_states
from seqtool.errors import UserError
from seqtool.progress import warn

SIGNALS = ("quote", "column", "indent", "brackets")
DEFAULT_CHARS = 1000  # of the val split, without --input or --prime
MAX_CHARS = 4000  # a longer text is cut here: the PNG stays readable
OPENING, CLOSING = "([{", ")]}"


# ------------------------------------------------------------------------------------ signals
def in_string(text: str) -> np.ndarray:
    """1.0 inside a string literal, else 0.0 [T]: ' or " opens one and the same quote closes it; triple
    quotes span lines, single ones end with the line; a backslash escapes the next character; an
    apostrophe between two letters (don't) opens nothing."""
    inside = np.zeros(len(text))
    quote, i = None, 0
    while i < len(text):
        if quote is None:
            if text[i] in "'\"" and not _apostrophe(text, i):
                quote = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else text[i]
                inside[i : i + len(quote)] = 1.0
                i += len(quote) - 1
        elif text.startswith(quote, i):  # the closing quote: outside again
            i += len(quote) - 1
            quote = None
        elif text[i] == "\n" and len(quote) == 1:  # an unclosed single-quoted string ends with its line
            quote = None
        else:
            skip = 2 if text[i] == "\\" else 1  # an escaped character stays inside
            inside[i : i + skip] = 1.0
            i += skip - 1
        i += 1
    return inside


def _apostrophe(text: str, i: int) -> bool:
    return text[i] == "'" and 0 < i < len(text) - 1 and text[i - 1].isalpha() and text[i + 1].isalpha()


def column(text: str) -> np.ndarray:
    """The position of each character in its line, from 0 [T] (a newline ends its line)."""
    values, position = np.zeros(len(text)), 0
    for i, char in enumerate(text):
        values[i] = position
        position = 0 if char == "\n" else position + 1
    return values


def indentation(text: str) -> np.ndarray:
    """The leading spaces read so far on each character's line [T]: the line's indentation from its
    first other character on (a newline ends its line)."""
    values, spaces, leading = np.zeros(len(text)), 0, True
    for i, char in enumerate(text):
        if leading and char == " ":
            spaces += 1
        else:
            leading = False
        values[i] = spaces
        if char == "\n":
            spaces, leading = 0, True
    return values


def bracket_depth(text: str) -> np.ndarray:
    """How many (, [, { are open after each character [T]; a closing bracket with none open is ignored."""
    values, depth = np.zeros(len(text)), 0
    for i, char in enumerate(text):
        if char in OPENING:
            depth += 1
        elif char in CLOSING:
            depth = max(0, depth - 1)
        values[i] = depth
    return values


def signals(text: str) -> dict[str, np.ndarray]:
    """Every signal of the text, each [T]."""
    functions = (in_string, column, indentation, bracket_depth)
    return {name: function(text) for name, function in zip(SIGNALS, functions, strict=True)}


# ------------------------------------------------------------------------- correlation, picks
@dataclass(frozen=True)
class Pick:
    layer: int  # from 1
    unit: int  # from 0, within the layer
    correlation: float  # Pearson's r over the text (the sign says which way the unit moves)
    activation: str  # what was measured: tanh(c) or h


def correlations(values: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """Pearson's r of every unit with the signal: values [T, U], signal [T] -> r [U] (0 for a unit that
    never changes). The signal must vary."""
    units = values - values.mean(axis=0)  # [T, U]
    centred = signal - signal.mean()  # [T]
    scale = np.sqrt((units**2).sum(axis=0) * (centred**2).sum())  # [U]
    products = centred @ units  # [U]
    moving = np.ptp(values, axis=0) > 0  # [U]; a constant unit's centred values are rounding noise
    return np.divide(products, scale, out=np.zeros_like(products), where=moving & (scale > 0))


def best_units(values: np.ndarray, text_signals: dict[str, np.ndarray], activation: list[str]) -> dict:
    """Each signal's unit with the largest |r|: values [L, T, H] -> {signal: Pick, or None when the
    signal is constant over the text}; activation[k] names what layer k's values are."""
    layers, steps, size = values.shape
    flat = values.transpose(1, 0, 2).reshape(steps, layers * size)  # [T, L*H]: layer k's units at k*H
    picks: dict[str, Pick | None] = {}
    for name, signal in text_signals.items():
        if np.ptp(signal) == 0:
            picks[name] = None
            continue
        r = correlations(flat, signal)
        best = int(np.argmax(np.abs(r)))
        layer, unit = divmod(best, size)
        picks[name] = Pick(layer + 1, unit, float(r[best]), activation[layer])
    return picks


# ---------------------------------------------------------------------------------- recording
@dataclass
class Recording:
    text: str  # T characters, each in the run's vocabulary
    values: np.ndarray  # [L, T, H] in [-1, 1]
    activation: list[str]  # per layer: "tanh(c)", "tanh(LayerNorm(c))" or "h"
    cell: str  # rnn | lstm | gru


def record(model: nn.Module, ids: list[int], text: str) -> Recording:
    """Every unit of every layer after each character of `text` (its vocabulary ids), from zero state."""
    kind, cells = layer_cells(model.rnn)
    tokens = torch.tensor([ids], device=model.embedding.weight.device)  # [1, T]
    with torch.no_grad():
        x = model.embedding(tokens)  # [1, T, E]; the dropout after it is off in eval mode
        steps = [
            torch.stack([_unit_values(cell, state, kind) for cell, state in zip(cells, states)])  # [L, H]
            for states in replay_states(cells, kind, x)
        ]
    values = torch.stack(steps, dim=1).float().cpu().numpy()  # [L, T, H]
    return Recording(text, values, [_activation_name(cell, kind) for cell in cells], kind)


def _unit_values(cell: nn.Module, state: Any, kind: str) -> Tensor:
    """One layer's activations [H] of the only sequence: tanh of the LSTM's cell, else h."""
    if kind == "lstm":
        return torch.tanh(cell.norm_c(state[1]))[0]
    return state[0]


def _activation_name(cell: nn.Module, kind: str) -> str:
    if kind != "lstm":
        return "h"
    return "tanh(LayerNorm(c))" if isinstance(cell.norm_c, nn.LayerNorm) else "tanh(c)"


# ----------------------------------------------------------------------------- the command
def plot(run: Any, options: DecodeOptions) -> str:
    """`seqtool decode RUN --plot-activations DIR`: record the units on the text, pick each signal's
    unit, write DIR/units.json, DIR/text.txt and the PNGs; returns a summary of the picks."""
    from seqtool.plots import plot_text_activations

    model = _recurrent_lm(run)
    text = _text(run.task, options)
    recording = record(model, run.task.vocab.encode(text), text)
    picks = best_units(recording.values, signals(text), recording.activation)
    directory = Path(options.activations_dir)
    directory.mkdir(parents=True, exist_ok=True)
    drawn = options.unit is None  # else the one unit --unit names, not the picks
    report = {name: None if pick is None else asdict(pick) | ({"png": _png_name(name, pick)} if drawn else {})
              for name, pick in picks.items()}  # fmt: skip
    for name, layer, unit, title in _figures(recording, picks, options):
        values = recording.values[layer - 1, :, unit]  # [T]
        plot_text_activations(text, values, directory / name, title=title)
    (directory / "units.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (directory / "text.txt").write_text(text, encoding="utf-8")  # what was read, for the signals again
    return summary(picks, len(text), directory)


def _figures(recording: Recording, picks: dict[str, Pick | None], options: DecodeOptions) -> list[tuple]:
    """(PNG name, layer, unit, title) of each figure: the unit --unit names, else each signal's pick."""
    if options.unit is not None:
        layer = _check_unit(recording, options.layer, options.unit)
        title = f"layer {layer} unit {options.unit} ({recording.activation[layer - 1]})"
        return [(f"layer{layer}_unit{options.unit}.png", layer, options.unit, title)]
    return [
        (_png_name(name, pick), pick.layer, pick.unit,
         f"{name}: layer {pick.layer} unit {pick.unit} ({pick.activation}), r = {pick.correlation:+.2f}")
        for name, pick in picks.items() if pick is not None
    ]  # fmt: skip


def _recurrent_lm(run: Any) -> nn.Module:
    """The run's model, if it is a recurrent char LM; otherwise one clear refusal."""
    from seqtool.tasks.charlm import CharLMTask

    if not isinstance(run.task, CharLMTask):
        raise UserError(
            f"--plot-activations reads the units of a char LM (task=charlm); this run's task is "
            f"{type(run.task).__name__}"
        )
    model = run.model
    if not (isinstance(getattr(model, "embedding", None), nn.Embedding) and hasattr(model, "rnn")):
        raise UserError(
            "--plot-activations replays a recurrent stack (model=char_rnn or model=recurrent); this "
            f"run's model is {type(model).__name__}"
        )
    return model


def _text(task: Any, options: DecodeOptions) -> str:
    """--input, else --prime, else the start of the val split; cut to MAX_CHARS and to the vocabulary."""
    if options.input:
        text = read_input(options.input)
    else:
        text = options.prime or task.splits["val"][:DEFAULT_CHARS]
    if len(text) > MAX_CHARS:
        warn(f"--plot-activations reads the first {MAX_CHARS} of {len(text)} characters")
        text = text[:MAX_CHARS]
    known = "".join(char for char in text if char in task.vocab.index)
    if len(known) < len(text):
        warn(f"{len(text) - len(known)} characters not in the run's vocabulary were left out")
    if len(known) < 2:
        raise UserError("--plot-activations needs a text of 2 or more characters the run knows")
    return known


def _check_unit(recording: Recording, layer: int | None, unit: int) -> int:
    """The layer (default: the top one) after checking it and the unit exist."""
    layers, _, size = recording.values.shape
    layer = layers if layer is None else layer
    if not 1 <= layer <= layers:
        raise UserError(f"--layer {layer}: this model has layers 1 to {layers}")
    if not 0 <= unit < size:
        raise UserError(f"--unit {unit}: a layer has units 0 to {size - 1}")
    return layer


def _png_name(signal: str, pick: Pick) -> str:
    return f"{signal}_layer{pick.layer}_unit{pick.unit}.png"


def summary(picks: dict[str, Pick | None], chars: int, directory: Path) -> str:
    """One line per signal, its unit and r; then where the files are."""
    lines = [f"{chars} characters; the unit that tracks each signal best (largest |Pearson r|):"]
    for name, pick in picks.items():
        if pick is None:
            lines.append(f"  {name:<9} constant over the text")
            continue
        where = f"layer {pick.layer} unit {pick.unit}"
        lines.append(f"  {name:<9} {where:<18} r = {pick.correlation:+.3f}  ({pick.activation})")
    lines.append(f"PNGs and units.json in {directory}")
    return "\n".join(lines)
