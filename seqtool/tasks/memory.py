"""The long-dependency and memory problems as one task family:
`task.problem=adding|copy|ntm_copy|repeat_copy`.

    problem      shape                      loss on              metrics                 chance baseline
    adding       many-to-one                the last state       mse, accuracy           baseline_mse = 1/6
                                                                 (|error| < 0.04)
    copy         many-to-many synchronous   every position       loss (nats/step),       baseline_loss =
                                                                 accuracy on the         10 ln 8 / (T + 20)
                                                                 10 recalled symbols
    ntm_copy,    many-to-many synchronous   the output phase     loss (nats/bit),        half the scored
    repeat_copy  (one output per input      (binary cross-       bits_wrong per          bits (a fair coin
                 step)                      entropy per bit)     sequence, also at       per bit), ln 2
                                                                 each of eval_lengths    nats per bit

adding and copy take the lag T as `task.lag`; the bit problems of the Neural Turing Machine (Graves et al.
2014) take `task.width` bits per vector, train on `task.min_length`..`task.length` vectors (one length per
batch, drawn uniformly) and are scored at every length of `task.eval_lengths`: `bits_wrong` and `loss`
over the lengths within the training range (the numbers to select checkpoints by), `bits_wrong_at_L` at
each length L, inside the range or beyond it (generalisation).

The bit problems are synchronous here as copy-memory is: the model emits one vector per input step and the
loss counts the steps after the delimiter, so any recurrent body (model=recurrent, model=ntm) serves them.

Data is generated on the fly (seqtool/data/memory_problems.py). Train batch i comes from its own
generator seeded by (seed, train, i), so the stream's position is the whole of its state and a resumed
run sees exactly the batches an uninterrupted one would have; val and test are fixed sets from fixed
seeds. The curriculum, when the trainer has one, is over the lag (competence c trains at lag ceil(c · T))
or over the longest sequence (lengths min_length..ceil(c · length)).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqtool.by_length import refuse as refuse_by_length
from seqtool.data import memory_problems as problems
from seqtool.decode.generate import Decoded, DecodeInput
from seqtool.decode.output import Text
from seqtool.decode.settings import DecodeOptions, Greedy, SearchSettings
from seqtool.errors import UserError
from seqtool.tasks.base import Competence, Loss

STREAMS = {"train": 0, "val": 1, "test": 2}
Problem = Literal["adding", "copy", "ntm_copy", "repeat_copy"]
BIT_PROBLEMS = ("ntm_copy", "repeat_copy")


@dataclass
class MemoryBatch:
    x: Tensor  # shape: adding [B, T, 2] float (value, marker); copy [B, T + 20] long tokens;
    #            bits [B, S, W + 1] (ntm_copy) or [B, S, W + 2] (repeat_copy) float
    y: Tensor  # shape: adding [B] float sums; copy [B, T + 20] long, one target per step;
    #            bits [B, S, W] (ntm_copy) or [B, S, W + 1] (repeat_copy: the end marker last) float
    scored: Tensor | None = None  # bits: [B, S] bool, the steps the loss and the metrics count


class MemoryTask:
    """Adding or copy-memory at lag T; evaluate() reports the chance baseline beside the model."""

    # The shape of each problem: `seqtool.shapes` reads it to refuse a model that cannot serve it.
    shape_variants = {
        "task.problem=adding": "many-to-one",
        "task.problem=copy": "many-to-many synchronous",
        "task.problem=ntm_copy": "many-to-many synchronous",
        "task.problem=repeat_copy": "many-to-many synchronous",
    }

    def __init__(
        self,
        *,
        problem: Problem,
        lag: int,
        min_lag: int,
        batch_size: int,
        val_size: int,
        test_size: int,
        seed: int,
        # the bit problems' keys (conf/task/memory.yaml); adding and copy ignore them, so a caller that
        # builds one of those need not name them
        width: int = 8,
        length: int = 20,
        min_length: int = 1,
        max_repeats: int = 10,
        eval_lengths: list[int] | tuple[int, ...] = (10, 20),
    ) -> None:
        if problem not in ("adding", "copy", *BIT_PROBLEMS):
            raise ValueError(f"task.problem={problem!r}: use adding, copy, ntm_copy or repeat_copy")
        smallest = 2 if problem == "adding" else 1
        if min(lag, min_lag) < smallest:
            raise ValueError(f"the {problem} problem needs task.lag and task.min_lag ≥ {smallest}")
        if min(batch_size, val_size, test_size) < 1:
            raise ValueError("task.batch_size, task.val_size and task.test_size must be ≥ 1")
        self.eval_lengths = tuple(sorted({int(n) for n in eval_lengths}))
        if problem in BIT_PROBLEMS:
            _check_bit_keys(width, length, min_length, max_repeats, self.eval_lengths)
        self.problem, self.lag, self.min_lag = problem, lag, min_lag
        self.width, self.length, self.min_length, self.max_repeats = width, length, min_length, max_repeats
        self.batch_size, self.seed = batch_size, seed
        self.sizes = {"val": val_size, "test": test_size}
        self.device, self.rank, self.world_size = torch.device("cpu"), 0, 1
        self.position = 0  # train batches this rank has taken
        self._fixed: dict[str, MemoryBatch] = {}
        self._fixed_by_length: dict[str, dict[int, MemoryBatch]] = {}

    @property
    def bits(self) -> bool:
        """One of the NTM's bit problems (ntm_copy, repeat_copy)."""
        return self.problem in BIT_PROBLEMS

    @property
    def shape(self) -> str:
        return self.shape_variants[f"task.problem={self.problem}"]

    # -------------------------------------------------------------------------------------- data
    def setup(
        self, run_dir: Path, *, rank: int = 0, world_size: int = 1, device: torch.device | None = None
    ) -> None:
        """Nothing to read: the data is generated. Remember the device and this rank's share."""
        self.rank, self.world_size = rank, world_size
        self.device = device or torch.device("cpu")

    def model_kwargs(self) -> dict[str, Any]:
        """adding: 2 real inputs (value, marker), 1 output from the last state; copy: 10 tokens in and out;
        bits: W bits and a delimiter (and the repeat count) in, W bits (and the end marker) out per step."""
        if self.problem == "adding":
            return {"input_size": 2, "output_size": 1, "many_to_one": True}
        if self.problem == "ntm_copy":
            return {"input_size": self.width + 1, "output_size": self.width}
        if self.problem == "repeat_copy":
            return {"input_size": self.width + 2, "output_size": self.width + 1}
        return {"vocab_size": problems.COPY_VOCAB}

    def generate(self, rng, count: int, lag: int) -> MemoryBatch:
        """`count` sequences of the problem at `lag` (bits: of `lag` vectors), on the task's device."""
        if self.problem == "ntm_copy":
            arrays = problems.ntm_copy(rng, count, lag, self.width)
        elif self.problem == "repeat_copy":
            arrays = problems.repeat_copy(rng, count, lag, self.width, self.max_repeats)
        else:
            arrays = (problems.adding if self.problem == "adding" else problems.copy_memory)(rng, count, lag)
        return MemoryBatch(*(torch.from_numpy(array).to(self.device) for array in arrays))

    def difficulty(self, example: MemoryBatch) -> float:
        """The lag T of a batch (bits: the number of vectors L to copy, the step of the delimiter)."""
        length = example.x.shape[1]
        if self.bits:
            return float(example.x[0, :, self.width].argmax())
        return float(length if self.problem == "adding" else length - 2 * problems.COPY_LENGTH)

    def lag_for(self, competence: float) -> int:
        """The curriculum over the lag: competence c trains at lag ceil(c · T), within [min_lag, T]."""
        return min(self.lag, max(self.min_lag, math.ceil(competence * self.lag)))

    def batches(
        self, split: str, *, train: bool, competence: Competence | None = None
    ) -> Iterator[MemoryBatch]:
        """The endless, resumable train stream, or one pass over the fixed val or test set."""
        if train:
            return self._train_batches(competence or (lambda: 1.0))
        return self._eval_batches(split)

    def length_for(self, competence: float) -> int:
        """The curriculum over the bit problems' longest length: ceil(c · length) in [min_length, length]."""
        return min(self.length, max(self.min_length, math.ceil(competence * self.length)))

    def _train_batches(self, competence: Competence) -> Iterator[MemoryBatch]:
        while True:
            index = self.position * self.world_size + self.rank  # ranks interleave
            rng = problems.seeded(self.seed, STREAMS["train"], index)
            self.position += 1
            if self.bits:  # one length per batch, uniform over the (curriculum's) training range
                lag = int(rng.integers(self.min_length, self.length_for(competence()) + 1))
            else:
                lag = self.lag_for(competence())
            yield self.generate(rng, self.batch_size, lag)

    def fixed_set(self, split: str) -> MemoryBatch:
        """The whole val or test set (generated once from its own seed), always at the full lag."""
        if split not in self.sizes:
            raise UserError(f"the memory task has splits val and test, not {split!r}")
        if self.bits:
            raise UserError(f"the {self.problem} problem's {split} set is one set per length (fixed_lengths)")
        if split not in self._fixed:
            rng = problems.seeded(self.seed, STREAMS[split], 0)
            self._fixed[split] = self.generate(rng, self.sizes[split], self.lag)
        return self._fixed[split]

    def fixed_lengths(self, split: str) -> dict[int, MemoryBatch]:
        """Bit problems: val_size (test_size) sequences at each of eval_lengths, each from its own seed."""
        if split not in self.sizes:
            raise UserError(f"the memory task has splits val and test, not {split!r}")
        if split not in self._fixed_by_length:
            self._fixed_by_length[split] = {
                length: self.generate(
                    problems.seeded(self.seed, STREAMS[split], length), self.sizes[split], length
                )
                for length in self.eval_lengths
            }
        return self._fixed_by_length[split]

    def _eval_batches(self, split: str) -> Iterator[MemoryBatch]:
        data = self.fixed_set(split)
        for start in range(0, len(data.y), self.batch_size):
            end = start + self.batch_size
            yield MemoryBatch(x=data.x[start:end], y=data.y[start:end])

    def _length_batches(self, data: MemoryBatch) -> Iterator[MemoryBatch]:
        for start in range(0, len(data.y), self.batch_size):
            rows = slice(start, start + self.batch_size)
            yield MemoryBatch(x=data.x[rows], y=data.y[rows], scored=data.scored[rows])

    # ------------------------------------------------------------------------------ loss, metrics
    def loss(self, model: nn.Module, batch: MemoryBatch) -> Loss:
        """adding: squared error of the prediction from the last state, per sequence;
        copy: cross-entropy at every position, per step; bits: binary cross-entropy per scored bit."""
        outputs, _ = model(batch.x)  # adding [B, 1]; copy [B, T + 20, V]; bits [B, S, O] logits
        if self.bits:
            total = F.binary_cross_entropy_with_logits(
                outputs[batch.scored].float(), batch.y[batch.scored], reduction="sum"
            )  # over [scored steps, O]
            return Loss(total=total, count=batch.y[batch.scored].numel())
        if self.problem == "adding":
            error = outputs.float().squeeze(-1) - batch.y  # [B]
            return Loss(total=error.pow(2).sum(), count=batch.y.numel())
        total = F.cross_entropy(outputs.flatten(0, 1).float(), batch.y.flatten(), reduction="sum")
        return Loss(total=total, count=batch.y.numel())

    def evaluate(
        self, model: nn.Module, split: str, search: Any = None, by_length: Any = None
    ) -> dict[str, float]:
        """The model's metrics over a fixed split, with the chance baselines beside them."""
        if by_length is not None:
            refuse_by_length("the memory task")
        with torch.no_grad():
            if self.bits:
                return self._evaluate_bits(model, split)
            if self.problem == "adding":
                return self._evaluate_adding(model, split)
            return self._evaluate_copy(model, split)

    def _evaluate_adding(self, model: nn.Module, split: str) -> dict[str, float]:
        squared, solved, count = 0.0, 0, 0
        for batch in self._eval_batches(split):
            error = model(batch.x)[0].float().squeeze(-1) - batch.y  # [B]
            squared += float(error.pow(2).sum())
            solved += int((error.abs() < problems.ADDING_TOLERANCE).sum())
            count += len(batch.y)
        tolerance = problems.ADDING_TOLERANCE
        return {
            "loss": squared / count,
            "mse": squared / count,
            "baseline_mse": problems.adding_baseline_mse(),
            "accuracy": solved / count,
            # predicting 1: P(|u + v - 1| < ε) under the triangular density of u + v
            "baseline_accuracy": 2 * tolerance - tolerance**2,
        }

    def _evaluate_copy(self, model: nn.Module, split: str) -> dict[str, float]:
        total, correct, steps, recalled = 0.0, 0, 0, 0
        for batch in self._eval_batches(split):
            logits = model(batch.x)[0].float()  # [B, L, V]
            total += float(F.cross_entropy(logits.flatten(0, 1), batch.y.flatten(), reduction="sum"))
            steps += batch.y.numel()
            guess = logits[:, -problems.COPY_LENGTH :].argmax(-1)  # [B, 10]
            correct += int((guess == batch.y[:, -problems.COPY_LENGTH :]).sum())
            recalled += guess.numel()
        return {
            "loss": total / steps,
            "baseline_loss": problems.copy_baseline_loss(self.lag),
            "accuracy": correct / recalled,
            "baseline_accuracy": 1 / problems.COPY_ALPHABET,
        }

    def _evaluate_bits(self, model: nn.Module, split: str) -> dict[str, float]:
        """Bits wrong per sequence (and the fair coin's) at each eval length; loss, cost and bits_wrong
        over the lengths within the training range."""
        metrics: dict[str, float] = {}
        inside = {"nats": 0.0, "bits": 0, "wrong": 0.0, "coin": 0.0, "sequences": 0}
        for length, data in self.fixed_lengths(split).items():
            nats, scored_bits, wrong = 0.0, 0, 0
            for batch in self._length_batches(data):
                logits = model(batch.x)[0].float()  # [B, S, O]
                mask = batch.scored[..., None].expand_as(logits)  # [B, S, O]
                nats += float(
                    F.binary_cross_entropy_with_logits(logits[mask], batch.y[mask], reduction="sum")
                )
                wrong += int(((logits > 0) != (batch.y > 0.5))[mask].sum())
                scored_bits += int(mask.sum())
            count = len(data.y)
            metrics[f"bits_wrong_at_{length}"] = wrong / count
            metrics[f"baseline_bits_wrong_at_{length}"] = scored_bits / 2 / count  # a fair coin per bit
            if self.min_length <= length <= self.length:
                for key, value in zip(inside, (nats, scored_bits, wrong, scored_bits / 2, count)):
                    inside[key] += value
        sequences = inside["sequences"]
        return {
            "loss": inside["nats"] / inside["bits"],
            "baseline_loss": math.log(2),
            # the paper's Fig. 3/4 measure: binary cross-entropy in bits, summed over a sequence
            "cost_per_sequence": inside["nats"] / math.log(2) / sequences,
            "bits_wrong": inside["wrong"] / sequences,
            "baseline_bits_wrong": inside["coin"] / sequences,
            **metrics,
        }

    # ------------------------------------------------------------------------------------ decode
    # `seqtool decode` shows the model's answers on the first --num val sequences, one line each; the
    # answer is read off the outputs (the recalled symbols' argmax, or the predicted sum), not searched.
    decode_output = Text(labelled=True)  # val:INDEX<TAB>the answer beside what was asked
    default_strategy = Greedy()
    end_token = None  # outputs have their own length: no beam search

    def decode_inputs(
        self, model: nn.Module, options: DecodeOptions, search: SearchSettings
    ) -> Iterator[list[DecodeInput]]:
        """The first --num sequences of the val set (by index), decoded together."""
        if options.input:
            raise UserError("the memory task decodes its own val sequences; --input does not apply")
        if not isinstance(search.strategy, (Greedy, type(None))):
            raise UserError(
                "the memory task reads its answers off the outputs; --beam and sampling do not apply"
            )
        if self.bits:  # index i: the (i // n)-th sequence of the (i mod n)-th of the n eval lengths
            count = min(options.num, self.sizes["val"] * len(self.eval_lengths))
            yield [DecodeInput(self._bits_label(i), i) for i in range(count)]
            return
        count = min(options.num, self.sizes["val"])
        yield [DecodeInput(f"val:{i}", i) for i in range(count)]

    def _bits_sequence(self, index: int) -> MemoryBatch:
        """The val sequence of a decode index, as a batch of one."""
        length = self.eval_lengths[index % len(self.eval_lengths)]
        data, row = self.fixed_lengths("val")[length], index // len(self.eval_lengths)
        return MemoryBatch(
            x=data.x[row : row + 1], y=data.y[row : row + 1], scored=data.scored[row : row + 1]
        )

    def _bits_label(self, index: int) -> str:
        count = len(self.eval_lengths)
        return f"val:length={self.eval_lengths[index % count]}:{index // count}"

    def decode(self, model: nn.Module, inputs: list[DecodeInput], search: Any = None) -> list[Decoded]:
        """One answer per val index: the 10 recalled symbols (copy), [the predicted sum] (adding), or the
        output vectors of the scored steps as lists of 0/1 (bits)."""
        if self.bits:
            return [self._decode_bits(model, item.value) for item in inputs]
        data = self.fixed_set("val")
        rows = torch.tensor([item.value for item in inputs], device=self.device)
        with torch.no_grad():
            outputs = model(data.x[rows])[0].float()  # adding [N, 1]; copy [N, L, V]
        if self.problem == "adding":
            answers = outputs[:, 0].tolist()
            return [Decoded(tokens=[[answer]], scores=[0.0], attention=None) for answer in answers]
        recalled = outputs[:, -problems.COPY_LENGTH :].argmax(-1).tolist()  # [N, 10]
        return [Decoded(tokens=[symbols], scores=[0.0], attention=None) for symbols in recalled]

    def _decode_bits(self, model: nn.Module, index: int) -> Decoded:
        sequence = self._bits_sequence(index)
        with torch.no_grad():
            logits = model(sequence.x)[0][0]  # [S, O]
        answer = (logits[sequence.scored[0]] > 0).int().tolist()  # [scored steps, O]
        return Decoded(tokens=[answer], scores=[0.0], attention=None)

    def render(self, item: DecodeInput, tokens: list) -> str:
        """What had to be remembered beside what the model answered."""
        if self.bits:
            return self._render_bits(item.value, tokens)
        data = self.fixed_set("val")
        x, y = data.x[item.value], data.y[item.value]
        if self.problem == "adding":
            first, second = x[:, 0][x[:, 1] > 0].tolist()
            return f"{first:.3f} + {second:.3f} = {float(y):.3f}   predicted {tokens[0]:.3f}"
        wanted = y[-problems.COPY_LENGTH :].tolist()
        right = sum(a == b for a, b in zip(tokens, wanted))
        return f"remember {_symbols(wanted)}   recalled {_symbols(tokens)}   ({right}/{problems.COPY_LENGTH})"

    def _render_bits(self, index: int, answer: list[list[int]]) -> str:
        """`copy 3 × 8 bits: 10110010 01101100 00011101 -> 10110010 01101100 00011111 (1 of 24 bits wrong)`;
        repeat copy also says the repeats and where the end marker came."""
        sequence = self._bits_sequence(index)
        length = int(self.difficulty(sequence))
        wanted = sequence.y[0][sequence.scored[0]].int().tolist()  # [scored steps, O]
        given = " ".join(_bit_string(v) for v in sequence.x[0, :length, : self.width].int().tolist())
        copied = " ".join(_bit_string(v[: self.width]) for v in answer)
        wrong = sum(a != b for got, want in zip(answer, wanted) for a, b in zip(got, want))
        scored = len(wanted) * len(wanted[0])
        head = f"copy {length} × {self.width} bits"
        if self.problem == "repeat_copy":
            ends = [step for step, vector in enumerate(answer) if vector[self.width]]
            head = f"repeat {(len(wanted) - 1) // length} times {length} × {self.width} bits"
            copied += f" (end marker at output steps {ends[:5]}, wanted [{len(wanted) - 1}])"
        return f"{head}: {given} -> {copied} ({wrong} of {scored} bits wrong)"

    def plot_attention(self, item: DecodeInput, decoded: Any, directory: Path) -> int:
        return 0  # a recurrent model has no attention

    def plot_memory(self, model: nn.Module, item: DecodeInput, decoded: Any, directory: Path) -> int:
        """`decode --plot-memory DIR`: the write and read weightings over time of a model with an external
        memory (the NTM's memory_trace; the paper's Fig. 6), one PNG per decoded input; 0 for any other."""
        trace = getattr(model, "memory_trace", None)
        if trace is None or not self.bits:
            return 0
        from seqtool.plots import plot_memory_weightings

        sequence = self._bits_sequence(item.value)
        with torch.no_grad():
            found = trace(sequence.x)
        path = Path(directory) / f"memory_{item.label.replace(':', '_').replace('=', '')}.png"
        plot_memory_weightings(
            inputs=sequence.x[0].cpu(),
            outputs=torch.sigmoid(found["outputs"][0]).cpu(),
            write=found["write"][0].cpu(),
            read=found["read"][0].cpu(),
            path=path,
            title=f"{self.problem}, {item.label}",
        )
        return 1

    def add_split(self, name: str, *, src: Path, ref: Path) -> str:
        raise UserError("the memory task scores its own generated splits; --src/--ref are for translation")

    def preview(self, model: nn.Module) -> str:
        if self.bits:  # the shortest eval length: a line that stays readable
            rows = range(0, min(2, self.sizes["val"]) * len(self.eval_lengths), len(self.eval_lengths))
            inputs = [DecodeInput(self._bits_label(i), i) for i in rows]
        else:
            inputs = [DecodeInput(f"val:{i}", i) for i in range(min(4, self.sizes["val"]))]
        answers = self.decode(model, inputs)
        return "".join(self.render(item, got.tokens[0]) + "\n" for item, got in zip(inputs, answers))

    # ------------------------------------------------------------------------------ resumability
    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])


def _check_bit_keys(
    width: int, length: int, min_length: int, max_repeats: int, eval_lengths: tuple[int, ...]
) -> None:
    """The keys of the bit problems: positive sizes, a training range, eval lengths that meet it."""
    if min(width, min_length, max_repeats) < 1 or length < min_length:
        raise ValueError("the bit problems need task.width, task.min_length, task.max_repeats ≥ 1 and "
                         "task.length ≥ task.min_length")  # fmt: skip
    if not eval_lengths or eval_lengths[0] < 1:
        raise ValueError("task.eval_lengths: give lengths ≥ 1, e.g. [10, 20, 30, 50, 80, 100]")
    if not any(min_length <= n <= length for n in eval_lengths):
        raise ValueError(
            f"task.eval_lengths: at least one must lie in the training range {min_length}..{length}"
        )


def _bit_string(vector: list[int]) -> str:
    return "".join(str(bit) for bit in vector)


def _symbols(tokens: list[int]) -> str:
    """Copy tokens as text: 1..8 as digits, the blank as '.', the delimiter as ':'."""
    return "".join({problems.BLANK: ".", problems.DELIMITER: ":"}.get(t, str(t)) for t in tokens)
