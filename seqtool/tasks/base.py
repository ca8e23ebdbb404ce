"""The Task contract: everything the trainer and the CLI need from the data side of one task family.

The trainer knows nothing of text or video. It asks the task for batches and for a loss, hands
evaluation to it, and saves the task's train-stream position with every checkpoint so a resumed run
sees exactly the batches an uninterrupted one would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from seqtool.by_length import ByLength
    from seqtool.decode.generate import DecodeInput
    from seqtool.decode.output import Frames, Text
    from seqtool.decode.settings import DecodeOptions, SearchSettings, Strategy

Competence = Callable[
    [], float
]  # the current curriculum competence: share of the difficulty range unlocked, (0, 1]


@dataclass
class Loss:
    """A summed loss and what it was summed over (tokens, frames): the trainer divides."""

    total: Tensor
    count: int


class Task(Protocol):
    """What the trainer, `seqtool eval` and `seqtool decode` call; every task in seqtool.tasks is one."""

    # ------------------------------------------------------------------------------ training
    def setup(
        self, run_dir: Path, *, rank: int = 0, world_size: int = 1, device: torch.device | None = None
    ) -> None:
        """Read data; build the vocabulary (or load it if run_dir already holds one)."""

    def model_kwargs(self) -> dict[str, Any]:
        """What the model needs to know of the data (vocab_size, pad index, ...)."""

    def batches(self, split: str, *, train: bool, competence: Competence | None = None) -> Iterable[Any]:
        """Batches of a split; the train stream is endless and resumable through state_dict()."""

    def loss(self, model: nn.Module, batch: Any) -> Loss: ...

    def difficulty(self, example: Any) -> float:
        """How hard one example is, for the curriculum (a length by default)."""

    def preview(self, model: nn.Module) -> str:
        """A short decoded sample the trainer writes to samples/ as training goes."""

    def state_dict(self) -> dict[str, Any]:
        """The train stream's position (and any carried state), plain tensors and numbers only."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    # ---------------------------------------------------------------------------- evaluation
    def evaluate(
        self,
        model: nn.Module,
        split: str,
        search: SearchSettings | None = None,
        by_length: ByLength | None = None,
    ) -> dict[str, Any]:
        """Metrics of a split. search None: the task's own (quick) evaluation during training; else
        `seqtool eval`'s search over the whole split. by_length (`eval --by-length`): the same outputs
        also scored per source-length bucket (seqtool.by_length); a task without source sentences
        raises UserError before evaluating."""

    def add_split(self, name: str, *, src: Path, ref: Path) -> str:
        """`seqtool eval --src --ref`: make the files a split called `name` and return it; a task that
        cannot score files raises UserError."""

    # ------------------------------------------------------------------------------ decoding
    decode_output: Text | Frames  # the layout of `seqtool decode`'s outputs (seqtool.decode.output)
    default_strategy: Strategy | None  # the search when the command line names none (None: no search)
    end_token: int | None  # the id that ends an output (None: outputs run to their length; no beam)

    def decode_inputs(
        self, model: nn.Module, options: DecodeOptions, search: SearchSettings
    ) -> Iterator[list[DecodeInput]]:
        """`seqtool decode`'s inputs (from --input, --prime, --num), checked, in chunks decoded together."""

    def decode(self, model: nn.Module, inputs: list[DecodeInput], search: SearchSettings) -> list[Any]:
        """One result per input, in order: a Decoded (seqtool.decode.generate) for a text task, a frames
        tensor for video. Text tasks hand this to decode_batched with their start()."""

    def render(self, item: DecodeInput, tokens: list[int]) -> str:
        """One hypothesis of `item` as text (text tasks)."""

    def plot_attention(self, item: DecodeInput, decoded: Any, directory: Path) -> int:
        """Draw the best hypothesis's attention into `directory`; 1 if drawn, 0 without attention."""
