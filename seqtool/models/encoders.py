"""Sentence encoders and poolings: what a classifier or a tagger puts between tokens and its head.

::

    tokens [B, T] (right-padded with pad_index)
      -> RecurrentEncoder    embedding -> L x [forward RNN, backward RNN] -> outputs [B, T, H or 2H]
         TransformerEncoder  [CLS] + embedding + positions -> N x Block   -> outputs [B, T, D]
         BagEncoder          embedding                                    -> outputs [B, T, E]
      -> Encoded(outputs, mask [B, T] True on real tokens, summary [B, ·] or None)
      -> Pooling(last | cls | mean | max | attention) -> sentence vector [B, ·], weights [B, T] or None

Every encoder returns ``Encoded``: a tagger reads ``outputs`` position by position, a classifier pools
them. ``summary`` is the encoder's own sentence vector: the recurrent encoder's last states (the forward
direction's at each row's true last token, the backward direction's at position 0), the Transformer's
class token; the bag has none. Each encoder has ``output_size``, the width of ``outputs`` and ``summary``.

Padding never reaches a real position. The recurrent directions are causal and the padding sits at the
end of a row: the backward direction reads each row reversed *within its length*, so its padding is at
the end too. This holds for torch's fused modules and for the hand-written cells of models/cells.py alike,
so every cell option works without packed sequences. The Transformer masks padded keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from seqtool.models.cells import LockedDropout, check_cell, make_rnn
from seqtool.models.transformer import Block, Embedding, check_length, padding_mask

ENCODERS = ("rnn", "transformer", "bag")
MERGES = ("concat", "sum")
POOLINGS = ("last", "cls", "mean", "max", "attention")


@dataclass
class Encoded:
    """What an encoder gives: per-position outputs, which positions are real, its own sentence vector."""

    outputs: Tensor  # [B, T, D]
    mask: Tensor  # [B, T] bool, True on real tokens
    summary: Tensor | None  # [B, D]: last states (recurrent), class token (Transformer); None for the bag


def reverse_within_length(x: Tensor, lengths: Tensor) -> Tensor:
    """Row b's first lengths[b] positions in reverse order, its padding left where it is: x [B, T, ...].

    Applying it twice gives x back."""
    positions = torch.arange(x.size(1), device=x.device).expand(x.size(0), -1)  # [B, T]
    last = (lengths - 1).unsqueeze(1)  # [B, 1]
    index = torch.where(positions <= last, last - positions, positions)  # [B, T]
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


class RecurrentEncoder(nn.Module):
    """Embedding, then num_layers recurrent layers, each one direction or two (Schuster & Paliwal 1997).

    Layer k+1 reads layer k's merged outputs, as torch's bidirectional modules do with ``concat``::

        h_fwd_t = cell(x_t, h_fwd_{t-1})            t = 1 .. n   (n: the row's length)
        h_bwd_t = cell'(x_t, h_bwd_{t+1})           t = n .. 1
        h_t     = [h_fwd_t ; h_bwd_t]  (concat, 2H)  or  h_fwd_t + h_bwd_t  (sum, H)

    Each direction of each layer is one ``make_rnn`` stack, so the cell options (layer norm, weight norm,
    forget bias) are those of models/cells.py; dropout (variational: one mask per sentence) is applied to
    the embeddings and between layers.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        cell: Literal["rnn", "lstm", "gru"] = "lstm",
        num_layers: int = 1,
        bidirectional: bool = False,
        merge: Literal["concat", "sum"] = "concat",
        dropout: float = 0.0,
        variational_dropout: bool = False,
        layer_norm: bool = False,
        weight_norm: bool = False,
        forget_bias: float | None = None,
        pad_index: int = 0,
    ) -> None:
        super().__init__()
        check_cell(cell)
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {', '.join(MERGES)}, got {merge!r}")
        self.pad_index, self.bidirectional, self.merge = pad_index, bidirectional, merge
        directions = 2 if bidirectional else 1
        self.output_size = hidden_size * directions if merge == "concat" else hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        options = {"layer_norm": layer_norm, "weight_norm": weight_norm, "forget_bias": forget_bias}
        sizes = [embedding_size] + [self.output_size] * (num_layers - 1)
        # layers[k][0] reads left to right, layers[k][1] (bidirectional) right to left
        self.layers = nn.ModuleList(
            nn.ModuleList(make_rnn(cell, size, hidden_size, 1, **options) for _ in range(directions))
            for size in sizes
        )
        self.dropout = LockedDropout(dropout) if variational_dropout else nn.Dropout(dropout)

    def forward(self, tokens: Tensor) -> Encoded:
        """tokens [B, T] -> outputs [B, T, output_size] (zeros at padding), mask, last states."""
        mask = tokens != self.pad_index  # [B, T]
        lengths = mask.sum(dim=1).clamp(min=1)  # an empty row reads its first (padding) position
        x = self.dropout(self.embedding(tokens))  # [B, T, E]
        for k, directions in enumerate(self.layers):
            if k > 0:
                x = self.dropout(x)
            per_direction = [directions[0](x)[0]]  # [B, T, H], left to right
            if self.bidirectional:
                backward, _ = directions[1](reverse_within_length(x, lengths))
                per_direction.append(reverse_within_length(backward, lengths))  # back in reading order
            x = self.merged(per_direction)
        # A padded position holds the state carried past the row's end: zero it.
        return Encoded(x * mask.unsqueeze(-1), mask, self.last_states(per_direction, lengths))

    def merged(self, per_direction: list[Tensor]) -> Tensor:
        """[h_fwd ; h_bwd] (concat) or h_fwd + h_bwd (sum); one direction as it is."""
        return (
            torch.cat(per_direction, dim=-1) if self.merge == "concat" else torch.stack(per_direction).sum(0)
        )

    def last_states(self, per_direction: list[Tensor], lengths: Tensor) -> Tensor:
        """The top layer's final state of each direction, merged: the forward one at each row's last real
        token, the backward one at position 0 (where it has read the whole row) -> [B, output_size]."""
        rows = torch.arange(lengths.size(0), device=lengths.device)
        finals = [per_direction[0][rows, lengths - 1]]  # [B, H]
        if self.bidirectional:
            finals.append(per_direction[1][:, 0])
        return self.merged(finals)


