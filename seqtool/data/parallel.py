"""Reading parallel text: line-aligned file pairs (plain or .gz), TSV, and Hugging Face datasets.

Every reader returns a list of (source, target) string pairs and checks what would otherwise fail
late or silently: files of different line counts, empty lines (by line number), bytes that are not
UTF-8. Each problem is one UserError naming the file and how to fix it.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from seqtool.data.io import readable_file, standard_input_bytes
from seqtool.errors import UserError

Pair = tuple[str, str]
SHOWN = 5  # line numbers listed in an error before "..."


def _numbers(lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:SHOWN])
    return shown + (f" (+{len(lines) - SHOWN} more)" if len(lines) > SHOWN else "")


def decode_line(raw: bytes, origin: str, number: int) -> str:
    """One line's bytes as text; a UserError naming the line when they are not UTF-8."""
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise UserError(f"{origin} is not UTF-8 text (line {number}, byte {error.start})") from None


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (.gz decompressed), without their line ends."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise UserError(f"cannot read {path}: {error}") from None
    # Decoded line by line (not as one text) so an error can name the line.
    return [decode_line(raw, str(path), n) for n, raw in enumerate(data.splitlines(), start=1)]


def numbered_lines(source: str | None, prime: str, *, chunk: int = 256) -> Iterator[list[tuple[int, str]]]:
    """`seqtool decode`'s input lines, numbered from 1, in chunks: from standard input ("-") one line at a
    time (so a pipe gets each answer at once), from a file after every line has been read and checked,
    or the single line `prime`."""
    if source == "-":
        for number, raw in enumerate(iter(standard_input_bytes().readline, b""), start=1):
            yield [(number, decode_line(raw, "standard input", number))]
        return
    if source is not None:
        lines = read_lines(readable_file(source, "--input"))
    elif prime:
        lines = [prime]
    else:
        raise UserError("translation decodes sentences: give --input FILE (or - for stdin) or --prime TEXT")
    numbered = list(enumerate(lines, start=1))
    for start in range(0, len(numbered), chunk):
        yield numbered[start : start + chunk]


def check_pairs(pairs: list[Pair], origin: str) -> list[Pair]:
    """Refuse a split without pairs, or with an empty (or blank) source or target line."""
    if not pairs:
        raise UserError(f"{origin} holds no sentence pairs")
    empty = [n for n, (src, tgt) in enumerate(pairs, start=1) if not src.strip() or not tgt.strip()]
    if empty:
        raise UserError(
            f"{origin} has empty lines at line {_numbers(empty)}; remove those pairs from both sides"
        )
    return pairs


def read_parallel(src: Path, tgt: Path) -> list[Pair]:
    """Line i of `src` with line i of `tgt`; both must have the same number of lines."""
    sources, targets = read_lines(src), read_lines(tgt)
    if len(sources) != len(targets):
        raise UserError(
            f"{src} has {len(sources)} lines but {tgt} has {len(targets)}; "
            "parallel files need one target line per source line"
        )
    return check_pairs(list(zip(sources, targets)), f"{src} / {tgt}")


def read_tsv(path: Path) -> list[Pair]:
    """One pair per line, `source<TAB>target`; a line with another number of tabs is an error."""
    rows = [line.split("\t") for line in read_lines(path)]
    bad = [n for n, row in enumerate(rows, start=1) if len(row) != 2]
    if bad:
        raise UserError(f"{path}: line {_numbers(bad)} should be `source<TAB>target` (exactly one tab)")
    return check_pairs([(row[0], row[1]) for row in rows], str(path))


def split_file(data_dir: Path, prefix: str, lang: str) -> Path:
    """`<data_dir>/<prefix>.<lang>`, or the same with .gz (the Multi30k naming)."""
    plain = Path(data_dir) / f"{prefix}.{lang}"
    for candidate in (plain, plain.with_name(plain.name + ".gz")):
        if candidate.is_file():
            return candidate
    raise UserError(f"{plain}(.gz) not found; check task.files.data_dir, the split prefixes, the languages")


def hub_parallel(name: str, config: str | None, split: str, src_key: str, tgt_key: str) -> list[Pair]:
    """A split of a Hugging Face dataset (needs network): flat columns `src_key`/`tgt_key`
    (bentrevett/multi30k) or one `translation` column of dicts (wmt14, iwslt2017)."""
    try:
        import datasets

        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as error:  # noqa: BLE001 - offline, unknown name, bad split all arrive as different types
        raise UserError(
            f"cannot load {name!r} (split {split!r}) from the Hugging Face hub ({type(error).__name__}); "
            "it needs network access, or give local files with task.hub.name=null task.files.data_dir=DIR"
        ) from None
    columns = dataset.column_names
    if src_key in columns and tgt_key in columns:
        return check_pairs(list(zip(dataset[src_key], dataset[tgt_key])), f"{name}:{split}")
    if "translation" in columns:
        rows = dataset["translation"]
        if rows and src_key in rows[0] and tgt_key in rows[0]:
            return check_pairs([(row[src_key], row[tgt_key]) for row in rows], f"{name}:{split}")
    raise UserError(
        f"{name} has no {src_key!r}/{tgt_key!r} columns (it has {columns}); set task.src_lang/tgt_lang"
    )


def within_lengths(
    src_lengths: list[int], tgt_lengths: list[int], max_source: int | None, max_target: int | None
) -> list[int]:
    """Indices of the pairs whose source and target lengths (in tokens) are within the limits."""
    return [
        i
        for i, (s, t) in enumerate(zip(src_lengths, tgt_lengths))
        if (max_source is None or s <= max_source) and (max_target is None or t <= max_target)
    ]
