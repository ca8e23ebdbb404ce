"""Reading a command's input (a file or standard input) and writing its output (a file or stdout)."""

from __future__ import annotations

import sys
from pathlib import Path

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


def write_output(text: str, output: Path | None) -> None:
    """Text to a file (its folder made) or to standard output."""
    if output is None:
        sys.stdout.write(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
