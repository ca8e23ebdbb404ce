"""Attention: masked weights for every score, scores by hand, the local-m and local-p windows, multi-head =
torch's."""

import math

import pytest
import torch
from torch import nn

from seqtool.models.attention import SCORES, Attention, MultiHeadAttention, masked_softmax

B, T, S, H = 3, 4, 7, 6
LENGTHS = torch.tensor([7, 4, 1])
POSITIONS = torch.arange(T).expand(B, T)  # the queries' target positions t (local-m's p_t)


def source_mask(lengths: torch.Tensor = LENGTHS, length: int = S) -> torch.Tensor:
    return torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)  # [B, S]


def make_attention(score: str, window: int = 2) -> Attention:
    torch.manual_seed(0)
    return Attention(score, H, H, window)


@pytest.mark.parametrize("score", SCORES)
def test_weights_sum_to_one_over_real_positions_and_are_zero_on_padding(score):
    attention = make_attention(score)
    h_t, h_s, mask = torch.randn(B, T, H), torch.randn(B, S, H), source_mask()
    context, a_t = attention(h_t, h_s, attention.prepare(h_s), mask, POSITIONS)
    assert a_t.shape == (B, T, S) and context.shape == (B, T, H)
    torch.testing.assert_close(a_t.sum(-1), torch.ones(B, T))
    assert (a_t.masked_select(~mask.unsqueeze(1)) == 0).all()
    torch.testing.assert_close(context, a_t @ h_s)
    # padding's content is irrelevant
    noisy = h_s.masked_fill(~mask.unsqueeze(-1), 1e3)
    torch.testing.assert_close(attention(h_t, noisy, attention.prepare(noisy), mask, POSITIONS)[1], a_t)


def tiny_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    h_t = torch.tensor([[[1.0, 2.0]]])  # [1, 1, 2]
    h_s = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [5.0, 5.0]]])  # [1, 4, 2], last one is padding
    return h_t, h_s, torch.tensor([[True, True, True, False]])


def expected(scores: list[float]) -> torch.Tensor:
    e = [math.exp(s) for s in scores]
    return torch.tensor([[[x / sum(e) for x in e] + [0.0]]])


def test_dot_score_by_hand():
    h_t, h_s, mask = tiny_case()
    attention = Attention("dot", 2, 2, 1)
    torch.testing.assert_close(attention.weights(h_t, attention.prepare(h_s), mask), expected([1, 2, 3]))


def test_general_score_by_hand():
    h_t, h_s, mask = tiny_case()
    attention = Attention("general", 2, 2, 1)
    with torch.no_grad():
        attention.score.W_a.weight.copy_(torch.tensor([[0.0, 1.0], [2.0, 0.0]]))  # W_a h_s = (y, 2x)
    # h_tᵀ W_a h_s = 1·y + 2·2x: (1,0) -> 4, (0,1) -> 1, (1,1) -> 5
    torch.testing.assert_close(attention.weights(h_t, attention.prepare(h_s), mask), expected([4, 1, 5]))


@pytest.mark.parametrize("score", ["concat", "additive"])
def test_concat_score_by_hand(score):
    h_t, h_s, mask = tiny_case()
    attention = Attention(score, 2, 2, 1)
    W_a = torch.tensor([[0.5, -1.0, 1.0, 0.0], [0.0, 1.0, -0.5, 2.0]])  # [A, 2 + 2] acting on [h_t; h_s]
    b, v_a = torch.tensor([0.1, -0.2]), torch.tensor([1.5, -1.0])
    with torch.no_grad():
        attention.score.W_q.weight.copy_(W_a[:, :2])
        attention.score.W_k.weight.copy_(W_a[:, 2:])
        attention.score.W_k.bias.copy_(b)
        attention.score.v_a.weight.copy_(v_a.unsqueeze(0))
    scores = [float(v_a @ torch.tanh(W_a @ torch.cat([h_t[0, 0], h_s[0, s]]) + b)) for s in range(3)]
    torch.testing.assert_close(attention.weights(h_t, attention.prepare(h_s), mask), expected(scores))


