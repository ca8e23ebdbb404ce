"""Hand-written cells against torch's, the fused and hand-written stacks against each other, the options."""

import pytest
import torch
from torch import nn

from seqtool.models.cells import (
    CellLayer,
    GRUCell,
    LockedDropout,
    LSTMCell,
    RNNCell,
    StackedRNN,
    make_rnn,
)

CELLS = ["rnn", "lstm", "gru"]
OURS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
TORCH_CELLS = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}
TORCH_STACKS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
B, T, D, H, L = 3, 6, 5, 4, 2  # batch, time, input size, hidden size, layers
NAMES = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]


def random_state(cell: str, *leading: int):
    h = torch.randn(*leading, B, H)
    return (h, torch.randn(*leading, B, H)) if cell == "lstm" else h


def flat(state) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


def stack_parameter(stack: StackedRNN, name: str, k: int) -> torch.Tensor:
    """weight_ih etc. of layer k, whether the layer is a hand-written cell or a one-layer fused module."""
    layer = stack.layers[k]
    return getattr(layer.cell, name) if isinstance(layer, CellLayer) else getattr(layer, name + "_l0")


def copy_fused_into(fused: nn.RNNBase, stack: StackedRNN) -> None:
    """Layer k of a fused torch module -> layer k of a StackedRNN."""
    with torch.no_grad():
        for k in range(len(stack.layers)):
            for name in NAMES:
                stack_parameter(stack, name, k).copy_(getattr(fused, f"{name}_l{k}"))


@pytest.mark.parametrize("cell", CELLS)
def test_cell_matches_torch_with_copied_weights(cell):
    torch.manual_seed(0)
    reference, ours = TORCH_CELLS[cell](D, H), OURS[cell](D, H)
    ours.load_state_dict(reference.state_dict())  # same names and layouts
    x = torch.randn(B, D, requires_grad=True)
    state = random_state(cell)
    expected, got = flat(reference(x, state)), flat(ours(x, state))
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=0)
    sum(t.sum() for t in expected).backward()
    expected_grads = [x.grad.clone()] + [getattr(reference, n).grad for n in NAMES]
    x.grad = None
    sum(t.sum() for t in got).backward()
    got_grads = [x.grad] + [getattr(ours, n).grad for n in NAMES]
    for e, g in zip(expected_grads, got_grads, strict=True):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_stacked_rnn_matches_torch_over_a_sequence(cell):
    torch.manual_seed(1)
    reference, ours = TORCH_STACKS[cell](D, H, L, batch_first=True), StackedRNN(cell, D, H, L)
    copy_fused_into(reference, ours)
    x = torch.randn(B, T, D, requires_grad=True)
    state = random_state(cell, L)  # a non-zero initial state
    expected_out, expected_state = reference(x, state)
    got_out, got_state = ours(x, state)
    torch.testing.assert_close(got_out, expected_out, atol=1e-6, rtol=0)
    for e, g in zip(flat(expected_state), flat(got_state), strict=True):
        assert g.shape == (L, B, H)
        torch.testing.assert_close(g, e, atol=1e-6, rtol=0)
    (expected_out.square().sum() + sum(s.sum() for s in flat(expected_state))).backward()
    expected_x_grad, x.grad = x.grad.clone(), None
    (got_out.square().sum() + sum(s.sum() for s in flat(got_state))).backward()
    torch.testing.assert_close(x.grad, expected_x_grad, atol=1e-6, rtol=0)
    for k in range(L):
        for name in NAMES:
            expected_grad = getattr(reference, f"{name}_l{k}").grad
            torch.testing.assert_close(stack_parameter(ours, name, k).grad, expected_grad, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_make_rnn_paths_agree_with_the_same_weights(cell):
    torch.manual_seed(2)
    fused = make_rnn(cell, D, H, L)
    handwritten = StackedRNN(cell, D, H, L)
    fused_layers = make_rnn(cell, D, H, L, dropout=0.5, variational_dropout=True)
    copy_fused_into(fused, handwritten)
    copy_fused_into(fused, fused_layers)
    fused_layers.eval()  # dropout off: the three are then the same function
    x, state = torch.randn(B, T, D), random_state(cell, L)
    expected_out, expected_state = fused(x, state)
    for other in (handwritten, fused_layers):
        got_out, got_state = other(x, state)
        torch.testing.assert_close(got_out, expected_out, atol=1e-6, rtol=0)
        for e, g in zip(flat(expected_state), flat(got_state), strict=True):
            torch.testing.assert_close(g, e, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_make_rnn_picks_fused_unless_an_option_needs_the_cell(cell):
    plain = make_rnn(cell, D, H, L, dropout=0.3)
    assert type(plain) is TORCH_STACKS[cell] and plain.batch_first and plain.dropout == 0.3
    if cell == "rnn":
        assert plain.nonlinearity == "tanh"
    locked = make_rnn(cell, D, H, L, dropout=0.3, variational_dropout=True)
    assert all(type(layer) is TORCH_STACKS[cell] for layer in locked.layers)
    for option in ("layer_norm", "weight_norm"):
        stack = make_rnn(cell, D, H, L, **{option: True})
        assert isinstance(stack, StackedRNN)
        assert all(isinstance(layer.cell, OURS[cell]) for layer in stack.layers)


def test_unknown_cell_is_refused():
    with pytest.raises(ValueError, match="cell must be one of rnn, lstm, gru, got 'x'"):
        make_rnn("x", D, H, L)


def summed_forget_biases(module: nn.Module) -> list[torch.Tensor]:
    """b_ih + b_hh over the forget slice, for every LSTM layer inside module."""
    parameters = dict(module.named_parameters())
    sums = []
    for name, bias_ih in parameters.items():
        if "bias_ih" in name:
            sums.append((bias_ih + parameters[name.replace("bias_ih", "bias_hh")])[H : 2 * H])
    return sums


@pytest.mark.parametrize(
    "options", [{}, {"dropout": 0.2, "variational_dropout": True}, {"layer_norm": True}], ids=str
)
def test_forget_bias_initialises_the_forget_slice(options):
    torch.manual_seed(3)
    module = make_rnn("lstm", D, H, L, forget_bias=1.5, **options)
    sums = summed_forget_biases(module)
    assert len(sums) == L
    for forget in sums:
        torch.testing.assert_close(forget, torch.full((H,), 1.5))
    first_bias_ih = next(p for name, p in module.named_parameters() if "bias_ih" in name)
    assert first_bias_ih[:H].std() > 0  # the other gates keep torch's uniform init
    assert all((s - 1.5).abs().max() > 0.1 for s in summed_forget_biases(make_rnn("lstm", D, H, L)))


def test_locked_dropout_reuses_one_mask_per_row_over_time():
    torch.manual_seed(4)
    dropout = LockedDropout(0.5)
    out = dropout(torch.ones(8, T, 16))
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(out, out[:, :1].expand_as(out))  # the same at every step
    assert not torch.equal(out[0], out[1])  # different across rows
    dropout.eval()
    x = torch.randn(8, T, 16)
    assert torch.equal(dropout(x), x)


def input_of_second_layer(stack: StackedRNN, x: torch.Tensor) -> torch.Tensor:
    captured = []
    handle = stack.layers[1].register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    stack(x)
    handle.remove()
    return captured[0]  # [B, T, H]


@pytest.mark.parametrize("options", [{}, {"layer_norm": True}], ids=["fused", "cells"])
def test_variational_dropout_masks_are_locked_between_layers(options):
    torch.manual_seed(5)
    stack = make_rnn("lstm", D, 32, L, dropout=0.5, variational_dropout=True, **options)
    x = torch.ones(4, T, D)  # constant over time; layer outputs are never exactly zero
    dropped = input_of_second_layer(stack, x) == 0  # [B, T, H]
    assert dropped.any() and not dropped.all()
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))
    assert not torch.equal(dropped[0], dropped[1])
    stack.eval()  # the identity: layer 2 sees exactly what layer 1 gave
    outputs = []
    stack.layers[0].register_forward_hook(lambda module, args, result: outputs.append(result[0]))
    torch.testing.assert_close(input_of_second_layer(stack, x), outputs[0], atol=0, rtol=0)


