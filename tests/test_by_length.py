"""Scores by source length (`seqtool eval RUN --by-length`, Bahdanau et al. 2015 Fig. 2): the bucketing
against hand-computed values, per-bucket BLEU/chrF as sacrebleu's on the bucket's lines, exact match
per length on a tiny synthetic run, the --json layout and RUN/eval/by_length_<split>.json, the
refusals, and `seqtool compare --plot --by-length METRIC`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from sacrebleu.metrics import BLEU, CHRF
from typer.testing import CliRunner

from seqtool import by_length as bucketing
from seqtool import commands, compare
from seqtool.by_length import Bucket, ByLength
from seqtool.cli import app
from seqtool.config import compose, instantiate
from seqtool.decode.settings import Greedy, SearchSettings
from seqtool.errors import UserError
from tests.helpers import assert_user_error, quick_trainer, reverse_run, seqtool, tiny_corpus, tiny_run

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
ROW_KEYS = ["bucket", "low", "high", "count", "bleu", "chrf", "exact_match"]


# ----------------------------------------------------------------------------------------- bucketing
def test_edges_are_inclusive_upper_bounds_and_the_last_bucket_is_open():
    buckets = bucketing.from_edges((10, 20, 30))
    assert buckets == [Bucket(1, 10), Bucket(11, 20), Bucket(21, 30), Bucket(31, None)]
    assert [b.name for b in buckets] == ["1-10", "11-20", "21-30", ">30"]
    lengths = [1, 10, 11, 20, 21, 30, 31, 175, 5]
    assert bucketing.assign(lengths, buckets) == [[0, 1, 8], [2, 3], [4, 5], [6, 7]]
    assert [b.name for b in bucketing.from_edges((5,))] == ["1-5", ">5"]


def test_per_length_is_one_bucket_per_length_present():
    buckets = bucketing.per_length([5, 3, 5, 4, 9])
    assert [b.name for b in buckets] == ["3", "4", "5", "9"]
    assert bucketing.assign([5, 3, 5, 4, 9], buckets) == [[1], [3], [0, 2], [4]]


@pytest.mark.parametrize("text", ["10,5", "0,10", "10,10", "ten", "", "10,,20", "-5"])
def test_bad_edges_are_a_user_error(text):
    with pytest.raises(UserError, match="increasing whole numbers"):
        bucketing.parse_edges(text)


def test_empty_buckets_are_left_out_and_each_bucket_is_scored_on_its_own_lines():
    lengths = [3, 12, 8, 45, 60, 61, 15]
    references = ["a cat sat on the mat .", "the dog ran home today", "it is here", "we saw the big red bus",
                  "one two three four five six", "long long way to go", "the dog ran off"]  # fmt: skip
    hypotheses = ["a cat sat on the mat .", "the dog ran home", "it is here", "we saw a big bus",
                  "one two three four five six", "short", "a dog ran off"]  # fmt: skip
    rows = bucketing.score(lengths, hypotheses, references, bucketing.from_edges((10, 20, 30, 40, 50)), False)
    assert [row["bucket"] for row in rows] == ["1-10", "11-20", "41-50", ">50"]  # 21-30, 31-40: no line
    assert [list(row) for row in rows] == [ROW_KEYS] * 4
    assert [row["count"] for row in rows] == [2, 2, 1, 2]
    assert [row["exact_match"] for row in rows] == [100.0, 0.0, 0.0, 50.0]  # by hand
    assert (rows[3]["low"], rows[3]["high"]) == (51, None)
    for row, lines in zip(rows, [[0, 2], [1, 6], [3], [4, 5]]):
        hyps, refs = [hypotheses[i] for i in lines], [[references[i] for i in lines]]
        assert row["bleu"] == pytest.approx(BLEU().corpus_score(hyps, refs).score)
        assert row["chrf"] == pytest.approx(CHRF().corpus_score(hyps, refs).score)
    assert 0 < rows[1]["bleu"] < 100


def test_lowercase_runs_compare_case_insensitively():
    hypotheses, references = ["The Cat sat on the mat", "a dog"], ["the cat sat on the Mat", "A Dog"]
    rows = bucketing.score([6, 2], hypotheses, references, [Bucket(1, None)], True)
    assert rows[0]["exact_match"] == 100.0 and rows[0]["bleu"] == pytest.approx(100.0)


def test_default_edges_follow_the_tokens():
    def edges(tokenizer: str) -> tuple[int, ...]:
        return instantiate(compose(["task=translation", f"task.tokenizer={tokenizer}"]).task).default_edges()

    assert edges("word") == edges("bpe") == (10, 20, 30, 40, 50, 60)
    assert edges("char") == (50, 100, 150, 200, 250, 300)


# --------------------------------------------------------------------------------- seqtool eval
@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> Path:
    """tests/test_decode.py's seconds-long seq2seq on `reverse`, 12 val strings of 4-8 letters."""
    tmp = tmp_path_factory.mktemp("by_length")
    return commands.train(compose(reverse_run(tmp / "run")))[0]


