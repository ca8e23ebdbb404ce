"""The incremental-decoder contract: the one interface the search module needs.

Every autoregressive model (char-RNN, seq2seq, Transformer, captioner) implements it, so greedy,
sampling and beam search are written once::

    memory = model.encode(src)                      # None for a pure language model
    state = model.init_state(memory, batch_size)
    log_probs, state = model.step(tokens, state)    # tokens: LongTensor[B] -> log_probs: [B, V]
    state = model.reorder(state, index)             # index: LongTensor[B'] picks rows (beam search)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

State = Any  # a model's own nesting of tensors (tuples, lists, dicts), batch along a dimension it knows


@runtime_checkable
class IncrementalDecoder(Protocol):
    def encode(self, src: Any) -> Any: ...

    def init_state(self, memory: Any, batch_size: int) -> State: ...

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]: ...

    def reorder(self, state: State, index: Tensor) -> State: ...


def map_tensors(fn: Callable[[Tensor], Tensor], state: State) -> State:
    """Apply ``fn`` to every tensor inside a nest of tuples, lists and dicts; other leaves pass through."""
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, tuple):
        return tuple(map_tensors(fn, item) for item in state)
    if isinstance(state, list):
        return [map_tensors(fn, item) for item in state]
    if isinstance(state, dict):
        return {key: map_tensors(fn, value) for key, value in state.items()}
    return state


def detach_state(state: State) -> State:
    """Cut the autograd history of a carried state (truncated BPTT)."""
    return map_tensors(torch.Tensor.detach, state)
