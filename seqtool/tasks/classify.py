"""Sentence classification (many-to-one): one label per sentence, such as SST-2's sentiment.

data       task.data_dir=DIR (train, dev|val, test as .tsv/.csv/.jsonl[.gz]: GLUE's layout), or one
           file per split (task.train_path, task.val_path, task.test_path), or task.hub=NAME (needs
           network), or by default a generated corpus of film reviews (seqtool/data/labelled.py)
tokens     word (space-separated, vocab/words.json) | char | bpe (vocab/tokens.json)
labels     those of train, sorted (vocab/labels.json); a val/test label unseen in train is refused
batches    length-bucketed, at most task.max_tokens padded tokens each
loss       mean cross-entropy per sentence (+ trainer.aux_lm_weight · the model's LM loss)
metrics    loss, accuracy, macro-F1 (torchmetrics), and the majority-class baseline's accuracy;
           `seqtool eval` also draws the confusion matrix into RUN/plots/confusion_<split>.png
decode     LABEL<TAB>PROBABILITY<TAB>TEXT per input line; --plot-attention colours the words by
           attention pooling's weights
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.functional.classification import multiclass_confusion_matrix, multiclass_f1_score

from seqtool.by_length import refuse as refuse_by_length
from seqtool.data import batching, labelled
from seqtool.data.labelled import LabelVocab, Split
from seqtool.data.parallel import numbered_lines
from seqtool.data.tokenize import TextTokenizer
from seqtool.data.vocab import PAD, WORDS_FILE, WordVocab, saved_vocabulary
from seqtool.decode.generate import Decoded, DecodeInput
from seqtool.decode.output import Text
from seqtool.decode.settings import DecodeOptions, Greedy, SearchSettings
from seqtool.errors import UserError
from seqtool.tasks.base import Competence, Loss

LABELS_FILE = Path("vocab") / "labels.json"
PIECES_FILE = Path("vocab") / "tokens.json"  # the char or BPE tokenizer (task.tokens=char|bpe)


@dataclass
class ClassifyBatch:
    tokens: Tensor  # shape: [B, T] long, right-padded with PAD
    labels: Tensor  # shape: [B] long class ids


def split_words(text: str, lowercase: bool) -> list[str]:
    """Word tokens: the text is already cut by spaces (SST-2, ATIS)."""
    return (text.lower() if lowercase else text).split()


class Tokens:
    """Text -> ids, and ids -> the pieces a plot shows: a WordVocab (word) or a TextTokenizer (char, bpe)."""

    def __init__(self, vocab: WordVocab | TextTokenizer, kind: str, lowercase: bool) -> None:
        self.vocab, self.kind, self.lowercase = vocab, kind, lowercase

    def __len__(self) -> int:
        return len(self.vocab)

    def words(self, text: str) -> list[str]:
        return split_words(text, self.lowercase)

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(self.words(text)) if self.kind == "word" else self.vocab.encode(text)

    def pieces(self, text: str) -> list[str]:
        """What each id of encode(text) stands for: the words themselves (an <unk> word shows as written)."""
        return self.words(text) if self.kind == "word" else self.vocab.tokens(self.vocab.encode(text))


class ClassifyTask:
    """Labelled sentences in, one class per sentence out."""

    shape = "many-to-one"  # read by seqtool.shapes
    aux_lm_weight: float = 0.0  # λ of the auxiliary LM loss; the trainer sets it (trainer.aux_lm_weight)

    def __init__(
        self,
        *,
        data_dir: str | None,
        train_path: str | None,
        val_path: str | None,
        test_path: str | None,
        hub: str | None,
        hub_config: str | None,
        hub_splits: dict[str, str | None],
        text_column: str,
        label_column: str,
        tokens: Literal["word", "char", "bpe"],
        vocab_size: int,
        min_frequency: int,
        lowercase: bool,
        max_length: int,
        max_tokens: int,
        bucket_size: int,
        generated_size: int,
        seed: int,
        max_train_examples: int | None = None,  # init_from's recipe (seqtool/finetune.py): fewer labels
    ) -> None:
        if tokens not in ("word", "char", "bpe"):
            raise ValueError(f"task.tokens must be word, char or bpe, got {tokens!r}")
        given = [name for name, value in (("task.data_dir", data_dir), ("task.train_path", train_path),
                                          ("task.hub", hub)) if value]  # fmt: skip
        if len(given) > 1:
            raise ValueError(f"give one data source, not {' and '.join(given)}")
        if (train_path is None) != (val_path is None):
            raise ValueError("task.train_path and task.val_path go together (task.test_path is optional)")
        self.data_dir, self.hub, self.hub_config, self.hub_splits = (
            data_dir,
            hub,
            hub_config,
            dict(hub_splits),
        )
        self.paths = {"train": train_path, "val": val_path, "test": test_path}
        self.columns = {"text_column": text_column, "label_column": label_column}
        self.token_kind, self.vocab_size, self.min_frequency = tokens, vocab_size, min_frequency
        self.lowercase, self.max_length = lowercase, max_length
        self.max_tokens, self.bucket_size = max_tokens, bucket_size
        self.generated_size, self.seed = generated_size, seed
        self.max_train_examples = max_train_examples
        self.device = torch.device("cpu")
        self.run_dir: Path | None = None
        self.splits: dict[str, Split] = {}
        self.encoded: dict[str, tuple[list[list[int]], list[int]]] = {}  # split -> (token ids, class ids)

    # -------------------------------------------------------------------------------------- data
    def setup(
        self, run_dir: Path, *, rank: int = 0, world_size: int = 1, device: torch.device | None = None
    ) -> None:
        """Read train and val; load the run's tokens and labels (vocab/), or build them from train."""
        self.run_dir, self.device = Path(run_dir), device or torch.device("cpu")
        self.splits = {split: self.read(split) for split in ("train", "val")}
        self.splits["train"] = self._fewer_labels(self.splits["train"])
        self.tokens = self._tokens(self.splits["train"])
        self.labels = self._labels(self.splits["train"])
        for split in ("train", "val"):
            self.encoded[split] = self._encode(self.splits[split])
        sizes = [len(ids) for ids in self.encoded["train"][0]]
        self.stream = batching.TrainStream(
            sizes, sorted(range(len(sizes)), key=sizes.__getitem__), max_tokens=self.max_tokens,
            bucket_size=self.bucket_size, seed=self.seed, rank=rank, world_size=world_size,
        )  # fmt: skip

    def _fewer_labels(self, train: Split) -> Split:
        """task.max_train_examples: a random subset of train drawn with task.seed (kept in file order), as
        a study of accuracy against labels needs; a vocabulary built here (no init_from) sees it alone."""
        if self.max_train_examples is None or len(train.examples) <= self.max_train_examples:
            return train
        order = torch.randperm(len(train.examples), generator=torch.Generator().manual_seed(self.seed))
        kept = sorted(order[: self.max_train_examples].tolist())
        return Split(
            [train.examples[i] for i in kept], f"{self.max_train_examples} examples of {train.origin}"
        )

    def read(self, split: str) -> Split:
        """One split from the configured source; a missing test split is refused naming the source."""
        if self.hub:
            name = self.hub_splits.get(split)
            if not name:
                raise UserError(f"task.hub={self.hub} has no {split} split (task.hub_splits.{split})")
            return labelled.read_hub(self.hub, self.hub_config, name, **self.columns)
        if self.data_dir:
            path = labelled.find_split(Path(self.data_dir), split)
            if path is None:
                names = "|".join(labelled.SPLIT_NAMES[split])
                raise UserError(
                    f"task.data_dir={self.data_dir} has no {split} split ({names}.tsv/.csv/.jsonl)"
                )
            return labelled.read_labelled(path, **self.columns)
        if self.paths["train"]:
            if not self.paths[split]:
                raise UserError(f"this run has no {split} split: give task.{split}_path=FILE when training")
            return labelled.read_labelled(Path(self.paths[split]), **self.columns)
        # the embedded default: each split from its own seed
        count = self.generated_size if split == "train" else max(1, self.generated_size // 8)
        offset = {"train": 0, "val": 1, "test": 2}[split]
        return Split(
            labelled.generated_reviews(count, seed=self.seed * 3 + offset), f"the generated {split} set"
        )

    def _tokens(self, train: Split) -> Tokens:
        path = self.run_dir / (WORDS_FILE if self.token_kind == "word" else PIECES_FILE)
        if saved_vocabulary(self.run_dir, [path]):
            vocab = WordVocab.load(path) if self.token_kind == "word" else TextTokenizer.load(path)
            return Tokens(vocab, self.token_kind, self.lowercase)
        texts = [example.text for example in train.examples]
        if self.token_kind == "word":
            vocab = WordVocab.build((split_words(t, self.lowercase) for t in texts), max_size=self.vocab_size,
                                    min_count=self.min_frequency)  # fmt: skip
        else:
            vocab = TextTokenizer.train(
                texts, kind=self.token_kind, vocab_size=self.vocab_size, min_frequency=self.min_frequency,
                lowercase=self.lowercase,
            )  # fmt: skip
        vocab.save(path)
        return Tokens(vocab, self.token_kind, self.lowercase)

    def _labels(self, train: Split) -> LabelVocab:
        path = self.run_dir / LABELS_FILE
        if saved_vocabulary(self.run_dir, [path]):
            return LabelVocab.load(path)
        labels = LabelVocab.build(train)
        labels.save(path)
        return labels

    def _encode(self, split: Split) -> tuple[list[list[int]], list[int]]:
        """Token ids (cut at max_length) and class ids; an unseen label is refused, naming its line."""
        ids = [self.tokens.encode(example.text)[: self.max_length] or [PAD] for example in split.examples]
        return ids, [self.labels.encode(example, split.origin) for example in split.examples]

    def model_kwargs(self) -> dict[str, Any]:
        return {"vocab_size": len(self.tokens), "num_classes": len(self.labels)}

    def split_data(self, split: str) -> tuple[list[list[int]], list[int]]:
        """(token ids, class ids) of val or test; test is read when first asked for."""
        if split not in ("val", "test"):
            raise UserError(f"classification evaluates val or test, not {split!r}")
        if split not in self.encoded:
            self.splits[split] = self.read(split)
            self.encoded[split] = self._encode(self.splits[split])
        return self.encoded[split]

    def difficulty(self, example: Any) -> float:
        """A sentence's length in tokens."""
        return float(len(example))

    def batches(
        self, split: str, *, train: bool, competence: Competence | None = None
    ) -> Iterator[ClassifyBatch]:
        """The endless length-bucketed train stream, or one pass over val/test in length order."""
        if train:
            return self._train_batches(competence or (lambda: 1.0))
        ids, classes = self.split_data(split)
        return (self._batch(ids, classes, rows)
                for rows in batching.sorted_batches([len(x) for x in ids], self.max_tokens))  # fmt: skip

    def _train_batches(self, competence: Competence) -> Iterator[ClassifyBatch]:
        ids, classes = self.encoded["train"]
        while True:
            yield self._batch(ids, classes, self.stream.next(competence()))

    def _batch(self, ids: list[list[int]], classes: list[int], rows: list[int]) -> ClassifyBatch:
        tokens = batching.pad([ids[i] for i in rows], PAD).to(self.device)  # [B, T]
        return ClassifyBatch(tokens, torch.tensor([classes[i] for i in rows], device=self.device))

    # ------------------------------------------------------------------------------ loss, metrics
    def loss(self, model: nn.Module, batch: ClassifyBatch) -> Loss:
        """Cross-entropy summed over the sentences (+ λ · count · the model's mean LM loss)."""
        logits, _ = model(batch.tokens)  # [B, C]
        total = F.cross_entropy(logits.float(), batch.labels, reduction="sum")
        count = len(batch.labels)
        if self.aux_lm_weight > 0:
            total = total + self.aux_lm_weight * count * auxiliary_lm_loss(model, batch.tokens)
        return Loss(total=total, count=count)

    def predict(self, model: nn.Module, split: str) -> tuple[Tensor, Tensor, float]:
        """Predicted and true class ids [N] of a split (in length order) and its summed cross-entropy."""
        predicted, truth, nats = [], [], 0.0
        with torch.no_grad():
            for batch in self.batches(split, train=False):
                logits = model(batch.tokens)[0].float()  # [B, C]
                nats += float(F.cross_entropy(logits, batch.labels, reduction="sum"))
                predicted.append(logits.argmax(-1).cpu())
                truth.append(batch.labels.cpu())
        return torch.cat(predicted), torch.cat(truth), nats

    def evaluate(
        self, model: nn.Module, split: str, search: Any = None, by_length: Any = None
    ) -> dict[str, float]:
        """Loss, accuracy, macro-F1 and the majority class's accuracy; `seqtool eval` (search given)
        also draws the confusion matrix into RUN/plots/confusion_<split>.png."""
        if by_length is not None:
            refuse_by_length("sentence classification")
        predicted, truth, nats = self.predict(model, split)
        metrics = classification_metrics(predicted, truth, len(self.labels))
        majority = Counter(self.encoded["train"][1]).most_common(1)[0][0]
        metrics = {"loss": nats / len(truth), **metrics,
                   "majority_accuracy": float((truth == majority).float().mean())}  # fmt: skip
        if search is not None and self.run_dir is not None:
            from seqtool.plots import plot_confusion_matrix

            matrix = multiclass_confusion_matrix(predicted, truth, num_classes=len(self.labels))
            path = self.run_dir / "plots" / f"confusion_{split}.png"
            scores = f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}"
            plot_confusion_matrix(matrix, self.labels.labels, path, title=f"{split}: {scores}")
        return metrics

    def add_split(self, name: str, *, src: Path, ref: Path) -> str:
        raise UserError("classification scores its own splits; give a test file with task.test_path when "
                        "training (--src/--ref are for translation)")  # fmt: skip

    # ------------------------------------------------------------------------------------ decode
    # `seqtool decode RUN --input FILE|-` classifies each line; without --input, the first --num val ones.
    decode_output = Text()  # the line is LABEL<TAB>PROBABILITY<TAB>TEXT (render)
    default_strategy = Greedy()  # no search: the label is the argmax
    end_token = None  # no beam

    def decode_inputs(
        self, model: nn.Module, options: DecodeOptions, search: SearchSettings
    ) -> Iterator[list[DecodeInput]]:
        """The lines of --input (- for stdin, answered line by line), else the first --num val sentences."""
        if not isinstance(search.strategy, (Greedy, type(None))):
            raise UserError("classification takes the likeliest label; --beam and sampling do not apply")
        pooling = getattr(model, "pooling_kind", None)
        if options.plot_dir is not None and pooling != "attention":
            raise UserError(
                f"--plot-attention colours the words by attention pooling's weights; this model pools by "
                f"{pooling or 'no attention'} (train with model.pooling=attention)"
            )
        if options.input is None:
            examples = self.splits["val"].examples[: options.num]
            yield [DecodeInput(f"val:{i}", example.text, index=i) for i, example in enumerate(examples)]
            return
        for chunk in numbered_lines(options.input, ""):
            for number, text in chunk:
                if not text.strip():
                    raise UserError(f"{'standard input' if options.input == '-' else options.input} line "
                                    f"{number} is empty; give one sentence per line")  # fmt: skip
            yield [DecodeInput(str(number), text, index=number) for number, text in chunk]

    def decode(self, model: nn.Module, inputs: list[DecodeInput], search: Any = None) -> list[Decoded]:
        """One Decoded per sentence: tokens [[class id, probability]], attention [weights [1, T]] or None."""
        ids = [self.tokens.encode(item.value)[: self.max_length] or [PAD] for item in inputs]
        with torch.no_grad():
            logits, weights = model(batching.pad(ids, PAD).to(self.device))  # [N, C], [N, T] | None
        probability, label = F.softmax(logits.float(), dim=-1).max(dim=-1)  # [N]
        return [
            Decoded(tokens=[[int(label[n]), float(probability[n])]], scores=[float(probability[n])],
                    attention=None if weights is None else [weights[n : n + 1, : len(ids[n])].cpu()])
            for n in range(len(inputs))
        ]  # fmt: skip

    def render(self, item: DecodeInput, tokens: list) -> str:
        label, probability = tokens
        return f"{self.labels.labels[label]}\t{probability:.4f}\t{item.value}"

    def plot_attention(self, item: DecodeInput, decoded: Decoded, directory: Path) -> int:
        """The words coloured by their pooling weight, titled with the label and its probability."""
        if decoded.attention is None:
            return 0
        from seqtool.plots import plot_word_weights

        label, probability = decoded.tokens[0]
        words = self.tokens.pieces(item.value)[: self.max_length]
        path = Path(directory) / f"attention_{item.label.replace(':', '_')}.png"
        plot_word_weights(
            words, decoded.attention[0][0], path, title=f"{self.labels.labels[label]} ({probability:.2f})"
        )
        return 1

    def preview(self, model: nn.Module) -> str:
        """Three val sentences: predicted label (probability), true label, text."""
        examples = self.splits["val"].examples[:3]
        inputs = [DecodeInput(f"val:{i}", example.text, index=i) for i, example in enumerate(examples)]
        answers = self.decode(model, inputs)
        lines = []
        for example, got in zip(examples, answers):
            label, probability = got.tokens[0]
            lines.append(
                f"{self.labels.labels[label]} ({probability:.2f}) [true: {example.label}] {example.text}\n"
            )
        return "".join(lines)

    # ------------------------------------------------------------------------------ resumability
    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)


def classification_metrics(predicted: Tensor, truth: Tensor, num_classes: int) -> dict[str, float]:
    """accuracy = share right; macro_f1 = the mean over classes of 2PR/(P+R) (torchmetrics)."""
    return {
        "accuracy": float((predicted == truth).float().mean()),
        "macro_f1": float(multiclass_f1_score(predicted, truth, num_classes=num_classes, average="macro")),
    }


def auxiliary_lm_loss(model: nn.Module, tokens: Tensor) -> Tensor:
    """The model's own mean LM loss in nats per predicted token (GPT: causal; BERT: masked)."""
    lm_loss = getattr(model, "aux_lm_loss", None)
    if lm_loss is None:
        raise UserError(
            f"trainer.aux_lm_weight > 0 needs a model with a language-model loss (model=bert or "
            f"model=transformer_lm), not {type(model).__name__}; set trainer.aux_lm_weight=0"
        )
    return lm_loss(tokens)
