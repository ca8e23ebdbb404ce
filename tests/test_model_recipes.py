"""The model-comparison recipes (Transformer against an attentional LSTM; a captioner with and without
attention) run end to end with debug=smoke, one seed, on data written here or generated: nothing under
../shared/data is needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from seqtool.config import compose
from tests.test_rnn_recipes import run_recipe

pytestmark = pytest.mark.slow

GERMAN = ["ein mann fährt fahrrad .", "zwei hunde spielen im schnee .", "eine frau liest ein buch .",
          "ein kind läuft am strand .", "drei männer sitzen auf einer bank ."]  # fmt: skip
ENGLISH = ["a man rides a bike .", "two dogs play in the snow .", "a woman reads a book .",
           "a child runs on the beach .", "three men sit on a bench ."]  # fmt: skip


def parallel_corpus(directory: Path) -> Path:
    """train/val/test_2016_flickr.{de,en}: Multi30k's file names, five sentence pairs repeated."""
    directory.mkdir()
    for prefix, copies in (("train", 8), ("val", 1), ("test_2016_flickr", 1)):
        (directory / f"{prefix}.de").write_text("\n".join(GERMAN * copies) + "\n", encoding="utf-8")
        (directory / f"{prefix}.en").write_text("\n".join(ENGLISH * copies) + "\n", encoding="utf-8")
    return directory


def test_the_two_translation_configs_differ_only_in_the_model():
    """The recipe's comparison is fair only if both sides read the same data with the same schedule."""
    transformer = compose(["experiment=transformer_vs_rnn"])
    lstm = compose(["experiment=transformer_vs_rnn_lstm"])
    assert transformer.task == lstm.task and transformer.trainer == lstm.trainer
    assert transformer.model._target_.endswith("Transformer") and lstm.model.cell == "lstm"


def test_transformer_vs_rnn(tmp_path):
    data = parallel_corpus(tmp_path / "data")
    report = run_recipe("transformer_vs_rnn", tmp_path, str(data), "task.vocab_size=120")
    rows = re.findall(r"^\| (transformer_vs_rnn_\w+) \|.*\| (\d+) \|$", report, re.MULTILINE)
    assert {name for name, _ in rows} == {"transformer_vs_rnn_transformer", "transformer_vs_rnn_lstm"}
    assert all(int(params) > 0 for _, params in rows)  # the params column
    assert (
        "transformer_vs_rnn_time.png" in report
        and "**Verdict (measured).** Best validation BLEU, mean over" in report
    )
    assert "**What differs from the paper.**" in report


def test_captioning_attention(tmp_path):
    small = ("task.shapes.train_size=64", "task.shapes.val_size=8", "task.shapes.test_size=8")
    report = run_recipe("captioning_attention", tmp_path, *small)
    for table in ("validation while training", "test split (500 images, beam 3)"):
        assert table in report
    assert re.search(r"^\| soft \|", report, re.MULTILINE) and re.search(r"^\| none \|", report, re.MULTILINE)
    assert "img/captioning_attention_map.png" in report and "img/captioning_attention_bleu4.png" in report
    assert (
        "**Verdict (measured).** Test split (beam 3, mean of the seeds), soft attention against none:"
        in report
    )
