"""The seq2seq experiment recipes (recipes/attention_types.sh, recipes/source_reversal.sh) end to end with
debug=smoke, one seed, one job at a time, on a few hundred copy pairs: their page has its tables, its
plots and a verdict computed from the runs."""

from __future__ import annotations

import json

import pytest

from tests.test_rnn_recipes import run_recipe

pytestmark = pytest.mark.slow
TINY = ("task.synthetic.train_size=200", "task.synthetic.val_size=40", "task.eval_max_sentences=40")


def test_attention_types(tmp_path):
    report = run_recipe("attention_types", tmp_path, *TINY)
    assert "| model.attention | model.decoder_order |" in report
    for kind in ("none", "dot", "general", "concat", "local_m", "local_p"):
        assert f"| {kind} | luong |" in report, kind
    assert "| additive | bahdanau |" in report
    assert "![exact match (%) per source-length bucket" in report
    assert "attention_types_by_length.png" in report and "attention_types_by_length_chrf.png" in report
    assert (
        "**Verdict (measured).** Validation exact match" in report
        and "shortest bucket (1-8 letters) → longest (>32 letters)" in report
    )
    assert "Local windows: local_m" in report and "Decoder order, additive score: additive-bahdanau" in report
    assert "**What differs from the papers.**" in report
    # every run was scored per length bucket: the five buckets of BUCKETS=8,16,24,32
    records = sorted((tmp_path / "runs").glob("attention_types/*/*/*/eval/by_length_val.json"))
    assert len(records) == 6 + 1  # six attention types in Luong's order, additive in Bahdanau's
    buckets = [bucket["bucket"] for bucket in json.loads(records[0].read_text())["buckets"]]
    assert buckets[0] == "1-8" and buckets[-1] == ">32"


def test_source_reversal(tmp_path):
    report = run_recipe("source_reversal", tmp_path, *TINY)
    assert "| model.reverse_source | model.bidirectional |" in report
    for row in ("| false | false |", "| true | false |", "| false | true |", "| true | true |"):
        assert row in report, row
    assert "Input feeding, with general attention" in report
    assert "source_reversal_curves.png" in report and "source_reversal_feeding.png" in report
    assert "**Verdict (measured).** No attention, best validation loss" in report
    assert "input feeding on: exact match" in report and "**What differs from the papers.**" in report
