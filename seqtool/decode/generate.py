"""Decoding many inputs at once, for every autoregressive task: batches, the search, results in input order.

    inputs (DecodeInput) -> batches of `strategy.rows(budget)` -> task.start(model, batch) -> Start
                         -> settings.search(model, start)  (greedy / sampling / beam_search)
                         -> one Decoded per input, in input order

A task says only what its inputs are and how a batch of them starts (the model's initial state, the
first tokens, the output caps, the end token); the batching, the search and the attention rows are here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from seqtool.data import batching
from seqtool.decode.settings import SearchSettings
from seqtool.errors import UserError
from seqtool.models.base import State


@dataclass(frozen=True)
class DecodeInput:
    """One input to decode: what the outputs call it, what the task's start() takes, its size in the
    batch budget (tokens, or 1 for an image), its position among the inputs and which copy it is."""

    label: str
    value: Any
    size: int = 1
    index: int = 0
    copy: int = 0


@dataclass
class Start:
    """How a batch of B inputs starts decoding."""

    state: State  # the model's initial state for B rows (after encoding, after any prime)
    first: Tensor  # shape: [B], the first input token of each row (BOS, or a prime's last token)
    max_len: int | Tensor  # generated tokens (EOS included) at most: one int, or LongTensor[B]
    eos: int | None  # the end token; None: every row runs to max_len
    attention_width: list[int] | None = None  # [B]: the columns of each row's attention to keep


@dataclass
class Decoded:
    """The hypotheses of one input, best first."""

    tokens: list[list[int]]  # [n-best][length], without the first token and EOS
    scores: list[float]  # [n-best]: the ranking score (log-prob; length-penalised by a beam's alpha)
    attention: list[Tensor] | None  # [n-best] -> [output length (EOS included), source positions]


def decode_batched(
    model: nn.Module,
    inputs: Sequence[DecodeInput],
    settings: SearchSettings,
    *,
    start: Callable[[nn.Module, list[DecodeInput], SearchSettings], Start],
    budget: int,
) -> list[Decoded]:
    """Decode `inputs` in length-sorted batches of at most `budget` tokens (a beam of K counts each input
    K times); one `generator` seeded by settings.seed draws every sample, so a seed gives the same text."""
    results: list[Any] = [None] * len(inputs)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    rows = settings.strategy.rows(budget)
    with torch.inference_mode():
        for index in batching.sorted_batches([item.size for item in inputs], rows):
            begun = start(model, [inputs[i] for i in index], settings)
            found = settings.search(model, begun, generator)
            for row, i in enumerate(index):
                results[i] = Decoded(found.tokens[row], found.scores[row], _attention(found, begun, row))
    return results


def _attention(found: Any, begun: Start, row: int) -> list[Tensor] | None:
    """The attention of one row's hypotheses, cut to its own columns (not the batch's padding)."""
    if found.attention is None:
        return None
    width = None if begun.attention_width is None else begun.attention_width[row]
    return [weights[:, :width].float().cpu() for weights in found.attention[row]]


def limits(model: nn.Module) -> tuple[int | None, int | None]:
    """The longest source and target (EOS / BOS included) the model takes; None: any length.

    Read from `max_source_positions` / `max_target_positions` (the wrapped model's under DDP)."""
    model = getattr(model, "module", model)
    return getattr(model, "max_source_positions", None), getattr(model, "max_target_positions", None)


def check_fits(model: nn.Module, length: int, what: str, *, side: int = 0) -> None:
    """Refuse a source (side 0) or target (side 1) of `length` tokens + EOS the model cannot take."""
    limit = limits(model)[side]
    if limit is not None and length + 1 > limit:
        raise UserError(
            f"{what} has {length} tokens, more than this model takes ({limit - 1} + the end token)"
        )
