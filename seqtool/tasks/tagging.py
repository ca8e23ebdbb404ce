"""Slot filling and intent detection: a BIO tag for every word, and (task.joint) an intent per sentence.

What the model sees of one sentence of n words, and what it is scored against::

    tokens   w1 w2 ... wn <pad> ...      [B, T]  word ids, right-padded with PAD (0)
    tags     s1 s2 ... sn  -100 ...      [B, T]  tag ids; -100 (ignored) at padding
    intents  i                           [B]     intent id (joint only)

    loss = mean over words of CE(tag) + intent_weight · mean over sentences of CE(intent)
           (+ aux_lm_weight · the model's LM loss)

Metrics, in percent: slot_f1 / slot_precision / slot_recall over spans as seqeval (conlleval's rules)
counts them, intent_accuracy, and sentence_accuracy (every tag right, and the intent when joint).

A tag or intent of val/test that train lacks (ATIS dev has one of each) has no output unit: the loss
skips it (ignored like padding), while the metrics compare the predicted strings with the file's, so such
a span or intent always counts as wrong, never dropped. Multi-intent labels (atis_airfare#atis_flight)
are one intent class each, as JointBERT and Goo et al. (2018) treat them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from seqeval.metrics import f1_score, precision_score, recall_score
from torch import Tensor, nn

from seqtool.by_length import refuse as refuse_by_length
from seqtool.data import batching, parallel
from seqtool.data.tagged import Labels, TaggedSentence, embedded_splits, find_splits, read_split
from seqtool.data.vocab import PAD, WORDS_FILE, WordVocab, saved_vocabulary
from seqtool.decode.generate import Decoded, DecodeInput
from seqtool.decode.output import Text
from seqtool.decode.settings import DecodeOptions, Greedy, SearchSettings
from seqtool.errors import UserError
from seqtool.progress import warn
from seqtool.tasks.base import Competence, Loss

IGNORE = -100  # a target F.cross_entropy skips: padding, and labels train never had
TAGS_FILE = Path("vocab") / "tags.json"
INTENTS_FILE = Path("vocab") / "intents.json"


@dataclass
class TagBatch:
    tokens: Tensor  # shape: [B, T] word ids, right-padded with PAD
    tags: Tensor  # shape: [B, T] tag ids, IGNORE at padding and at tags unseen in train
    intents: Tensor  # shape: [B] intent ids, IGNORE where unseen in train (all IGNORE when not joint)
    index: list[int]  # the sentences of the split in this batch, row by row


@dataclass
class Tagging:
    """One decoded sentence: a tag per word and the intent (None when the task is not joint)."""

    tags: list[str]
    intent: str | None


class TaggingTask:
    """Slot filling (+ intent detection); see conf/task/tagging.yaml for every option."""

    shape = "many-to-many synchronous"  # a tag per input word (seqtool.shapes)
    aux_lm_weight: float = 0.0  # λ of the auxiliary LM loss; the trainer sets it (trainer.aux_lm_weight)

    def __init__(
        self,
        *,
        data_dir: str | None,
        train_path: str | None,
        val_path: str | None,
        test_path: str | None,
        joint: bool,
        intent_weight: float,
        min_count: int,
        max_tokens: int,
        bucket_size: int,
        default_size: int,
        preview_sentences: int,
        seed: int,
    ) -> None:
        if data_dir is not None and train_path is not None:
            raise ValueError("give task.data_dir or task.train_path (with task.val_path), not both")
        if train_path is not None and val_path is None:
            raise ValueError("task.train_path needs task.val_path: training is evaluated on val")
        if intent_weight < 0 or min(min_count, max_tokens, bucket_size, default_size) < 1:
            raise ValueError("task.intent_weight must be >= 0; min_count, max_tokens, bucket_size, "
                             "default_size >= 1")  # fmt: skip
        self.data_dir, self.joint, self.intent_weight = data_dir, joint, intent_weight
        self.paths = {"train": train_path, "val": val_path, "test": test_path}
        self.min_count, self.max_tokens, self.bucket_size = min_count, max_tokens, bucket_size
        self.default_size, self.preview_sentences, self.seed = default_size, preview_sentences, seed
        self.device, self.rank, self.world_size = torch.device("cpu"), 0, 1

    # -------------------------------------------------------------------------------------- data
    def setup(
        self, run_dir: Path, *, rank: int = 0, world_size: int = 1, device: torch.device | None = None
    ) -> None:
        """Load the run's vocabularies, or read train and build them. The words come from
        vocab/words.json when it is there (init_from=RUN puts a pretrained run's there); tags and
        intents are built from train when absent. A run with its vocabularies reads no data until a
        split is asked for, so decoding needs none."""
        self.run_dir, self.rank, self.world_size = Path(run_dir), rank, world_size
        self.device = device or torch.device("cpu")
        self.sentences: dict[str, list[TaggedSentence]] = {}
        self.stream: batching.TrainStream | None = None
        words, tags, intents = (self.run_dir / f for f in (WORDS_FILE, TAGS_FILE, INTENTS_FILE))
        label_files = [tags, intents] if self.joint else [tags]
        has_words = saved_vocabulary(self.run_dir, [words])
        has_labels = saved_vocabulary(self.run_dir, label_files)
        if not (has_words and has_labels):
            self._read()
        train = self.sentences.get("train", [])
        self.words = WordVocab.load(words) if has_words else self._save(
            WordVocab.build((s.words for s in train), min_count=self.min_count), words
        )  # fmt: skip
        self.tags = Labels.load(tags) if has_labels else self._save(
            Labels.build([tag for s in train for tag in s.tags]), tags
        )  # fmt: skip
        self.intents = Labels([])
        if self.joint:
            self.intents = Labels.load(intents) if has_labels else self._save(
                Labels.build([s.intent for s in train]), intents
            )  # fmt: skip

    def _save(self, vocabulary: Any, path: Path) -> Any:
        if self.rank == 0:
            vocabulary.save(path)
        return vocabulary

    def _read(self) -> None:
        """Read every split (once): task.data_dir's, the task.*_path files, or the embedded corpus."""
        if self.sentences:
            return
        if self.data_dir is not None:
            self.origin = self.data_dir
            self.sentences = {split: read_split(p) for split, p in find_splits(Path(self.data_dir)).items()}
        elif self.paths["train"] is not None:
            self.origin = "task.train_path"
            self.sentences = {split: read_split(Path(p)) for split, p in self.paths.items() if p is not None}
        else:
            self.origin = "the embedded flight corpus"
            self.sentences = embedded_splits(self.default_size, self.seed)
        if self.joint and any(s.intent is None for s in self.sentences["train"]):
            raise UserError(
                f"task.joint=true needs an intent per sentence, and the train split of {self.origin} has "
                "none (CoNLL files and JointBERT splits without label): set task.joint=false"
            )

    def _data(self) -> None:
        """Read the splits (once), say what train lacks, and plan the train stream."""
        if self.stream is not None:
            return
        self._read()
        for split in ("val", "test"):
            self._warn_unseen(split)
        sizes = [len(s.words) for s in self.sentences["train"]]
        easiest_first = sorted(range(len(sizes)), key=lambda i: sizes[i])
        self.stream = batching.TrainStream(
            sizes, easiest_first, max_tokens=self.max_tokens, bucket_size=self.bucket_size, seed=self.seed,
            rank=self.rank, world_size=self.world_size,
        )  # fmt: skip

    def _warn_unseen(self, split: str) -> None:
        """Say (once per split) which tags and intents of an evaluation split train never had."""
        tags = sorted({t for s in self.sentences.get(split, []) for t in s.tags if t not in self.tags})
        intents = sorted({s.intent for s in self.sentences.get(split, []) if s.intent not in self.intents})
        unseen = [f"tags {', '.join(tags)}" if tags else "",
                  f"intents {', '.join(intents)}" if self.joint and intents else ""]  # fmt: skip
        if any(unseen) and self.rank == 0:
            warn(f"the {split} split has {' and '.join(u for u in unseen if u)}, which train lacks: "
                 "they have no output unit and count as wrong in its metrics")  # fmt: skip

    def split(self, name: str) -> list[TaggedSentence]:
        """The sentences of a split; a clear refusal for a split the data does not have."""
        self._data()
        if name not in self.sentences:
            raise UserError(
                f"{self.origin} has no {name} split (it has {', '.join(self.sentences)}): put {name}/ "
                f"(seq.in, seq.out, label) or {name}.txt (CoNLL) beside train, or train with task.{name}_path"
            )
        return self.sentences[name]

    def add_split(self, name: str, *, src: Path, ref: Path) -> str:
        raise UserError(
            "the tagging task scores its own splits (seqtool eval RUN --split val|test); --src/--ref are for "
            "translation"
        )

    def model_kwargs(self) -> dict[str, Any]:
        return {"vocab_size": len(self.words), "num_tags": len(self.tags), "num_intents": len(self.intents)}

    def steps_per_epoch(self) -> int:
        """Batches in one pass over train (trainer.max_epochs, eval_every=epoch)."""
        self._data()
        return len(self.stream.plan())

    def difficulty(self, example: TaggedSentence) -> float:
        """Sentence length in words."""
        return float(len(example.words))

    # ----------------------------------------------------------------------------------- batches
    def batches(self, split: str, *, train: bool, competence: Competence | None = None):
        """The endless, resumable train stream, or one pass over a split in length order."""
        if not train:
            sentences = self.split(split)
            lengths = [len(s.words) for s in sentences]
            return (
                self._collate(sentences, index) for index in batching.sorted_batches(lengths, self.max_tokens)
            )
        self._data()
        return self._train_stream(competence or (lambda: 1.0))

    def _train_stream(self, competence: Competence) -> Iterator[TagBatch]:
        while True:
            yield self._collate(self.sentences["train"], self.stream.next(competence()))

    def _collate(self, sentences: list[TaggedSentence], index: list[int]) -> TagBatch:
        rows = [sentences[i] for i in index]
        tokens = batching.pad([self.words.encode(s.words) for s in rows], PAD)
        tags = batching.pad([[self.tags.index.get(t, IGNORE) for t in s.tags] for s in rows], IGNORE)
        intents = torch.tensor([self.intents.index.get(s.intent, IGNORE) for s in rows], dtype=torch.long)
        return TagBatch(tokens.to(self.device), tags.to(self.device), intents.to(self.device), index)

    # ------------------------------------------------------------------------------ loss, metrics
    def loss(self, model: nn.Module, batch: TagBatch) -> Loss:
        """Slot cross-entropy summed over the words; the intent's (and the auxiliary LM's) mean enters
        weighted and scaled by the word count, so the trainer's division gives
        mean slot CE + intent_weight · mean intent CE (+ aux_lm_weight · mean LM loss)."""
        tag_logits, intent_logits = model(batch.tokens)  # [B, T, S], [B, I] or None
        slot_sum = F.cross_entropy(
            tag_logits.flatten(0, 1).float(), batch.tags.flatten(), ignore_index=IGNORE, reduction="sum"
        )
        words = int((batch.tags != IGNORE).sum())
        total = slot_sum
        if self.joint and self.intent_weight > 0:
            total = total + self.intent_weight * words * intent_loss(intent_logits, batch.intents)
        if self.aux_lm_weight > 0:
            total = total + self.aux_lm_weight * words * auxiliary_lm_loss(model, batch.tokens)
        return Loss(total=total, count=words)

    def evaluate(
        self, model: nn.Module, split: str, search: SearchSettings | None = None, by_length: Any = None
    ) -> dict[str, float]:
        """loss (as trained), then slot F1/precision/recall, intent and sentence accuracy (percent)."""
        if by_length is not None:
            refuse_by_length("the tagging task")
        sentences = self.split(split)
        total, count = 0.0, 0
        predicted: list[Tagging | None] = [None] * len(sentences)
        with torch.no_grad():
            for batch in self.batches(split, train=False):
                loss = self.loss(model, batch)
                total, count = total + float(loss.total), count + loss.count
                for i, tagged in zip(batch.index, self._predict(model, batch.tokens)):
                    predicted[i] = tagged
        return {"loss": total / max(count, 1), **tagging_metrics(sentences, predicted, joint=self.joint)}

    def _predict(self, model: nn.Module, tokens: Tensor) -> list[Tagging]:
        """The most likely tag of every word (and intent) of each row of tokens [B, T]."""
        tag_logits, intent_logits = model(tokens)  # [B, T, S], [B, I] or None
        lengths = (tokens != PAD).sum(dim=1).tolist()
        best_tags = tag_logits.argmax(-1).tolist()  # [B, T]
        best_intents = intent_logits.argmax(-1).tolist() if self.joint else [None] * len(lengths)
        return [
            Tagging([self.tags.labels[t] for t in row[:n]], None if i is None else self.intents.labels[i])
            for row, n, i in zip(best_tags, lengths, best_intents)
        ]

    # ------------------------------------------------------------------------------------ decode
    # `seqtool decode RUN --input FILE|-` tags each line: `from/O boston/B-fromloc.city_name<TAB>intent`.
    decode_output = Text(labelled=False)
    default_strategy = Greedy()  # each word's tag is read off its own output: nothing to search
    end_token = None  # so beam search and sampling are refused

    def decode_inputs(
        self, model: nn.Module, options: DecodeOptions, search: SearchSettings
    ) -> Iterator[list[DecodeInput]]:
        """The lines of --input (a file, or - for standard input line by line) as word lists."""
        if options.input is None:
            raise UserError("the tagging task tags sentences: give --input FILE (or - for standard input), "
                            "one sentence of space-separated words per line")  # fmt: skip
        chunks = (_sentences(chunk) for chunk in parallel.numbered_lines(options.input, ""))
        return chunks if options.input == "-" else iter(list(chunks))  # a file: every line checked first

    def decode(self, model: nn.Module, inputs: list[DecodeInput], search: Any = None) -> list[Decoded]:
        """A Tagging per input, in input order, in batches of at most task.max_tokens padded words."""
        found: list[Decoded | None] = [None] * len(inputs)
        for index in batching.sorted_batches([item.size for item in inputs], self.max_tokens):
            tokens = batching.pad([self.words.encode(inputs[i].value) for i in index], PAD)
            with torch.no_grad():
                tagged = self._predict(model, tokens.to(self.device))
            for i, tagging in zip(index, tagged):
                found[i] = Decoded(tokens=[tagging], scores=[0.0], attention=None)
        return found

    def render(self, item: DecodeInput, tokens: Tagging) -> str:
        """`word/TAG word/TAG ...`, then a tab and the intent when joint."""
        text = " ".join(f"{word}/{tag}" for word, tag in zip(item.value, tokens.tags))
        return text if tokens.intent is None else f"{text}\t{tokens.intent}"

    def plot_attention(self, item: DecodeInput, decoded: Any, directory: Path) -> int:
        return 0  # the tagger's outputs carry no attention weights

    def preview(self, model: nn.Module) -> str:
        """A few val sentences, tagged, each above its gold tags and intent."""
        sentences = self.split("val")[: self.preview_sentences]
        inputs = [DecodeInput(str(i), s.words, len(s.words), i) for i, s in enumerate(sentences)]
        golds = [Tagging(s.tags, s.intent if self.joint else None) for s in sentences]
        return "".join(
            f"model: {self.render(item, found.tokens[0])}\ngold:  {self.render(item, gold)}\n"
            for item, found, gold in zip(inputs, self.decode(model, inputs), golds)
        )

    # ------------------------------------------------------------------------------ resumability
    def state_dict(self) -> dict[str, Any]:
        self._data()
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._data()
        self.stream.load_state_dict(state)


def _sentences(lines: list[tuple[int, str]]) -> list[DecodeInput]:
    """Numbered input lines as word lists; an empty line is refused by its number."""
    for number, text in lines:
        if not text.split():
            raise UserError(f"input line {number} is empty: give one sentence per line")
    return [DecodeInput(str(number), text.split(), len(text.split()), number) for number, text in lines]


def intent_loss(intent_logits: Tensor, intents: Tensor) -> Tensor:
    """Mean intent cross-entropy over the sentences whose intent train had (0 when none has)."""
    known = intents != IGNORE  # [B]
    if not bool(known.any()):
        return intent_logits.sum() * 0.0
    return F.cross_entropy(intent_logits[known].float(), intents[known])


def auxiliary_lm_loss(model: nn.Module, tokens: Tensor) -> Tensor:
    """The model's own LM loss (mean nats per predicted token); a model without one is refused."""
    lm_loss = getattr(model, "aux_lm_loss", None)
    if lm_loss is None:
        raise UserError(
            f"trainer.aux_lm_weight > 0 needs a model with a language-model loss (model=bert or "
            f"model=transformer_lm), not {type(model).__name__}; set trainer.aux_lm_weight=0"
        )
    return lm_loss(tokens)


def tagging_metrics(
    sentences: list[TaggedSentence], predicted: list[Tagging], *, joint: bool
) -> dict[str, float]:
    """Slot span F1 / precision / recall (seqeval's default, conlleval-style), intent accuracy and sentence
    accuracy, in percent. A span counts only when its type and both its ends are right."""
    gold = [s.tags for s in sentences]
    guess = [p.tags for p in predicted]
    metrics = {
        "slot_f1": 100 * f1_score(gold, guess),
        "slot_precision": 100 * precision_score(gold, guess),
        "slot_recall": 100 * recall_score(gold, guess),
    }
    right = [s.tags == p.tags for s, p in zip(sentences, predicted)]
    if joint:
        intent_right = [s.intent == p.intent for s, p in zip(sentences, predicted)]
        metrics["intent_accuracy"] = 100 * sum(intent_right) / len(sentences)
        right = [a and b for a, b in zip(right, intent_right)]
    metrics["sentence_accuracy"] = 100 * sum(right) / len(sentences)
    return metrics
