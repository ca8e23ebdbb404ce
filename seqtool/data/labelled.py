"""Labelled sentences for classification: GLUE-style TSV, CSV, JSONL (each plain or .gz), a Hugging Face
dataset, and the embedded default, a generated sentiment corpus.

    format   layout                                         example
    .tsv     a header naming the columns, then rows          sentence<TAB>label      (GLUE's SST-2)
    .csv     the same, comma-separated (quotes as in RFC 4180)  text,label
    .jsonl   one JSON object per line                        {"sentence": "...", "label": 1}

The text and label columns are named by task.text_column and task.label_column. Every problem in a file
is one UserError naming the file and the line: a row with more or fewer fields than the header, an empty
line, an empty text or label, a line that is not JSON. A directory holds the splits under the names each
corpus ships with (GLUE: train.tsv, dev.tsv, test.tsv); GLUE's test.tsv has no labels and is refused
when scored, not when training.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

from seqtool.data.parallel import read_lines
from seqtool.errors import UserError

FORMATS = (".tsv", ".csv", ".jsonl")
SPLIT_NAMES = {"train": ("train",), "val": ("dev", "val", "validation"), "test": ("test",)}


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    line: int  # where it is in its file (1-based, the header is line 1), for error messages


@dataclass(frozen=True)
class Split:
    examples: list[Example]
    origin: str  # the file (or hub:NAME:SPLIT, or "the generated corpus"), named in errors


def file_format(path: Path) -> str:
    """.tsv, .csv or .jsonl, from the name (a trailing .gz is read through)."""
    suffixes = Path(path).suffixes
    kind = suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else Path(path).suffix
    if kind not in FORMATS:
        raise UserError(f"{path}: classification reads .tsv, .csv or .jsonl files (optionally .gz)")
    return kind


def find_split(data_dir: Path, split: str) -> Path | None:
    """The file of a split in a directory (train, dev|val|validation, test; .tsv/.csv/.jsonl, maybe .gz)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"task.data_dir={data_dir}: no such directory")
    for name in SPLIT_NAMES[split]:
        for kind in FORMATS:
            for path in (data_dir / f"{name}{kind}", data_dir / f"{name}{kind}.gz"):
                if path.is_file():
                    return path
    return None


def read_labelled(path: Path, *, text_column: str, label_column: str) -> Split:
    """The (text, label) rows of one file; a problem is a UserError naming the file and its line."""
    path = Path(path)
    lines = read_lines(path)  # missing file, bad gzip, bytes that are not UTF-8: one line each
    if file_format(path) == ".jsonl":
        examples = _jsonl_rows(lines, str(path), text_column, label_column)
    else:
        examples = _table_rows(lines, str(path), "\t" if file_format(path) == ".tsv" else ",", text_column,
                               label_column)  # fmt: skip
    if not examples:
        raise UserError(f"{path} holds no labelled sentences")
    return Split(examples, str(path))


def _table_rows(lines: list[str], origin: str, delimiter: str, text_column: str, label_column: str):
    if not lines or not lines[0].strip():
        raise UserError(
            f"{origin}: line 1 should be a header naming the columns ({text_column}, {label_column})"
        )
    header = [name.strip() for name in lines[0].split(delimiter)] if delimiter == "\t" else _csv(lines[0])
    text_at, label_at = _columns(header, origin, text_column, label_column)
    examples = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            raise UserError(f"{origin} line {number} is empty; remove it")
        # TSV is split on tabs only: GLUE's sentences hold quotes that the csv module would read as quoting
        fields = line.split(delimiter) if delimiter == "\t" else _csv(line)
        if len(fields) != len(header):
            raise UserError(
                f"{origin} line {number} has {len(fields)} fields, the header {len(header)} "
                f"({', '.join(header)}); a stray {'tab' if delimiter == chr(9) else 'comma or quote'}?"
            )
        examples.append(_example(fields[text_at], fields[label_at], origin, number))
    return examples


def _csv(line: str) -> list[str]:
    return next(csv.reader(io.StringIO(line)), [])


def _columns(header: list[str], origin: str, text_column: str, label_column: str) -> tuple[int, int]:
    if label_column not in header:
        held_out = " (its labels are held out, as GLUE's test.tsv's are: it cannot be scored)" if (
            text_column in header) else ""  # fmt: skip
        raise UserError(f"{origin} has no {label_column!r} column (header: {', '.join(header)}){held_out}; "
                        "name the columns with task.text_column and task.label_column")  # fmt: skip
    if text_column not in header:
        raise UserError(f"{origin} has no {text_column!r} column (header: {', '.join(header)}); "
                        "name it with task.text_column")  # fmt: skip
    return header.index(text_column), header.index(label_column)


def _jsonl_rows(lines: list[str], origin: str, text_column: str, label_column: str) -> list[Example]:
    examples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise UserError(f"{origin} line {number} is empty; remove it")
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{origin} line {number} is not JSON ({error.msg})") from None
        if not isinstance(row, dict) or text_column not in row or label_column not in row:
            raise UserError(f"{origin} line {number} needs the keys {text_column!r} and {label_column!r} "
                            "(task.text_column, task.label_column)")  # fmt: skip
        examples.append(_example(row[text_column], row[label_column], origin, number))
    return examples


