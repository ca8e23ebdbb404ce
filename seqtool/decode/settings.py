"""How to decode, as one small value the CLI builds and every task reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SearchSettings:
    """greedy, sampling (temperature / top-k / top-p) or beam search, and their knobs."""

    strategy: Literal["greedy", "sample", "beam"] = "sample"
    max_len: int = 200
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    beam_size: int = 5
    nbest: int = 1
    alpha: float = 0.0
    seed: int = 0
