"""The command line as a user meets it: Typer's CliRunner for the happy paths, real subprocesses for
exit statuses and stderr."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqtool.cli import app
from tests.helpers import assert_user_error, seqtool, tiny_corpus, tiny_run

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny run shared by the tests that read a run directory (they copy it before tampering)."""
    tmp = tmp_path_factory.mktemp("cli")
    run_dir = tmp / "run"
    result = runner.invoke(app, ["train", *tiny_run(tiny_corpus(tmp), run_dir, steps=6)])
    assert result.exit_code == 0, result.output
    return run_dir


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run_dir, tmp_path / "copy"))


def test_train_writes_a_complete_run_directory(trained):
    for part in [
        "config.yaml",
        "vocab/chars.json",
        "checkpoints/last/model.safetensors",
        "checkpoints/best/meta.json",
        "metrics.jsonl",
        "plots/curves.png",
        "samples",
    ]:
        assert (trained / part).exists(), part
    steps = [json.loads(line)["step"] for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert steps[:6] == [1, 2, 3, 4, 5, 6]


def test_decode_is_reproducible_by_seed(trained):
    def decode(seed: str) -> str:
        result = runner.invoke(
            app, ["decode", str(trained), "--prime", "the ", "--max-len", "40", "--seed", seed]
        )
        assert result.exit_code == 0, result.output
        return result.output

    first, again, other = decode("1"), decode("1"), decode("2")
    assert first == again and first != other
    assert first.startswith("the ") and len(first.rstrip("\n")) == 44


def test_decode_greedy_num_and_output_file(trained, tmp_path):
    out = tmp_path / "samples.txt"
    args = ["decode", str(trained), "--greedy", "--num", "2", "--max-len", "10", "--output", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    first, second = out.read_text().strip("\n").split("\n\n")
    assert first == second and len(first) == 10


def test_eval_prints_json_with_the_char_lm_metrics(trained):
    result = runner.invoke(app, ["eval", str(trained), "--split", "test", "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert set(metrics) == {"loss", "perplexity", "bpc"} and metrics["loss"] > 0


def test_eval_prints_a_table(trained):
    result = runner.invoke(app, ["eval", str(trained)])
    assert result.exit_code == 0 and "bpc" in result.output


def test_info_lists_models_tasks_and_experiments():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    assert "char_rnn" in result.output and "charlm" in result.output and "shakespeare_char" in result.output


def test_print_config_shows_the_composed_config():
    result = runner.invoke(app, ["train", "--print-config", "model.cell=gru"])
    assert result.exit_code == 0 and "cell: gru" in result.output


@pytest.mark.parametrize("command", ["train", "decode", "eval", "info"])
def test_every_command_has_help_with_an_example(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
    assert command == "info" or "Example" in result.output


def test_a_real_subprocess_trains_and_decodes(tmp_path):
    run_dir = tmp_path / "run"
    result = seqtool("train", *tiny_run(tiny_corpus(tmp_path), run_dir, steps=3))
    assert result.returncode == 0, result.stderr
    decoded = seqtool("decode", str(run_dir), "--max-len", "5", "--seed", "3")
    assert decoded.returncode == 0 and len(decoded.stdout.strip("\n")) == 5


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "model=nope"], "model/nope"),
        (["train", "model.hidden_size=abc"], "should be int"),
        (["train", "task.path=/no/such/corpus.txt", "trainer.max_steps=1"], "no such file"),
        (["decode", "/no/such/run"], "does not exist"),
        (["eval", "/no/such/run"], "does not exist"),
        (["train", "--resume", "/no/such/run"], "does not exist"),
        (["eval", "/no/such/run", "--no-such-option"], "No such option: --no-such-option"),
        (["decode"], "Missing argument"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, fragment):
    assert_user_error(seqtool(*args), fragment)


def test_resume_on_a_directory_that_is_not_a_run(tmp_path):
    assert_user_error(seqtool("train", "--resume", str(tmp_path)), "not a seqtool run directory")


def test_training_into_an_existing_run_is_refused(trained):
    assert_user_error(seqtool("train", f"run_dir={trained}"), "already holds a run")


def test_a_pickle_payload_in_the_trainer_state_is_refused_and_never_runs(trained, tmp_path):
    run_dir = copy_run(trained, tmp_path)
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (run_dir / "checkpoints" / "last" / "trainer_state.pt").write_bytes(pickle.dumps({"step": Payload()}))
    assert_user_error(seqtool("train", "--resume", str(run_dir)), "refuses to unpickle")
    assert not marker.exists()


def test_a_truncated_safetensors_file_is_refused(trained, tmp_path):
    run_dir = copy_run(trained, tmp_path)
    weights = run_dir / "checkpoints" / "best" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert_user_error(seqtool("decode", str(run_dir)), "corrupt or truncated")


def test_a_checkpoint_of_another_model_is_refused(trained, tmp_path):
    run_dir = copy_run(trained, tmp_path)
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace("hidden_size: 32", "hidden_size: 48"))
    assert_user_error(seqtool("eval", str(run_dir)), "does not fit this model")


def test_a_foreign_target_in_a_run_config_is_refused(trained, tmp_path):
    run_dir = copy_run(trained, tmp_path)
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace("seqtool.models.char_rnn.CharRNN", "os.system"))
    assert_user_error(seqtool("decode", str(run_dir)), "not allowed")


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    run_dir = tmp_path / "run"
    args = tiny_run(tiny_corpus(tmp_path), run_dir, "trainer.eval_every=100000", steps=10**6)
    process = subprocess.Popen(
        [sys.executable, "-m", "seqtool", "train", *args],
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    deadline = time.time() + 60
    while not ((run_dir / "metrics.jsonl").is_file() and (run_dir / "metrics.jsonl").stat().st_size > 0):
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "resume with --resume" in stderr and "Traceback" not in stderr
    meta = json.loads((run_dir / "checkpoints" / "last" / "meta.json").read_text())
    assert meta["step"] >= 1


def test_decode_reads_the_prime_from_an_input_file(trained, tmp_path):
    prime = tmp_path / "prime.txt"
    prime.write_text("the quick ")
    result = runner.invoke(app, ["decode", str(trained), "--input", str(prime), "--max-len", "5", "--greedy"])
    assert result.exit_code == 0 and result.output.startswith("the quick ")


def test_beam_search_on_a_char_lm_is_a_user_error(trained):
    assert_user_error(seqtool("decode", str(trained), "--beam", "3"), "beam search needs an end token")


@pytest.mark.parametrize(
    ("raised", "status", "said"),
    [
        (EOFError("a reader's bug"), 1, "EOFError: a reader's bug"),  # not "interrupted" (Click's Abort)
        (OSError(5, "Input/output error", "/data/x"), 1, "OSError: [Errno 5]"),  # not the user's to fix
        (OSError(28, "No space left on device", "/runs/r/metrics.jsonl"), 2,
         "error: cannot write /runs/r/metrics.jsonl: No space left on device; free some space"),
        (OSError(27, "File too large", "/runs/o.npy"), 2, "error: cannot write /runs/o.npy: File too large"),
    ],
)  # fmt: skip
def test_only_a_full_disk_among_os_errors_is_the_users(monkeypatch, tmp_path, raised, status, said):
    """A full disk (or quota, or file-size limit) is one line and exit 2 wherever the write happens; any
    other OSError, and an EOFError that Click would call an abort, keeps its traceback and exits 1."""
    from seqtool import commands
    from tests.bad_inputs import outcome

    def failing(*args, **kwargs):
        raise raised

    monkeypatch.setattr(commands, "load_run", failing)
    result = outcome(["eval", str(tmp_path)])
    assert result.code == status and said in result.stderr, result.stderr
    assert ("Traceback" in result.stderr) == (status == 1)
    assert status == 1 or len(result.lines()) == 1
