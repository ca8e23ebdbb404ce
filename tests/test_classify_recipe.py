"""recipes/sst2.sh end to end at debug=smoke, on the first 300 train phrases and 40 dev sentences of SST-2."""

from __future__ import annotations

import gzip

import pytest

from tests.test_rnn_recipes import run_recipe

pytestmark = pytest.mark.slow


def test_sst2_recipe(tmp_path, shared_data):
    data = tmp_path / "sst2"
    data.mkdir()
    train = gzip.decompress((shared_data / "sst2" / "train.tsv.gz").read_bytes()).decode("utf-8")
    (data / "train.tsv.gz").write_bytes(gzip.compress("\n".join(train.splitlines()[:301]).encode("utf-8")))
    dev = (shared_data / "sst2" / "dev.tsv").read_text(encoding="utf-8")
    (data / "dev.tsv").write_text("\n".join(dev.splitlines()[:41]) + "\n", encoding="utf-8")
    report = run_recipe("sst2", tmp_path, str(data))
    assert "**Verdict (measured).**" in report and "**What differs from the papers.**" in report
    for model in ("bag of embeddings", "LSTM, last state(s)", "BiLSTM (sum), last state(s)",
                  "BiLSTM (concat), attention pooling", "Transformer encoder, class token"):  # fmt: skip
        assert f"| {model} |" in report, model
    assert "img/sst2_confusion.png" in report and "img/sst2_attention.png" in report
