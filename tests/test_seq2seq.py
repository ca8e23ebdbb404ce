"""Seq2SeqAttention: forward = step, padding and batch invariance, causality, search, scheduled sampling;
Bahdanau's decoder order and local-m attention against hand computations; the cells (rnn, lstm, gru) and
their options (layer norm, weight norm, variational dropout, forget bias)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from seqtool import commands
from seqtool.config import compose, instantiate, load_run_config, save_config
from seqtool.decode.search import beam_search, greedy
from seqtool.errors import UserError
from seqtool.models.base import IncrementalDecoder
from seqtool.models.cells import FUSED, GRUCell, LockedDropout, LSTMCell, RNNCell
from seqtool.models.seq2seq import Seq2SeqAttention, reverse_padded
from tests.encoder_decoder import (
    BOS,
    EOS,
    PAD,
    V_SRC,
    V_TGT,
    assert_later_tokens_change_no_earlier_logit,
    assert_padding_and_companions_change_nothing,
    batch,
    search_from_bos,
    stepped,
)
from tests.helpers import assert_user_error, reverse_run, seqtool

H = 8
ATTENTIONS = ["none", "dot", "general", "concat", "additive", "local_m", "local_p"]
VARIANTS = [
    {},
    {"cell": "gru", "bidirectional": False},
    {"input_feeding": False, "encoder_layers": 1, "decoder_layers": 1},
    {"reverse_source": True, "tie_embeddings": True},
    {"decoder_order": "bahdanau"},  # with input feeding and two decoder layers
    {"decoder_order": "bahdanau", "cell": "gru", "input_feeding": False, "layer_norm": True},  # the cells
]


def make_model(**overrides) -> Seq2SeqAttention:
    options = {
        "src_vocab_size": V_SRC,
        "tgt_vocab_size": V_TGT,
        "pad_index": PAD,
        "bos_index": BOS,
        "eos_index": EOS,
        "cell": "lstm",
        "embedding_size": H,
        "hidden_size": H,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "bidirectional": True,
        "dropout": 0.3,
        "attention": "general",
        "local_window": 2,
        "input_feeding": True,
        "reverse_source": False,
        "tie_embeddings": False,
    }
    torch.manual_seed(0)
    return Seq2SeqAttention(**(options | overrides))


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_forward_equals_step_by_step(attention, variant):
    model = make_model(attention=attention, **variant).eval()
    assert isinstance(model, IncrementalDecoder)
    src, tgt_in = batch()
    expected = F.log_softmax(model(src, tgt_in), dim=-1)  # [B, T, V]
    got, states = stepped(model, src, tgt_in)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    if attention == "none":
        assert "attention" not in states[-1]
        return
    mask = src != PAD
    for state in states:  # the attention row of every step: a distribution over the real source tokens
        assert state["attention"].shape == src.shape
        torch.testing.assert_close(state["attention"].sum(-1), torch.ones(3))
        assert (state["attention"].masked_select(~mask) == 0).all()


@pytest.mark.parametrize("attention", ["dot", "concat", "local_p"])
def test_the_pad_embedding_and_batch_companions_change_nothing(attention):
    model = make_model(attention=attention, reverse_source=True).eval()
    src, tgt_in = batch()
    assert_padding_and_companions_change_nothing(model, src, tgt_in, model.encoder.embedding.weight[PAD])


def test_a_later_target_token_changes_no_earlier_logit():
    model = make_model(attention="concat").eval()
    assert_later_tokens_change_no_earlier_logit(model, *batch())


@pytest.mark.parametrize(
    ("attention", "order"),
    [("none", "luong"), ("general", "luong"), ("local_p", "luong"), ("local_m", "luong"),
     ("additive", "bahdanau"), ("local_m", "bahdanau")],
)  # fmt: skip
def test_beam_of_one_is_greedy(attention, order):
    model = make_model(attention=attention, decoder_order=order).eval()
    src, _ = batch(seed=3)

    def decode(search, **options):
        return search_from_bos(model, src, search, **options)

    greedy_hyps, beam_hyps = decode(greedy), decode(beam_search, beam_size=1)
    assert beam_hyps.tokens == greedy_hyps.tokens
    if attention != "none":  # the attention rows ride along: one per generated token, EOS included
        for tokens, rows in zip(greedy_hyps.tokens, greedy_hyps.attention, strict=True):
            assert rows[0].shape == (min(len(tokens[0]) + 1, 8), src.size(1))
    assert len(decode(beam_search, beam_size=3, nbest=3).tokens[0]) == 3


def test_a_bahdanau_order_step_is_the_papers_equations():
    """Bahdanau et al. 2015, §3.1 and appendix A, one decoder step (the second, so that s_{i-1} is a decoder
    state) written out on the model's own weights: e_ij = v_aᵀ tanh(W_a s_{i-1} + U_a h_j),
    α_i = softmax(e_i), c_i = Σ_j α_ij h_j, the GRU s_i = f(s_{i-1}, [E y_{i-1}; c_i]),
    t_i = tanh(W_c [c_i; s_i; E y_{i-1}])."""
    model = make_model(cell="gru", attention="additive", decoder_order="bahdanau", input_feeding=False,
                       decoder_layers=1, dropout=0.0).eval()  # fmt: skip
    src, tgt_in = batch()
    _, state = model.step(tgt_in[:, 0], model.init_state(model.encode(src), 3))
    log_probs, after = model.step(tgt_in[:, 1], state)
    weights = {name: value.detach() for name, value in model.named_parameters()}
    W_a, U_a = weights["attention.score.W_q.weight"], weights["attention.score.W_k.weight"]
    b_a, v_a = weights["attention.score.W_k.bias"], weights["attention.score.v_a.weight"][0]
    W_ih, W_hh = weights["decoder.weight_ih_l0"].chunk(3), weights["decoder.weight_hh_l0"].chunk(3)  # r, z, n
    b_ih, b_hh = weights["decoder.bias_ih_l0"].chunk(3), weights["decoder.bias_hh_l0"].chunk(3)
    for b in range(3):
        length = int((src[b] != PAD).sum())
        h, s_prev = state["memory"][b].detach(), state["h"][b, 0].detach()  # h_j [S, H], s_{i-1} [H]
        e = [float(v_a @ torch.tanh(W_a @ s_prev + U_a @ h[j] + b_a)) for j in range(length)]
        alpha = [math.exp(e_j) / sum(math.exp(e_k) for e_k in e) for e_j in e]
        c = sum(alpha_j * h[j] for j, alpha_j in enumerate(alpha))
        y = weights["embedding.weight"][tgt_in[b, 1]]  # E y_{i-1}
        x = torch.cat([y, c])
        r = torch.sigmoid(W_ih[0] @ x + b_ih[0] + W_hh[0] @ s_prev + b_hh[0])
        z = torch.sigmoid(W_ih[1] @ x + b_ih[1] + W_hh[1] @ s_prev + b_hh[1])
        n = torch.tanh(W_ih[2] @ x + b_ih[2] + r * (W_hh[2] @ s_prev + b_hh[2]))
        s_i = (1 - z) * n + z * s_prev
        t_i = torch.tanh(weights["W_c.weight"] @ torch.cat([c, s_i, y]))
        logits = weights["output.weight"] @ t_i + weights["output.bias"]
        torch.testing.assert_close(after["attention"][b, :length], torch.tensor(alpha))
        torch.testing.assert_close(after["h"][b, 0], s_i)
        torch.testing.assert_close(log_probs[b], logits.log_softmax(-1))


@pytest.mark.parametrize("order", ["luong", "bahdanau"])
def test_local_m_attends_around_the_target_position_through_beam_search(order):
    """Each generated token's attention row (reordered with its beam) sits in [p_t - D, p_t + D], p_t = t,
    stopping at the source's last token; beam search keeps the step count of every hypothesis."""
    model = make_model(attention="local_m", local_window=1, decoder_order=order).eval()
    src, _ = batch(seed=3)
    found = search_from_bos(model, src, beam_search, beam_size=3)
    positions = torch.arange(src.size(1))
    for b, rows in enumerate(found.attention):
        length = int((src[b] != PAD).sum())
        assert rows[0].size(0) > length  # the target outruns the source: the clamp is exercised
        for t, row in enumerate(rows[0]):
            outside = ((positions - min(t, length - 1)).abs() > 1) | (positions >= length)
            assert (row[outside] == 0).all() and row[~outside].sum() == pytest.approx(1.0)