def test_synthetic_tasks_report_exact_match_per_length_from_one_decoding(synthetic_run):
    run = commands.load_run(synthetic_run, device="cpu")
    calls = []
    decode = run.task.decode
    run.task.decode = lambda *args, **kwargs: calls.append(1) or decode(*args, **kwargs)
    metrics = commands.evaluate(run, "val", SearchSettings(Greedy()), by_length=ByLength())
    assert len(calls) == 1  # bucketed afterwards: the split is decoded once

    pairs = run.task.pairs["val"]
    lengths = [len(run.task.src_tokenizer.encode(source)) for source, _ in pairs]
    hypotheses = (synthetic_run / "hypotheses" / "val.txt").read_text(encoding="utf-8").splitlines()
    rows = metrics["by_length"]
    assert [row["bucket"] for row in rows] == [str(n) for n in sorted(set(lengths))]
    for row in rows:
        lines = [i for i, n in enumerate(lengths) if str(n) == row["bucket"]]
        same = sum(hypotheses[i] == pairs[i][1] for i in lines)
        assert (row["low"], row["high"], row["count"]) == (lengths[lines[0]], lengths[lines[0]], len(lines))
        assert row["exact_match"] == pytest.approx(100.0 * same / len(lines))
    assert sum(row["count"] for row in rows) == 12


