"""Tagged sentences: a slot tag per word and an intent per sentence, read from the layouts corpora ship in,
or generated (the embedded flight-booking corpus, so `seqtool train task=tagging` needs no download).

    JointBERT's layout (ATIS, SNIPS)                   CoNLL columns (one file per split)
    DIR/train/seq.in   show flights from boston        show     O
    DIR/train/seq.out  O    O       O    B-fromloc...  flights  O
    DIR/train/label    atis_flight                     from     O
    DIR/dev/...  DIR/test/...                          boston   B-fromloc.city_name
                                                       <blank line between sentences>
    line i of the three files is one sentence          first column the word, last column its tag

Tags follow BIO (B-slot begins a span, I-slot continues it, O is outside any); seqeval reads the spans.
Every problem in a file is one UserError naming the file and the line: a word count that differs from
its tag count, an empty line, a tag that is not O / B-x / I-x (E-x, S-x for IOBES), a missing file.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from seqtool.data.parallel import read_lines
from seqtool.errors import UserError

SPLITS = {"train": ("train",), "val": ("dev", "valid", "val"), "test": ("test",)}  # the names corpora use
CONLL_SUFFIXES = ("", ".txt", ".conll", ".tsv")
SPAN_PREFIXES = "BIES"  # BIO, and IOBES's end and single


@dataclass(frozen=True)
class TaggedSentence:
    words: list[str]
    tags: list[str]  # one per word
    intent: str | None  # None: the corpus has no intents (CoNLL)


# ----------------------------------------------------------------------------------------- readers
def _present(directory: Path, name: str) -> Path | None:
    """directory/name, or directory/name.gz, when it is a file."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def check_tag(tag: str, origin: str, number: int) -> None:
    """Refuse a tag that names no span: O, or a prefix B/I/E/S, a hyphen and a slot name."""
    if tag == "O" or (len(tag) > 2 and tag[0] in SPAN_PREFIXES and tag[1] == "-"):
        return
    raise UserError(
        f"{origin}, line {number}: the tag {tag!r} is not O, B-slot or I-slot (BIO tags: B-fromloc.city_name)"
    )


def read_jointbert(directory: Path) -> list[TaggedSentence]:
    """A JointBERT split directory: seq.in (words), seq.out (one tag per word), label (intents; optional,
    a slot-only corpus has none). Each file may be gzipped (seq.in.gz)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory}: no such directory (a split holds seq.in, seq.out and label)")
    words_path, tags_path = _present(directory, "seq.in"), _present(directory, "seq.out")
    if words_path is None or tags_path is None:
        missing = "seq.in" if words_path is None else "seq.out"
        raise UserError(
            f"{directory / missing}: no such file (a JointBERT split holds seq.in, seq.out, label)"
        )
    label_path = _present(directory, "label")
    texts, taggings = read_lines(words_path), read_lines(tags_path)
    labels = read_lines(label_path) if label_path else [None] * len(texts)
    for path, lines in ((tags_path, taggings), (label_path, labels)):
        if len(lines) != len(texts):
            raise UserError(
                f"{path} has {len(lines)} lines but {words_path} has {len(texts)}: one sentence a line"
            )
    return [
        _jointbert_sentence(text, tagging, label, number, (words_path, tags_path, label_path))
        for number, (text, tagging, label) in enumerate(zip(texts, taggings, labels), start=1)
    ]


def _jointbert_sentence(
    text: str, tagging: str, label: str | None, number: int, paths: tuple[Path, Path, Path | None]
) -> TaggedSentence:
    words_path, tags_path, label_path = paths
    words, tags = text.split(), tagging.split()
    if not words:
        raise UserError(f"{words_path}, line {number}: empty line (each line is one sentence)")
    if len(tags) != len(words):
        raise UserError(
            f"{tags_path}, line {number}: {len(tags)} tags for the {len(words)} words of {words_path} "
            f"line {number} (one BIO tag per word)"
        )
    for tag in tags:
        check_tag(tag, str(tags_path), number)
    if label is not None and len(label.split()) != 1:
        problem = "empty line" if not label.strip() else f"{label!r} is not one intent (no spaces)"
        raise UserError(f"{label_path}, line {number}: {problem}")
    return TaggedSentence(words, tags, None if label is None else label.strip())


def read_conll(path: Path) -> list[TaggedSentence]:
    """A CoNLL column file: one word per line, its tag in the last column, a blank line between
    sentences; `-DOCSTART-` lines (CoNLL-2003) are skipped."""
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(read_lines(path), start=1):
        columns = line.split()
        if not columns or columns[0] == "-DOCSTART-":
            if words:
                sentences.append(TaggedSentence(words, tags, None))
            words, tags = [], []
            continue
        if len(columns) < 2:
            raise UserError(
                f"{path}, line {number}: {line.strip()!r} has no tag column (a word and its tag per line, "
                "a blank line between sentences)"
            )
        check_tag(columns[-1], str(path), number)
        words.append(columns[0])
        tags.append(columns[-1])
    if words:
        sentences.append(TaggedSentence(words, tags, None))
    return sentences


def read_split(path: Path) -> list[TaggedSentence]:
    """One split: a directory in JointBERT's layout, or a CoNLL column file; refused when it is empty."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory (a JointBERT split directory or a CoNLL file)")
    sentences = read_jointbert(path) if path.is_dir() else read_conll(path)
    if not sentences:
        raise UserError(f"{path} holds no sentences")
    return sentences