def test_reorder_picks_rows_also_fewer_than_the_batch():
    model = make_model().eval()
    src, tgt_in = batch()
    _, states = stepped(model, src, tgt_in[:, :2])
    index = torch.tensor([2, 0])
    reordered = model.reorder(states[-1], index)
    for key, value in states[-1].items():
        torch.testing.assert_close(reordered[key], value[index])
    tokens = torch.tensor([4, 5, 6])
    torch.testing.assert_close(
        model.step(tokens[index], reordered)[0], model.step(tokens, states[-1])[0][index]
    )


def test_reverse_padded_reverses_only_the_real_tokens():
    x = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 10], [11, 0, 0, 0, 0]])
    expected = torch.tensor([[5, 4, 3, 0, 0], [10, 9, 8, 7, 6], [11, 0, 0, 0, 0]])
    torch.testing.assert_close(reverse_padded(x, torch.tensor([3, 5, 1])), expected)
    features = x.unsqueeze(-1).expand(3, 5, 2).float()  # [B, S, H]: the same along the last dimension
    expected_features = expected.unsqueeze(-1).expand(3, 5, 2).float()
    torch.testing.assert_close(reverse_padded(features, torch.tensor([3, 5, 1])), expected_features)


def test_reverse_source_encodes_the_reversed_sentence_in_source_order():
    reversing, plain = make_model(reverse_source=True).eval(), make_model(reverse_source=False).eval()
    src, _ = batch()
    lengths = (src != PAD).sum(1)
    ours, theirs = reversing.encode(src), plain.encode(reverse_padded(src, lengths))
    torch.testing.assert_close(ours["memory"], reverse_padded(theirs["memory"], lengths))
    for got, expected in zip(ours["final"], theirs["final"], strict=True):
        torch.testing.assert_close(got, expected)
    assert not torch.allclose(plain.encode(src)["memory"], ours["memory"])


