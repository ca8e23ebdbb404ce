"""The Task contract: everything the trainer and the CLI need from the data side of one task family.

The trainer knows nothing of text or video. It asks the task for batches and for a loss, hands
evaluation to it, and saves the task's train-stream position with every checkpoint so a resumed run
sees exactly the batches an uninterrupted one would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

Competence = Callable[
    [], float
]  # the current curriculum competence: share of the difficulty range unlocked, (0, 1]


@dataclass
class Loss:
    """A summed loss and what it was summed over (tokens, frames): the trainer divides."""

    total: Tensor
    count: int


class Task(Protocol):
    def setup(
        self, run_dir: Path, *, rank: int = 0, world_size: int = 1, device: torch.device | None = None
    ) -> None:
        """Read data; build the vocabulary (or load it if run_dir already holds one)."""

    def model_kwargs(self) -> dict[str, Any]:
        """What the model needs to know of the data (vocab_size, pad index, ...)."""

    def batches(self, split: str, *, train: bool, competence: Competence | None = None) -> Iterable[Any]:
        """Batches of a split; the train stream is endless and resumable through state_dict()."""

    def loss(self, model: nn.Module, batch: Any) -> Loss: ...

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]: ...

    def decode(self, model: nn.Module, inputs: Any, search: Any) -> Iterator[Any]: ...

    def preview(self, model: nn.Module) -> str:
        """A short decoded sample the trainer writes to samples/ as training goes."""

    def difficulty(self, example: Any) -> float: ...

    def state_dict(self) -> dict[str, Any]:
        """The train stream's position (and any carried state), plain tensors and numbers only."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
