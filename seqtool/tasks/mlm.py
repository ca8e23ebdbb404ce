"""Masked-LM pretraining (BERT, Devlin et al. 2019), with next-sentence prediction as an option.

Text is lines of space-separated words: a file, folder, glob or .gz (task.path), a folder of train /
valid / test files (task.data_dir), a Hugging Face dataset (task.hf_name, needs network), else the
embedded default, the standard library's source. A line longer than a run's budget of words is cut into
pieces; splits without a file of their own are the tail fractions of the pieces. Consecutive pieces are
packed into runs of at most the budget, and each
sequence is one or two runs closed by [SEP]; the model prepends its class position (seqtool.models.bert)::

    without NSP:   [c] w w w w w w w w w w w w [SEP] <pad>..     one run of <= seq_len - 2 tokens, segment A
    with NSP:      [c] A A A A A [SEP] B B B B B [SEP] <pad>..  runs of <= (seq_len - 3) // 2 tokens;
                   segment  0 0 0 0 0  0   1 1 1 1 1  1          B is the run after A (IsNext) or, half of
                                                                 the time, a random other run (NotNext)

Each batch is then corrupted by BERT's masking (seqtool.models.bert.Masking: task.mask_rate of the words,
of which task.mask_token_share become [MASK] and task.random_token_share a random word); the loss is the
cross-entropy of the chosen words only (plus the mean NSP cross-entropy when on). Train batch i draws its
masks and NotNext partners from a generator seeded by (seed, train, i), and takes the runs at positions
i·B .. i·B + B - 1 of a per-epoch permutation seeded by (seed, epoch), so the stream's position is its whole
state and a resumed run sees the batches an uninterrupted one would have; val and test batches are fixed.
Metrics: loss (nats per masked word), perplexity, masked_accuracy, nsp_accuracy (with NSP).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqtool.by_length import refuse as refuse_by_length
from seqtool.data.batching import pad
from seqtool.data.parallel import numbered_lines, read_lines
from seqtool.data.text import hub_text, read_local, stdlib_source
from seqtool.data.vocab import PAD, WORDS_FILE, WordVocab, saved_vocabulary
from seqtool.decode.generate import Decoded, DecodeInput
from seqtool.decode.output import Text
from seqtool.decode.settings import DecodeOptions, Greedy, SearchSettings
from seqtool.errors import UserError
from seqtool.models.bert import IGNORE, Masking
from seqtool.tasks.base import Competence, Loss

CLS, SEP, MASK = "[CLS]", "[SEP]", "[MASK]"
BERT_SPECIALS = [CLS, SEP, MASK]  # ids 4, 5, 6, after <pad> <s> </s> <unk>: the layout model=bert expects
STREAMS = {"train": 0, "val": 1, "test": 2, "order": 3}
IS_NEXT, NOT_NEXT = 0, 1
SPLIT_NAMES = {"train": ("train",), "val": ("valid", "val", "dev"), "test": ("test",)}  # data_dir files


@dataclass
class MaskedBatch:
    tokens: Tensor  # shape: [B, T] the corrupted words and [SEP]s, PAD-padded
    segments: Tensor  # shape: [B, T] 0 for sentence A (and its [SEP]), 1 for B
    targets: Tensor  # shape: [B, T] the original id of each chosen word, IGNORE elsewhere
    is_next: Tensor | None  # shape: [B] IS_NEXT / NOT_NEXT, None without NSP


class MaskedLMTask:
    """BERT's pretraining task; `seqtool decode` fills the [MASK]s of each input line."""

    shape = "many-to-many synchronous"  # a prediction at every (masked) position (seqtool.shapes)

    def __init__(
        self,
        *,
        path: str | None,
        data_dir: str | None,
        hf_name: str | None,
        hf_column: str,
        hf_split: str,
        tsv_column: str | None,
        max_chars: int,
        val_fraction: float,
        test_fraction: float,
        max_vocab: int,
        seq_len: int,
        batch_size: int,
        mask_rate: float,
        mask_token_share: float,
        random_token_share: float,
        next_sentence: bool,
        eval_max_sequences: int,
        seed: int,
    ) -> None:
        if sum(bool(source) for source in (path, data_dir, hf_name)) > 1:
            raise ValueError("task.path, task.data_dir and task.hf_name each name the text; give one")
        if not 0 < mask_rate <= 1:
            raise ValueError(f"task.mask_rate={mask_rate} must be in (0, 1] (BERT's is 0.15)")
        if min(mask_token_share, random_token_share) < 0 or mask_token_share + random_token_share > 1:
            raise ValueError(
                f"task.mask_token_share={mask_token_share} and task.random_token_share={random_token_share} "
                "must be >= 0 with a sum <= 1 (BERT's 0.8 and 0.1 keep the last 10 % unchanged)"
            )
        if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise ValueError(
                "task.val_fraction and task.test_fraction must be in [0, 1) and leave room for train"
            )
        if seq_len < (7 if next_sentence else 4):
            raise ValueError(
                f"task.seq_len={seq_len} leaves no room for words beside [SEP] and the class position"
            )
        if min(batch_size, max_vocab - len(BERT_SPECIALS) - 4, eval_max_sequences) < 1:
            raise ValueError(
                "task.batch_size, task.eval_max_sequences >= 1 and task.max_vocab > 7 (the specials)"
            )
        self.path, self.data_dir, self.tsv_column, self.max_chars = path, data_dir, tsv_column, max_chars
        self.hf_name, self.hf_column, self.hf_split = hf_name, hf_column, hf_split
        self.fractions = (val_fraction, test_fraction)
        self.max_vocab, self.seq_len, self.batch_size, self.seed = max_vocab, seq_len, batch_size, seed
        self.masking = Masking(mask_rate, mask_token_share, random_token_share)
        self.next_sentence, self.eval_max_sequences = next_sentence, eval_max_sequences
        self.device, self.rank, self.world_size = torch.device("cpu"), 0, 1
        self.position = 0  # train batches this rank has taken
        self._order: tuple[int, np.ndarray] | None = None  # (epoch, its permutation of the train runs)

    # -------------------------------------------------------------------------------------- data
    def setup(
        self, run_dir: Path, *, rank: int = 0, world_size: int = 1, device: torch.device | None = None
    ) -> None:
        """Read the text, split it, build the vocabulary (or load the run's own), pack the runs."""
        self.rank, self.world_size, self.device = rank, world_size, device or torch.device("cpu")
        budget = (self.seq_len - 3) // 2 if self.next_sentence else self.seq_len - 2  # words per run
        sentences = self._split_sentences(budget)
        if not sentences["train"]:
            raise UserError(f"{self._origin()}: the training text has no words")
        vocab_path = Path(run_dir) / WORDS_FILE
        if saved_vocabulary(run_dir, [vocab_path]):
            self.vocab = WordVocab.load(vocab_path)
            if self.vocab.tokens[4:7] != BERT_SPECIALS:
                raise UserError(f"{vocab_path} has no {' '.join(BERT_SPECIALS)} after the four specials: "
                                "it is not a masked-LM vocabulary; train task=mlm in a new run")  # fmt: skip
        else:
            self.vocab = WordVocab.build(sentences["train"], max_size=self.max_vocab, specials=BERT_SPECIALS)
            if rank == 0:
                self.vocab.save(vocab_path)
        self.sep, self.mask_index = self.vocab.index[SEP], self.vocab.index[MASK]
        self.runs = {
            split: pack([self.vocab.encode(s) for s in text], budget) for split, text in sentences.items()
        }
        if self.next_sentence and len(self.runs["train"]) < 3:
            raise UserError(f"{self._origin()}: next-sentence prediction needs at least 3 runs of text "
                            f"in train, got {len(self.runs['train'])}; give more text")  # fmt: skip

    def _origin(self) -> str:
        for key, value in (("path", self.path), ("data_dir", self.data_dir), ("hf_name", self.hf_name)):
            if value:
                return f"task.{key}={value}"
        return "the embedded default"

    def _split_sentences(self, budget: int) -> dict[str, list[list[str]]]:
        """The words of train, val and test, a line longer than `budget` words cut into pieces. A split
        without a file of its own (every split but train of one text) is the tail fraction of train's."""
        if self.data_dir:
            files = split_files(Path(self.data_dir).expanduser())
            lines = {split: self._column(read_lines(file), file) for split, file in files.items()}
        elif self.hf_name:
            lines = {
                "train": hub_text(self.hf_name, self.hf_column, self.hf_split, self.max_chars).splitlines()
            }
        else:
            text = read_local(self.path, self.max_chars) if self.path else stdlib_source(self.max_chars)
            lines = {"train": self._column(text.splitlines(), self._origin())}
        sentences = {split: pieces(text, budget) for split, text in lines.items()}
        total = len(sentences["train"])
        for split, fraction in reversed(list(zip(("val", "test"), self.fractions))):  # [train | val | test]
            if split not in sentences:
                sentences["train"], sentences[split] = cut_tail(sentences["train"], round(total * fraction))
        return sentences

    def _column(self, lines: list[str], origin: Any) -> list[str]:
        """task.tsv_column: each line is tab-separated under a header line; keep that column's text."""
        if not self.tsv_column:
            return lines
        header = lines[0].split("\t") if lines else []
        if self.tsv_column not in header:
            raise UserError(f"{origin}: no column {self.tsv_column!r} in the header line {header}; "
                            "set task.tsv_column to one of them (or null for plain text)")  # fmt: skip
        column = header.index(self.tsv_column)
        return [fields[column] for fields in (line.split("\t") for line in lines[1:]) if len(fields) > column]

    def model_kwargs(self) -> dict[str, Any]:
        return {
            "vocab_size": len(self.vocab),
            "mask_index": self.mask_index,
            "next_sentence": self.next_sentence,
        }

    def difficulty(self, example: MaskedBatch) -> float:
        return float(example.tokens.shape[1])

    # ----------------------------------------------------------------------------------- batches
    def batches(
        self, split: str, *, train: bool, competence: Competence | None = None
    ) -> Iterator[MaskedBatch]:
        """The endless, resumable train stream, or one pass over the (capped) val or test runs."""
        return self._train_batches() if train else self._eval_batches(split)

    def _train_batches(self) -> Iterator[MaskedBatch]:
        count = self._instances("train")
        while True:
            index = self.position * self.world_size + self.rank  # ranks interleave
            self.position += 1
            slots = range(index * self.batch_size, (index + 1) * self.batch_size)
            yield self._batch(
                "train", [self._shuffled(slot, count) for slot in slots], STREAMS["train"], index
            )

    def _shuffled(self, slot: int, count: int) -> int:
        """The train instance at a position of the endless stream: epoch slot // count, permuted."""
        epoch = slot // count
        if self._order is None or self._order[0] != epoch:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, STREAMS["order"], epoch]))
            self._order = (epoch, rng.permutation(count))
        return int(self._order[1][slot % count])

    def _instances(self, split: str) -> int:
        """How many sequences a split makes: one per run, or one per run that has a next (NSP)."""
        if split not in self.runs:
            raise UserError(f"the masked-LM task has splits val and test, not {split!r}")
        return max(0, len(self.runs[split]) - 1) if self.next_sentence else len(self.runs[split])

    def _eval_batches(self, split: str) -> Iterator[MaskedBatch]:
        count = min(self._instances(split), self.eval_max_sequences)
        if self.next_sentence and len(self.runs[split]) < 3:  # a NotNext partner is neither A nor its next
            raise UserError(
                f"the {split} split has {len(self.runs[split])} runs of text; next-sentence prediction "
                "needs at least 3 (give more text, or task.next_sentence=false)"
            )
        if count == 0:
            raise UserError(f"the {split} split has no text (see task.val_fraction / task.test_fraction, "
                            "or the files of task.data_dir)")  # fmt: skip
        for number, start in enumerate(range(0, count, self.batch_size)):
            yield self._batch(
                split, list(range(start, min(start + self.batch_size, count))), STREAMS[split], number
            )

    def _batch(self, split: str, instances: list[int], stream: int, index: int) -> MaskedBatch:
        """The sequences of `instances`, masked; every draw from a generator of (seed, stream, index)."""
        sequence = np.random.SeedSequence([self.seed, stream, index])
        rng, generator = (
            np.random.default_rng(sequence),
            torch.Generator().manual_seed(int(sequence.generate_state(1)[0])),
        )
        runs, rows, segments, labels = self.runs[split], [], [], []
        for k in instances:
            first = runs[k] + [self.sep]
            second: list[int] = []
            if self.next_sentence:
                is_next = rng.random() < 0.5
                partner = k + 1 if is_next else random_other(rng, len(runs), (k, k + 1))
                second = runs[partner] + [self.sep]
                labels.append(IS_NEXT if is_next else NOT_NEXT)
            rows.append(first + second)
            segments.append([0] * len(first) + [1] * len(second))
        tokens = pad(rows, PAD)  # [B, T]
        corrupted, targets = self.masking.apply(
            tokens, mask_index=self.mask_index, vocab_size=len(self.vocab), generator=generator
        )
        to = lambda t: t.to(self.device)  # noqa: E731
        is_next = to(torch.tensor(labels)) if self.next_sentence else None
        return MaskedBatch(to(corrupted), to(pad(segments, 0)), to(targets), is_next)

    # ------------------------------------------------------------------------------ loss, metrics
    def loss(self, model: nn.Module, batch: MaskedBatch) -> Loss:
        """Summed cross-entropy of the chosen words; with NSP, count × its mean cross-entropy on top, so the
        trainer's mean is BERT's L = mean MLM + mean NSP."""
        chosen = batch.targets != IGNORE  # [B, T]
        logits, next_logits = model(batch.tokens, batch.segments, predict=chosen)  # [N, V], [B, 2] | None
        total = F.cross_entropy(logits.float(), batch.targets[chosen], reduction="sum")
        count = int(chosen.sum())
        if self.next_sentence:
            total = total + count * F.cross_entropy(next_logits.float(), batch.is_next)
        return Loss(total=total, count=count)

    def evaluate(
        self, model: nn.Module, split: str, search: Any = None, by_length: Any = None
    ) -> dict[str, float]:
        """loss (nats per masked word), perplexity, masked_accuracy; nsp_accuracy with NSP."""
        if by_length is not None:
            refuse_by_length("the masked-LM task")
        nats, right, count, next_right, sequences = 0.0, 0, 0, 0, 0
        with torch.no_grad():
            for batch in self._eval_batches(split):
                chosen = batch.targets != IGNORE
                logits, next_logits = model(batch.tokens, batch.segments, predict=chosen)
                targets = batch.targets[chosen]
                nats += float(F.cross_entropy(logits.float(), targets, reduction="sum"))
                right += int((logits.argmax(-1) == targets).sum())
                count += len(targets)
                if self.next_sentence:
                    next_right += int((next_logits.argmax(-1) == batch.is_next).sum())
                    sequences += len(batch.is_next)
        if count == 0:
            raise UserError(
                f"the {split} split has no word of the vocabulary to mask (only <unk> and specials)"
            )
        loss = nats / count
        metrics = {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "masked_accuracy": right / count}
        return metrics | ({"nsp_accuracy": next_right / sequences} if self.next_sentence else {})

    def add_split(self, name: str, *, src: Path, ref: Path) -> str:
        raise UserError("the masked-LM task scores its own splits; --src/--ref are for translation")

    # ------------------------------------------------------------------------------------ decode
    # `seqtool decode RUN --input FILE` (or --prime "a [MASK] line"): each line with its [MASK]s filled by
    # the model's likeliest word; [SEP] in a line starts sentence B.
    decode_output = Text(reads_prime=True)
    default_strategy = Greedy()
    end_token = None  # one prediction per [MASK], read off the logits: no search

    def decode_inputs(
        self, model: nn.Module, options: DecodeOptions, search: SearchSettings
    ) -> Iterator[list[DecodeInput]]:
        """Each input line as words, checked: a [MASK] to fill, no more positions than the model has."""
        if not isinstance(search.strategy, Greedy):
            raise UserError(
                "the masked LM fills each [MASK] with its likeliest word; --beam and sampling do not apply"
            )
        if options.input is None and not options.prime:
            raise UserError(
                "the masked LM fills [MASK]s in text: give --input FILE (or - for stdin) or --prime TEXT"
            )
        limit = model.max_positions
        for chunk in numbered_lines(options.input, options.prime):
            items = []
            for number, line in chunk:
                words = line.split()
                if MASK not in words:
                    raise UserError(f"input line {number} has no {MASK} to fill: {line[:60]!r}")
                if len(words) + 2 > limit:
                    raise UserError(
                        f"input line {number} has {len(words)} words; the model takes at most {limit - 2} "
                        f"(model.max_positions={limit}, with the class position and [SEP])"
                    )
                items.append(DecodeInput(f"line {number}", words, len(words), index=number))
            yield items

    def decode(self, model: nn.Module, inputs: list[DecodeInput], search: Any = None) -> list[Decoded]:
        """Per input: the likeliest word (never a special) at each [MASK], and the summed log-probability."""
        rows, segments = [], []
        for item in inputs:
            words = item.value if item.value[-1] == SEP else [*item.value, SEP]
            ids = self.vocab.encode(words)
            first_b = ids.index(self.sep) + 1
            rows.append(ids)
            segments.append([0] * first_b + [1] * (len(ids) - first_b))
        tokens = pad(rows, PAD).to(self.device)
        with torch.no_grad():
            logits, _ = model(tokens, pad(segments, 0).to(self.device))  # [B, T, V]
        log_probs = F.log_softmax(logits.float(), -1)
        log_probs[..., : self.mask_index + 1] = -math.inf  # a special is never the answer
        best, chosen = log_probs.max(-1)  # [B, T]
        results = []
        for row in range(len(inputs)):
            at = (tokens[row] == self.mask_index).nonzero().flatten()
            results.append(
                Decoded(
                    tokens=[chosen[row, at].tolist()], scores=[float(best[row, at].sum())], attention=None
                )
            )
        return results

    def render(self, item: DecodeInput, tokens: list[int]) -> str:
        """The input line with its [MASK]s replaced, in order, by the predicted words."""
        fill = iter(self.vocab.decode(tokens))
        return " ".join(next(fill) if word == MASK else word for word in item.value)

    def plot_attention(self, item: DecodeInput, decoded: Any, directory: Path) -> int:
        return 0  # the fill-in reads no attention weights

    def preview(self, model: nn.Module) -> str:
        """Two val sequences, each masked word as [prediction|truth]."""
        batch = next(self._eval_batches("val"))
        chosen = batch.targets != IGNORE
        with torch.no_grad():
            logits, _ = model(batch.tokens, batch.segments)  # [B, T, V]
        guess = logits.argmax(-1)
        lines = []
        for row in range(min(2, len(batch.tokens))):
            words = []
            for t, token in enumerate(batch.tokens[row].tolist()):
                if token == PAD:
                    break
                truth = int(batch.targets[row, t])
                shown = self.vocab.tokens[token]
                words.append(
                    f"[{self.vocab.tokens[int(guess[row, t])]}|{self.vocab.tokens[truth]}]"
                    if chosen[row, t]
                    else shown
                )
            lines.append(" ".join(words) + "\n")
        return "".join(lines)

    # ------------------------------------------------------------------------------ resumability
    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])


