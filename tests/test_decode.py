"""The one decoding path: strategies as values (what the flags choose, how they batch), and the search
options every autoregressive task now takes from the command line (--length-penalty, --min-len,
--no-repeat-ngram) in `seqtool decode` and `seqtool eval`."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqtool import commands
from seqtool.cli import app
from seqtool.config import compose
from seqtool.decode.settings import Beam, Greedy, Sampling, SearchSettings, choose_strategy
from seqtool.errors import UserError
from tests.helpers import assert_user_error, reverse_run, seqtool, tiny_corpus, tiny_run

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------- strategies


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({}, None),
        ({"greedy": True}, Greedy()),
        ({"beam": 3}, Beam(size=3)),
        ({"nbest": 2}, Beam(size=5, nbest=2)),
        ({"alpha": 0.6}, Beam(size=5, alpha=0.6)),
        ({"beam": 4, "nbest": 4, "alpha": 1.0}, Beam(size=4, nbest=4, alpha=1.0)),
        ({"temperature": 0.7}, Sampling(temperature=0.7)),
        ({"top_k": 5}, Sampling(top_k=5)),
        ({"top_p": 0.9, "temperature": 2.0}, Sampling(temperature=2.0, top_p=0.9)),
    ],
)
def test_the_flags_choose_one_strategy(flags, expected):
    assert choose_strategy(**flags) == expected


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"beam": 3, "greedy": True}, "--beam and --greedy do not go together"),
        ({"greedy": True, "temperature": 1.0}, "--greedy and sampling"),
        ({"nbest": 2, "top_k": 3}, "need beam search"),
        ({"beam": 2, "nbest": 3}, "raise --beam"),
    ],
)
def test_two_strategies_at_once_are_a_user_error(flags, message):
    with pytest.raises(UserError, match=message):
        choose_strategy(**flags)


def test_a_beam_takes_its_width_in_rows_and_only_sampling_draws_copies():
    assert Beam(size=4).rows(100) == 25 and Beam(size=8).rows(4) == 1
    assert Greedy().rows(100) == Sampling().rows(100) == 100
    assert Sampling().copies(3) == 3 and Greedy().copies(3) == Beam().copies(3) == 1


def test_search_settings_refuse_impossible_limits():
    with pytest.raises(UserError, match="more than --max-len"):
        SearchSettings(Greedy(), max_len=3, min_len=4)
    assert SearchSettings(None, seed=2).with_default(Greedy()) == SearchSettings(Greedy(), seed=2)
    assert SearchSettings(Beam()).with_default(Greedy()).strategy == Beam()


# ------------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory) -> Path:
    """A seq2seq model that has learned a little of `reverse` (non-empty, varied outputs)."""
    tmp = tmp_path_factory.mktemp("translation")
    return commands.train(compose(reverse_run(tmp / "run")))[0]


def decode(run: Path, tmp_path: Path, *flags: str) -> list[str]:
    (tmp_path / "src.txt").write_text("abcabc\ncbad\nddcaddca\nb\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["decode", str(run), "--input", str(tmp_path / "src.txt"), *flags])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_length_penalty_is_alpha_and_changes_the_ranking(translation_run, tmp_path):
    flags = ["--beam", "4", "--nbest", "4"]
    penalised = decode(translation_run, tmp_path, *flags, "--length-penalty", "1.0")
    assert penalised == decode(translation_run, tmp_path, *flags, "--alpha", "1.0")
    assert penalised != decode(translation_run, tmp_path, *flags)


@pytest.mark.parametrize("strategy", [["--greedy"], ["--beam", "3"], ["--temperature", "1.0", "--seed", "3"]])
def test_min_len_and_no_repeat_ngram_hold_for_every_strategy(translation_run, tmp_path, strategy):
    """The synthetic tasks use a char tokenizer, so an output's tokens are its characters."""
    lines = decode(translation_run, tmp_path, *strategy, "--min-len", "6", "--no-repeat-ngram", "2")
    texts = [line.split("\t")[-1] for line in lines]
    assert len(texts) == 4 and all(len(text) >= 6 for text in texts)
    for text in texts:
        bigrams = list(itertools.pairwise(text))
        assert len(bigrams) == len(set(bigrams)), text


def test_eval_takes_the_same_search_options(translation_run):
    def metrics(*flags: str) -> dict:
        result = CliRunner().invoke(app, ["eval", str(translation_run), "--json", *flags])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert metrics("--beam", "1") == metrics("--greedy")  # a beam of one is greedy
    metrics("--greedy", "--min-len", "7", "--no-repeat-ngram", "2")
    hypotheses = (translation_run / "hypotheses" / "val.txt").read_text(encoding="utf-8").splitlines()
    assert len(hypotheses) == 12 and all(len(text) >= 7 for text in hypotheses)
    assert all(len(set(itertools.pairwise(text))) == len(text) - 1 for text in hypotheses)


def test_a_bad_combination_is_one_line_and_exit_2(translation_run):
    assert_user_error(seqtool("decode", str(translation_run), "--prime", "abc", "--greedy", "--beam", "2"),
                      "do not go together")  # fmt: skip
    assert_user_error(seqtool("eval", str(translation_run), "--max-len", "2", "--min-len", "3"), "more than")


def test_the_char_lm_refuses_a_beam_before_reading_its_input(tmp_path):
    run = commands.train(compose(tiny_run(tiny_corpus(tmp_path), tmp_path / "run", steps=2)))[0]
    result = seqtool("decode", str(run), "--input", str(tmp_path / "missing.txt"), "--beam", "2")
    assert_user_error(result, "beam search needs an end token")
    result = CliRunner().invoke(app, ["decode", str(run), "--prime", "the", "--max-len", "12", "--seed", "1",
                                      "--no-repeat-ngram", "1"])  # fmt: skip
    continuation = result.stdout.strip("\n")[len("the") :]
    assert result.exit_code == 0 and len(continuation) == 12
    assert len(set(("e" + continuation)[i] for i in range(13))) == 13  # no character twice
