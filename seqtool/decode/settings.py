"""How to decode, as small values the CLI builds and every task reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from seqtool.errors import UserError


@dataclass(frozen=True)
class SearchSettings:
    """greedy, sampling (temperature / top-k / top-p) or beam search, and their knobs.

    strategy None means "the task's own default" (sampling for a char LM, beam for translation)."""

    strategy: Literal["greedy", "sample", "beam"] | None = None
    max_len: int | None = None  # None: the task's default (a length, or a ratio of the source)
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    beam_size: int = 5
    nbest: int = 1
    alpha: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class DecodeOptions:
    """What `seqtool decode` was asked, for the task to read its inputs and write its outputs."""

    search: SearchSettings = field(default_factory=SearchSettings)
    input: str | None = None  # a file, or "-" for standard input; None: the task's default input
    output: Path | None = None  # None: standard output
    prime: str = ""  # text a language model continues
    num: int = 1  # samples per input
    plot_dir: Path | None = None  # attention maps / frame strips as PNG
    horizon: int | None = None  # frames to predict (video)


def check_nbest(search: SearchSettings) -> None:
    """Refuse --nbest that the search cannot give: n-best lists come from beam search only."""
    if search.nbest > 1 and search.strategy != "beam":
        raise UserError("--nbest needs beam search (--beam K); with sampling use --num")
    if search.strategy == "beam" and search.nbest > search.beam_size:
        raise UserError(f"--nbest {search.nbest} is more than the beam ({search.beam_size}); raise --beam")
