"""Fused attention (torch's scaled_dot_product_attention) = the explicit softmax(QKᵀ/√d)V, for the
Transformer and the Transformer LM: padding, causal and cross-attention masks, and the key/value cache.

The explicit path is the one ``need_weights`` takes; the ``explicit`` fixture forces it for every attention
(weights still handed back only to a caller that asked), so a whole model can run either way."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqtool.models.attention import MultiHeadAttention, causal_mask
from seqtool.models.transformer import Transformer
from seqtool.models.transformer_lm import TransformerLM
from tests.encoder_decoder import BOS, EOS, PAD, V_SRC, V_TGT, batch, stepped

D, ATOL = 16, 1e-6
fused_attend = MultiHeadAttention.attend


def explicit_attend(self, *args, need_weights: bool = False, **kwargs):
    """MultiHeadAttention.attend through its explicit path, the weights returned only if asked."""
    out, weights = fused_attend(self, *args, need_weights=True, **kwargs)
    return out, weights if need_weights else None


@pytest.fixture
def both_paths(monkeypatch):
    """run(f) -> (f() through SDPA, f() through the explicit softmax)."""

    def run(f):
        fused = f()
        with monkeypatch.context() as patch:
            patch.setattr(MultiHeadAttention, "attend", explicit_attend)
            return fused, f()

    return run


@pytest.fixture
def sdpa_calls(monkeypatch) -> list[tuple]:
    """Every call of F.scaled_dot_product_attention, as (T, S, mask given, is_causal)."""
    calls, sdpa = [], F.scaled_dot_product_attention

    def counted(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
        calls.append((q.size(2), k.size(2), attn_mask is not None, is_causal))
        return sdpa(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counted)
    return calls


def make_model(**overrides) -> Transformer:
    options = dict(
        src_vocab_size=V_SRC, tgt_vocab_size=V_TGT, pad_index=PAD, bos_index=BOS, eos_index=EOS, d_model=D,
        heads=4, encoder_layers=2, decoder_layers=2, ffn_size=32, dropout=0.3, positions="sinusoidal",
        max_positions=12, norm_first=True, tie_embeddings=True, share_all_embeddings=False, activation="relu",
    )  # fmt: skip
    torch.manual_seed(0)
    return Transformer(**(options | overrides)).eval()


def make_lm(**overrides) -> TransformerLM:
    options = dict(
        vocab_size=9, d_model=D, heads=4, num_layers=2, ffn_size=32, dropout=0.3, positions="learned",
        max_positions=10, norm_first=True, tie_embeddings=True, activation="gelu",
    )  # fmt: skip
    torch.manual_seed(0)
    return TransformerLM(**(options | overrides)).eval()


# ------------------------------------------------------------------------------- one attention module
def test_causal_mask_with_a_cache_is_the_last_rows_of_the_triangle():
    assert causal_mask(2, 5, torch.device("cpu")).int().tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    square = torch.ones(4, 4, dtype=torch.bool).tril()
    assert torch.equal(causal_mask(4, 4, torch.device("cpu")), square)  # what SDPA's is_causal means


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("padding", [False, True])
def test_causal_queries_after_a_cache_see_their_own_prefix(need_weights, padding):
    """T = 3 new queries over S = 7 keys (4 cached) = the last 3 rows of the full causal attention."""
    torch.manual_seed(0)
    attention = MultiHeadAttention(D, 4, 0.0).eval()
    x = torch.randn(2, 7, D)
    mask = torch.tensor([[True] * 7, [True] * 6 + [False]])[:, None, None] if padding else None
    k, v = attention.keys_values(x)
    full, _ = attention.attend(x, k, v, mask, causal=True)
    last, _ = attention.attend(x[:, 4:], k, v, mask, causal=True, need_weights=need_weights)
    torch.testing.assert_close(last, full[:, 4:], atol=ATOL, rtol=0)


def test_attention_dropout_only_in_training():
    torch.manual_seed(0)
    attention = MultiHeadAttention(D, 4, 0.5)
    x = torch.randn(2, 5, D)
    attention.eval()
    torch.testing.assert_close(attention(x, x), attention(x, x))  # eval: dropout_p = 0
    attention.train()
    assert not torch.allclose(attention(x, x), attention(x, x))


# ---------------------------------------------------------------------------- the encoder-decoder
def test_encoder_self_attention_with_padding(both_paths):
    model, (src, _) = make_model(), batch()
    fused, explicit = both_paths(lambda: model.encode(src)["memory"])
    torch.testing.assert_close(fused, explicit, atol=ATOL, rtol=0)


@pytest.mark.parametrize("variant", [{}, {"norm_first": False, "heads": 2}], ids=str)
def test_forward_causal_self_and_cross_attention_over_source_padding(both_paths, variant):
    model, (src, tgt_in) = make_model(**variant), batch()
    fused, explicit = both_paths(lambda: model(src, tgt_in))
    torch.testing.assert_close(fused, explicit, atol=ATOL, rtol=0)


def test_cached_steps_equal_the_full_forward_either_way(both_paths):
    model, (src, tgt_in) = make_model(), batch()
    full = F.log_softmax(model(src, tgt_in), dim=-1)  # [B, T, V]

    def steps():
        log_probs, states = stepped(model, src, tgt_in)
        return log_probs, torch.stack([state["attention"] for state in states], dim=1)  # [B, T, S]

    (fused, fused_attention), (explicit, explicit_attention) = both_paths(steps)
    torch.testing.assert_close(fused, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(fused, explicit, atol=ATOL, rtol=0)
    torch.testing.assert_close(fused_attention, explicit_attention, atol=ATOL, rtol=0)


def test_gradients_agree(both_paths):
    model, (src, tgt_in) = make_model(dropout=0.0).train(), batch()

    def gradients():
        model.zero_grad()
        model(src, tgt_in).logsumexp(-1).sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    for fused, explicit in zip(*both_paths(gradients), strict=True):
        torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)


def test_sdpa_runs_every_attention_but_the_weights_asked_for(sdpa_calls):
    """Training: 2 encoder self-, 2 decoder self- (is_causal, square), 2 cross-attentions, all fused.
    A step: 2 self-attentions over the cache and the first layer's cross-attention; the last layer's
    cross-attention is explicit, for the weights the search keeps."""
    model, (src, tgt_in) = make_model(), batch()
    model(src, tgt_in)
    S, T = src.size(1), tgt_in.size(1)
    assert sorted(sdpa_calls) == sorted(
        [(S, S, True, False)] * 2 + [(T, T, False, True)] * 2 + [(T, S, True, False)] * 2
    )
    state = model.init_state(model.encode(src), src.size(0))
    sdpa_calls.clear()
    model.step(tgt_in[:, 0], state)
    assert sorted(sdpa_calls) == sorted([(1, 1, False, False)] * 2 + [(1, S, True, False)])


# --------------------------------------------------------------------------------- the language model
def test_lm_forward_and_cached_steps_either_way(both_paths):
    model, tokens = make_lm(), torch.randint(9, (3, 10), generator=torch.Generator().manual_seed(0))

    def forward_and_steps():
        logits, _ = model(tokens)
        state, steps = model.init_state(None, 3), []
        for t in range(tokens.size(1)):
            log_probs, state = model.step(tokens[:, t], state)
            steps.append(log_probs)
        return logits, torch.stack(steps, dim=1)

    (fused, fused_steps), (explicit, explicit_steps) = both_paths(forward_and_steps)
    torch.testing.assert_close(fused, explicit, atol=ATOL, rtol=0)
    torch.testing.assert_close(fused_steps, explicit_steps, atol=ATOL, rtol=0)
    torch.testing.assert_close(fused_steps, F.log_softmax(fused, -1), atol=1e-5, rtol=0)


def test_lm_prompt_fed_in_chunks_through_the_cache(both_paths):
    """Blocks fed 4 tokens, then 6 more over the cache (T = 6 queries, S = 10 keys, causal) = one pass."""
    model, tokens = make_lm(), torch.randint(9, (2, 10), generator=torch.Generator().manual_seed(1))

    def chunked():
        x, caches = model.embedding(tokens[:, :4]), []
        for block in model.blocks:
            x, kv, _ = block(x, causal=True)
            caches.append(kv)
        y = model.embedding(tokens[:, 4:], start=4)
        for block, cache in zip(model.blocks, caches, strict=True):
            y, _, _ = block(y, causal=True, cache=cache)
        return model.output(model.norm(y))

    fused, explicit = both_paths(chunked)
    torch.testing.assert_close(fused, model(tokens)[0][:, 4:], atol=1e-5, rtol=0)
    torch.testing.assert_close(fused, explicit, atol=ATOL, rtol=0)