def find_splits(data_dir: Path) -> dict[str, Path]:
    """The splits a corpus directory holds: train/ dev/ test/ directories (JointBERT) or train.txt,
    dev.txt, test.txt CoNLL files (also valid, val; .conll, .tsv, .gz). dev/valid/val is the val split."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"task.data_dir={data_dir}: no such directory")
    found = {}
    for split, names in SPLITS.items():
        for name in names:
            candidates = [data_dir / f"{name}{suffix}{gz}" for suffix in CONLL_SUFFIXES for gz in ("", ".gz")]
            path = next((c for c in candidates if c.exists()), None)  # data_dir/train: JointBERT or CoNLL
            if path is not None:
                found[split] = path
                break
    for required in ("train", "val"):
        if required not in found:
            names = "/".join(SPLITS[required])
            raise UserError(
                f"task.data_dir={data_dir} has no {required} split: give {names}/ (seq.in, seq.out, label) "
                f"or a CoNLL file {SPLITS[required][0]}.txt"
            )
    return found


# ------------------------------------------------------------------------------------ label sets
class Labels:
    """A closed set of labels (slot tags, intents) <-> ids, in sorted order of the training labels
    (vocab/tags.json, vocab/intents.json)."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}

    @classmethod
    def build(cls, labels: list[str]) -> Labels:
        return cls(sorted(set(labels)))

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: str) -> bool:
        return label in self.index

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"kind": "labels", "labels": self.labels}, ensure_ascii=False), "utf-8")

    @classmethod
    def load(cls, path: Path) -> Labels:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            labels = data["labels"]
            if data.get("kind") != "labels" or not all(isinstance(label, str) for label in labels):
                raise ValueError("not a list of labels")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise UserError(f"{path} is not a seqtool label set ({error})") from None
        return cls(labels)


# ------------------------------------------------------------------- the embedded flight corpus
# The notes' running example, "show flights from boston to denver on monday", grown into a small grammar
# of ATIS-like requests: each template is words and {slot} holes, filled from the slot's values; a value
# of several words is tagged B-slot I-slot ..., every other word O.
SLOT_VALUES = {
    "fromloc.city_name": ["boston", "denver", "atlanta", "dallas", "pittsburgh", "new york",
                          "san francisco", "salt lake city", "washington", "philadelphia"],
    "toloc.city_name": ["boston", "denver", "atlanta", "dallas", "pittsburgh", "new york",
                        "san francisco", "salt lake city", "washington", "philadelphia"],
    "depart_date.day_name": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
    "depart_time.period_of_day": ["morning", "afternoon", "evening"],
    "airline_name": ["united", "delta", "american airlines", "us air", "continental"],
    "class_type": ["first class", "coach", "business class"],
    "city_name": ["boston", "denver", "atlanta", "dallas", "new york", "san francisco"],
}  # fmt: skip
TEMPLATES = {
    "atis_flight": [
        "show flights from {fromloc.city_name} to {toloc.city_name} on {depart_date.day_name}",
        "show me flights from {fromloc.city_name} to {toloc.city_name}",
        "i want to fly from {fromloc.city_name} to {toloc.city_name} on {depart_date.day_name} "
        "{depart_time.period_of_day}",
        "list {airline_name} flights from {fromloc.city_name} to {toloc.city_name}",
        "flights to {toloc.city_name} from {fromloc.city_name} in the {depart_time.period_of_day}",
    ],
    "atis_airfare": [
        "what is the fare from {fromloc.city_name} to {toloc.city_name}",
        "how much is a {class_type} ticket from {fromloc.city_name} to {toloc.city_name}",
        "show me {airline_name} fares to {toloc.city_name} from {fromloc.city_name}",
    ],
    "atis_airline": [
        "which airlines fly from {fromloc.city_name} to {toloc.city_name}",
        "what airlines go to {toloc.city_name} on {depart_date.day_name}",
    ],
    "atis_flight_time": [
        "what time does the {airline_name} flight from {fromloc.city_name} to {toloc.city_name} leave",
        "when do flights leave {fromloc.city_name} for {toloc.city_name} on {depart_date.day_name}",
    ],
    "atis_ground_service": [
        "what ground transportation is available in {city_name}",
        "is there a bus from the airport to downtown {city_name}",
    ],
}
DEFAULT_SIZES = {"val": 200, "test": 200}  # train's size is task.default_size


def fill(template: str, rng: random.Random) -> tuple[list[str], list[str]]:
    """One sentence of a template: its words and their BIO tags."""
    words: list[str] = []
    tags: list[str] = []
    for piece in template.split():
        if not piece.startswith("{"):
            words.append(piece)
            tags.append("O")
            continue
        slot = piece.strip("{}")
        value = rng.choice(SLOT_VALUES[slot]).split()
        words += value
        tags += [f"B-{slot}"] + [f"I-{slot}"] * (len(value) - 1)
    return words, tags


def flight_corpus(size: int, seed: int) -> list[TaggedSentence]:
    """`size` generated requests, each intent as likely as the next, then a template of it uniformly."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(size):
        intent = rng.choice(sorted(TEMPLATES))
        words, tags = fill(rng.choice(TEMPLATES[intent]), rng)
        sentences.append(TaggedSentence(words, tags, intent))
    return sentences


def embedded_splits(train_size: int, seed: int) -> dict[str, list[TaggedSentence]]:
    """The embedded default's train, val and test splits, each from its own seed."""
    sizes = {"train": train_size, **DEFAULT_SIZES}
    return {
        split: flight_corpus(size, seed * 3 + offset) for offset, (split, size) in enumerate(sizes.items())
    }
