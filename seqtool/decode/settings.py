"""How to decode, as small values the CLI builds: a search strategy (greedy, sampling, beam), the limits
every strategy shares (SearchSettings), and what `seqtool decode` was asked (DecodeOptions).

A strategy is a value that knows how to search; nothing downstream compares strategy names::

    SearchSettings(strategy=Beam(size=5, nbest=3, alpha=0.6), min_len=2, no_repeat_ngram=3)
        .search(model, start, generator)   ->   beam_search(model, state, first, ...)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch

from seqtool.decode import search as algorithms
from seqtool.errors import UserError

if TYPE_CHECKING:
    from seqtool.decode.generate import Start


class Strategy(Protocol):
    nbest: int  # hypotheses it returns per input

    def rows(self, budget: int) -> int:
        """Sequences per batch when a batch may hold `budget` (tokens or images)."""

    def copies(self, num: int) -> int:
        """How many times each input is decoded when --num asks for `num` (only sampling draws anew)."""

    def check(self, end_token: int | None) -> None:
        """Refuse, before any input is read, a task this strategy cannot search."""

    def run(self, model: Any, start: Start, limits: SearchSettings, generator: torch.Generator):
        """The hypotheses of one batch (seqtool.decode.search.Hypotheses)."""


@dataclass(frozen=True)
class Greedy:
    """The likeliest token at every step."""

    nbest: ClassVar[int] = 1

    def rows(self, budget: int) -> int:
        return budget

    def copies(self, num: int) -> int:
        return 1

    def check(self, end_token: int | None) -> None:
        pass

    def run(self, model: Any, start: Start, limits: SearchSettings, generator: torch.Generator):
        return algorithms.greedy(model, start.state, start.first, max_len=start.max_len, eos=start.eos,
                                 min_len=limits.min_len, no_repeat_ngram=limits.no_repeat_ngram)  # fmt: skip


@dataclass(frozen=True)
class Sampling:
    """Draw each token from the model's distribution at 1/temperature, cut to the top k, then to the
    nucleus of mass top_p."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    nbest: ClassVar[int] = 1

    def rows(self, budget: int) -> int:
        return budget

    def copies(self, num: int) -> int:
        return num

    def check(self, end_token: int | None) -> None:
        pass

    def run(self, model: Any, start: Start, limits: SearchSettings, generator: torch.Generator):
        return algorithms.sample(
            model, start.state, start.first, max_len=start.max_len, eos=start.eos,
            temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, generator=generator,
            min_len=limits.min_len, no_repeat_ngram=limits.no_repeat_ngram,
        )  # fmt: skip


@dataclass(frozen=True)
class Beam:
    """Batched beam search of `size` beams per input; `nbest` hypotheses ranked by the summed
    log-prob divided by the GNMT length penalty ((5 + len) / 6) ** alpha."""

    size: int = 5
    nbest: int = 1
    alpha: float = 0.0

    def __post_init__(self) -> None:
        if self.nbest > self.size:
            raise UserError(f"--nbest {self.nbest} is more than the beam ({self.size}); raise --beam")

    def rows(self, budget: int) -> int:
        """Each input takes `size` rows, so a batch of `budget` rows holds budget // size inputs."""
        return max(1, budget // self.size)

    def copies(self, num: int) -> int:
        return 1

    def check(self, end_token: int | None) -> None:
        if end_token is None:
            raise UserError("this task decodes by sampling or --greedy; beam search needs an end token")

    def run(self, model: Any, start: Start, limits: SearchSettings, generator: torch.Generator):
        self.check(start.eos)
        return algorithms.beam_search(
            model, start.state, start.first, beam_size=self.size, max_len=start.max_len, eos=start.eos,
            nbest=self.nbest, alpha=self.alpha, min_len=limits.min_len,
            no_repeat_ngram=limits.no_repeat_ngram,
        )  # fmt: skip


@dataclass(frozen=True)
class SearchSettings:
    """A strategy and the limits every strategy shares. strategy None: the task's own default (sampling
    for a language model, a beam of 5 for translation and captioning)."""

    strategy: Strategy | None = None
    max_len: int | None = None  # None: the task's default (a length, or a ratio of the source)
    min_len: int = 0  # no end token before this many generated tokens
    no_repeat_ngram: int = 0  # n > 0: never repeat an n-gram of the first token + the hypothesis
    seed: int = 0  # the same seed gives the same samples

    def __post_init__(self) -> None:
        if self.min_len < 0 or self.no_repeat_ngram < 0:
            raise UserError("--min-len and --no-repeat-ngram must be ≥ 0")
        if self.max_len is not None and self.min_len > self.max_len:
            raise UserError(f"--min-len {self.min_len} is more than --max-len {self.max_len}")

    def with_default(self, strategy: Strategy) -> SearchSettings:
        """These settings, with `strategy` where none was chosen."""
        return self if self.strategy is not None else replace(self, strategy=strategy)

    def search(self, model: Any, start: Start, generator: torch.Generator):
        """The one dispatch from the settings to the algorithm (seqtool.decode.search)."""
        return self.strategy.run(model, start, self, generator)


def choose_strategy(
    *,
    greedy: bool = False,
    beam: int | None = None,
    nbest: int = 1,
    alpha: float = 0.0,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
) -> Strategy | None:
    """The strategy the command-line flags ask for; None when they leave it to the task.

    --beam K is beam search; --greedy is greedy; --temperature/--top-k/--top-p sample; --nbest N > 1 or
    a length penalty alone ask for a beam of 5. Mixing two strategies is a user error."""
    sampling = temperature is not None or top_k is not None or top_p is not None
    asked = [name for name, on in (("--beam", beam), ("--greedy", greedy), ("sampling", sampling)) if on]
    if len(asked) > 1:
        raise UserError(f"choose one search: {' and '.join(asked)} do not go together")
    if beam is not None or nbest > 1 or alpha > 0:
        if greedy or sampling:
            raise UserError(
                "--nbest and --length-penalty need beam search (--beam K); with sampling use --num"
            )
        return Beam(size=beam or 5, nbest=nbest, alpha=alpha)
    if greedy:
        return Greedy()
    if sampling:
        return Sampling(temperature=1.0 if temperature is None else temperature, top_k=top_k, top_p=top_p)
    return None


@dataclass(frozen=True)
class DecodeOptions:
    """What `seqtool decode` was asked, for the task to read its inputs and the writer its outputs."""

    search: SearchSettings = field(default_factory=SearchSettings)
    input: str | None = None  # a file, or "-" for standard input; None: the task's default input
    output: Path | None = None  # None: standard output
    prime: str = ""  # text a language model continues
    num: int = 1  # samples per input
    plot_dir: Path | None = None  # attention maps / frame strips as PNG
    memory_dir: Path | None = None  # an external-memory model's read/write weightings over time, as PNGs
    horizon: int | None = None  # frames to predict (video)
    activations_dir: Path | None = None  # a char LM's units along a text, as PNGs (seqtool.activations)
    unit: int | None = None  # with activations_dir: draw this unit (of `layer`) instead of each signal's
    layer: int | None = None  # ... of this layer, from 1 (default: the top one)

    def __post_init__(self) -> None:
        if self.activations_dir is None and (self.unit is not None or self.layer is not None):
            raise UserError("--unit and --layer go with --plot-activations DIR")
