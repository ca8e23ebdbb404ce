"""Attention: Luong et al. 2015's score functions (Bahdanau et al. 2015's additive one among them), local-m
and local-p, and the Transformer's multi-head attention (Vaswani et al. 2017).

Symbols as in the papers: h_t the decoder state (the query), h_s the encoder states (the memory), a_t the
weights over source positions s, mask True on real (non-pad) source positions::

    global   a_t(s) = softmax_s(score(h_t, h_s))                          over the real positions
    dot      score = h_tᵀ h_s
    general  score = h_tᵀ W_a h_s
    concat   score = v_aᵀ tanh(W_a [h_t; h_s])                            ("additive" is the same module)
    local-m  p_t = t                                                      t: the query's target position
             a_t(s) = softmax_s(score_general)  over |s - p_t| ≤ D        (monotonic alignment, no Gaussian)
    local-p  p_t = S · sigmoid(v_pᵀ tanh(W_p h_t))                         S: the sentence's real length
             a_t(s) ∝ softmax_s(score_general) · exp(-(s - p_t)² / 2σ²)  σ = D / 2, |s - p_t| ≤ D

Local-m's centre stops at the sentence's last real position (p_t = min(t, S - 1)): Luong et al. leave a
target longer than its source open, and a window past the end would hold no position to attend to.
Local-p weights are renormalised over the window so that, as for the global scores, they sum to 1 (the
paper leaves them unnormalised after the Gaussian). What depends on h_s alone (W_a h_s) is computed once
per source by ``prepare``, so a decoder step costs one query-side product.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NEG_INF = float("-inf")
SCORES = ("dot", "general", "concat", "additive", "local_m", "local_p")
Score = Literal["dot", "general", "concat", "additive", "local_m", "local_p"]
LOCAL = ("local_m", "local_p")  # the general score inside a window of half-width D around p_t


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax of scores [..., S] over the positions where mask (broadcastable, bool) is True; 0 elsewhere."""
    return scores.masked_fill(~mask, NEG_INF).softmax(dim=-1)


class DotScore(nn.Module):
    """score(h_t, h_s) = h_tᵀ h_s: needs query and memory of one size."""

    def prepare(self, h_s: Tensor) -> Tensor:
        return h_s

    def forward(self, h_t: Tensor, keys: Tensor) -> Tensor:
        """h_t [B, T, H], keys [B, S, H] -> scores [B, T, S]."""
        return h_t @ keys.transpose(1, 2)


class GeneralScore(nn.Module):
    """score(h_t, h_s) = h_tᵀ W_a h_s, with W_a h_s precomputed once per source."""

    def __init__(self, query_size: int, memory_size: int) -> None:
        super().__init__()
        self.W_a = nn.Linear(memory_size, query_size, bias=False)

    def prepare(self, h_s: Tensor) -> Tensor:
        return self.W_a(h_s)  # [B, S, H]

    def forward(self, h_t: Tensor, keys: Tensor) -> Tensor:
        """h_t [B, T, H], keys = W_a h_s [B, S, H] -> scores [B, T, S]."""
        return h_t @ keys.transpose(1, 2)


class ConcatScore(nn.Module):
    """score(h_t, h_s) = v_aᵀ tanh(W_a [h_t; h_s]) = v_aᵀ tanh(W_q h_t + W_k h_s), W_a = [W_q  W_k]."""

    def __init__(self, query_size: int, memory_size: int, attention_size: int) -> None:
        super().__init__()
        self.W_q = nn.Linear(query_size, attention_size, bias=False)
        self.W_k = nn.Linear(memory_size, attention_size)
        self.v_a = nn.Linear(attention_size, 1, bias=False)

    def prepare(self, h_s: Tensor) -> Tensor:
        return self.W_k(h_s)  # [B, S, A]

    def forward(self, h_t: Tensor, keys: Tensor) -> Tensor:
        """h_t [B, T, H], keys = W_k h_s [B, S, A] -> scores [B, T, S]."""
        hidden = torch.tanh(self.W_q(h_t).unsqueeze(2) + keys.unsqueeze(1))  # [B, T, S, A]
        return self.v_a(hidden).squeeze(-1)