def test_standard_dropout_between_layers_changes_over_time():
    torch.manual_seed(6)
    stack = StackedRNN("lstm", D, 32, L, dropout=0.5)
    dropped = input_of_second_layer(stack, torch.ones(4, T, D)) == 0
    assert not torch.equal(dropped, dropped[:, :1].expand_as(dropped))


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("variational_dropout", [False, True])
def test_no_dropout_before_the_first_layer_or_after_the_last(fused, variational_dropout):
    torch.manual_seed(7)
    stack = StackedRNN("gru", D, H, 1, dropout=0.9, variational_dropout=variational_dropout, fused=fused)
    x = torch.randn(B, T, D)
    train_out, _ = stack(x)
    eval_out, _ = stack.eval()(x)
    torch.testing.assert_close(train_out, eval_out, atol=0, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_layer_norm_and_weight_norm_cells_train(cell):
    torch.manual_seed(7)
    stack = make_rnn(cell, D, H, L, layer_norm=True, weight_norm=True)
    names = [name for name, _ in stack.named_parameters()]
    assert any("norm_ih" in n for n in names) and any("original0" in n for n in names)
    outputs, state = stack(torch.randn(B, T, D))
    assert outputs.shape == (B, T, H)
    (outputs.square().sum() + sum(s.sum() for s in flat(state))).backward()
    for name, parameter in stack.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cell", CELLS)
def test_layer_norm_makes_the_cell_invariant_to_weight_scale(cell):
    torch.manual_seed(8)
    x, state = torch.randn(B, D), random_state(cell)
    normed, plain = OURS[cell](D, H, layer_norm=True), OURS[cell](D, H)
    for module, invariant in ((normed, True), (plain, False)):
        before = flat(module(x, state))
        with torch.no_grad():
            module.weight_ih.mul_(10.0)
            module.weight_hh.mul_(3.0)
        after = flat(module(x, state))
        same = all(torch.allclose(b, a, atol=1e-4) for b, a in zip(before, after, strict=True))
        assert same == invariant


@pytest.mark.parametrize("cell", CELLS)
def test_weight_norm_depends_on_direction_and_gain_only(cell):
    torch.manual_seed(9)
    module = OURS[cell](D, H, weight_norm=True)
    x, state = torch.randn(B, D), random_state(cell)
    before = flat(module(x, state))
    direction = module.parametrizations.weight_ih.original1  # v; original0 is the gain g
    with torch.no_grad():
        direction.mul_(5.0)
    for b, a in zip(before, flat(module(x, state)), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    with torch.no_grad():
        module.parametrizations.weight_ih.original0.mul_(5.0)
    assert not torch.allclose(flat(module(x, state))[0], before[0], atol=1e-3)
