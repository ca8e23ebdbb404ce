"""recipes/ntm_copy.sh end to end with debug=smoke (one seed, one job; tests/test_rnn_recipes.run_recipe),
and the experiment it trains: the NTM and the LSTM baseline of about its size on the same copy task."""

from __future__ import annotations

import re

import pytest

from seqtool.config import compose, instantiate
from tests.test_rnn_recipes import run_recipe


def parameters(overrides: list[str]) -> int:
    cfg = compose(["experiment=ntm_copy", *overrides])
    model = instantiate(cfg.model, **instantiate(cfg.task).model_kwargs())
    return sum(p.numel() for p in model.parameters())


def test_the_lstm_baseline_is_about_the_ntms_size():
    """The sizes the recipe's header and page quote, from the experiment's own config."""
    ntm, lstm = parameters([]), parameters(["model=recurrent", "model.hidden_size=110"])
    assert (ntm, lstm) == (62_936, 64_568)
    cfg = compose(["experiment=ntm_copy"])
    assert (cfg.task.problem, cfg.task.length, cfg.task.min_length, cfg.task.width) == ("ntm_copy", 20, 1, 8)
    assert list(cfg.task.eval_lengths) == [10, 20, 30, 50, 80, 100]
    assert (cfg.trainer.clip_norm, cfg.trainer.clip_value, cfg.model.memory_init) == (50.0, 10.0, 1e-6)


@pytest.mark.slow
def test_ntm_copy_recipe(tmp_path):
    report = run_recipe("ntm_copy", tmp_path, "task.val_size=2", "task.test_size=2")
    assert "**Verdict (measured).**" in report and "Seeds converged" in report
    assert "test_bits_wrong_at_100" in report and "ntm_copy_lengths.png" in report
    assert re.search(r"ntm_copy_memory_20\.png", report) and "copy 10 × 8 bits:" in report