class BagEncoder(nn.Module):
    """The bag-of-embeddings baseline's encoder: each token's embedding, no order (pool it with mean)."""

    def __init__(self, *, vocab_size: int, embedding_size: int, dropout: float = 0.0, pad_index: int = 0):
        super().__init__()
        self.pad_index, self.output_size = pad_index, embedding_size
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: Tensor) -> Encoded:
        """tokens [B, T] -> embeddings [B, T, E] (zeros at padding), mask, no summary."""
        mask = tokens != self.pad_index  # [B, T]
        return Encoded(self.dropout(self.embedding(tokens)) * mask.unsqueeze(-1), mask, None)


class TransformerEncoder(nn.Module):
    """A learned class token before the sentence, then Transformer encoder blocks (Devlin et al. 2019's
    [CLS]); its final vector is the summary. Blocks, embedding and masks are models/transformer.py's::

        x = [c ; E(w_1)·√d + p_1 ; ... ; E(w_T)·√d + p_T]      [B, 1 + T, D]
        x = Block_N(... Block_1(x, padding masked))            summary = x_0, outputs = x_1 .. x_T
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        d_model: int,
        heads: int,
        num_layers: int,
        ffn_size: int,
        dropout: float = 0.0,
        positions: Literal["sinusoidal", "learned"] = "learned",
        max_positions: int = 512,
        norm_first: bool = True,
        activation: Literal["relu", "gelu"] = "gelu",
        pad_index: int = 0,
    ) -> None:
        super().__init__()
        self.pad_index, self.output_size, self.max_positions = pad_index, d_model, max_positions
        # The words sit at positions 1 .. T; the class token is always at position 0, so its learned
        # vector needs no position added (a fixed one would only shift what it learns).
        self.class_token = nn.Parameter(torch.randn(d_model))  # unit variance, as E(w)·√d has
        self.embedding = Embedding(vocab_size, d_model, positions, max_positions, dropout)
        layer = (d_model, heads, ffn_size, dropout, activation, norm_first)
        self.blocks = nn.ModuleList(Block(*layer, cross_attention=False) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()  # pre-LN closes with one LN

    def forward(self, tokens: Tensor) -> Encoded:
        """tokens [B, T] -> outputs [B, T, D] (zeros at padding), mask [B, T], class vector [B, D]."""
        check_length(tokens.size(1) + 1, self.max_positions, "a sentence with its class token")
        mask = tokens != self.pad_index  # [B, T]
        cls = self.class_token.expand(tokens.size(0), 1, -1)  # [B, 1, D]
        x = torch.cat([cls, self.embedding(tokens, start=1)], dim=1)  # [B, 1 + T, D]
        attend = torch.cat([mask.new_ones(tokens.size(0), 1), mask], dim=1)  # [B, 1 + T]
        for block in self.blocks:
            x, _, _ = block(x, padding_mask(attend))
        x = self.norm(x)
        return Encoded(x[:, 1:] * mask.unsqueeze(-1), mask, x[:, 0])


class Pooling(nn.Module):
    """The sentence vector from an encoder's outputs h_t over the real positions t of a row::

        last / cls  the encoder's summary (the recurrent last states / the Transformer's class token)
        mean        (1/n) Σ_t h_t
        max         max_t h_t, feature by feature
        attention   a = softmax_t(wᵀ tanh(W h_t + b)),  s = Σ_t a_t h_t   (additive self-attentive
                    pooling, Lin et al. 2017 with one hop; Yang et al. 2016's word attention)

    Only attention returns weights [B, T] (zero at padding); the others return None.
    """

    def __init__(self, kind: str, size: int, attention_size: int = 64) -> None:
        super().__init__()
        if kind not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {kind!r}")
        self.kind = kind
        if kind == "attention":
            self.project = nn.Linear(size, attention_size)  # W, b
            self.score = nn.Linear(attention_size, 1, bias=False)  # w

    def forward(self, encoded: Encoded) -> tuple[Tensor, Tensor | None]:
        """Encoded (outputs [B, T, D], mask [B, T]) -> sentence vector [B, D], weights [B, T] or None."""
        h, mask = encoded.outputs, encoded.mask.unsqueeze(-1)  # [B, T, D], [B, T, 1]
        if self.kind in ("last", "cls"):
            if encoded.summary is None:
                raise ValueError(f"pooling={self.kind} needs an encoder with a summary (rnn or transformer)")
            return encoded.summary, None
        if self.kind == "mean":
            return (h * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1), None
        if self.kind == "max":
            return h.masked_fill(~mask, float("-inf")).max(dim=1).values, None
        scores = self.score(torch.tanh(self.project(h))).squeeze(-1)  # [B, T]
        weights = torch.softmax(scores.masked_fill(~encoded.mask, float("-inf")), dim=1)  # [B, T]
        return torch.einsum("bt,btd->bd", weights, h), weights


def make_encoder(
    encoder: Literal["rnn", "transformer", "bag"],
    *,
    vocab_size: int,
    embedding_size: int,
    hidden_size: int,
    num_layers: int,
    dropout: float,
    cell: Literal["rnn", "lstm", "gru"] = "lstm",
    bidirectional: bool = False,
    merge: Literal["concat", "sum"] = "concat",
    variational_dropout: bool = False,
    layer_norm: bool = False,
    weight_norm: bool = False,
    forget_bias: float | None = None,
    heads: int = 4,
    ffn_size: int = 256,
    positions: Literal["sinusoidal", "learned"] = "learned",
    max_positions: int = 512,
    norm_first: bool = True,
    activation: Literal["relu", "gelu"] = "gelu",
    pad_index: int = 0,
) -> RecurrentEncoder | TransformerEncoder | BagEncoder:
    """One encoder from a model config's flat keys: the Transformer's width is embedding_size (d_model),
    its depth num_layers; the recurrent keys mean nothing to it, nor the Transformer's to the others."""
    if encoder == "rnn":
        return RecurrentEncoder(
            vocab_size=vocab_size, embedding_size=embedding_size, hidden_size=hidden_size, cell=cell,
            num_layers=num_layers, bidirectional=bidirectional, merge=merge, dropout=dropout,
            variational_dropout=variational_dropout, layer_norm=layer_norm, weight_norm=weight_norm,
            forget_bias=forget_bias, pad_index=pad_index,
        )  # fmt: skip
    if encoder == "transformer":
        return TransformerEncoder(
            vocab_size=vocab_size, d_model=embedding_size, heads=heads, num_layers=num_layers,
            ffn_size=ffn_size, dropout=dropout, positions=positions, max_positions=max_positions,
            norm_first=norm_first, activation=activation, pad_index=pad_index,
        )  # fmt: skip
    if encoder == "bag":
        return BagEncoder(
            vocab_size=vocab_size, embedding_size=embedding_size, dropout=dropout, pad_index=pad_index
        )
    raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got {encoder!r}")