@pytest.mark.parametrize("window", [1, 2, 3])
def test_local_p_is_zero_outside_its_window_and_gaussian_inside(window):
    attention = make_attention("local_p", window)
    h_t, h_s, mask = torch.randn(B, T, H), torch.randn(B, S, H), source_mask()
    a_t = attention.weights(h_t, attention.prepare(h_s), mask)
    length = LENGTHS.float()[:, None, None]
    p_t = length * torch.sigmoid(attention.v_p(torch.tanh(attention.W_p(h_t))))  # [B, T, 1]
    distance = torch.arange(S) - p_t  # [B, T, S]
    inside = (distance.abs() <= window) & mask.unsqueeze(1)
    assert (a_t.masked_select(~inside) == 0).all() and (a_t.masked_select(inside) > 0).all()
    # inside the window: softmax(general score) · exp(-(s - p_t)² / 2σ²), renormalised
    general = (h_t @ attention.score.W_a(h_s).transpose(1, 2)).softmax(-1)
    unnormalised = general * torch.exp(-distance.square() / (2 * (window / 2) ** 2)) * inside
    torch.testing.assert_close(a_t, unnormalised / unnormalised.sum(-1, keepdim=True))


@pytest.mark.parametrize("window", [0, 1, 2])
def test_local_m_is_the_softmax_of_the_in_window_scores_around_t_and_zero_outside(window):
    """Luong et al. 2015, §3.2, local-m: p_t = t, a_t(s) = softmax of the general scores over
    [p_t - D, p_t + D] (and the sentence), no Gaussian; a target past the source's end keeps p_t = S - 1."""
    attention = make_attention("local_m", window)
    h_t, h_s, mask = torch.randn(B, T, H), torch.randn(B, S, H), source_mask()
    positions = POSITIONS + 2  # t = 2..5: past the end of the 4- and 1-token sentences
    a_t = attention.weights(h_t, attention.prepare(h_s), mask, positions)
    W_a = attention.score.W_a.weight.detach()
    for b in range(B):
        length = int(LENGTHS[b])
        for t in range(T):
            p_t = min(int(positions[b, t]), length - 1)
            window_positions = [s for s in range(length) if abs(s - p_t) <= window]
            scores = {s: float(h_t[b, t] @ W_a @ h_s[b, s]) for s in window_positions}  # h_tᵀ W_a h_s
            total = sum(math.exp(score) for score in scores.values())
            expected = [math.exp(scores[s]) / total if s in scores else 0.0 for s in range(S)]
            torch.testing.assert_close(a_t[b, t], torch.tensor(expected))
    assert not hasattr(attention, "W_p")  # nothing predicts the centre: it is t


def test_local_m_of_window_zero_is_hard_monotonic_alignment():
    attention = make_attention("local_m", 0)
    h_s, mask = torch.randn(B, S, H), source_mask()
    a_t = attention.weights(torch.randn(B, T, H), attention.prepare(h_s), mask, POSITIONS)
    centres = torch.minimum(POSITIONS, LENGTHS.unsqueeze(1) - 1)  # [B, T]
    torch.testing.assert_close(a_t, torch.nn.functional.one_hot(centres, S).float())


def test_local_p_moves_its_window_with_the_query():
    attention = make_attention("local_p", 1)
    h_s, mask = torch.randn(1, S, H), source_mask(torch.tensor([S]))
    with torch.no_grad():
        attention.v_p.weight.fill_(1.0)
        attention.W_p.weight.copy_(torch.eye(H))
    ends = [
        attention.weights(torch.full((1, 1, H), value), attention.prepare(h_s), mask) for value in (-5.0, 5.0)
    ]
    assert ends[0][0, 0, :2].sum() > 0.99  # p_t near 0
    assert ends[1][0, 0, -2:].sum() > 0.99  # p_t near S


