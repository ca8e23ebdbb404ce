"""A plain recurrent model for sequence tasks of two shapes: input projection -> RNN stack -> head.

::

    many-to-many (copy):  tokens [B, T] -> embedding [B, T, E] -> stack [B, T, H] -> linear [B, T, V]
    many-to-one (adding): x [B, T, I]   -> linear    [B, T, E] -> stack [B, T, H] -> h_T [B, H]
                                                                                  -> linear [B, O]

The input projection is an embedding when the task gives token ids (``vocab_size``), a linear layer when
it gives real vectors (``input_size``). The stack comes from ``seqtool.models.cells.make_rnn``, so every
cell option (rnn/lstm/gru, layer norm, weight norm, variational dropout, forget bias) works here as in
the char-RNN; its state is torch's: h [L, B, H], or (h, c) each [L, B, H] for lstm.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqtool.models.base import State, map_tensors
from seqtool.models.cells import Cell, LockedDropout, check_cell, make_rnn


class RecurrentModel(nn.Module):
    """Embedding or linear input, a stacked RNN/LSTM/GRU, a linear head on every step or on the last."""

    task_shapes = ("many-to-one", "many-to-many synchronous")  # read by seqtool.shapes

    def __init__(
        self,
        *,
        cell: Cell,
        embedding_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        variational_dropout: bool,
        layer_norm: bool,
        weight_norm: bool,
        forget_bias: float | None,
        vocab_size: int | None = None,
        input_size: int | None = None,
        output_size: int | None = None,
        many_to_one: bool = False,
    ) -> None:
        """The task gives vocab_size (token inputs; outputs over the same vocabulary unless output_size
        says otherwise) or input_size and output_size (real inputs), and many_to_one for a last-step head."""
        super().__init__()
        check_cell(cell)
        if (vocab_size is None) == (input_size is None):
            raise ValueError("the recurrent model needs exactly one of vocab_size (tokens) or input_size")
        output_size = output_size or vocab_size
        if output_size is None:
            raise ValueError("the recurrent model needs output_size when its inputs are real vectors")
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.many_to_one = many_to_one
        self.embedding = (
            nn.Embedding(vocab_size, embedding_size)
            if vocab_size is not None
            else nn.Linear(input_size, embedding_size)
        )
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
        # The same kind of dropout on the projected inputs and before the head as between the layers.
        self.dropout = LockedDropout(dropout) if variational_dropout else nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size, output_size)

    def forward(self, inputs: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """inputs: tokens [B, T] or vectors [B, T, I]; state (zeros when None) ->
        outputs [B, T, O] (every step) or [B, O] (many-to-one: the last step only), final state."""
        x = self.dropout(self.embedding(inputs))  # [B, T, E]
        outputs, state = self.rnn(x, state)  # [B, T, H]
        if self.many_to_one:
            outputs = outputs[:, -1:]  # only h_T of the top layer: [B, 1, H]
        predictions = self.output(self.dropout(outputs))  # [B, T, O], or [B, 1, O]
        return (predictions[:, 0] if self.many_to_one else predictions), state

    # The incremental-decoder contract (seqtool.models.base), for token tasks of every step (a char LM).

    def encode(self, src: Any) -> None:
        """No encoder: the model reads its inputs step by step."""
        return None

    def init_state(self, memory: Any, batch_size: int) -> State:
        """Zeros: h [L, B, H], or (h, c) each [L, B, H] for lstm, on the model's device and dtype."""
        h = self.output.weight.new_zeros(self.num_layers, batch_size, self.hidden_size)  # [L, B, H]
        return (h, torch.zeros_like(h)) if self.cell == "lstm" else h

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """tokens [B], state -> log-probs of the next token [B, V], new state."""
        logits, state = self.forward(tokens[:, None], state)  # [B, 1, V]
        return F.log_softmax(logits[:, -1], dim=-1), state

    def reorder(self, state: State, index: Tensor) -> State:
        """Pick batch rows (dim 1 of every state tensor): index [B'] -> state with B' rows."""
        return map_tensors(lambda t: t.index_select(1, index), state)
