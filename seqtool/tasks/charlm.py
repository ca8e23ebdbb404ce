"""Character language modelling with truncated backpropagation through time (TBPTT).

StreamLMTask holds what every language model over contiguous streams shares (the word LM of
seqtool/tasks/lm.py too): the streams, the loss with the carried state, evaluation in nats per token,
decoding from a prime, and the resumable stream position. CharLMTask reads characters.

The training text is cut into B contiguous streams laid side by side, and each step takes the next
L columns of every stream (L grows with the curriculum competence)::

    text:      a b c d e f g h i j k l m n o p q r s t u v w x        (one split, N characters)
    stream 0:  a b c d e f g h     step t:  x = columns [c, c+L)
    stream 1:  i j k l m n o p              y = columns [c+1, c+L+1)      (x shifted by one)
    stream 2:  q r s t u v w x              c += L

Row b of one step continues row b of the step before, so the model's hidden state is carried from
segment to segment (detached: gradients stop at the segment boundary). When the streams run out they
wrap to column 0 and the carried state is reset.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqtool.by_length import refuse as refuse_by_length
from seqtool.data.io import read_input
from seqtool.data.text import hub_text, read_local, stdlib_source
from seqtool.data.vocab import CharVocab, saved_vocabulary
from seqtool.decode.generate import Decoded, DecodeInput, Start, decode_batched
from seqtool.decode.output import Text
from seqtool.decode.search import prime
from seqtool.decode.settings import DecodeOptions, Sampling, SearchSettings
from seqtool.errors import UserError
from seqtool.models.base import detach_state, map_tensors
from seqtool.tasks.base import Competence, Loss

VOCAB_FILE = Path("vocab") / "chars.json"


@dataclass
class Segment:
    x: Tensor  # shape: [B, L] input tokens
    y: Tensor  # shape: [B, L] the next token of each position
    reset: bool  # the streams wrapped: start from a fresh state


class StreamLMTask:
    """Next-token prediction over B contiguous streams. A subclass reads its corpus and vocabulary in
    setup(), hands the training ids to _set_train_rows(), and says how tokens read and print
    (_eval_rows, _encode_prime, _join, _start_id)."""

    shape = "many-to-many synchronous"  # a prediction at every position (seqtool.shapes)
    unit = "tokens"  # what the streams hold, as messages name it
    name = "language model"  # the task, as messages name it

    def _init_streams(self, batch_size: int, seq_len: int, min_seq_len: int) -> None:
        if batch_size < 1 or seq_len < 1 or not 1 <= min_seq_len <= seq_len:
            raise ValueError(
                "task.batch_size and task.seq_len must be ≥ 1, and 1 ≤ task.min_seq_len ≤ seq_len"
            )
        self.batch_size, self.seq_len, self.min_seq_len = batch_size, seq_len, min_seq_len
        self.device = torch.device("cpu")
        self.cursor, self.epoch, self.carry = 0, 0, None

    def _set_train_rows(self, ids: Tensor, rank: int, world_size: int) -> None:
        """This rank's batch_size of the batch_size × world_size streams cut from the training ids."""
        rows = self._rows(ids, self.batch_size * world_size)
        # Kept on the device: each step then slices a window without a host-to-device copy.
        self.train_rows = rows[rank * self.batch_size : (rank + 1) * self.batch_size].to(self.device)

    def _rows(self, ids: Tensor, streams: int) -> Tensor:
        """The ids as `streams` contiguous rows. shape: [streams, N // streams]"""
        length = len(ids) // streams
        if length < 2:
            raise UserError(
                f"the corpus split is too small: {len(ids)} {self.unit} for {streams} streams; "
                "give more text or lower task.batch_size"
            )
        return ids[: streams * length].view(streams, length)

    def _eval_streams(self, length: int) -> int:
        """How many streams an evaluation split of `length` tokens is cut into (at most batch_size)."""
        return min(self.batch_size, max(1, length // (self.seq_len + 1)))

    def steps_per_epoch(self) -> int:
        """Segments in one pass over the training streams at the full seq_len (the last may be shorter)."""
        return math.ceil((self.train_rows.shape[1] - 1) / self.seq_len)

    def difficulty(self, example: Segment) -> float:
        return float(example.x.shape[1])

    def segment_length(self, competence: float) -> int:
        """The curriculum over segment length: competence c unlocks segments up to c · seq_len."""
        return max(self.min_seq_len, min(self.seq_len, math.ceil(competence * self.seq_len)))

    def batches(self, split: str, *, train: bool, competence: Competence | None = None) -> Iterator[Segment]:
        """The endless, resumable train stream, or one pass over an evaluation split."""
        if not train:
            return self._eval_segments(split)
        return self._train_segments(competence or (lambda: 1.0))

    def _train_segments(self, competence: Competence) -> Iterator[Segment]:
        width = self.train_rows.shape[1]
        while True:
            length = min(self.segment_length(competence()), width - 1 - self.cursor)
            reset = length < 1 or self.cursor == 0
            if length < 1:  # the streams ran out: wrap around (an epoch)
                self.cursor, self.epoch = 0, self.epoch + 1
                length = min(self.segment_length(competence()), width - 1)
            window = self.train_rows[:, self.cursor : self.cursor + length + 1].to(self.device)
            self.cursor += length
            yield Segment(x=window[:, :-1], y=window[:, 1:], reset=reset)

    def _eval_segments(self, split: str) -> Iterator[Segment]:
        rows = self._eval_rows(split)
        for start in range(0, rows.shape[1] - 1, self.seq_len):
            window = rows[:, start : start + self.seq_len + 1].to(self.device)
            yield Segment(x=window[:, :-1], y=window[:, 1:], reset=start == 0)

    def _eval_rows(self, split: str) -> Tensor:
        """An evaluation split as contiguous rows. shape: [streams, N]"""
        raise NotImplementedError

    # ------------------------------------------------------------------------------ loss, metrics
    def loss(self, model: nn.Module, batch: Segment) -> Loss:
        """Summed cross-entropy over the segment; the hidden state carries to the next segment."""
        carry = None if batch.reset else self.carry
        logits, state = model(batch.x, carry)  # shape: [B, L, V]
        self.carry = detach_state(state)
        total = F.cross_entropy(logits.flatten(0, 1).float(), batch.y.flatten(), reduction="sum")
        return Loss(total=total, count=batch.y.numel())

    def nats_per_token(self, model: nn.Module, split: str) -> float:
        """Mean cross-entropy of every next token of a split, the state carried across segments."""
        total, count, state = 0.0, 0, None
        with torch.no_grad():
            for segment in self._eval_segments(split):
                logits, state = model(segment.x, state)
                total += float(
                    F.cross_entropy(logits.flatten(0, 1).float(), segment.y.flatten(), reduction="sum")
                )
                count += segment.y.numel()
        return total / count

    def add_split(self, name: str, *, src: Path, ref: Path) -> str:
        raise UserError(f"the {self.name} scores its own splits; --src/--ref are for translation")

    # ------------------------------------------------------------------------------------ decode
    decode_output = Text(blocks=True, reads_prime=True)  # samples span lines, a blank line between
    default_strategy = Sampling()
    end_token = None  # a language model of running text has no end
    DEFAULT_LENGTH = 200  # tokens generated without --max-len
    PREVIEW_LENGTH = 300  # tokens of the sample written to samples/ as training goes

    def decode_inputs(
        self, model: nn.Module, options: DecodeOptions, search: SearchSettings
    ) -> Iterator[list[DecodeInput]]:
        """--num continuations of --prime (or of the text of --input), decoded together."""
        text = read_input(options.input) if options.input else options.prime
        ids = self._encode_prime(text) if text else [self._start_id()]
        max_len = search.max_len or self.DEFAULT_LENGTH
        limit = getattr(model, "max_positions", None)  # a Transformer LM's position table
        if limit is not None and len(ids) + max_len > limit:
            raise UserError(
                f"prime ({len(ids)}) + --max-len ({max_len}) exceed the model's {limit} positions"
            )
        yield [DecodeInput(text, ids, len(ids), copy=n) for n in range(options.num)]

    def decode(self, model: nn.Module, inputs: list[DecodeInput], search: SearchSettings) -> list[Decoded]:
        return decode_batched(model, inputs, search, start=self._start, budget=2**31 - 1)

    def _start(self, model: nn.Module, inputs: list[DecodeInput], search: SearchSettings) -> Start:
        """Feed the primes (all of one length) but their last token, which is the first input."""
        prefix = torch.tensor([item.value for item in inputs], device=self.device)  # shape: [B, P]
        state = model.init_state(None, len(inputs))
        if prefix.shape[1] > 1:
            _, state = prime(model, state, prefix[:, :-1])
        return Start(state, prefix[:, -1], search.max_len or self.DEFAULT_LENGTH, eos=None)

    def render(self, item: DecodeInput, tokens: list[int]) -> str:
        """The prime and its continuation."""
        return self._join(item.label, tokens)

    def plot_attention(self, item: DecodeInput, decoded: Decoded, directory: Path) -> int:
        return 0  # a recurrent language model has no attention

    def preview(self, model: nn.Module) -> str:
        search = SearchSettings(Sampling(temperature=0.8), max_len=self.PREVIEW_LENGTH, seed=0)
        item = DecodeInput("", [self._start_id()], 1)
        return self.render(item, self.decode(model, [item], search)[0].tokens[0])

    def _encode_prime(self, text: str) -> list[int]:
        """The ids of --prime (or --input) text."""
        raise NotImplementedError

    def _join(self, prime: str, tokens: list[int]) -> str:
        """The prime, then the sampled ids, as text."""
        raise NotImplementedError

    def _start_id(self) -> int:
        """The id an unprimed sample starts from."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------ resumability
    def state_dict(self) -> dict[str, Any]:
        carry = map_tensors(lambda t: t.detach().cpu(), self.carry)
        return {"cursor": self.cursor, "epoch": self.epoch, "carry": carry}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cursor, self.epoch = int(state["cursor"]), int(state["epoch"])
        self.carry = map_tensors(lambda t: t.to(self.device), state["carry"])


class CharLMTask(StreamLMTask):
    """Next-character prediction; metrics loss (nats), perplexity and bits per character."""

    unit, name = "characters", "char LM"

    def __init__(
        self,
        *,
        path: str | None,
        hf_name: str | None,
        hf_column: str,
        hf_split: str,
        max_chars: int,
        val_fraction: float,
        test_fraction: float,
        batch_size: int,
        seq_len: int,
        min_seq_len: int,
        eval_max_chars: int,
    ) -> None:
        if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise ValueError(
                "task.val_fraction and task.test_fraction must be in [0, 1) and leave room for train"
            )
        self._init_streams(batch_size, seq_len, min_seq_len)
        self.path, self.hf_name, self.hf_column, self.hf_split = path, hf_name, hf_column, hf_split
        self.max_chars, self.eval_max_chars = max_chars, eval_max_chars
        self.fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)

    # -------------------------------------------------------------------------------------- data
    def setup(
        self, run_dir: Path, *, rank: int = 0, world_size: int = 1, device: torch.device | None = None
    ) -> None:
        """Read the corpus, split it, and build the vocabulary (or load the run's own)."""
        self.device = device or torch.device("cpu")
        text = self._read_corpus()
        cut_val = int(len(text) * self.fractions[0])
        cut_test = int(len(text) * (self.fractions[0] + self.fractions[1]))
        vocab_path = Path(run_dir) / VOCAB_FILE
        if saved_vocabulary(run_dir, [vocab_path]):
            self.vocab = CharVocab.load(vocab_path)
        else:
            self.vocab = CharVocab.build(text[:cut_val])
            if rank == 0:
                self.vocab.save(vocab_path)
        self.splits = {"train": text[:cut_val], "val": text[cut_val:cut_test], "test": text[cut_test:]}
        self._set_train_rows(self._ids(self.splits["train"]), rank, world_size)

    def _read_corpus(self) -> str:
        if self.path:
            return read_local(self.path, self.max_chars)
        if self.hf_name:
            return hub_text(self.hf_name, self.hf_column, self.hf_split, self.max_chars)
        return stdlib_source(self.max_chars)

    def _ids(self, text: str) -> Tensor:
        """Ids of the characters the vocabulary knows (val/test may hold some train lacks)."""
        return torch.tensor(self.vocab.encode_lossy(text), dtype=torch.long)

    def _eval_rows(self, split: str) -> Tensor:
        text = self.splits[split][: self.eval_max_chars]
        if len(text) < 2:
            raise UserError(f"the {split} split is empty (see task.val_fraction / task.test_fraction)")
        return self._rows(self._ids(text), self._eval_streams(len(text)))

    def model_kwargs(self) -> dict[str, Any]:
        return {"vocab_size": len(self.vocab)}

    def evaluate(
        self, model: nn.Module, split: str, search: Any = None, by_length: Any = None
    ) -> dict[str, float]:
        """loss (nats per character), perplexity and bits per character over (a capped prefix of) a split."""
        if by_length is not None:
            refuse_by_length(f"the {self.name}")
        loss = self.nats_per_token(model, split)
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "bpc": loss / math.log(2)}

    # ------------------------------------------------------------------------------------ decode
    def _encode_prime(self, text: str) -> list[int]:
        return self.vocab.encode(text)

    def _join(self, prime: str, tokens: list[int]) -> str:
        return prime + self.vocab.decode(tokens)

    def _start_id(self) -> int:
        return self.vocab.index.get("\n", 0)
