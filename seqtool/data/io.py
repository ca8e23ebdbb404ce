"""Reading a command's input (a file or standard input) and opening its output (a file or stdout)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from seqtool.errors import UserError


def read_input(source: str) -> str:
    """The UTF-8 text of a file, or of standard input for "-"; a clear error otherwise."""
    if source == "-":
        return sys.stdin.read()
    path = Path(source)
    if not path.is_file():
        raise UserError(f"--input {source}: no such file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"--input {source} is not UTF-8 text (byte {error.start})") from None


@contextlib.contextmanager
def open_output(output: Path | None) -> Iterator[IO[str]]:
    """A UTF-8 text file to write (its folder made), or standard output for None."""
    if output is None:
        yield sys.stdout
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8") as file:
        yield file
