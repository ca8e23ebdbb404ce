"""The bidirectional RNN tagger of the notes, with an optional intent head on the same encoder (a joint
model in the manner of Liu & Lane 2016 and Hakkani-Tür et al. 2016)::

    tokens [B, T] -> RecurrentEncoder (models/encoders.py) -> h_t = [h_fwd_t ; h_bwd_t]    [B, T, D]
        slots:   P(s_t | w_1..n) = softmax(W_s h_t + b_s)                                  [B, T, S]
        intent:  P(i | w_1..n)   = softmax(W_i pool(h_1..n) + b_i)                         [B, I]

Each word's tag reads the whole sentence through the two directions: the forward state has read
w_1..w_t, the backward one w_t..w_n. The intent reads one sentence vector, pooled as a classifier pools
(the last states, mean, max or attention: models/encoders.Pooling). num_intents = 0 leaves it out.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from seqtool.models.cells import Cell
from seqtool.models.encoders import Pooling, RecurrentEncoder


class Tagger(nn.Module):
    """A (bi)directional RNN/LSTM/GRU encoder, a tag softmax per word and an intent softmax per sentence."""

    task_shapes = ("many-to-many synchronous",)  # read by seqtool.shapes

    def __init__(
        self,
        *,
        vocab_size: int,
        num_tags: int,
        num_intents: int,
        cell: Cell,
        embedding_size: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        merge: Literal["concat", "sum"],
        intent_pooling: Literal["last", "mean", "max", "attention"],
        dropout: float,
        variational_dropout: bool,
        layer_norm: bool,
        weight_norm: bool,
        forget_bias: float | None,
    ) -> None:
        super().__init__()
        self.encoder = RecurrentEncoder(
            vocab_size=vocab_size, embedding_size=embedding_size, hidden_size=hidden_size, cell=cell,
            num_layers=num_layers, bidirectional=bidirectional, merge=merge, dropout=dropout,
            variational_dropout=variational_dropout, layer_norm=layer_norm, weight_norm=weight_norm,
            forget_bias=forget_bias,
        )  # fmt: skip
        size = self.encoder.output_size  # D: 2H (concat) or H
        self.dropout = nn.Dropout(dropout)
        self.tag_head = nn.Linear(size, num_tags)  # W_s, b_s
        self.pooling = Pooling(intent_pooling, size) if num_intents > 0 else None
        self.intent_head = nn.Linear(size, num_intents) if num_intents > 0 else None  # W_i, b_i

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        """tokens [B, T] (PAD = 0 ending a row) -> tag logits [B, T, S], intent logits [B, I] or None."""
        encoded = self.encoder(tokens)  # outputs [B, T, D], zero at padding
        tag_logits = self.tag_head(self.dropout(encoded.outputs))  # [B, T, S]
        if self.intent_head is None:
            return tag_logits, None
        sentence, _ = self.pooling(encoded)  # [B, D]
        return tag_logits, self.intent_head(self.dropout(sentence))  # [B, I]
