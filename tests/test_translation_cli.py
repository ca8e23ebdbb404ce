"""Translation from the command line, as real subprocesses (exit statuses, one-line errors), and the
end-to-end runs: reverse learned to 95% exact match, train -> eval -> decode with each real model."""

import json
import os
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from seqtool import commands
from seqtool.config import compose
from tests import helpers
from tests.helpers import assert_user_error, tiny_corpus, tiny_run
from tests.test_translation_task import SMALL, TINY

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["device=cpu", "trainer.progress=false", "trainer.tensorboard=false"]
seqtool = partial(helpers.seqtool, timeout=300)  # the end-to-end runs here train for a while


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory) -> Path:
    """A few seconds of a tiny Transformer on reverse; it takes sources of at most 23 tokens + EOS."""
    run_dir = tmp_path_factory.mktemp("translation") / "run"
    schedule = ["trainer.max_steps=20", "trainer.eval_every=20", "model.max_positions=24"]
    cfg = compose(
        [*SMALL, "model=transformer", *TINY["transformer"], f"run_dir={run_dir}", *QUIET, *schedule]
    )
    return commands.train(cfg)[0]


def test_eval_prints_json_and_decode_prints_the_nbest_from_stdin(translation_run):
    result = seqtool("eval", str(translation_run), "--split", "test", "--beam", "5", "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert {"bleu", "chrf", "exact_match", "loss"} <= set(metrics) and "tok:13a" in metrics["signature"]
    decode = ["decode", str(translation_run), "--input", "-", "--beam", "3", "--nbest", "2"]
    result = seqtool(*decode, stdin="abc\nfed\n")
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["1", "1", "2", "2"]


def test_eval_prints_a_table_with_the_signature(translation_run):
    result = seqtool("eval", str(translation_run))
    assert result.returncode == 0 and "exact_match" in result.stdout and "nrefs:1" in result.stdout


@pytest.mark.parametrize(
    ("sources", "references", "fragment"),
    [
        ("abc\ndef\nghi\n", "cba\nfed\n", "has 3 lines but"),
        ("abc\n\nghi\n", "cba\nfed\nihg\n", "empty lines at line 2"),
    ],
)
def test_eval_on_bad_parallel_files_is_a_user_error(translation_run, tmp_path, sources, references, fragment):
    (tmp_path / "src.txt").write_text(sources)
    (tmp_path / "ref.txt").write_text(references)
    files = ["--src", str(tmp_path / "src.txt"), "--ref", str(tmp_path / "ref.txt")]
    assert_user_error(seqtool("eval", str(translation_run), *files), fragment)


def test_decode_errors_are_one_line_and_exit_2(translation_run, tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"abc\nd\xffe\n")
    assert_user_error(seqtool("decode", str(translation_run), "--input", str(tmp_path / "bad.txt")), "line 2")
    (tmp_path / "long.txt").write_text("abc\n" + "abcdefghij" * 3 + "\n")
    result = seqtool("decode", str(translation_run), "--input", str(tmp_path / "long.txt"))
    assert_user_error(result, "input line 2 has 30 tokens, more than this model takes (23")
    assert_user_error(seqtool("decode", str(translation_run)), "give --input FILE")


@pytest.fixture(scope="module")
def char_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("charlm")
    return commands.train(compose(tiny_run(tiny_corpus(tmp), tmp / "run", steps=2)))[0]


def test_a_char_lm_run_given_translation_inputs_says_why_not(char_run, tmp_path):
    (tmp_path / "in.txt").write_text("ein Hund\n")
    result = seqtool("decode", str(char_run), "--input", str(tmp_path / "in.txt"), "--beam", "5")
    assert_user_error(result, "beam search needs an end token")


def test_a_translation_checkpoint_under_a_char_lm_config_is_refused(char_run, translation_run, tmp_path):
    run_dir = Path(shutil.copytree(char_run, tmp_path / "mixed"))
    shutil.rmtree(run_dir / "checkpoints")
    shutil.copytree(translation_run / "checkpoints", run_dir / "checkpoints")
    assert_user_error(seqtool("decode", str(run_dir)), "not a seqtool.models.char_rnn.CharRNN")


# -------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_reverse_reaches_95_percent_exact_match(tmp_path):
    """About 20 s on two CPU cores: a small attentional LSTM learns to reverse strings of 3-10 letters."""
    data = ["task.synthetic.train_size=5000", "task.synthetic.val_size=500", "task.synthetic.min_length=3",
            "task.synthetic.max_length=10", "task.max_tokens=2048", "task.bucket_size=4096"]  # fmt: skip
    model = ["model=seq2seq_attn", "model.hidden_size=64", "model.embedding_size=32", "model.dropout=0.0"]
    schedule = ["trainer.max_steps=400", "trainer.eval_every=200", "trainer.optimizer.lr=0.003"]
    cfg = compose([*SMALL, *data, *model, *schedule, f"run_dir={tmp_path / 'run'}", *QUIET])
    run_dir, metrics = commands.train(cfg)
    assert metrics["exact_match"] >= 95.0, metrics
    assert (run_dir / "hypotheses" / "val.txt").is_file() and list((run_dir / "samples").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seq2seq_attn", "transformer"])
def test_train_eval_and_decode_each_model_from_the_command_line(name, tmp_path):
    run_dir = tmp_path / "run"
    train = seqtool(
        "train", *SMALL, f"model={name}", *TINY[name], "trainer=smoke", f"run_dir={run_dir}", "device=cpu"
    )
    assert train.returncode == 0, train.stderr[-2000:]
    result = seqtool("eval", str(run_dir), "--split", "test", "--beam", "5", "--json")
    assert result.returncode == 0 and "signature" in json.loads(result.stdout), result.stderr
    result = seqtool(
        "decode", str(run_dir), "--input", "-", "--beam", "3", "--nbest", "2", stdin="abc\nfed\n"
    )
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 4, result.stderr


RECIPES = {
    "reverse_transformer": [*TINY["transformer"], "task.synthetic.train_size=300"],
    "dates_attention": [*TINY["seq2seq_attn"], "task.synthetic.train_size=300"],
    "multi30k_seq2seq_attn": [*TINY["seq2seq_attn"], "task.vocab_size=500"],
    "multi30k_transformer": [*TINY["transformer"], "task.vocab_size=500"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_each_translation_recipe_trains_scores_and_decodes(name, tmp_path, shared_data):
    """Each recipe with the smoke trainer and a tiny model; Multi30k from ../shared/data."""
    data = [str(shared_data / "multi30k")] if name.startswith("multi30k") else []
    if data and not Path(data[0]).is_dir():
        pytest.skip(f"{data[0]} not found")
    shrink = ["trainer=smoke", "device=cpu", "task.synthetic.val_size=50", "task.synthetic.test_size=50"]
    shrink += ["task.eval_max_sentences=50"]
    command = ["bash", str(ROOT / "recipes" / f"{name}.sh"), *data, *shrink, *RECIPES[name]]
    env = {**os.environ, "SEQTOOL": f"{sys.executable} -m seqtool"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "signature" in result.stdout and "nrefs:1" in result.stdout
    assert list((tmp_path / "runs" / name).glob("*/hypotheses/test.txt"))


@pytest.mark.slow
def test_two_processes_split_the_batches_and_resume_exactly(tmp_path):
    """torchrun with 2 CPU processes (gloo): rank 0 builds the vocabulary, each rank takes every second
    batch, and a run resumed halfway logs the same losses as an uninterrupted one."""

    def torchrun(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        return subprocess.run(
            [*command, "-m", "seqtool", "train", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
        )

    def losses(run_dir: Path) -> dict[int, tuple[float, float]]:
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: (r["loss"], r["replica_spread"]) for r in records if "loss" in r}

    common = [*SMALL, "model=seq2seq_attn", *TINY["seq2seq_attn"], "model.dropout=0.2", *QUIET]
    common += ["task.tokenizer=bpe", "task.vocab_size=30", "trainer.log_every=1", "trainer.eval_every=4"]
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    for result in (
        torchrun(*common, f"run_dir={straight}", "trainer.max_steps=8"),
        torchrun(*common, f"run_dir={halves}", "trainer.max_steps=4"),
        torchrun("--resume", str(halves), "trainer.max_steps=8"),
    ):
        assert result.returncode == 0, result.stderr[-2000:]
    logged = losses(straight)
    assert sorted(logged) == list(range(1, 9)) and all(spread == 0.0 for _, spread in logged.values())
    assert losses(halves) == logged
