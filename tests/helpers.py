"""Small shared builders for the end-to-end tests: a tiny corpus, the overrides of a seconds-long run,
and `seqtool` as a real subprocess with the check every user error must pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY_TEXT = (
    "the quick brown fox jumps over the lazy dog. " * 40
    + "pack my box with five dozen liquor jugs! " * 40
    + "how vexingly quick daft zebras jump; " * 40
)


def tiny_corpus(directory: Path) -> Path:
    path = directory / "corpus.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


def tiny_run(corpus: Path, run_dir: Path, *extra: str, steps: int = 8) -> list[str]:
    """Overrides for a char-RNN run of a few seconds on `corpus`."""
    return [
        f"task.path={corpus}",
        f"run_dir={run_dir}",
        "task.batch_size=4",
        "task.seq_len=16",
        "task.min_seq_len=4",
        "task.val_fraction=0.1",
        "task.test_fraction=0.1",
        "model.embedding_size=16",
        "model.hidden_size=32",
        "model.num_layers=2",
        *quick_trainer(steps),
        *extra,
    ]


def quick_trainer(steps: int) -> list[str]:
    """Trainer overrides of a seconds-long CPU run: `steps` steps, one evaluation at the end, a log
    line every step, no progress bar, no TensorBoard files."""
    return [
        f"trainer.max_steps={steps}",
        f"trainer.eval_every={steps}",
        "trainer.log_every=1",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "device=cpu",
    ]


def reverse_run(run_dir: Path) -> list[str]:
    """Overrides for a seconds-long seq2seq on `reverse` that learns a little (non-empty, varied outputs):
    12 val and 10 test strings of at most 8 letters."""
    return ["task=translation", "task.synthetic.train_size=300", "task.synthetic.val_size=12",
            "task.synthetic.test_size=10", "task.synthetic.max_length=8", "task.max_tokens=300",
            "model=seq2seq_attn", "model.embedding_size=16", "model.hidden_size=16", "model.dropout=0.0",
            "trainer.optimizer.lr=0.01", f"run_dir={run_dir}", *quick_trainer(80)]  # fmt: skip


def seqtool(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m seqtool ARGS` run from the repository root, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "seqtool", *args],
        input=stdin,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_user_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    """A user error: exit status 2 and one line on stderr that says `fragment`, no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert fragment in result.stderr, result.stderr
