"""The char-RNN language model (Karpathy 2015): embedding -> stacked RNN/LSTM/GRU -> softmax.

::

    tokens [B, T] -> embedding [B, T, E] -> dropout -> RNN stack [B, T, H] -> dropout -> linear [B, T, V]

The same model is Zaremba et al.'s (2014) word-level LM (conf/model/rnn_lm.yaml): its dropout sits on
the non-recurrent connections only (the embeddings, between layers, before the softmax), never on the
recurrent h -> h path, and init_range draws every parameter from U(-r, r) as theirs does.

The recurrent state is the stack's, in torch's format: h [L, B, H] (rnn, gru) or (h, c) each [L, B, H]
(lstm), so the batch is dimension 1 everywhere.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqtool.models.base import State, map_tensors
from seqtool.models.cells import Cell, LockedDropout, check_cell, make_rnn


class CharRNN(nn.Module):
    """A pure language model that also implements the incremental-decoder contract (encode/step/reorder)."""

    task_shapes = ("many-to-many synchronous",)  # read by seqtool.shapes

    def __init__(
        self,
        *,
        vocab_size: int,
        cell: Cell,
        embedding_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        variational_dropout: bool,
        layer_norm: bool,
        weight_norm: bool,
        forget_bias: float | None,
        tie_weights: bool,
        init_range: float | None = None,  # None: torch's defaults (and runs saved before the option)
    ) -> None:
        super().__init__()
        check_cell(cell)
        if tie_weights and embedding_size != hidden_size:
            raise ValueError(
                "tie_weights needs model.embedding_size == model.hidden_size "
                f"(got {embedding_size} and {hidden_size})"
            )
        if init_range is not None and forget_bias is not None:
            raise ValueError(
                f"model.init_range={init_range} draws every weight and bias, the forget gate's too: "
                "set model.forget_bias=null with it"
            )
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.rnn = make_rnn(
            cell,
            embedding_size,
            hidden_size,
            num_layers,
            dropout=dropout,
            variational_dropout=variational_dropout,
            layer_norm=layer_norm,
            weight_norm=weight_norm,
            forget_bias=forget_bias,
        )
        # The same kind of dropout on the embeddings and before the softmax as between the layers.
        self.dropout = LockedDropout(dropout) if variational_dropout else nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size, vocab_size)
        nn.init.zeros_(self.output.bias)
        if tie_weights:  # Press & Wolf 2017: one [V, H] matrix for input and output
            # N(0, 1) would give huge logits through the shared matrix: start it small.
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
            self.output.weight = self.embedding.weight
        # Untied, the embedding keeps torch's N(0, 1): measured on tiny Shakespeare it leaves the
        # unigram plateau (loss ~3.3) within 20 steps, where uniform(-0.1, 0.1) takes about 60.
        if init_range is not None:  # Zaremba et al. 2014: every parameter ~ U(-r, r), biases included
            for parameter in self.parameters():
                nn.init.uniform_(parameter, -init_range, init_range)

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """tokens [B, T], state (zeros when None) -> logits [B, T, V], final state."""
        x = self.dropout(self.embedding(tokens))  # [B, T, E]
        outputs, state = self.rnn(x, state)  # [B, T, H]
        return self.output(self.dropout(outputs)), state

    # The incremental-decoder contract (seqtool.models.base).

    def encode(self, src: Any) -> None:
        """A pure language model has no memory."""
        return None

    def init_state(self, memory: Any, batch_size: int) -> State:
        """Zeros: h [L, B, H], or (h, c) each [L, B, H] for lstm, on the model's device and dtype."""
        weight = self.output.weight
        h = weight.new_zeros(self.num_layers, batch_size, self.hidden_size)  # [L, B, H]
        return (h, torch.zeros_like(h)) if self.cell == "lstm" else h

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """tokens [B], state -> log-probs of the next token [B, V], new state."""
        logits, state = self.forward(tokens[:, None], state)  # [B, 1, V]
        return F.log_softmax(logits[:, 0], dim=-1), state

    def reorder(self, state: State, index: Tensor) -> State:
        """Pick batch rows (dim 1 of every state tensor) for beam search: index [B'] -> state with B' rows."""
        return map_tensors(lambda t: t.index_select(1, index), state)
