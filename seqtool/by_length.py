"""Scores by source length (Bahdanau et al. 2015, Fig. 2): the lines an evaluation decoded, bucketed by
their source length in the task's source tokens, each bucket scored on its own lines.

    --buckets 10,20,30,40,50   ──►   1-10  11-20  21-30  31-40  41-50  >50     (upper edges, inclusive)
    per_length(lengths)        ──►   4  5  6  ...  16                          (one bucket per length)

A bucket no line falls into is left out (a score of no lines means nothing). BLEU and chrF are
sacrebleu's corpus scores over a bucket's lines, exact match its percentage of identical lines.
`seqtool eval RUN --by-length` writes them to RUN/eval/by_length_<split>.json::

    {"split": "val", "tokens": "word", "metrics": {bleu, chrf, ...},
     "buckets": [{"bucket": "1-10", "low": 1, "high": 10, "count": 412, "bleu": 31.2, "chrf": 55.0,
                  "exact_match": 4.1}, ..., {"bucket": ">50", "low": 51, "high": null, ...}]}

which `seqtool compare --plot FILE --by-length METRIC` reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from seqtool.errors import UserError

METRICS = ("bleu", "chrf", "exact_match")  # what each bucket reports (beside its count)


@dataclass(frozen=True)
class ByLength:
    """`--by-length [--buckets EDGES]`: the upper bucket edges, or None for the task's default."""

    edges: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Bucket:
    """Source lengths low..high (inclusive); high None: every length from low up."""

    low: int
    high: int | None

    @property
    def name(self) -> str:
        if self.high is None:
            return f">{self.low - 1}"
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


def parse_edges(text: str) -> tuple[int, ...]:
    """--buckets 10,20,30: increasing whole numbers of source tokens; anything else is a UserError."""
    try:
        edges = tuple(int(part) for part in text.split(","))
    except ValueError:
        edges = ()
    if not edges or edges[0] < 1 or any(a >= b for a, b in zip(edges, edges[1:])):
        raise UserError(f"--buckets {text}: give increasing whole numbers of source tokens, e.g. 10,20,30,40")
    return edges


def from_edges(edges: tuple[int, ...]) -> list[Bucket]:
    """Upper edges 10,20 -> 1-10, 11-20, >20."""
    lows = (1, *(edge + 1 for edge in edges))
    return [Bucket(low, high) for low, high in zip(lows, (*edges, None))]


def per_length(lengths: list[int]) -> list[Bucket]:
    """One bucket per source length present (the synthetic tasks: exact match per length)."""
    return [Bucket(length, length) for length in sorted(set(lengths))]


def assign(lengths: list[int], buckets: list[Bucket]) -> list[list[int]]:
    """The line numbers (0-based) in each bucket; a length below the first bucket counts in it."""
    members: list[list[int]] = [[] for _ in buckets]
    for line, length in enumerate(lengths):
        index = next(i for i, b in enumerate(buckets) if b.high is None or length <= b.high)
        members[index].append(line)
    return members


def score(
    lengths: list[int], hypotheses: list[str], references: list[str], buckets: list[Bucket], lowercase: bool
) -> list[dict[str, Any]]:
    """One row per non-empty bucket: bucket, low, high, count, bleu, chrf, exact_match (0-100)."""
    from seqtool.metrics import translation_metrics

    rows = []
    for bucket, lines in zip(buckets, assign(lengths, buckets)):
        if lines:
            found = translation_metrics([hypotheses[i] for i in lines], [references[i] for i in lines],
                                        lowercase=lowercase)  # fmt: skip
            rows.append({"bucket": bucket.name, "low": bucket.low, "high": bucket.high, "count": len(lines)}
                        | {name: found[name] for name in METRICS})  # fmt: skip
    return rows


def path(run_dir: Path, split: str) -> Path:
    return Path(run_dir) / "eval" / f"by_length_{split}.json"


def write(run_dir: Path, split: str, *, tokens: str, metrics: dict[str, Any], rows: list[dict]) -> Path:
    """RUN/eval/by_length_<split>.json (layout in the module docstring)."""
    target = path(run_dir, split)
    target.parent.mkdir(parents=True, exist_ok=True)
    record = {"split": split, "tokens": tokens, "metrics": metrics, "buckets": rows}
    target.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return target


def read(file: Path) -> dict[str, Any]:
    """A by_length_<split>.json; a missing or malformed one is a UserError naming it."""
    if not file.is_file():
        raise UserError(f"no {file}")
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{file}: not JSON") from None
    rows = record.get("buckets") if isinstance(record, dict) else None
    keys = {"bucket", "low", "high", "count", *METRICS}
    if not isinstance(rows, list) or not all(isinstance(row, dict) and keys <= set(row) for row in rows):
        raise UserError(f"{file}: not a list of buckets as seqtool eval --by-length writes them")
    return record


def refuse(task: str) -> NoReturn:
    """The one line a task without source sentences answers --by-length with."""
    raise UserError(
        f"--by-length buckets sentences by their source length, and {task} has no source sentences; "
        "it scores translation and the synthetic tasks (task=translation)"
    )