class Attention(nn.Module):
    """Luong attention of decoder states over encoder states: global (dot, general, concat/additive) or
    local (local-m at p_t = t, local-p at a predicted p_t: the general score inside a window of
    half-width ``window`` = D)."""

    def __init__(self, score: Score, query_size: int, memory_size: int, window: int) -> None:
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"attention must be one of {', '.join(SCORES)}, got {score!r}")
        if score == "dot" and query_size != memory_size:
            raise ValueError(
                f"dot attention needs equal query and memory sizes, got {query_size}, {memory_size}"
            )
        if score == "local_m" and window < 0:  # D = 0: attend to s = p_t alone (hard monotonic)
            raise ValueError(f"local_m attention needs model.local_window >= 0, got {window}")
        if score == "local_p" and window < 1:  # σ = D/2 must be positive
            raise ValueError(f"local_p attention needs model.local_window >= 1, got {window}")
        self.kind = score
        self.window = window if score in LOCAL else None
        if score == "dot":
            self.score = DotScore()
        elif score in ("general", *LOCAL):
            self.score = GeneralScore(query_size, memory_size)
        else:
            self.score = ConcatScore(query_size, memory_size, query_size)
        if score == "local_p":
            self.W_p = nn.Linear(query_size, query_size, bias=False)
            self.v_p = nn.Linear(query_size, 1, bias=False)

    def prepare(self, h_s: Tensor) -> Tensor:
        """What the score needs of the memory h_s [B, S, M], once per source."""
        return self.score.prepare(h_s)

    def weights(self, h_t: Tensor, keys: Tensor, mask: Tensor, positions: Tensor | None = None) -> Tensor:
        """a_t [B, T, S] for queries h_t [B, T, H], prepared keys, mask [B, S] (True: real position);
        ``positions`` [B, T], the queries' target positions t, is what local-m centres its window on."""
        scores = self.score(h_t, keys)  # [B, T, S]
        if self.kind == "local_m":
            if positions is None:
                raise TypeError("local_m attention needs the target positions of its queries")
            return self._local_m(scores, mask, positions)
        if self.kind == "local_p":
            return self._local_p(scores, h_t, mask)
        return masked_softmax(scores, mask.unsqueeze(1))

    def _local_m(self, scores: Tensor, mask: Tensor, positions: Tensor) -> Tensor:
        """Softmax of scores [B, T, S] over the real positions with |s - p_t| <= D, p_t = t."""
        last = mask.sum(-1)[:, None, None] - 1  # S - 1 per sentence, [B, 1, 1]
        p_t = torch.minimum(positions.unsqueeze(-1), last)  # [B, T, 1]
        s = torch.arange(scores.size(-1), device=scores.device)  # [S]
        inside = mask.unsqueeze(1) & ((s - p_t).abs() <= self.window)  # [B, T, S]
        return masked_softmax(scores, inside)

    def _local_p(self, scores: Tensor, h_t: Tensor, mask: Tensor) -> Tensor:
        """Scores [B, T, S] inside the window around the predicted p_t, times the Gaussian, renormalised."""
        length = mask.sum(-1).to(scores.dtype)[:, None, None]  # S per sentence, [B, 1, 1]
        p_t = length * torch.sigmoid(self.v_p(torch.tanh(self.W_p(h_t))))  # [B, T, 1]
        distance = torch.arange(scores.size(-1), device=scores.device) - p_t  # s - p_t, [B, T, S]
        sigma = self.window / 2
        inside = mask.unsqueeze(1) & (distance.abs() <= self.window)
        # softmax(score) · exp(-d² / 2σ²), renormalised over the window = softmax(score - d² / 2σ²) there
        return masked_softmax(scores - distance.square() / (2 * sigma**2), inside)

    def forward(
        self, h_t: Tensor, h_s: Tensor, keys: Tensor, mask: Tensor, positions: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """h_t [B, T, H], h_s [B, S, M] -> context c_t = Σ_s a_t(s) h_s [B, T, M], weights a_t [B, T, S]."""
        a_t = self.weights(h_t, keys, mask, positions)
        return a_t @ h_s, a_t


# --------------------------------------------------------------------------------- multi-head attention


def causal_mask(queries: int, keys: int, device: torch.device) -> Tensor:
    """(T, S) True where query i may see key j: the T queries are the last T of the S positions, so
    query i sits at position S - T + i and sees keys j <= S - T + i::

        S = 5 keys, T = 2 queries after a cache of 3:   1 1 1 1 0
                                                        1 1 1 1 1

    SDPA's ``is_causal`` is the top-left triangle instead (query i sees j <= i): the same only when T == S.
    """
    return torch.ones(queries, keys, dtype=torch.bool, device=device).tril(diagonal=keys - queries)


class MultiHeadAttention(nn.Module):
    """head_i = softmax(Q_i K_iᵀ / √d_k) V_i,  out = W_o [head_1; ...; head_h]  (Vaswani et al. 2017).

    Masks are boolean, True where a query may attend (SDPA's convention; ``nn.MultiheadAttention``'s is the
    opposite), broadcastable to (B, heads, T, S). Without weights it runs torch's fused
    ``scaled_dot_product_attention`` (flash / memory-efficient kernels on CUDA, a fused kernel on CPU), which
    never materialises the weights; with ``need_weights`` (attention plots, the decoder's last
    cross-attention) it computes the same softmax explicitly and also returns the weights averaged over heads.
    """

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"model.d_model ({d_model}) must be divisible by model.heads ({heads})")
        self.heads, self.head_dim, self.dropout = heads, d_model // heads, dropout
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(d_model, d_model) for _ in range(3))
        self.out_proj = nn.Linear(d_model, d_model)
        for linear in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def split(self, x: Tensor) -> Tensor:
        """[B, T, D] -> (B, heads, T, head_dim)."""
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """K and V of x [B, S, D], each (B, heads, S, head_dim): what a decoder caches."""
        return self.split(self.k_proj(x)), self.split(self.v_proj(x))

    def forward(
        self, query: Tensor, key_value: Tensor, mask: Tensor | None = None, *, causal: bool = False
    ) -> Tensor:
        """query [B, T, D] attends to key_value [B, S, D] -> [B, T, D]; ``causal``: position t sees s <= t."""
        return self.attend(query, *self.keys_values(key_value), mask, causal=causal)[0]

    def attend(
        self,
        query: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None = None,
        *,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """query [B, T, D] over k, v (B, heads, S, head_dim) -> out [B, T, D], weights [B, T, S] or None.

        ``causal``: each query sees the keys up to its own position, the T queries being the last T of the
        S positions (a key/value cache holds the S - T before them)."""
        q = self.split(self.q_proj(query))  # (B, heads, T, head_dim)
        dropout = self.dropout if self.training else 0.0  # SDPA drops whenever dropout_p > 0, even in eval
        T, S = q.size(2), k.size(2)
        # SDPA's is_causal flag takes no other mask and aligns the triangle top-left: right only for a
        # square (T == S) without padding; otherwise the triangle is a boolean mask of its own.
        if causal and (need_weights or mask is not None or T != S):
            allowed = causal_mask(T, S, q.device)  # (T, S)
            mask, causal = (allowed if mask is None else mask & allowed), False
        if not need_weights:  # softmax(QKᵀ/√d_k) V, fused; the weights are never materialised
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal)
            return self.out_proj(out.transpose(1, 2).flatten(2)), None  # [B, T, D]
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # QKᵀ/√d_k, (B, heads, T, S)
        probs = scores.softmax(-1) if mask is None else masked_softmax(scores, mask)
        out = F.dropout(probs, dropout, self.training) @ v  # (B, heads, T, head_dim)
        weights = probs.mean(dim=1)  # (B, T, S)
        return self.out_proj(out.transpose(1, 2).flatten(2)), weights  # [B, T, D]