def test_teacher_forcing_ratio_zero_feeds_the_models_own_predictions():
    model = make_model(dropout=0.0).train()
    src, tgt_in = batch()
    forced = model(src, tgt_in)
    model.teacher_forcing_ratio = 0.0
    free = model(src, tgt_in)
    assert not torch.allclose(free[:, 1:], forced[:, 1:])
    torch.testing.assert_close(free[:, 0], forced[:, 0])
    state, token, manual = model.init_state(model.encode(src), 3), tgt_in[:, 0], []
    for _ in range(tgt_in.size(1)):  # free running: each prediction is the next input
        log_probs, state = model.step(token, state)
        manual.append(log_probs)
        token = log_probs.argmax(-1)
    torch.testing.assert_close(F.log_softmax(free, -1), torch.stack(manual, dim=1), atol=1e-5, rtol=0)
    model.eval()  # evaluation is always teacher-forced
    torch.testing.assert_close(model(src, tgt_in), forced)


def test_scheduled_sampling_draws_from_the_global_rng():
    model = make_model(dropout=0.0).train()
    model.teacher_forcing_ratio = 0.5
    src, tgt_in = batch()
    torch.manual_seed(7)
    first = model(src, tgt_in)
    torch.manual_seed(7)
    torch.testing.assert_close(model(src, tgt_in), first)
    model.teacher_forcing_ratio = 1.0
    state = torch.get_rng_state()
    model(src, tgt_in)
    assert torch.equal(torch.get_rng_state(), state)  # full teacher forcing draws nothing


