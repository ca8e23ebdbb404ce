"""Interpretable units (seqtool.activations): the text signals against hand-computed values, the pick on
a planted unit, the recorded activations against the stack's own forward, and `seqtool decode
--plot-activations` end to end with its refusals."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from seqtool.activations import (
    best_units,
    bracket_depth,
    column,
    correlations,
    in_string,
    indentation,
    plot,
    record,
    signals,
)
from seqtool.cli import app
from seqtool.decode.settings import DecodeOptions
from seqtool.errors import UserError
from seqtool.models.char_rnn import CharRNN
from seqtool.models.recurrent import RecurrentModel
from tests.helpers import assert_user_error, quick_trainer, seqtool, tiny_run

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

CODE = "def f(x):\n    if x['a']:\n        return [g(x, \"b\")]\n    return {}\n"


# ------------------------------------------------------------------------------------ signals
def test_the_signals_of_a_small_text_by_hand():
    text = "f('a',[b])\n  y"
    assert signals(text)["quote"].tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert column(text).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 1, 2]
    assert indentation(text).tolist() == [0] * 11 + [1, 2, 2]
    assert bracket_depth(text).tolist() == [0, 1, 1, 1, 1, 1, 2, 2, 1, 0, 0, 0, 0, 0]


def test_strings_triple_quotes_escapes_and_apostrophes():
    assert in_string('a"b"c').tolist() == [0, 1, 1, 0, 0]
    assert in_string('"a\'b"').tolist() == [1, 1, 1, 1, 0]  # the other quote inside does not close
    assert in_string('"a\\"b"x').tolist() == [1, 1, 1, 1, 1, 0, 0]  # \" is escaped
    assert in_string("'ab\ncd'").tolist() == [1, 1, 1, 0, 0, 0, 1]  # a single quote ends with its line
    assert in_string('"""a\n"b"""c').tolist() == [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]  # triple: spans lines
    assert in_string("don't 'go'").tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1, 0]  # n't opens nothing


def test_indentation_column_and_unmatched_brackets():
    assert indentation("  a b\n c\nd").tolist() == [1, 2, 2, 2, 2, 2, 1, 1, 1, 0]
    assert column("ab\n\ncd").tolist() == [0, 1, 2, 0, 0, 1]
    assert bracket_depth(")(]{}").tolist() == [0, 1, 0, 1, 0]


# ------------------------------------------------------------------------- correlation, picks
def test_correlations_are_pearsons_r():
    rng = np.random.default_rng(0)
    values, signal = rng.normal(size=(50, 4)), rng.normal(size=50)
    expected = [np.corrcoef(values[:, j], signal)[0, 1] for j in range(4)]
    assert correlations(values, signal) == pytest.approx(expected)
    values[:, 2] = 0.3  # a unit that never moves correlates with nothing
    assert correlations(values, signal)[2] == 0.0


def test_the_pick_is_the_planted_unit():
    text = CODE * 3
    text_signals = signals(text)
    rng = np.random.default_rng(1)
    values = np.tanh(rng.normal(size=(2, len(text), 16)))  # [L, T, H]
    depth = text_signals["brackets"]
    values[1, :, 7] = depth / depth.max()  # layer 2's unit 7 is the bracket depth
    values[0, :, 7] = -np.tanh(text_signals["column"] / 10)  # layer 1's unit 7 falls along the line
    picks = best_units(values, text_signals, ["tanh(c)", "tanh(c)"])
    assert (picks["brackets"].layer, picks["brackets"].unit) == (2, 7)
    assert picks["brackets"].correlation == pytest.approx(1.0)
    assert (picks["column"].layer, picks["column"].unit) == (1, 7) and picks["column"].correlation < -0.9
    assert abs(picks["quote"].correlation) < 0.9 and picks["quote"].activation == "tanh(c)"


def test_a_constant_signal_has_no_pick():
    picks = best_units(np.random.default_rng(2).normal(size=(1, 5, 3)), signals("abcde"), ["h"])
    assert picks["quote"] is None and picks["brackets"] is None and picks["indent"] is None
    assert picks["column"] is not None


# ---------------------------------------------------------------------------------- recording
OPTIONS = dict(embedding_size=5, hidden_size=6, num_layers=2, dropout=0.0, variational_dropout=False,
               weight_norm=False, forget_bias=1.0)  # fmt: skip


