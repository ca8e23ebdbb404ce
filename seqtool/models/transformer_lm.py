"""A decoder-only Transformer language model (the Transformer's decoder without cross-attention, as in GPT).

::

    tokens [B, T] -> embed · √d + PE -> N × [causal self-attention, feed-forward] -> linear -> [B, T, V]

It trains on the char-LM task's segments like the char-RNN, but carries nothing from one segment to the
next: truncated-BPTT state means nothing to it (its context is the segment), so ``forward`` accepts the
carried state and ignores it, returning None. Generation uses a key/value cache per layer; the state is
``{"self": [(k, v) per layer, each (B, heads, t, head_dim)]}``, batch first.
"""

from __future__ import annotations

from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from seqtool.models.base import State, map_tensors
from seqtool.models.transformer import Block, Embedding, check_length


class TransformerLM(nn.Module):
    """Causal Transformer language model; an incremental decoder with a key/value cache."""

    task_shapes = ("many-to-many synchronous",)  # read by seqtool.shapes

    def __init__(
        self,
        *,
        vocab_size: int,
        d_model: int,
        heads: int,
        num_layers: int,
        ffn_size: int,
        dropout: float,
        positions: Literal["sinusoidal", "learned"],
        max_positions: int,
        norm_first: bool,
        tie_embeddings: bool,
        activation: Literal["relu", "gelu"],
    ) -> None:
        super().__init__()
        self.max_positions = max_positions
        self.embedding = Embedding(vocab_size, d_model, positions, max_positions, dropout)
        layer = (d_model, heads, ffn_size, dropout, activation, norm_first)
        self.blocks = nn.ModuleList(Block(*layer, cross_attention=False) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()  # pre-LN: normalise the output
        self.output = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            self.output.weight = self.embedding.tokens.weight

    def forward(self, tokens: Tensor, state: Any = None) -> tuple[Tensor, None]:
        """tokens [B, T] -> logits [B, T, V], None. ``state`` (the task's TBPTT carry) is ignored."""
        check_length(tokens.size(1), self.max_positions, "a segment (task.seq_len)")
        x = self.embedding(tokens)  # [B, T, D]
        for block in self.blocks:
            x, _, _ = block(x, causal=True)
        return self.output(self.norm(x)), None

    # ------------------------------------------------------------------- the incremental decoder
    def encode(self, src: Any) -> None:
        """A pure language model has no memory."""
        return None

    def init_state(self, memory: Any, batch_size: int) -> State:
        """Empty caches: k, v each (B, heads, 0, head_dim) per layer, on the model's device and dtype."""
        attention = self.blocks[0].self_attention
        empty = self.output.weight.new_zeros(batch_size, attention.heads, 0, attention.head_dim)
        return {"self": [(empty, empty) for _ in self.blocks]}

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """tokens [B] at the next position -> log-probs [B, V]; each layer's cache grows by one position."""
        position = state["self"][0][0].size(2)
        check_length(position + 1, self.max_positions, "generation: the text (prime + output)")
        x = self.embedding(tokens.unsqueeze(1), start=position)  # [B, 1, D]
        caches = []
        for block, cache in zip(self.blocks, state["self"], strict=True):
            x, kv, _ = block(x, cache=cache)
            caches.append(kv)
        return F.log_softmax(self.output(self.norm(x[:, 0])), dim=-1), {"self": caches}

    def reorder(self, state: State, index: Tensor) -> State:
        """Pick batch rows index [B'] of every cache."""
        return map_tensors(lambda t: t.index_select(0, index), state)
