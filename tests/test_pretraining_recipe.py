"""recipes/pretraining.sh end to end with debug=smoke on a tiny SST-2-shaped folder: it pretrains GPT and two
BERTs, fine-tunes from scratch and from each body (with and without the auxiliary LM loss) on two label
counts, and writes its page with the tables, the accuracy-against-labels plot and the verdict."""

import json
import random

import pytest

from tests.test_rnn_recipes import run_recipe

pytestmark = pytest.mark.slow

GOOD, BAD = ["good", "fine", "great", "warm"], ["bad", "dull", "poor", "cold"]
FILLER = ["the", "film", "is", "a", "story", "and", "acting", "plot"]


def tiny_sst2(directory, train_rows: int = 120, dev_rows: int = 24):
    """train.tsv and dev.tsv with GLUE's header: short phrases, label 1 when a GOOD word is in it."""
    generator = random.Random(0)
    directory.mkdir()
    for name, rows in (("train.tsv", train_rows), ("dev.tsv", dev_rows)):
        lines = ["sentence\tlabel"]
        for _ in range(rows):
            label = generator.randint(0, 1)
            words = generator.choices(FILLER, k=5) + [generator.choice(GOOD if label else BAD)]
            generator.shuffle(words)
            lines.append(" ".join(words) + " \t" + str(label))
        (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def test_pretraining_recipe(tmp_path):
    report = run_recipe("pretraining", tmp_path, str(tiny_sst2(tmp_path / "sst2")), env={"LABELS": "20,40"})
    for name in ("gpt_scratch", "bert_scratch", "gpt_pretrained", "bert_80_10_10", "bert_always_mask"):
        assert f"| {name} |" in report, name
    assert "pretraining_accuracy.png" in report and "**Verdict (measured).**" in report
    assert "Pretrained GPT beats GPT from scratch" in report and "Table 8" in report
    records = list((tmp_path / "runs").glob("pretraining/*/finetune/gpt/*/init_from.json"))
    assert len(records) == 4  # two label counts, λ = 0.0 and 0.5
    assert json.loads(records[0].read_text())["run"].endswith("pretrain/experiment=pretraining_gpt")
