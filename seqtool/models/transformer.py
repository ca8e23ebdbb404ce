"""The Transformer encoder-decoder (Vaswani et al. 2017, "Attention Is All You Need").

::

    src [B, S] -> embed · √d + PE -> N × [self-attention (padding masked), feed-forward]  -> memory [B, S, D]
    tgt [B, T] -> embed · √d + PE -> N × [causal self-attention, cross-attention over memory, feed-forward]
               -> linear -> logits [B, T, V]

Each sub-layer is a residual block: ``x + dropout(f(LN(x)))`` with ``norm_first`` (pre-LN, Xiong et al.
2020; one more LN closes each stack) or ``LN(x + dropout(f(x)))`` as in the paper (post-LN).

Incremental decoding keeps, per decoder layer, a key/value cache in the state, every tensor batch first.
What comes from the source is kept once per sentence, not once per row: beam search decodes R = A·K rows
for A sentences (K beams each, sentence-major), and the K rows of a sentence share its memory::

    self      list of (k, v), each (R, heads, t, head_dim): the t target positions fed so far; grows by one
    cross     list of (k, v), each (A, heads, S, head_dim): projected from memory once, in init_state
    src_mask  [A, S]  True on real source tokens
    attention [R, S]  the last layer's cross-attention of the last step, averaged over heads

The K rows of a sentence meet its memory as K queries of one cross-attention (queries [A, K, D] over keys
(A, heads, S, head_dim)), so the memory is neither copied per beam nor re-read per row (fairseq#1957).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqtool.errors import UserError
from seqtool.models.attention import MultiHeadAttention
from seqtool.models.base import State, map_tensors

Cache = tuple[Tensor, Tensor]  # k, v each (B, heads, t, head_dim)


def sinusoids(length: int, d_model: int) -> Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)) -> [length, d]."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # [length, 1]
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
    return table


class TooLong(UserError, ValueError):
    """A sequence longer than the position table: the data or the config is at fault, not the code, so the
    command ends in one line and exit 2 (a UserError); a ValueError to callers that check arguments."""


def check_length(length: int, max_positions: int, what: str) -> None:
    """Refuse a sequence the position table cannot cover, saying what to change."""
    if length > max_positions:
        raise TooLong(
            f"{what} has {length} positions, more than model.max_positions={max_positions}; "
            "shorten it or train a model with a larger max_positions"
        )


class Embedding(nn.Module):
    """Token embedding · √d plus positions (fixed sinusoids or a learned table of max_positions rows)."""

    def __init__(self, vocab_size: int, d_model: int, positions: str, max_positions: int, dropout: float):
        super().__init__()
        if positions not in ("sinusoidal", "learned"):
            raise ValueError(f"model.positions must be sinusoidal or learned, got {positions!r}")
        self.tokens = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.tokens.weight, std=d_model**-0.5)  # times √d: unit variance
        self.scale, self.max_positions = math.sqrt(d_model), max_positions
        self.learned = nn.Embedding(max_positions, d_model) if positions == "learned" else None
        if self.learned is not None:
            nn.init.normal_(self.learned.weight, std=d_model**-0.5)
        else:
            self.register_buffer("table", sinusoids(max_positions, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: Tensor, start: int = 0) -> Tensor:
        """tokens [B, T] at positions start .. start + T - 1 -> [B, T, D]."""
        table = self.learned.weight if self.learned is not None else self.table
        return self.dropout(self.tokens(tokens) * self.scale + table[start : start + tokens.size(1)])


class FeedForward(nn.Sequential):
    """FFN(x) = W_2 act(W_1 x + b_1) + b_2, applied at each position."""

    def __init__(self, d_model: int, ffn_size: int, dropout: float, activation: str) -> None:
        if activation not in ("relu", "gelu"):
            raise ValueError(f"model.activation must be relu or gelu, got {activation!r}")
        act = nn.ReLU() if activation == "relu" else nn.GELU()
        super().__init__(nn.Linear(d_model, ffn_size), act, nn.Dropout(dropout), nn.Linear(ffn_size, d_model))


class Block(nn.Module):
    """Residual sub-layers (self-attention, [cross-attention,] feed-forward), each with its LayerNorm.

    An encoder layer has no cross-attention and a non-causal self-attention; a decoder layer has both (a
    language model's has only the causal self-attention)."""

    def __init__(
        self, d_model: int, heads: int, ffn_size: int, dropout: float, activation: str, norm_first: bool,
        *, cross_attention: bool,
    ) -> None:  # fmt: skip
        super().__init__()
        self.norm_first = norm_first
        self.self_attention = MultiHeadAttention(d_model, heads, dropout)
        self.cross_attention = MultiHeadAttention(d_model, heads, dropout) if cross_attention else None
        self.feed_forward = FeedForward(d_model, ffn_size, dropout, activation)
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(3 if cross_attention else 2))
        self.dropout = nn.Dropout(dropout)

    def residual(self, x: Tensor, k: int, sublayer) -> tuple[Tensor, Any]:
        """x + dropout(f(LN_k(x))) (pre-LN) or LN_k(x + dropout(f(x))) (post-LN); f returns (out, extra)."""
        if self.norm_first:
            out, extra = sublayer(self.norms[k](x))
            return x + self.dropout(out), extra
        out, extra = sublayer(x)
        return self.norms[k](x + self.dropout(out)), extra

    def forward(
        self,
        x: Tensor,
        self_mask: Tensor | None = None,
        *,
        causal: bool = False,
        cache: Cache | None = None,
        cross: Cache | None = None,
        cross_mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Cache, Tensor | None]:
        """x [B, T, D] -> x [B, T, D], the self-attention's (k, v) with ``cache`` prepended, and the
        cross-attention weights [B, T, S] when ``need_weights``. ``cross``: the memory's (k, v)."""

        def self_attend(h: Tensor) -> tuple[Tensor, Cache]:
            k, v = self.self_attention.keys_values(h)  # (B, heads, T, head_dim)
            if cache is not None:  # the earlier positions: (B, heads, t + T, head_dim)
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            return self.self_attention.attend(h, k, v, self_mask, causal=causal)[0], (k, v)

        def cross_attend(h: Tensor) -> tuple[Tensor, Tensor | None]:
            # the R = A·K rows of h [R, T, D] query the memory of their sentence (cross: A sentences) as
            # one group of K·T queries each: [A, K·T, D]; K = 1 outside beam search
            sentences = cross[0].size(0)
            grouped = h.unflatten(0, (sentences, -1)).flatten(1, 2)  # [A, K·T, D]
            out, weights = self.cross_attention.attend(grouped, *cross, cross_mask, need_weights=need_weights)
            rows = lambda y: y.unflatten(1, (-1, h.size(1))).flatten(0, 1)  # noqa: E731  [A, K·T, ·] -> [R, T, ·]
            return rows(out), None if weights is None else rows(weights)

        x, kv = self.residual(x, 0, self_attend)
        weights = None
        if self.cross_attention is not None:
            x, weights = self.residual(x, 1, cross_attend)
        x, _ = self.residual(x, len(self.norms) - 1, lambda h: (self.feed_forward(h), None))
        return x, kv, weights


