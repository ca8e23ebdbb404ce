"""Reading text corpora: local files, directories and globs; the Hugging Face hub; the embedded default.

The embedded default is the Python standard library's own source code on the machine that runs
seqtool: real text that is always there, so `seqtool train` works offline with no download.
"""

from __future__ import annotations

import glob
import gzip
import sysconfig
from pathlib import Path

from seqtool.errors import UserError
from seqtool.progress import warn


def read_local(path: str, max_chars: int) -> str:
    """The UTF-8 text of a file, of every file under a directory, or of a glob's matches (sorted); files
    ending in .gz are decompressed."""
    files = _expand(path)
    parts, size, replaced = [], 0, 0
    for file in files:
        text, bad = _decode(file)
        replaced += bad
        parts.append(text)
        size += len(text)
        if size >= max_chars:
            break
    if replaced:
        warn(f"{path}: {replaced} invalid UTF-8 byte sequence(s) replaced with U+FFFD")
    return _non_empty("".join(parts)[:max_chars], path)


def _expand(path: str) -> list[Path]:
    candidate = Path(path).expanduser()
    if candidate.is_file():
        return [candidate]
    if candidate.is_dir():
        files = sorted(p for p in candidate.rglob("*") if p.is_file())
    else:
        files = sorted(Path(p) for p in glob.glob(str(candidate), recursive=True) if Path(p).is_file())
    if not files:
        raise UserError(f"task.path={path}: no such file, directory or glob match")
    return files


def _decode(file: Path) -> tuple[str, int]:
    """Text and the number of invalid byte sequences replaced; a .gz file is decompressed first."""
    try:
        data = file.read_bytes()
        if file.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise UserError(f"cannot read {file}: {getattr(error, 'strerror', None) or error}") from None
    text = data.decode("utf-8", errors="replace")
    if "\ufffd" not in text:
        return text, 0
    genuine = data.decode("utf-8", errors="ignore").count("\ufffd")  # U+FFFD already in the file
    return text, text.count("\ufffd") - genuine


def _non_empty(text: str, origin: str) -> str:
    if not text.strip():
        raise UserError(f"{origin}: the corpus is empty")
    return text


def stdlib_source(max_chars: int) -> str:
    """The standard library's .py files in sorted order (tests and site-packages left out), capped."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"}
    parts, size = [], 0
    for file in sorted(root.rglob("*.py")):
        if skip.intersection(file.relative_to(root).parts):
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        parts.append(text)
        size += len(text)
        if size >= max_chars:
            break
    if not parts:
        raise UserError(
            f"no Python standard library source found under {root}; give a corpus with task.path=FILE"
        )
    return "".join(parts)[:max_chars]


def hub_text(name: str, column: str, split: str, max_chars: int) -> str:
    """One column of a Hugging Face dataset split, rows joined by newlines (needs network)."""
    try:
        import datasets

        dataset = datasets.load_dataset(name, split=split)
    except Exception as error:  # noqa: BLE001 - offline, unknown name, bad split all arrive as different types
        raise UserError(
            f"cannot load {name!r} from the Hugging Face hub ({type(error).__name__}); it needs network "
            "access, or give a local copy with task.path=FILE"
        ) from None
    if column not in dataset.column_names:
        raise UserError(f"{name} has no column {column!r}; it has {dataset.column_names}")
    parts, size = [], 0
    for row in dataset[column]:
        parts.append(str(row))
        size += len(parts[-1]) + 1
        if size >= max_chars:
            break
    return _non_empty("\n".join(parts)[:max_chars], name)
