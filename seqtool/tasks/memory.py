"""The long-dependency problems as one task family: `task.problem=adding|copy`, the lag T as `task.lag`.

    problem  shape                      loss on           metrics              chance baseline beside them
    adding   many-to-one                the last state    mse, accuracy        baseline_mse = 1/6
                                                          (|error| < 0.04)
    copy     many-to-many synchronous   every position    loss (nats/step),    baseline_loss =
                                                          accuracy on the      10 ln 8 / (T + 20)
                                                          10 recalled symbols

Data is generated on the fly (seqtool/data/memory_problems.py). Train batch i comes from its own
generator seeded by (seed, train, i), so the stream's position is the whole of its state and a resumed
run sees exactly the batches an uninterrupted one would have; val and test are fixed sets from fixed
seeds. The curriculum, when the trainer has one, is over the lag: competence c trains at lag ceil(c · T).
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
Problem = Literal["adding", "copy"]


@dataclass
class MemoryBatch:
    x: Tensor  # shape: adding [B, T, 2] float (value, marker); copy [B, T + 20] long tokens
    y: Tensor  # shape: adding [B] float sums; copy [B, T + 20] long, one target per step


class MemoryTask:
    """Adding or copy-memory at lag T; evaluate() reports the chance baseline beside the model."""

    # The shape of each problem: `seqtool.shapes` reads it to refuse a model that cannot serve it.
    shape_variants = {"task.problem=adding": "many-to-one", "task.problem=copy": "many-to-many synchronous"}

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
    ) -> None:
        if problem not in ("adding", "copy"):
            raise ValueError(f"task.problem={problem!r}: use adding or copy")
        smallest = 2 if problem == "adding" else 1
        if min(lag, min_lag) < smallest:
            raise ValueError(f"the {problem} problem needs task.lag and task.min_lag ≥ {smallest}")
        if min(batch_size, val_size, test_size) < 1:
            raise ValueError("task.batch_size, task.val_size and task.test_size must be ≥ 1")
        self.problem, self.lag, self.min_lag = problem, lag, min_lag
        self.batch_size, self.seed = batch_size, seed
        self.sizes = {"val": val_size, "test": test_size}
        self.device, self.rank, self.world_size = torch.device("cpu"), 0, 1
        self.position = 0  # train batches this rank has taken
        self._fixed: dict[str, MemoryBatch] = {}

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
        """adding: 2 real inputs (value, marker), 1 output from the last state; copy: 10 tokens in and out."""
        if self.problem == "adding":
            return {"input_size": 2, "output_size": 1, "many_to_one": True}
        return {"vocab_size": problems.COPY_VOCAB}

    def generate(self, rng, count: int, lag: int) -> MemoryBatch:
        """`count` sequences of the problem at `lag`, as tensors on the task's device."""
        make = problems.adding if self.problem == "adding" else problems.copy_memory
        x, y = make(rng, count, lag)
        return MemoryBatch(x=torch.from_numpy(x).to(self.device), y=torch.from_numpy(y).to(self.device))

    def difficulty(self, example: MemoryBatch) -> float:
        """The lag T of a batch."""
        length = example.x.shape[1]
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

    def _train_batches(self, competence: Competence) -> Iterator[MemoryBatch]:
        while True:
            index = self.position * self.world_size + self.rank  # ranks interleave
            rng = problems.seeded(self.seed, STREAMS["train"], index)
            self.position += 1
            yield self.generate(rng, self.batch_size, self.lag_for(competence()))

    def fixed_set(self, split: str) -> MemoryBatch:
        """The whole val or test set (generated once from its own seed), always at the full lag."""
        if split not in self.sizes:
            raise UserError(f"the memory task has splits val and test, not {split!r}")
        if split not in self._fixed:
            rng = problems.seeded(self.seed, STREAMS[split], 0)
            self._fixed[split] = self.generate(rng, self.sizes[split], self.lag)
        return self._fixed[split]

    def _eval_batches(self, split: str) -> Iterator[MemoryBatch]:
        data = self.fixed_set(split)
        for start in range(0, len(data.y), self.batch_size):
            end = start + self.batch_size
            yield MemoryBatch(x=data.x[start:end], y=data.y[start:end])

    # ------------------------------------------------------------------------------ loss, metrics
    def loss(self, model: nn.Module, batch: MemoryBatch) -> Loss:
        """adding: squared error of the prediction from the last state, per sequence;
        copy: cross-entropy at every position, per step."""
        outputs, _ = model(batch.x)  # adding [B, 1]; copy [B, T + 20, V]
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
        count = min(options.num, self.sizes["val"])
        yield [DecodeInput(f"val:{i}", i) for i in range(count)]

    def decode(self, model: nn.Module, inputs: list[DecodeInput], search: Any = None) -> list[Decoded]:
        """One answer per val index: the 10 recalled symbols (copy) or [the predicted sum] (adding)."""
        data = self.fixed_set("val")
        rows = torch.tensor([item.value for item in inputs], device=self.device)
        with torch.no_grad():
            outputs = model(data.x[rows])[0].float()  # adding [N, 1]; copy [N, L, V]
        if self.problem == "adding":
            answers = outputs[:, 0].tolist()
            return [Decoded(tokens=[[answer]], scores=[0.0], attention=None) for answer in answers]
        recalled = outputs[:, -problems.COPY_LENGTH :].argmax(-1).tolist()  # [N, 10]
        return [Decoded(tokens=[symbols], scores=[0.0], attention=None) for symbols in recalled]

    def render(self, item: DecodeInput, tokens: list) -> str:
        """What had to be remembered beside what the model answered."""
        data = self.fixed_set("val")
        x, y = data.x[item.value], data.y[item.value]
        if self.problem == "adding":
            first, second = x[:, 0][x[:, 1] > 0].tolist()
            return f"{first:.3f} + {second:.3f} = {float(y):.3f}   predicted {tokens[0]:.3f}"
        wanted = y[-problems.COPY_LENGTH :].tolist()
        right = sum(a == b for a, b in zip(tokens, wanted))
        return f"remember {_symbols(wanted)}   recalled {_symbols(tokens)}   ({right}/{problems.COPY_LENGTH})"

    def plot_attention(self, item: DecodeInput, decoded: Any, directory: Path) -> int:
        return 0  # a recurrent model has no attention

    def add_split(self, name: str, *, src: Path, ref: Path) -> str:
        raise UserError("the memory task scores its own generated splits; --src/--ref are for translation")

    def preview(self, model: nn.Module) -> str:
        inputs = [DecodeInput(f"val:{i}", i) for i in range(min(4, self.sizes["val"]))]
        answers = self.decode(model, inputs)
        return "".join(self.render(item, got.tokens[0]) + "\n" for item, got in zip(inputs, answers))

    # ------------------------------------------------------------------------------ resumability
    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])


def _symbols(tokens: list[int]) -> str:
    """Copy tokens as text: 1..8 as digits, the blank as '.', the delimiter as ':'."""
    return "".join({problems.BLANK: ".", problems.DELIMITER: ":"}.get(t, str(t)) for t in tokens)