def _example(text: object, label: object, origin: str, number: int) -> Example:
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{origin} line {number}: the text is empty (or not a string)")
    label = str(label).strip() if isinstance(label, (str, int)) and not isinstance(label, bool) else ""
    if not label:
        raise UserError(f"{origin} line {number}: the label is empty (or not a string or an integer)")
    return Example(" ".join(text.split()), label, number)  # runs of spaces (SST's trailing one) as one


def read_hub(name: str, config: str | None, split: str, text_column: str, label_column: str) -> Split:
    """A split of a Hugging Face dataset (needs network), e.g. glue/sst2's train or validation. A
    ClassLabel column reads as its names (negative, positive), other labels as their text."""
    origin = f"hub:{name}:{split}"
    try:
        import datasets

        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as error:  # noqa: BLE001 - offline, unknown name, bad split all arrive as different types
        raise UserError(
            f"cannot load {name!r} (split {split!r}) from the Hugging Face hub ({type(error).__name__}); "
            "it needs network access, or give local files with task.hub=null task.data_dir=DIR"
        ) from None
    if text_column not in dataset.column_names or label_column not in dataset.column_names:
        raise UserError(f"{origin} has no {text_column!r}/{label_column!r} columns (it has "
                        f"{dataset.column_names}); set task.text_column and task.label_column")  # fmt: skip
    names = getattr(dataset.features[label_column], "names", None)
    examples = []
    for number, (text, label) in enumerate(zip(dataset[text_column], dataset[label_column]), start=1):
        if names is not None and isinstance(label, int) and label < 0:
            raise UserError(
                f"{origin} row {number} has no label (-1: held out); it cannot be trained or scored"
            )
        examples.append(_example(text, names[label] if names is not None else label, origin, number))
    return Split(examples, origin)


class LabelVocab:
    """Labels <-> class ids, in sorted order of the labels seen in train (saved as vocab/labels.json)."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}

    @classmethod
    def build(cls, split: Split) -> LabelVocab:
        labels = sorted({example.label for example in split.examples})
        if len(labels) < 2:
            raise UserError(
                f"{split.origin} has only the label {labels[0]!r}: a classifier needs two or more"
            )
        return cls(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def encode(self, example: Example, origin: str) -> int:
        """The class id of an example's label; a label not seen in train is refused, naming its line."""
        if example.label not in self.index:
            raise UserError(f"{origin} line {example.line}: the label {example.label!r} is not among the "
                            f"training labels ({', '.join(self.labels)})")  # fmt: skip
        return self.index[example.label]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"kind": "labels", "labels": self.labels}, ensure_ascii=False), "utf-8")

    @classmethod
    def load(cls, path: Path) -> LabelVocab:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            labels = data["labels"]
            if data.get("kind") != "labels" or not all(isinstance(label, str) for label in labels):
                raise ValueError("not a list of labels")
            return cls(labels)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise UserError(f"{path} is not a seqtool label file ({error})") from None


# ------------------------------------------------------------------- the embedded default corpus
# Film reviews from a small grammar. Each clause says an opinion; "not"/"never" flips it, and after "but"
# the second clause decides (as in SST's "the plot is thin , but the acting is superb"). A bag of words
# cannot read either rule: "not good" and "good" share their most telling word.
SUBJECTS = ["the film", "the movie", "the story", "the acting", "the plot", "the ending", "the music",
            "the script", "her performance", "the dialogue", "the cast", "the pacing"]  # fmt: skip
VERBS = ["was", "is", "felt", "seemed"]
INTENSIFIERS = ["", "", "very", "really", "truly", "quite"]
POSITIVE = ["good", "great", "wonderful", "moving", "funny", "clever", "charming", "brilliant", "fresh"]
NEGATIVE = ["bad", "dull", "boring", "awful", "weak", "tedious", "clumsy", "predictable", "flat"]
OPENERS = ["", "", "", "honestly ,", "i think", "in the end ,", "overall ,"]


def _clause(rng: random.Random) -> tuple[str, bool]:
    """One opinion: (text, whether it is positive)."""
    positive = rng.random() < 0.5
    negated = rng.random() < 0.35
    words = [rng.choice(SUBJECTS), rng.choice(VERBS), "not" if negated else "", rng.choice(INTENSIFIERS),
             rng.choice(POSITIVE if positive else NEGATIVE)]  # fmt: skip
    return " ".join(word for word in words if word), positive != negated


def generated_reviews(count: int, seed: int) -> list[Example]:
    """`count` reviews (positive or negative) from the grammar above; the same seed, the same reviews."""
    rng = random.Random(seed)
    examples = []
    for number in range(1, count + 1):
        text, positive = _clause(rng)
        if rng.random() < 0.3:  # "A but B": B decides
            second, positive = _clause(rng)
            text = f"{text} , but {second}"
        opener = rng.choice(OPENERS)
        examples.append(Example(f"{opener} {text}".strip(), "positive" if positive else "negative", number))
    return examples