def test_unknown_score_and_bad_window_are_refused():
    with pytest.raises(ValueError, match="attention must be one of"):
        Attention("luong", H, H, 1)
    with pytest.raises(ValueError, match="local_window >= 1"):
        Attention("local_p", H, H, 0)
    with pytest.raises(ValueError, match="local_m attention needs model.local_window >= 0, got -1"):
        Attention("local_m", H, H, -1)
    with pytest.raises(TypeError, match="target positions"):  # local-m's p_t cannot be guessed
        make_attention("local_m").weights(torch.randn(B, T, H), torch.randn(B, S, H), source_mask())


def test_masked_softmax_ignores_masked_scores():
    scores = torch.tensor([[1.0, 2.0, 100.0]])
    torch.testing.assert_close(
        masked_softmax(scores, torch.tensor([[True, True, False]])),
        torch.tensor([[1.0, math.e, 0.0]]) / (1 + math.e),
    )


# --------------------------------------------------------------------------------- multi-head attention
D, HEADS = 8, 2


def twins() -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    torch.manual_seed(0)
    ours, theirs = MultiHeadAttention(D, HEADS, 0.0), nn.MultiheadAttention(D, HEADS, batch_first=True)
    with torch.no_grad():
        for k, proj in enumerate((ours.q_proj, ours.k_proj, ours.v_proj)):
            theirs.in_proj_weight[k * D : (k + 1) * D].copy_(proj.weight)
            theirs.in_proj_bias[k * D : (k + 1) * D].copy_(torch.randn(D))
            proj.bias.copy_(theirs.in_proj_bias[k * D : (k + 1) * D])
        theirs.out_proj.weight.copy_(ours.out_proj.weight)
        theirs.out_proj.bias.copy_(torch.randn(D))
        ours.out_proj.bias.copy_(theirs.out_proj.bias)
    return ours.eval(), theirs.eval()


@pytest.mark.parametrize("need_weights", [False, True])
def test_multi_head_equals_torch_with_a_padding_mask(need_weights):
    ours, theirs = twins()
    query, memory, mask = torch.randn(B, T, D), torch.randn(B, S, D), source_mask()
    out, weights = ours.attend(
        query, *ours.keys_values(memory), mask[:, None, None], need_weights=need_weights
    )
    expected, expected_weights = theirs(query, memory, memory, key_padding_mask=~mask)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    if need_weights:
        torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=1e-5)
    else:
        assert weights is None


@pytest.mark.parametrize("need_weights", [False, True])
def test_multi_head_causal_equals_torch_with_a_causal_mask(need_weights):
    ours, theirs = twins()
    x = torch.randn(B, T, D)
    out, _ = ours.attend(x, *ours.keys_values(x), causal=True, need_weights=need_weights)
    blocked = torch.ones(T, T, dtype=torch.bool).triu(1)  # torch: True = may not attend
    expected, _ = theirs(x, x, x, attn_mask=blocked)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    padding = source_mask(LENGTHS.clamp(max=T), T)[:, None, None]  # [B, 1, 1, T]
    with_padding, _ = ours.attend(x, *ours.keys_values(x), padding, causal=True)
    torch.testing.assert_close(with_padding[:, :1], out[:, :1])  # row 0 sees only position 0 either way


def test_multi_head_is_explicit_softmax_of_scaled_dot_products():
    ours, _ = twins()
    query, memory = torch.randn(1, 2, D), torch.randn(1, 3, D)
    out, weights = ours.attend(query, *ours.keys_values(memory), need_weights=True)
    q = ours.q_proj(query).view(1, 2, HEADS, D // HEADS).transpose(1, 2)  # (1, heads, 2, hd)
    k = ours.k_proj(memory).view(1, 3, HEADS, D // HEADS).transpose(1, 2)
    v = ours.v_proj(memory).view(1, 3, HEADS, D // HEADS).transpose(1, 2)
    probs = (q @ k.transpose(-1, -2) / math.sqrt(D // HEADS)).softmax(-1)
    torch.testing.assert_close(weights, probs.mean(1))
    torch.testing.assert_close(out, ours.out_proj((probs @ v).transpose(1, 2).reshape(1, 2, D)))


def test_heads_must_divide_d_model():
    with pytest.raises(ValueError, match=r"d_model \(10\) must be divisible by model.heads \(4\)"):
        MultiHeadAttention(10, 4, 0.0)
