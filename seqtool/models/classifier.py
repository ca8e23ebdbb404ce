"""A sentence classifier: an encoder, a pooling, a linear layer (many-to-one).

::

    tokens [B, T] -> encoder (rnn | transformer | bag) -> h [B, T, D]
                  -> pooling (last | cls | mean | max | attention) -> s [B, D]
                  -> dropout -> linear -> logits [B, C]

The encoders and poolings are models/encoders.py's, so the recurrent encoder takes every cell option of
models/cells.py. The bag-of-embeddings baseline is encoder=bag with pooling=mean (Iyyer et al. 2015's
deep averaging network without its hidden layers). ``forward`` also returns attention pooling's weights
[B, T] (None for the other poolings), which `seqtool decode --plot-attention` colours the words with.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from seqtool.models.encoders import Pooling, make_encoder

SUMMARY_POOLING = {"rnn": "last", "transformer": "cls"}  # the encoder whose own summary each pooling reads


class Classifier(nn.Module):
    """logits = W · dropout(pool(encoder(tokens))) + b."""

    task_shapes = ("many-to-one",)  # read by seqtool.shapes

    def __init__(
        self,
        *,
        vocab_size: int,
        num_classes: int,
        encoder: Literal["rnn", "transformer", "bag"],
        pooling: Literal["last", "cls", "mean", "max", "attention"],
        embedding_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        cell: Literal["rnn", "lstm", "gru"],
        bidirectional: bool,
        merge: Literal["concat", "sum"],
        variational_dropout: bool,
        layer_norm: bool,
        weight_norm: bool,
        forget_bias: float | None,
        heads: int,
        ffn_size: int,
        positions: Literal["sinusoidal", "learned"],
        max_positions: int,
        norm_first: bool,
        activation: Literal["relu", "gelu"],
        attention_size: int,
    ) -> None:
        """The task gives vocab_size and num_classes; the rest is conf/model/classifier.yaml's."""
        super().__init__()
        if pooling in ("last", "cls") and SUMMARY_POOLING.get(encoder) != pooling:
            allowed = ["mean", "max", "attention"] + ([SUMMARY_POOLING[encoder]] if encoder != "bag" else [])
            raise ValueError(
                f"model.pooling={pooling} needs model.encoder={'rnn' if pooling == 'last' else 'transformer'}"
                f"; model.encoder={encoder} pools by model.pooling={'|'.join(allowed)}"
            )
        self.encoder = make_encoder(
            encoder, vocab_size=vocab_size, embedding_size=embedding_size, hidden_size=hidden_size,
            num_layers=num_layers, dropout=dropout, cell=cell, bidirectional=bidirectional, merge=merge,
            variational_dropout=variational_dropout, layer_norm=layer_norm, weight_norm=weight_norm,
            forget_bias=forget_bias, heads=heads, ffn_size=ffn_size, positions=positions,
            max_positions=max_positions, norm_first=norm_first, activation=activation,
        )  # fmt: skip
        self.pooling = Pooling(pooling, self.encoder.output_size, attention_size)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(self.encoder.output_size, num_classes)

    @property
    def pooling_kind(self) -> str:
        return self.pooling.kind

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        """tokens [B, T] (right-padded with 0) -> logits [B, C], attention weights [B, T] or None."""
        sentence, weights = self.pooling(self.encoder(tokens))  # [B, D], [B, T] | None
        return self.output(self.dropout(sentence)), weights