def training_losses(model: Seq2SeqAttention, steps: int = 20) -> list[float]:
    """Adam on the test batch for `steps` steps: the loss before each."""
    src, tgt_in = batch()
    tgt_out = torch.cat([tgt_in[:, 1:], torch.full((3, 1), PAD)], dim=1)
    tgt_out[tgt_out == PAD] = EOS  # a target for every position is enough here
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(src, tgt_in).flatten(0, 1), tgt_out.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_every_attention_trains(attention):
    losses = training_losses(make_model(attention=attention, dropout=0.0))
    assert losses[-1] < 0.7 * losses[0]


def test_the_bahdanau_order_trains():
    model = make_model(attention="additive", decoder_order="bahdanau", input_feeding=False, dropout=0.0)
    losses = training_losses(model)
    assert losses[-1] < 0.7 * losses[0]


def test_options_are_checked():
    assert make_model().max_source_positions is None and make_model().max_target_positions is None
    with pytest.raises(ValueError, match=r"tie_embeddings needs .*\(got 8 and 10\)"):
        make_model(tie_embeddings=True, hidden_size=10)
    with pytest.raises(ValueError, match="even model.hidden_size"):
        make_model(hidden_size=9, embedding_size=9)
    cells = "rnn, lstm, gru, irnn, residual"
    with pytest.raises(ValueError, match=f"model.cell must be one of {cells}, got 'foo'"):
        make_model(cell="foo")
    with pytest.raises(ValueError, match="model.decoder_order must be one of luong, bahdanau, got 'foo'"):
        make_model(decoder_order="foo")
    tied = make_model(tie_embeddings=True)
    assert tied.output.weight is tied.embedding.weight


@pytest.mark.parametrize("options", [{}, {"layer_norm": True, "variational_dropout": True}], ids=str)
def test_decodes_and_trains_under_bf16_autocast(options):  # the trainer's precision on CUDA; CPU here
    model = make_model(**options).eval()
    src, tgt_in = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        state = model.init_state(model.encode(src), 3)
        found = beam_search(model, state, torch.full((3,), BOS), beam_size=2, max_len=5, eos=EOS)
        assert found.attention is not None and len(found.tokens) == 3
        model.train()
        model(src, tgt_in).float().sum().backward()


# ------------------------------------------------------------------------ cells and cell options
CELLS = ["rnn", "lstm", "gru"]
CELL_CLASSES = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
CELL_OPTIONS = [
    {"layer_norm": True},
    {"weight_norm": True},
    {"variational_dropout": True},
    {"forget_bias": 1.0},
    {"layer_norm": True, "weight_norm": True, "variational_dropout": True, "forget_bias": 1.0},
]


@pytest.mark.parametrize("options", CELL_OPTIONS, ids=str)
@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_and_option_keeps_the_contract(cell, options):
    model = make_model(cell=cell, attention="concat", reverse_source=True, **options).eval()
    src, tgt_in = batch()
    logits = model(src, tgt_in)
    assert logits.shape == (3, tgt_in.size(1), V_TGT)
    got, states = stepped(model, src, tgt_in)
    torch.testing.assert_close(got, F.log_softmax(logits, dim=-1), atol=1e-5, rtol=0)
    assert states[-1]["h"].shape == (3, 2, H) and ("c" in states[-1]) == (cell == "lstm")
    assert "dropout_masks" not in states[-1]  # evaluation draws none
    assert_padding_and_companions_change_nothing(model, src, tgt_in, model.encoder.embedding.weight[PAD])