def pack(sentences: list[list[int]], budget: int) -> list[list[int]]:
    """Consecutive sentences (each of at most `budget` tokens) joined into runs of at most `budget`."""
    runs, current = [], []
    for sentence in sentences:
        if current and len(current) + len(sentence) > budget:
            runs.append(current)
            current = []
        current = current + sentence
    return runs + ([current] if current else [])


def random_other(rng: np.random.Generator, count: int, avoid: tuple[int, int]) -> int:
    """A run index uniform over 0..count-1 without the two of `avoid` (A itself and its true next)."""
    pick = int(rng.integers(count - 2))
    for skipped in sorted(avoid):
        pick += pick >= skipped
    return pick


def pieces(lines: list[str], budget: int) -> list[list[str]]:
    """The words of each line with words, a line of more than `budget` words cut into pieces of `budget`."""
    sentences = (line.split() for line in lines)
    return [words[i : i + budget] for words in sentences for i in range(0, len(words), budget)]


def cut_tail(items: list, count: int) -> tuple[list, list]:
    """(head, the last `count` items)."""
    return items[: len(items) - count], items[len(items) - count :]


def split_files(folder: Path) -> dict[str, Path]:
    """task.data_dir's files by split: the one whose name holds train, valid/val/dev, test (.gz too)."""
    if not folder.is_dir():
        raise UserError(f"task.data_dir={folder}: no such folder")
    found: dict[str, Path] = {}
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        stem = file.name.lower()
        for split, names in SPLIT_NAMES.items():
            if split not in found and any(name in stem.split(".") or stem.startswith(name) for name in names):
                found[split] = file
    if "train" not in found:
        raise UserError(f"task.data_dir={folder} has no training file (a name with 'train', e.g. train.txt)")
    return found
