"""recipes/beam_width.sh end to end with debug=smoke, one seed, on a parallel corpus written here (nothing
under ../shared/data is needed): its models are trained, every search is evaluated and recorded, and the
report compares them through `seqtool compare --evals`."""

from __future__ import annotations

import json
import re

import pytest

from tests.test_model_recipes import parallel_corpus
from tests.test_rnn_recipes import run_recipe

pytestmark = pytest.mark.slow


def test_beam_width(tmp_path):
    data = parallel_corpus(tmp_path / "data")
    small = ("task.vocab_size=120", "task.synthetic.train_size=200", "task.synthetic.test_size=20",
             "task.synthetic.val_size=20")  # fmt: skip
    report = run_recipe("beam_width", tmp_path, str(data), *small, env={"BEAMS": "1,5", "PENALTIES": "1.0"})
    for table in ("Multi30k de→en, test_2016_flickr", "Dates (500 held-out dates)"):
        assert table in report
    # one row per search: beams 1 and 5 without a penalty, beam 5 with α = 1
    header = "| eval.beam | eval.length_penalty | n | test_"
    assert report.count(header) == 2
    settings = re.findall(r"^\| (\d+) \| ([\d.]+) \| 1 \|", report, re.MULTILINE)
    assert sorted(settings) == sorted([("1", "0.0"), ("5", "0.0"), ("5", "1.0")] * 2)
    assert "img/beam_width_multi30k.png" in report and "img/beam_width_dates.png" in report
    assert "**Verdict (measured).** multi30k: BLEU beam 1 " in report and "greedy = beam 1" in report
    records = [json.loads(line) for file in (tmp_path / "runs").rglob("evals.jsonl")
               for line in file.read_text().splitlines()]  # fmt: skip
    assert len(records) == 6 and {r["split"] for r in records} == {"test"}
    assert {(r["search"]["beam"], r["search"]["length_penalty"]) for r in records} == {
        (1, 0.0),
        (5, 0.0),
        (5, 1.0),
    }