def test_eval_json_carries_the_buckets_beside_the_metrics_and_writes_them(synthetic_run):
    result = runner.invoke(app, ["eval", str(synthetic_run), "--greedy", "--by-length", "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert list(metrics) == [
        "loss",
        "perplexity",
        "bleu",
        "chrf",
        "exact_match",
        "length_ratio",
        "signature",
        "by_length",
    ]
    assert all(list(row) == ROW_KEYS and row["low"] == row["high"] for row in metrics["by_length"])

    written = json.loads((synthetic_run / "eval" / "by_length_val.json").read_text(encoding="utf-8"))
    assert written["split"] == "val" and written["tokens"] == "char"
    assert written["buckets"] == metrics["by_length"]
    assert written["metrics"] == {key: value for key, value in metrics.items() if key != "by_length"}


def test_eval_buckets_by_the_edges_given_and_prints_a_row_per_bucket(synthetic_run):
    flags = ["--split", "test", "--by-length", "--buckets", "5,6"]
    result = runner.invoke(app, ["eval", str(synthetic_run), *flags])
    assert result.exit_code == 0, result.output
    written = json.loads((synthetic_run / "eval" / "by_length_test.json").read_text(encoding="utf-8"))
    names = [row["bucket"] for row in written["buckets"]]
    assert set(names) <= {"1-5", "6", ">6"} and sum(row["count"] for row in written["buckets"]) == 10
    table = result.stdout[result.stdout.index("by source length") :]
    shown = [line.split("│")[1].strip() for line in table.splitlines() if line.count("│") == 6]
    assert shown == names
    caption = "".join(result.stdout.split())  # wrapped to the terminal's width
    assert str(synthetic_run / "eval" / "by_length_test.json") in caption


def test_by_length_scores_src_ref_files_too(synthetic_run, tmp_path):
    (tmp_path / "src.txt").write_text("abcd\nabcdefgh\nbad\nhgfedcba\ndcb\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("dcba\nhgfedcba\ndab\nabcdefgh\nbcd\n", encoding="utf-8")
    args = ["--src", str(tmp_path / "src.txt"), "--ref", str(tmp_path / "ref.txt")]
    result = runner.invoke(app, ["eval", str(synthetic_run), *args, "--by-length", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["by_length"]
    assert [(row["bucket"], row["count"]) for row in rows] == [("3", 2), ("4", 1), ("8", 2)]
    assert json.loads((synthetic_run / "eval" / "by_length_files.json").read_text())["buckets"] == rows


def test_real_text_takes_the_default_word_edges(shared_data, tmp_path):
    """IWSLT14 valid (sentences of up to 175 words) through --src/--ref on a tiny word-level model."""
    iwslt = shared_data / "iwslt14"
    if not (iwslt / "valid.de").is_file():
        pytest.skip(f"{iwslt} not found")
    german = (iwslt / "valid.de").read_text(encoding="utf-8").splitlines()
    english = (iwslt / "valid.en").read_text(encoding="utf-8").splitlines()
    longest = sorted(range(len(german)), key=lambda i: len(german[i].split()))[-3:]
    splits = {"train": range(300), "val": range(300, 320), "eval": [*range(400, 440), *longest]}
    for name, lines in splits.items():
        (tmp_path / f"{name}.de").write_text("".join(german[i] + "\n" for i in lines), encoding="utf-8")
        (tmp_path / f"{name}.en").write_text("".join(english[i] + "\n" for i in lines), encoding="utf-8")
    overrides = ["task=translation", "task.synthetic.kind=none", "task.tokenizer=word",
                 *(f"task.files.{split}_{side}={tmp_path / split}.{lang}"
                   for split in ("train", "val") for side, lang in (("src", "de"), ("tgt", "en"))),
                 "task.max_tokens=600", "task.eval_max_len_offset=2", "task.eval_max_len_ratio=1.0",
                 "model=seq2seq_attn", "model.embedding_size=8", "model.hidden_size=8",
                 f"run_dir={tmp_path / 'run'}", *quick_trainer(3)]  # fmt: skip
    run = commands.train(compose(overrides))[0]
    files = ["--src", str(tmp_path / "eval.de"), "--ref", str(tmp_path / "eval.en")]
    result = runner.invoke(
        app, ["eval", str(run), *files, "--greedy", "--max-len", "5", "--by-length", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["by_length"]
    assert rows[-1]["bucket"] == ">60" and rows[-1]["count"] >= 3 and rows[0]["bucket"] == "1-10"
    assert {row["bucket"] for row in rows} <= {"1-10", "11-20", "21-30", "31-40", "41-50", "51-60", ">60"}
    assert sum(row["count"] for row in rows) == 43


# ------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize(
    ("task", "name"),
    [("charlm", "the char LM"), ("video", "video prediction"), ("captioning", "captioning"),
     ("memory", "the memory task")],
)  # fmt: skip
def test_tasks_without_source_sentences_refuse_before_evaluating(task, name):
    with pytest.raises(UserError, match=f"and {name}.* has no source sentences"):
        instantiate(compose([f"task={task}"]).task).evaluate(None, "val", by_length=ByLength())


def test_refusals_are_one_line_and_exit_2(synthetic_run, tmp_path):
    char_lm = commands.train(compose(tiny_run(tiny_corpus(tmp_path), tmp_path / "lm", steps=2)))[0]
    assert_user_error(seqtool("eval", str(char_lm), "--by-length"), "the char LM has no source sentences")
    assert_user_error(seqtool("eval", str(synthetic_run), "--buckets", "10,20"), "add --by-length")
    result = seqtool("eval", str(synthetic_run), "--by-length", "--buckets", "20,10")
    assert_user_error(result, "--buckets 20,10: give increasing whole numbers")
    assert_user_error(seqtool("compare", str(synthetic_run), "--by-length", "bleu"), "give --plot")


# ------------------------------------------------------------------------------------------ compare
def write_run(directory: Path, *, cell: str, seed: int, bleu: dict[str, float] | None) -> Path:
    """A run directory as seqtool train and seqtool eval --by-length leave it (bleu: bucket -> BLEU,
    chrf = 2 x BLEU; None: never scored by length)."""
    directory.mkdir(parents=True)
    config = {"seed": seed, "model": {"cell": cell}, "trainer": {"eval_metric": "bleu", "eval_mode": "max"}}
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    (directory / "metrics.jsonl").write_text(json.dumps({"step": 1, "val_bleu": 1.0}) + "\n")
    if bleu is not None:
        edges = {"1-10": (1, 10), "11-20": (11, 20), ">20": (21, None)}
        rows = [{"bucket": name, "low": edges[name][0], "high": edges[name][1], "count": 5, "bleu": value,
                 "chrf": 2 * value, "exact_match": 0.0} for name, value in bleu.items()]  # fmt: skip
        bucketing.write(directory, "val", tokens="word", metrics={"bleu": 1.0}, rows=rows)
    return directory


@pytest.fixture
def scored_runs(tmp_path) -> Path:
    write_run(tmp_path / "a", cell="lstm", seed=1, bleu={"1-10": 30.0, "11-20": 20.0, ">20": 10.0})
    write_run(tmp_path / "b", cell="lstm", seed=2, bleu={"1-10": 34.0, "11-20": 22.0, ">20": 6.0})
    write_run(tmp_path / "c", cell="gru", seed=1, bleu={"1-10": 25.0, "11-20": 15.0})  # nothing over 20
    write_run(tmp_path / "d", cell="gru", seed=2, bleu=None)
    return tmp_path


def test_compare_averages_each_bucket_over_seeds(scored_runs):
    runs, _ = compare.load_runs([scored_runs])
    lines, tokens, warnings = compare.by_length(compare.compare(runs), "bleu")
    assert tokens == "word tokens" and sorted(lines) == ["model.cell=gru", "model.cell=lstm"]
    lstm = lines["model.cell=lstm"]
    assert [bucket for bucket, _ in lstm] == ["1-10", "11-20", ">20"]
    assert [stat.mean for _, stat in lstm] == [32.0, 21.0, 8.0]
    assert lstm[0][1].std == pytest.approx(math.sqrt(8.0))
    gru = lines["model.cell=gru"]
    assert [stat.values for _, stat in gru] == [(25.0,), (15.0,), ()]  # a bucket it never filled: a gap
    unscored = scored_runs / "d"
    assert warnings == [
        f"skipped {unscored}: no eval/by_length_val.json; run `seqtool eval {unscored} --by-length`"
    ]
    chrf, _, _ = compare.by_length(compare.compare(runs), "chrf")
    assert [stat.mean for _, stat in chrf["model.cell=lstm"]] == [64.0, 42.0, 16.0]


def test_compare_plot_draws_a_line_per_configuration_over_the_buckets(scored_runs, saved_figures):
    args = ["compare", str(scored_runs), "--plot", str(scored_runs / "len.png"), "--by-length", "bleu"]
    result = seqtool(*args)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "seqtool eval" in warnings[0] and "--by-length" in warnings[0]
    assert (scored_runs / "len.png").stat().st_size > 1000

    assert runner.invoke(app, args).exit_code == 0
    (axis,) = saved_figures[-1].axes
    assert [tick.get_text() for tick in axis.get_xticklabels()] == ["1-10", "11-20", ">20"]
    assert axis.get_xlabel() == "source length (word tokens)" and axis.get_ylabel() == "bleu"
    assert axis.get_yscale() == "linear" and axis.get_title() == "bleu by source length (val)"
    handles, labels = axis.get_legend_handles_labels()
    assert sorted(labels) == ["model.cell=gru (n=1)", "model.cell=lstm (n=2)"]
    ys = {label: list(handle.lines[0].get_ydata()) for label, handle in zip(labels, handles)}
    assert ys["model.cell=lstm (n=2)"] == [32.0, 21.0, 8.0]
    assert ys["model.cell=gru (n=1)"][:2] == [25.0, 15.0] and math.isnan(ys["model.cell=gru (n=1)"][2])


@pytest.fixture
def saved_figures(monkeypatch) -> list:
    from matplotlib.figure import Figure

    figures, save = [], Figure.savefig

    def keep(figure, *args, **kwargs):
        figures.append(figure)
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def test_compare_refuses_what_it_cannot_draw(scored_runs):
    png = str(scored_runs / "len.png")
    assert_user_error(seqtool("compare", str(scored_runs / "d"), "--plot", png, "--by-length", "bleu"),
                      "nothing to draw: skipped")  # fmt: skip
    assert_user_error(seqtool("compare", str(scored_runs), "--plot", png, "--by-length", "ter"),
                      "--by-length ter: use one of bleu, chrf, exact_match")  # fmt: skip
    result = seqtool("compare", str(scored_runs), "--plot", png, "--by-length", "bleu", "--split", "x")
    assert_user_error(result, "--split x: use val, test or files")
    write_run(scored_runs / "e", cell="rnn", seed=1, bleu=None)
    rows = [dict(bucket="1-15", low=1, high=15, count=5, bleu=1.0, chrf=1.0, exact_match=0.0)]
    bucketing.write(scored_runs / "e", "val", tokens="word", metrics={}, rows=rows)
    assert_user_error(seqtool("compare", str(scored_runs), "--plot", png, "--by-length", "bleu"),
                      "bucketed differently")  # fmt: skip
