"""The harness of the bad-input suites (tests/test_bad_inputs.py, tests/test_bad_configs.py): run `seqtool`
on an input it must refuse and check the refusal is what every user error promises.

    exit status 2, exactly one non-empty line on stderr that names the problem (a regex, case-insensitive),
    no "Traceback" anywhere, and every file under the protected paths byte-identical (none added or removed)

`assert_refused` runs the CLI's own `main` in this process (fast: no interpreter or torch start-up);
`refused_subprocess` runs `python -m seqtool` for what needs a real process: a closed standard input, a
file-size limit (a full disk), a signal. `outcome` and `outcome_subprocess` return what happened without
asserting, for counting how a table of cases ends (tests/count_refusals.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Outcome:
    """How one command ended: its exit status and what it wrote."""

    code: int
    stdout: str
    stderr: str

    def lines(self) -> list[str]:
        """The non-empty lines of stderr."""
        return [line for line in self.stderr.splitlines() if line.strip()]


def outcome(argv: list[str], *, stdin: str | bytes | None = None) -> Outcome:
    """`seqtool ARGV` through seqtool.cli.main in this process. An exception that escapes main (an
    internal error) ends as status 1 with its traceback on stderr, as the console script would."""
    from seqtool.cli import main

    out, err = io.StringIO(), io.StringIO()
    raw = stdin if isinstance(stdin, bytes) else (stdin or "").encode("utf-8")
    given = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8")
    saved = sys.argv, sys.stdin
    sys.argv, sys.stdin = ["seqtool", *argv], given
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            except BaseException:  # noqa: BLE001 - an internal error: report it as the process would
                err.write(traceback.format_exc())
                code = 1
    finally:
        sys.argv, sys.stdin = saved
    return Outcome(code, out.getvalue(), err.getvalue())


def outcome_subprocess(
    argv: list[str],
    *,
    stdin: str | bytes | None = None,
    close_stdin: bool = False,
    file_size_limit: int | None = None,
    timeout: float = 180,
) -> Outcome:
    """`python -m seqtool ARGV` from the repository root. close_stdin: the child starts with file
    descriptor 0 closed. file_size_limit: RLIMIT_FSIZE in bytes with SIGXFSZ ignored, so a write past it
    fails with EFBIG, as a full disk fails a write with ENOSPC."""

    def before_exec() -> None:
        if close_stdin:
            os.close(0)
        if file_size_limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    result = subprocess.run(
        [sys.executable, "-m", "seqtool", *argv],
        input=None if close_stdin else (stdin.encode("utf-8") if isinstance(stdin, str) else stdin or b""),
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
        preexec_fn=before_exec,
        env=os.environ | {"PYTHONDONTWRITEBYTECODE": "1"},
    )
    text = lambda data: data.decode("utf-8", errors="replace")  # noqa: E731
    return Outcome(result.returncode, text(result.stdout), text(result.stderr))


def snapshot(paths: Iterable[Path]) -> dict[str, str]:
    """Every file under `paths` (a file or a folder), by path, with the sha256 of its bytes."""
    found: dict[str, str] = {}
    for root in map(Path, paths):
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for file in files:
            found[str(file)] = hashlib.sha256(file.read_bytes()).hexdigest()
    return found


def check_refusal(result: Outcome, match: str, before: dict[str, str], protect: Iterable[Path]) -> str:
    """The promise of a user error (see the module's docstring); returns the stderr line."""
    shown = f"exit {result.code}\n--- stderr ---\n{result.stderr}\n--- stdout ---\n{result.stdout[-2000:]}"
    assert "Traceback" not in result.stderr + result.stdout, shown
    assert result.code == 2, shown
    lines = result.lines()
    assert len(lines) == 1, shown
    assert re.search(match, lines[0], flags=re.IGNORECASE), f"{match!r} not in: {lines[0]}"
    after = snapshot(protect)
    assert after.keys() == before.keys(), f"files added or removed: {sorted(after.keys() ^ before.keys())}"
    changed = [path for path in before if before[path] != after[path]]
    assert not changed, f"files changed: {changed}"
    return lines[0]


def assert_refused(
    argv: list[str], *, match: str, stdin: str | bytes | None = None, protect: Iterable[Path] = ()
) -> str:
    """`seqtool ARGV` (in process) must end in exit 2 and one stderr line matching `match`, without a
    traceback, leaving every file under `protect` as it was. Returns that line."""
    protect = list(protect)
    before = snapshot(protect)
    return check_refusal(outcome(argv, stdin=stdin), match, before, protect)


def refused_subprocess(
    argv: list[str],
    *,
    match: str,
    stdin: str | bytes | None = None,
    protect: Iterable[Path] = (),
    close_stdin: bool = False,
    file_size_limit: int | None = None,
    timeout: float = 180,
) -> str:
    """assert_refused's checks on `python -m seqtool ARGV` run as a real process (see outcome_subprocess
    for close_stdin and file_size_limit). Returns the stderr line."""
    protect = list(protect)
    before = snapshot(protect)
    result = outcome_subprocess(argv, stdin=stdin, close_stdin=close_stdin,
                                file_size_limit=file_size_limit, timeout=timeout)  # fmt: skip
    return check_refusal(result, match, before, protect)


# --------------------------------------------------------------------------------- trained run dirs

QUICK = ["trainer.max_steps=3", "trainer.eval_every=3", "trainer.log_every=1", "trainer.sample_every=3",
         "trainer.progress=false", "trainer.tensorboard=false", "device=cpu"]  # fmt: skip
TINY_TEXT = "the quick brown fox jumps over the lazy dog.\n" * 60


def run_overrides(family: str, run_dir: Path) -> list[str]:
    """`seqtool train` overrides of a seconds-long run of each family (a corpus beside run_dir for the
    char LM): enough to make a complete run directory, not to learn anything."""
    common = [f"run_dir={run_dir}", *QUICK]
    if family == "charlm":
        corpus = run_dir.parent / "corpus.txt"
        corpus.write_text(TINY_TEXT, encoding="utf-8")
        return [f"task.path={corpus}", "task.batch_size=2", "task.seq_len=8", "task.min_seq_len=4",
                "model.embedding_size=8", "model.hidden_size=8", "model.num_layers=1", *common]  # fmt: skip
    if family == "translation":
        return ["task=translation", "model=seq2seq_attn", "task.synthetic.kind=reverse",
                "task.synthetic.train_size=40", "task.synthetic.val_size=4", "task.synthetic.test_size=4",
                "task.synthetic.max_length=6", "task.max_tokens=60", "model.embedding_size=8",
                "model.hidden_size=8", *common]  # fmt: skip
    if family == "captioning":
        return ["task=captioning", "model=captioner", "task.image_size=16", "task.resize_size=16",
                "task.shapes.train_size=8", "task.shapes.val_size=2", "task.shapes.test_size=2",
                "task.batch_size=4", "task.eval_batch_size=2", "model.encoder_channels=[4,8]",
                "model.grid_size=2", "model.embedding_size=8", "model.hidden_size=8",
                "model.attention_size=4", *common]  # fmt: skip
    if family == "video":
        return ["task=video", "model=convlstm", "task.image_size=12", "task.digit_size=4",
                "task.input_frames=2", "task.target_frames=2", "task.batch_size=2", "task.eval_batch_size=2",
                "task.eval_sequences=2", "task.test_sequences=2", "model.hidden_channels=2",
                "model.num_layers=1", "model.patch_size=2", *common]  # fmt: skip
    if family == "memory":
        return ["task=memory", "model=recurrent", "task.problem=copy", "task.lag=3", "task.min_lag=1",
                "task.batch_size=2", "task.val_size=2", "task.test_size=2", "model.embedding_size=4",
                "model.hidden_size=4", *common]  # fmt: skip
    raise ValueError(f"no tiny run of {family!r}")


FAMILIES = ("charlm", "translation", "captioning", "video", "memory")


def train_runs(directory: Path) -> dict[str, Path]:
    """One tiny trained run directory per family under `directory` (in process, a few seconds each)."""
    runs = {}
    for family in FAMILIES:
        run_dir = directory / family / "run"
        run_dir.parent.mkdir(parents=True)
        result = outcome(["train", *run_overrides(family, run_dir)])
        assert result.code == 0, f"{family}: exit {result.code}\n{result.stderr}"
        runs[family] = run_dir
    return runs


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory) -> dict[str, Path]:
    """The tiny run of every family, trained once per session; a test that tampers with one copies it
    first (`copy_run`), and every refusal protects the originals."""
    return train_runs(tmp_path_factory.mktemp("trained"))


def copy_run(run_dir: Path, destination: Path) -> Path:
    """A copy of a run directory to tamper with."""
    return Path(shutil.copytree(run_dir, destination))