def padding_mask(src_mask: Tensor) -> Tensor:
    """src_mask [B, S] -> the attention mask [B, 1, 1, S] (broadcast over heads and queries)."""
    return src_mask[:, None, None, :]


class Transformer(nn.Module):
    """The encoder-decoder Transformer; an incremental decoder with a key/value cache."""

    task_shapes = ("many-to-many asynchronous",)  # read by seqtool.shapes

    def __init__(
        self,
        *,
        src_vocab_size: int,
        tgt_vocab_size: int,
        pad_index: int,
        bos_index: int,
        eos_index: int,
        d_model: int,
        heads: int,
        encoder_layers: int,
        decoder_layers: int,
        ffn_size: int,
        dropout: float,
        positions: Literal["sinusoidal", "learned"],
        max_positions: int,
        norm_first: bool,
        tie_embeddings: bool,
        share_all_embeddings: bool,
        activation: Literal["relu", "gelu"],
    ) -> None:
        super().__init__()
        if share_all_embeddings and src_vocab_size != tgt_vocab_size:
            raise ValueError(
                "share_all_embeddings needs one vocabulary for both sides (task.joint_vocab=true); "
                f"got {src_vocab_size} source and {tgt_vocab_size} target tokens"
            )
        self.pad_index, self.bos_index, self.eos_index = pad_index, bos_index, eos_index
        self.max_positions = max_positions
        layer = (d_model, heads, ffn_size, dropout, activation, norm_first)
        self.src_embedding = Embedding(src_vocab_size, d_model, positions, max_positions, dropout)
        self.tgt_embedding = Embedding(tgt_vocab_size, d_model, positions, max_positions, dropout)
        if share_all_embeddings:
            self.tgt_embedding.tokens.weight = self.src_embedding.tokens.weight
        self.encoder = nn.ModuleList(Block(*layer, cross_attention=False) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(Block(*layer, cross_attention=True) for _ in range(decoder_layers))
        # Pre-LN leaves each stack's output unnormalised: one final LayerNorm each (identity for post-LN).
        self.encoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.output = nn.Linear(d_model, tgt_vocab_size, bias=False)
        if tie_embeddings:
            self.output.weight = self.tgt_embedding.tokens.weight

    @property
    def max_source_positions(self) -> int:
        """The longest source (EOS included) the position table covers."""
        return self.max_positions

    @property
    def max_target_positions(self) -> int:
        """The most target tokens (BOS fed, EOS generated) one decoding can take: cap max_len here."""
        return self.max_positions

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """src [B, S], tgt_in [B, T] (BOS + target[:-1]) -> logits [B, T, V]."""
        return self.decode(tgt_in, self.encode(src))

    def encode(self, src: Tensor) -> dict[str, Tensor]:
        """src [B, S] right-padded with pad_index -> memory [B, S, D] and src_mask [B, S]."""
        check_length(src.size(1), self.max_positions, "a source")
        src_mask = src != self.pad_index  # [B, S]
        x = self.src_embedding(src)  # [B, S, D]
        for block in self.encoder:
            x, _, _ = block(x, padding_mask(src_mask))
        return {"memory": self.encoder_norm(x), "src_mask": src_mask}

    def decode(self, tgt_in: Tensor, memory: dict[str, Tensor]) -> Tensor:
        """All target positions at once (causal): tgt_in [B, T] -> logits [B, T, V]."""
        check_length(tgt_in.size(1), self.max_positions, "a target")
        x, cross_mask = self.tgt_embedding(tgt_in), padding_mask(memory["src_mask"])  # [B, T, D]
        for block in self.decoder:
            cross = block.cross_attention.keys_values(memory["memory"])
            x, _, _ = block(x, causal=True, cross=cross, cross_mask=cross_mask)
        return self.output(self.decoder_norm(x))

    # ------------------------------------------------------------------- the incremental decoder
    def init_state(self, memory: dict[str, Tensor], batch_size: int) -> State:
        """Project memory into each layer's cross-attention K/V once; empty self-attention caches."""
        cross = [block.cross_attention.keys_values(memory["memory"]) for block in self.decoder]
        empty = cross[0][0][:, :, :0]  # (B, heads, 0, head_dim)
        return {
            "self": [(empty, empty) for _ in self.decoder],
            "cross": cross,
            "src_mask": memory["src_mask"],
            "attention": torch.zeros_like(memory["src_mask"], dtype=empty.dtype),  # [B, S], set by each step
        }

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """tokens [B] at the next position -> log-probs [B, V]; the caches grow by one position."""
        position = state["self"][0][0].size(2)
        check_length(position + 1, self.max_positions, "decoding: the target")
        x = self.tgt_embedding(tokens.unsqueeze(1), start=position)  # [B, 1, D]
        cross_mask, caches = padding_mask(state["src_mask"]), []
        for k, block in enumerate(self.decoder):
            last = k == len(self.decoder) - 1
            x, kv, weights = block(
                x, cache=state["self"][k], cross=state["cross"][k], cross_mask=cross_mask, need_weights=last
            )
            caches.append(kv)
        logits = self.output(self.decoder_norm(x[:, 0]))  # [B, V]
        return F.log_softmax(logits, dim=-1), state | {"self": caches, "attention": weights[:, 0]}

    def reorder(self, state: State, index: Tensor) -> State:
        """Pick rows index [R'] of the state: the self-attention caches and attention row by row; the
        per-sentence memory (cross K/V, src_mask) only as far as the sentences of those rows change."""
        rows = lambda t: t.index_select(0, index)  # noqa: E731
        sentences = self.sentences_of(state, index)
        memory = {"cross": state["cross"], "src_mask": state["src_mask"]}
        if sentences is not None:  # None: the same sentences as before, in the same order
            memory = map_tensors(lambda t: t.index_select(0, sentences), memory)
        return {"self": map_tensors(rows, state["self"]), "attention": rows(state["attention"]), **memory}

    @staticmethod
    def sentences_of(state: State, index: Tensor) -> Tensor | None:
        """The sentences [A'] whose memory the rows index [R'] need, in order, or None when they are the
        state's own A sentences unchanged.

        Row r of the state belongs to sentence r // (R / A). When the new rows come in runs of equal length,
        one run per sentence (beam search: K rows per sentence, some sentences dropped), the memory is kept
        per sentence; any other order of rows gets one copy of its sentence's memory per row."""
        per_sentence = state["self"][0][0].size(0) // state["src_mask"].size(0)
        sentence = index // per_sentence  # [R'], the sentence of each new row
        if sentence.numel() == 0:
            return sentence
        runs, lengths = torch.unique_consecutive(sentence, return_counts=True)
        if not bool((lengths == lengths[0]).all()):
            return sentence
        unchanged = len(runs) == state["src_mask"].size(0) and bool(
            (runs == torch.arange(len(runs), device=runs.device)).all()
        )
        return None if unchanged else runs
