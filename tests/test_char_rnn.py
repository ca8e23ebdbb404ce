"""CharRNN: shapes, state carry, step = forward, reorder, tied weights."""

import pytest
import torch
import torch.nn.functional as F

from seqtool.models.base import IncrementalDecoder
from seqtool.models.char_rnn import CharRNN

V, E, H, L, B, T = 7, 8, 8, 2, 3, 10  # vocab, embedding, hidden, layers, batch, time
# Each cell on the fused path, and on the hand-written / variational paths for one of them.
VARIANTS = [
    {"cell": "rnn"},
    {"cell": "lstm"},
    {"cell": "gru"},
    {"cell": "lstm", "layer_norm": True, "weight_norm": True},
    {"cell": "gru", "variational_dropout": True},
]


def make_model(**overrides) -> CharRNN:
    options = {
        "vocab_size": V,
        "cell": "lstm",
        "embedding_size": E,
        "hidden_size": H,
        "num_layers": L,
        "dropout": 0.3,
        "variational_dropout": False,
        "layer_norm": False,
        "weight_norm": False,
        "forget_bias": 1.0,
        "tie_weights": False,
    }
    torch.manual_seed(0)
    return CharRNN(**(options | overrides))


def states(state) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_forward_shapes_and_state_format(variant):
    model = make_model(**variant)
    logits, state = model(torch.randint(V, (B, T)))
    assert logits.shape == (B, T, V)
    assert len(states(state)) == (2 if variant["cell"] == "lstm" else 1)
    assert all(s.shape == (L, B, H) for s in states(state))
    logits.logsumexp(-1).sum().backward()  # trains, dropout on
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_state_carried_over_two_halves_equals_the_whole(variant):
    model = make_model(**variant).eval()
    tokens = torch.randint(V, (B, T))
    whole, whole_state = model(tokens)
    first, state = model(tokens[:, :4])
    second, state = model(tokens[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, atol=1e-6, rtol=0)
    for got, expected in zip(states(state), states(whole_state), strict=True):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    _, fresh = model(tokens[:, 4:])  # and the carried state does matter
    assert not torch.allclose(states(fresh)[0], states(state)[0])


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_step_token_by_token_equals_forward(variant):
    model = make_model(**variant).eval()
    assert isinstance(model, IncrementalDecoder)
    tokens = torch.randint(V, (B, T))
    expected = F.log_softmax(model(tokens)[0], dim=-1)  # [B, T, V]
    state = model.init_state(model.encode(None), B)
    steps = []
    for t in range(T):
        log_probs, state = model.step(tokens[:, t], state)
        steps.append(log_probs)
    torch.testing.assert_close(torch.stack(steps, dim=1), expected, atol=1e-5, rtol=0)


def test_init_state_is_zeros_on_the_model_dtype():
    model = make_model(cell="lstm").double()
    h, c = model.init_state(None, 5)
    assert h.shape == c.shape == (L, 5, H) and h.dtype == torch.float64
    assert not h.any() and not c.any()
    assert make_model(cell="gru").init_state(None, 5).shape == (L, 5, H)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_reorder_picks_batch_rows(cell):
    model = make_model(cell=cell).eval()
    tokens = torch.randint(V, (B, T))
    _, state = model(tokens)
    index = torch.tensor([2, 0, 0, 1])
    reordered = model.reorder(state, index)
    for got, original in zip(states(reordered), states(state), strict=True):
        assert got.shape == (L, 4, H)
        torch.testing.assert_close(got, original[:, index])
    # stepping from the reordered state = stepping the reordered batch
    next_tokens = torch.randint(V, (B,))
    log_probs, _ = model.step(next_tokens, state)
    reordered_log_probs, _ = model.step(next_tokens[index], reordered)
    torch.testing.assert_close(reordered_log_probs, log_probs[index])


def test_tie_weights_shares_the_embedding():
    tied = make_model(tie_weights=True)
    assert tied.output.weight is tied.embedding.weight
    untied = make_model(tie_weights=False)
    count = sum(p.numel() for p in tied.parameters())
    assert count == sum(p.numel() for p in untied.parameters()) - V * H


def test_tie_weights_with_different_sizes_says_how_to_fix_it():
    message = r"tie_weights needs model.embedding_size == model.hidden_size \(got 64 and 256\)"
    with pytest.raises(ValueError, match=message):
        make_model(tie_weights=True, embedding_size=64, hidden_size=256)


def test_unknown_cell_is_refused():
    with pytest.raises(ValueError, match="cell must be one of rnn, lstm, gru, irnn, residual, got 'x'"):
        make_model(cell="x")