@pytest.mark.parametrize("cell, layer_norm", [("lstm", False), ("lstm", True), ("gru", False)])
def test_the_recorded_units_are_the_stacks_own(cell, layer_norm):
    torch.manual_seed(0)
    model = CharRNN(vocab_size=9, cell=cell, tie_weights=False, layer_norm=layer_norm, **OPTIONS).eval()
    ids = torch.randint(0, 9, (12,)).tolist()
    recording = record(model, ids, "x" * 12)
    assert recording.values.shape == (2, 12, 6) and np.abs(recording.values).max() <= 1
    outputs, state = model.rnn(model.embedding(torch.tensor([ids])))
    if cell == "lstm":  # the last step's tanh(c) of every layer is the stack's final cell, squashed
        for k in range(2):
            norm = model.rnn.layers[k].cell.norm_c if layer_norm else nn.Identity()
            assert np.allclose(recording.values[k, -1], torch.tanh(norm(state[1][k, 0])).detach(), atol=1e-5)
        assert recording.activation == ["tanh(LayerNorm(c))" if layer_norm else "tanh(c)"] * 2
    else:  # h of the top layer at every step is the stack's output
        assert np.allclose(recording.values[1], outputs[0].detach(), atol=1e-5)
        assert recording.activation == ["h", "h"]


def test_model_recurrent_is_recorded_too():
    torch.manual_seed(1)
    model = RecurrentModel(cell="rnn", vocab_size=5, layer_norm=False, **OPTIONS).eval()
    outputs, _ = model.rnn(model.embedding(torch.tensor([[1, 2, 3, 4]])))
    assert np.allclose(record(model, [1, 2, 3, 4], "abcd").values[-1], outputs[0].detach(), atol=1e-5)


def test_a_model_without_a_recurrent_stack_is_refused(tmp_path):
    from seqtool.tasks.charlm import CharLMTask

    task = CharLMTask.__new__(CharLMTask)
    run = SimpleNamespace(task=task, model=nn.Linear(2, 2))
    with pytest.raises(UserError, match="replays a recurrent stack"):
        plot(run, DecodeOptions(activations_dir=tmp_path))
    with pytest.raises(UserError, match="--unit and --layer go with --plot-activations"):
        DecodeOptions(unit=3)


# ------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("activations")
    (directory / "code.py").write_text(CODE * 4, encoding="utf-8")
    corpus = directory / "corpus.txt"
    corpus.write_text((CODE + "x = 'it''s'\n") * 30, encoding="utf-8")
    result = runner.invoke(app, ["train", *tiny_run(corpus, directory / "run", steps=4)])
    assert result.exit_code == 0, result.output
    return directory


def test_decode_plot_activations_end_to_end(char_run):
    out = char_run / "cells"
    args = ["decode", str(char_run / "run"), "--plot-activations", str(out), "--device", "cpu"]
    result = runner.invoke(app, [*args, "--input", str(char_run / "code.py")])
    assert result.exit_code == 0, result.output
    assert "brackets" in result.output and "units.json" in result.output
    units = json.loads((out / "units.json").read_text())
    assert sorted(units) == ["brackets", "column", "indent", "quote"]
    assert (out / "text.txt").read_text() == (CODE * 4)  # every character is in the vocabulary
    for name, pick in units.items():
        assert 1 <= pick["layer"] <= 2 and 0 <= pick["unit"] < 32 and -1 <= pick["correlation"] <= 1
        assert pick["activation"] == "tanh(c)" and pick["png"].startswith(name)
        assert (out / pick["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    result = runner.invoke(app, [*args[:3], str(char_run / "one"), "--unit", "5", "--layer", "1"])
    assert result.exit_code == 0, result.output  # the start of the val split, unit 5 of layer 1
    one = char_run / "one"
    assert sorted(p.name for p in one.iterdir()) == ["layer1_unit5.png", "text.txt", "units.json"]
    assert "png" not in json.loads((one / "units.json").read_text())["column"]


def test_decode_plot_activations_refusals(char_run, tmp_path):
    run = str(char_run / "run")
    out = str(tmp_path / "cells")
    assert_user_error(seqtool("decode", run, "--plot-activations", out, "--unit", "32"), "--unit 32")
    assert_user_error(seqtool("decode", run, "--unit", "3"), "go with --plot-activations")
    copy_run = tmp_path / "copy"
    overrides = ["model=recurrent", "task=memory", "task.problem=copy", "task.lag=4", "task.val_size=8",
                 "model.hidden_size=8", f"run_dir={copy_run}", *quick_trainer(2)]  # fmt: skip
    assert runner.invoke(app, ["train", *overrides]).exit_code == 0
    result = seqtool("decode", str(copy_run), "--plot-activations", out, "--device", "cpu")
    assert_user_error(result, "reads the units of a char LM (task=charlm)")


def test_the_signals_are_used_for_a_text_without_newlines(char_run, tmp_path):
    result = runner.invoke(app, ["decode", str(char_run / "run"), "--plot-activations", str(tmp_path),
                                 "--prime", "def g(y): return y", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    units = json.loads((tmp_path / "units.json").read_text())
    assert units["indent"] is None and units["quote"] is None and units["brackets"] is not None
    assert "indent    constant over the text" in result.output
