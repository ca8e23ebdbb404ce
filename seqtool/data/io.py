"""Files and paths at the edge of every command: reading a command's input (a file or standard input),
checking where it will write (run_dir, --output, --plot*) before any work starts, and opening its output.

Every path a user gives is checked here, once, so a refusal reads the same whichever option named it:

    reading   --input FILE   a file (not a folder), UTF-8;  --input -  an open standard input
    writing   a file         not a folder, no file on the way to it, in a folder this user may write
              a folder       not a file, no file on the way to it, writable (or creatable)
    full      a write that fails for want of space (ENOSPC, EDQUOT, EFBIG) or on a read-only file system
              is refused naming the file, as `disk_full` words it
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from seqtool.errors import UserError

# A write that fails with one of these is the machine's state (a full disk or quota, a file-size limit, a
# read-only mount), never a bug in seqtool, so it is a user error naming the file.
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def read_input(source: str) -> str:
    """The UTF-8 text of a file, or of standard input for "-"; a clear error otherwise."""
    if source == "-":
        return standard_input().read()
    path = readable_file(source, "--input")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"--input {source} is not UTF-8 text (byte {error.start})") from None


def readable_file(source: str | Path, option: str) -> Path:
    """`source` as a Path when it is a file; a UserError naming `option` when it is missing or a folder."""
    path = Path(source).expanduser()
    if path.is_dir():
        raise UserError(f"{option} {source} is a folder; give a file")
    if not path.is_file():
        raise UserError(f"{option} {source}: no such file")
    return path


def standard_input() -> IO[str]:
    """sys.stdin, refused when the process was started with it closed (`seqtool ... <&-`)."""
    if sys.stdin is None or sys.stdin.closed:
        raise UserError("--input -: standard input is closed; pipe the input in, or give --input FILE")
    return sys.stdin


def standard_input_bytes() -> BinaryIO:
    """The bytes under standard input (lines are decoded one by one, so an error can name the line)."""
    return standard_input().buffer


# ------------------------------------------------------------------------------------- where it writes


def check_writable_file(path: Path, option: str) -> None:
    """Refuse, before any work, a file to write that is a folder, lies under a file, or in a folder that
    cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{_named(option, path)} is a folder; give a file name (e.g. {path / 'out.txt'})")
    _check_folder(path.parent, option, path)


def check_writable_folder(path: Path, option: str) -> None:
    """Refuse, before any work, a folder to write into that is a file, lies under a file or cannot be
    written (made, when it does not exist yet)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{_named(option, path)} is a file; give a folder")
    _check_folder(path, option, path)


def _check_folder(folder: Path, option: str, given: Path) -> None:
    """The folder (or its nearest existing ancestor, where it would be made) must be a writable folder."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{_named(option, given)}: {existing} is a file, so nothing can be written under it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{_named(option, given)}: {existing} is not writable (a read-only folder or disk)")


def _named(option: str, path: Path) -> str:
    """How a message names the path: `--output out.txt`, or `run_dir=runs/x` for a config key."""
    return f"{option}{path}" if option.endswith("=") else f"{option} {path}"


def disk_full(path: Path | str, error: OSError, *, kept: str = "") -> UserError:
    """The one message of a write that failed for want of space or permission (see DISK_ERRORS)."""
    reason = error.strerror or os.strerror(error.errno or 0)
    return UserError(f"cannot write {path}: {reason}; free some space (or choose another place){kept}")


@contextlib.contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Around code that writes `path` (a file, or a folder of plots): a disk error in it (DISK_ERRORS) is
    a UserError naming the path; any other error goes on as it is."""
    try:
        yield
    except OSError as error:
        if error.errno not in DISK_ERRORS:
            raise
        raise disk_full(path, error) from None


@contextlib.contextmanager
def open_output(output: Path | None) -> Iterator[IO[str]]:
    """A UTF-8 text file to write (its folder made), or standard output for None; a full disk while
    writing is a UserError naming the file."""
    if output is None:
        yield sys.stdout
        return
    check_writable_file(output, "--output")
    with writing(output):
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "w", encoding="utf-8") as file:
            yield file