@pytest.mark.parametrize("options", CELL_OPTIONS, ids=str)
def test_every_option_trains(options):
    model = make_model(cell="lstm", dropout=0.1, **options)
    losses = training_losses(model)
    assert losses[-1] < 0.7 * losses[0]
    if options.get("weight_norm"):  # g and v both learn
        weights = model.decoder[0].parametrizations.weight_ih
        assert weights.original0.grad.abs().sum() > 0 and weights.original1.grad.abs().sum() > 0


def fused_name(name: str) -> str:
    """A hand-written cell's parameter -> torch's fused module's name for it (encoder.layers.k.d.cell.W ->
    encoder.rnn.W_lk[_reverse], decoder.k.W -> decoder.W_lk); other names are shared."""
    parts = name.split(".")
    if parts[:2] == ["encoder", "layers"]:
        return f"encoder.rnn.{parts[-1]}_l{parts[2]}" + ("_reverse" if parts[3] == "1" else "")
    if parts[0] == "decoder":
        return f"decoder.{parts[-1]}_l{parts[1]}"
    return name


@pytest.mark.parametrize("cell", CELLS)
def test_the_cells_of_models_cells_compute_what_torchs_modules_do(cell):
    """Variational dropout (off in evaluation) runs the hand-written cells: the same seed gives the very
    weights of torch's packed, bidirectional nn.RNN/LSTM/GRU (the default) and the same outputs."""
    fused = make_model(cell=cell, reverse_source=True).eval()
    cells = make_model(cell=cell, reverse_source=True, variational_dropout=True).eval()
    assert isinstance(fused.encoder.rnn, FUSED[cell]) and isinstance(fused.decoder, FUSED[cell])
    assert all(isinstance(module, CELL_CLASSES[cell]) for module in cells.decoder)
    assert getattr(fused.encoder.rnn, "nonlinearity", "tanh") == "tanh"
    theirs = fused.state_dict()
    ours = cells.state_dict()
    assert sorted(map(fused_name, ours)) == sorted(theirs)
    for name, value in ours.items():
        assert torch.equal(value, theirs[fused_name(name)]), name
    src, tgt_in = batch()
    encoded, reference = cells.encode(src), fused.encode(src)
    torch.testing.assert_close(encoded["memory"], reference["memory"], atol=1e-6, rtol=0)
    for got, expected in zip(encoded["final"], reference["final"], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(cells(src, tgt_in), fused(src, tgt_in), atol=1e-5, rtol=0)


def layer_norm_by_hand(v: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    mean, var = v.mean(-1, keepdim=True), v.var(-1, unbiased=False, keepdim=True)
    return (v - mean) / torch.sqrt(var + 1e-5) * norm.weight + norm.bias


def layer_norm_step(kind: str, cell: nn.Module, x: torch.Tensor, state):
    """One step of a layer-normalised cell (Ba et al. 2016) written out on the cell's own weights."""
    ih = layer_norm_by_hand(x @ cell.weight_ih.T, cell.norm_ih) + cell.bias_ih
    hh = layer_norm_by_hand((state[0] if kind == "lstm" else state) @ cell.weight_hh.T, cell.norm_hh)
    hh = hh + cell.bias_hh
    if kind == "rnn":
        return torch.tanh(ih + hh)
    if kind == "gru":
        (x_r, x_z, x_n), (h_r, h_z, h_n) = ih.chunk(3, -1), hh.chunk(3, -1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        return (1 - z) * torch.tanh(x_n + r * h_n) + z * state
    i, f, g, o = (ih + hh).chunk(4, -1)
    c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(layer_norm_by_hand(c, cell.norm_c)), c


def scramble_layer_norms(model: nn.Module) -> None:
    """Gains and biases away from 1 and 0, so that a test sees them."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)


@pytest.mark.parametrize("cell", CELLS)
def test_layer_norm_normalises_the_decoder_and_encoder_cells(cell):
    model = make_model(cell=cell, layer_norm=True, encoder_layers=1).eval()
    scramble_layer_norms(model)
    src, tgt_in = batch()
    state = model.init_state(model.encode(src), 3)
    _, after = model.step(tgt_in[:, 0], state)
    x = torch.cat([model.embedding(tgt_in[:, 0]), state["feed"]], dim=-1)  # [B, E + H]
    for k, layer in enumerate(model.decoder):  # the decoder: one step, layer by layer
        previous = (state["h"][:, k], state["c"][:, k]) if cell == "lstm" else state["h"][:, k]
        expected = layer_norm_step(cell, layer, x, previous)
        x = expected[0] if cell == "lstm" else expected
        torch.testing.assert_close(after["h"][:, k], x, atol=1e-5, rtol=0)
        if cell == "lstm":
            torch.testing.assert_close(after["c"][:, k], expected[1], atol=1e-5, rtol=0)
    length = int((src[0] != PAD).sum())  # the encoder: the first sentence, both directions
    embedded = model.encoder.embedding(src[0, :length])  # [S, E]
    memory = model.encode(src)["memory"][0, :length]  # [S, H]
    for direction, layer in enumerate(model.encoder.layers[0]):
        h = torch.zeros(1, H // 2)
        state = (h, h) if cell == "lstm" else h
        outputs = []
        for x_t in embedded.flip(0) if direction else embedded:
            state = layer_norm_step(cell, layer.cell, x_t[None], state)
            outputs.append(state[0] if cell == "lstm" else state)
        outputs = torch.cat(outputs[::-1] if direction else outputs)  # [S, H/2] in source order
        torch.testing.assert_close(memory[:, direction * H // 2 : (direction + 1) * H // 2], outputs)
    plain = make_model(cell=cell, variational_dropout=True, encoder_layers=1).eval()  # same W, no norm
    assert not torch.allclose(plain.step(tgt_in[:, 0], plain.init_state(plain.encode(src), 3))[1]["h"],
                              after["h"])  # fmt: skip


def test_weight_norm_makes_each_weight_g_times_v_over_its_norm():
    plain = make_model(variational_dropout=True).eval()  # the hand-written cells with the same weights
    normed = make_model(weight_norm=True).eval()
    layers = [*normed.decoder, *(layer.cell for layer in normed.encoder.layers[0])]
    assert all(parametrize.is_parametrized(c, "weight_ih") and parametrize.is_parametrized(c, "weight_hh")
               for c in layers)  # fmt: skip
    src, tgt_in = batch()
    before = normed(src, tgt_in)
    torch.testing.assert_close(before, plain(src, tgt_in), atol=1e-5, rtol=0)  # g = ||v|| at first
    with torch.no_grad():  # g doubles the rows of W_ih of the first decoder layer
        normed.decoder[0].parametrizations.weight_ih.original0.mul_(2)
        plain.decoder[0].weight_ih.mul_(2)
    torch.testing.assert_close(normed(src, tgt_in), plain(src, tgt_in), atol=1e-5, rtol=0)
    assert not torch.allclose(normed(src, tgt_in), before)


def dropped_features(model: Seq2SeqAttention, modules: list[nn.Module]) -> list[list[torch.Tensor]]:
    """Run a training forward; for each module, where its input was zero at each step: [B, D] each."""
    seen: list[list[torch.Tensor]] = [[] for _ in modules]
    hooks = [
        module.register_forward_pre_hook(lambda _, args, i=i: seen[i].append(args[0] == 0))
        for i, module in enumerate(modules)
    ]
    model(*batch())
    for hook in hooks:
        hook.remove()
    return seen


def test_variational_dropout_keeps_one_mask_per_sentence_at_every_step():
    model = make_model(variational_dropout=True, dropout=0.5, input_feeding=False).train()
    assert isinstance(model.encoder.dropout, LockedDropout)
    # the embedding (input of layer 0), between the layers (input of layer 1), before the softmax
    for zeros in dropped_features(model, [model.decoder[0], model.decoder[1], model.output]):
        assert all(torch.equal(step, zeros[0]) for step in zeros)
        assert zeros[0].any() and not zeros[0].all() and not torch.equal(zeros[0][0], zeros[0][1])
    state = model.init_state(model.encode(batch()[0]), 3)
    masks = state["dropout_masks"]  # the embedding (E = H here), between the two layers, before W_s
    assert [mask.shape for mask in masks] == [(3, H)] * 3
    assert model.reorder(state, torch.tensor([2]))["dropout_masks"][0].shape == (1, H)
    ordinary = make_model(layer_norm=True, dropout=0.5, input_feeding=False).train()
    zeros = dropped_features(ordinary, [ordinary.decoder[0]])[0]  # a new mask at every step
    assert not all(torch.equal(step, zeros[0]) for step in zeros)


@pytest.mark.parametrize("options", [{}, {"layer_norm": True}], ids=["fused", "cells"])
def test_forget_bias_sets_every_lstm_forget_gate(options):
    def forget_gates(model: Seq2SeqAttention) -> list[torch.Tensor]:
        found = []
        for name, bias_ih in model.named_parameters():
            if "bias_ih" in name:
                bias_hh = model.get_parameter(name.replace("bias_ih", "bias_hh"))
                quarter = bias_ih.numel() // 4
                found.append((bias_ih + bias_hh)[quarter : 2 * quarter])
        return found

    gates = forget_gates(make_model(forget_bias=1.5, **options))
    assert len(gates) == 2 * 2 + 2  # encoder: 2 layers x 2 directions; decoder: 2 layers
    assert all(torch.equal(gate, torch.full_like(gate, 1.5)) for gate in gates)
    untouched = forget_gates(make_model(**options))  # null: torch's uniform init
    assert not any(torch.equal(gate, torch.full_like(gate, 1.5)) for gate in untouched)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.cell=foo", "model.cell='foo' should be one of rnn, lstm, gru"),
        ("model.layer_norm=maybe", "model.layer_norm='maybe' should be bool"),
        ("model.forget_bias=high", "model.forget_bias='high' should be float or null"),
        ("model.decoder_order=foo", "model.decoder_order='foo' should be one of luong, bahdanau"),
    ],
)
def test_a_bad_cell_option_is_one_clear_error(override, message):
    with pytest.raises(UserError, match=message):
        compose(["model=seq2seq_attn", "task=translation", override])


def test_a_local_m_window_below_zero_is_one_clear_error():
    """A user error naming the key, from the config's range check or else the constructor (the path a
    Python caller takes); D = 0 is allowed: local-m then attends to s = p_t alone."""
    sizes = {"src_vocab_size": V_SRC, "tgt_vocab_size": V_TGT, "pad_index": PAD, "bos_index": BOS}

    def build(window: int) -> Seq2SeqAttention:
        overrides = ["model.attention=local_m", f"model.local_window={window}"]
        return instantiate(compose(["model=seq2seq_attn", "task=translation", *overrides]).model, **sizes,
                           eos_index=EOS)  # fmt: skip

    with pytest.raises(UserError, match=r"model\.local_window.*-1|-1.*model\.local_window"):
        build(-1)
    assert build(0).attention.window == 0


def test_a_run_saved_before_the_cell_options_still_builds_the_same_model(tmp_path):
    cfg = compose(["model=seq2seq_attn", "task=translation", "model.hidden_size=8", "model.embedding_size=8"])
    sizes = {"src_vocab_size": V_SRC, "tgt_vocab_size": V_TGT, "pad_index": PAD, "bos_index": BOS}
    torch.manual_seed(0)
    today = instantiate(cfg.model, **sizes, eos_index=EOS)
    save_config(cfg, tmp_path)
    saved = (tmp_path / "config.yaml").read_text().splitlines()
    new_keys = ("variational_dropout:", "layer_norm:", "weight_norm:", "forget_bias:", "decoder_order:")
    (tmp_path / "config.yaml").write_text("\n".join(s for s in saved if not s.strip().startswith(new_keys)))
    old = load_run_config(tmp_path)
    assert "layer_norm" not in old.model
    torch.manual_seed(0)
    before = instantiate(old.model, **sizes, eos_index=EOS)
    assert all(torch.equal(a, b) for a, b in zip(today.parameters(), before.parameters(), strict=True))


@pytest.mark.slow
def test_a_vanilla_rnn_with_layer_norm_trains_and_decodes_from_the_command_line(tmp_path):
    bad = seqtool("train", "model=seq2seq_attn", "task=translation", "model.cell=foo")
    assert_user_error(bad, "model.cell='foo' should be one of rnn, lstm, gru")
    run = tmp_path / "run"
    options = ["model.cell=rnn", "model.layer_norm=true", "debug=smoke", f"run_dir={run}", "device=cpu"]
    train = seqtool("train", "model=seq2seq_attn", "task=translation", *options, timeout=300)
    assert train.returncode == 0, train.stderr[-2000:]
    decode = seqtool("decode", str(run), "--prime", "abc")
    assert decode.returncode == 0 and decode.stdout.strip(), decode.stderr


@pytest.mark.slow
def test_bahdanau_order_with_local_m_trains_and_draws_its_attention_from_the_command_line(tmp_path):
    bad = seqtool("train", "model=seq2seq_attn", "task=translation", "model.decoder_order=foo")
    assert_user_error(bad, "model.decoder_order='foo' should be one of luong, bahdanau")
    small = ["task.synthetic.train_size=20", "task.synthetic.val_size=4", "task.synthetic.test_size=0"]
    bad = seqtool("train", "model=seq2seq_attn", "task=translation", "model.attention=local_m",
                  "model.local_window=-1", *small, f"run_dir={tmp_path / 'bad'}", "device=cpu")  # fmt: skip
    assert_user_error(bad, "model.local_window")  # out of range (config) or refused by local_m (model)
    run = tmp_path / "run"
    options = ["model.attention=local_m", "model.local_window=1", "model.decoder_order=bahdanau"]
    train = seqtool("train", "model=seq2seq_attn", "task=translation", *options, "debug=smoke",
                    f"run_dir={run}", "device=cpu", timeout=300)  # fmt: skip
    assert train.returncode == 0, train.stderr[-2000:]
    maps = tmp_path / "maps"
    decode = seqtool("decode", str(run), "--prime", "abcdef", "--beam", "3", "--plot-attention", str(maps))
    assert decode.returncode == 0 and decode.stdout.strip(), decode.stderr
    assert sorted(path.name for path in maps.glob("*.png")) == ["attention_0001.png"]


@pytest.mark.slow
def test_a_resumed_bahdanau_order_local_m_run_is_exactly_the_uninterrupted_one(tmp_path):
    """8 steps straight == 4, then --resume for 4 more, with dropout and scheduled sampling drawing from
    the RNG: the step count local-m reads lives in the per-batch decoder state, not in what is resumed."""
    options = ["model.attention=local_m", "model.local_window=1", "model.decoder_order=bahdanau",
               "model.dropout=0.3", "trainer.teacher_forcing.kind=linear", "trainer.teacher_forcing.steps=8",
               "trainer.lr_schedule.kind=constant"]  # fmt: skip

    def losses(run_dir):
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r and "val_loss" not in r}

    straight, halves = tmp_path / "straight", tmp_path / "halves"
    commands.train(compose([*reverse_run(straight), *options, "trainer.max_steps=8", "trainer.eval_every=4"]))
    commands.train(compose([*reverse_run(halves), *options, "trainer.max_steps=4", "trainer.eval_every=4"]))
    commands.train(commands.resume_config(halves, ["trainer.max_steps=8"]), resume=halves)
    assert sorted(losses(halves)) == list(range(1, 9))
    assert losses(halves) == losses(straight)
