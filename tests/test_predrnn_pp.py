"""PredRNN++: the causal LSTM and the gradient highway unit against their equations, the highway's place in
the stack, the zigzag memory, sampling and gradients."""

import pytest
import torch
import torch.nn.functional as F

from seqtool.models.predrnn_pp import CausalLSTMCell, GradientHighwayUnit, PredRNNpp


def tiny_model(**changes) -> PredRNNpp:
    options = dict(
        channels=1,
        image_size=8,
        hidden_channels=3,
        num_layers=3,
        kernel_size=3,
        patch_size=2,
        highway=True,
        scheduled_sampling=False,
        reverse_scheduled_sampling=False,
    )
    torch.manual_seed(0)
    return PredRNNpp(**(options | changes))


def conv(layer, inputs, block, hidden=3):
    """Output block `block` (H rows) of `layer` over the channel concatenation of `inputs`, written out
    as a sum of one convolution per input with its own column slice: W * [a, b] = W_a * a + W_b * b."""
    rows = slice(block * hidden, (block + 1) * hidden)
    weights = torch.split(layer.weight[rows], [tensor.shape[1] for tensor in inputs], dim=1)
    total = sum(F.conv2d(tensor, w, padding=w.shape[-1] // 2) for tensor, w in zip(inputs, weights))
    return total + layer.bias[rows, None, None] if layer.bias is not None else total


def test_one_causal_lstm_step_follows_equations_1_to_3():
    torch.manual_seed(1)
    cell = CausalLSTMCell(2, 3, 3)
    x = torch.randn(1, 2, 4, 4)
    h, c, m = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)

    g = torch.tanh(conv(cell.w_1, [x, h, c], 0))  # (1): rows g, i, f of W_1 over [X, H, C]
    i = torch.sigmoid(conv(cell.w_1, [x, h, c], 1))
    f = torch.sigmoid(conv(cell.w_1, [x, h, c], 2))
    c_next = f * c + i * g
    g_m = torch.tanh(conv(cell.w_2, [x, c_next, m], 0))  # (2): over [X, C_t, M^{k-1}]
    i_m = torch.sigmoid(conv(cell.w_2, [x, c_next, m], 1))
    f_m = torch.sigmoid(conv(cell.w_2, [x, c_next, m], 2))
    m_next = f_m * torch.tanh(conv(cell.w_3, [m], 0)) + i_m * g_m
    o = torch.tanh(conv(cell.w_4, [x, h, c_next, m_next], 0))  # (3)
    h_next = o * torch.tanh(conv(cell.w_5, [c_next, m_next], 0))

    for got, expected in zip(cell(x, h, c, m), (h_next, c_next, m_next)):
        assert torch.allclose(got, expected, atol=1e-6)


def test_the_forget_biases_start_at_one():
    cell = CausalLSTMCell(2, 3, 3)
    assert torch.equal(cell.w_1.bias[6:], torch.ones(3)) and torch.equal(cell.w_2.bias[6:], torch.ones(3))


def test_the_gradient_highway_unit_follows_equation_4():
    torch.manual_seed(2)
    unit = GradientHighwayUnit(3, 3)
    x, z = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    p = torch.tanh(conv(unit.conv_x, [x], 0) + conv(unit.conv_z, [z], 0))
    s = torch.sigmoid(conv(unit.conv_x, [x], 1) + conv(unit.conv_z, [z], 1))
    assert torch.allclose(unit(x, z), s * p + (1 - s) * z, atol=1e-6)
    with torch.no_grad():  # a closed switch (S = 0) copies Z_{t-1}: the highway
        unit.conv_x.bias[3:] = -1e4
    assert torch.allclose(unit(x, z), z)


def record(model):
    calls = []
    for layer, cell in enumerate(model.cells):
        cell.register_forward_hook(lambda module, args, out, layer=layer: calls.append((layer, args, out)))
    return calls


def test_shapes_the_zigzag_memory_and_the_highway_between_layers_0_and_1():
    model = tiny_model()
    calls, highway = record(model), []
    model.highway.register_forward_hook(lambda module, args, out: highway.append((args, out)))
    predictions, aux = model(torch.rand(2, 4, 1, 8, 8), horizon=3)
    assert predictions.shape == (2, 3, 1, 8, 8) and aux.item() == 0.0
    steps = 4 + 3 - 1
    assert [layer for layer, _, _ in calls] == [0, 1, 2] * steps and len(highway) == steps
    for n, (layer, (x, h, c, m), _) in enumerate(calls):
        assert x.shape == ((2, 4, 4, 4) if layer == 0 else (2, 3, 4, 4))
        assert h.shape == c.shape == m.shape == (2, 3, 4, 4)
        if n > 0:  # M at (t, l) is what (t, l-1) produced; at (t, 0) what (t-1, top) produced
            assert m is calls[n - 1][2][2]
    for t in range(steps):
        (h0, z_before), z = highway[t]
        assert h0 is calls[3 * t][2][0]  # the GHU reads layer 0's new H ...
        assert calls[3 * t + 1][1][0] is z  # ... and layer 1 reads Z_t
        assert calls[3 * t + 2][1][0] is calls[3 * t + 1][2][0]  # above it, layer 2 reads layer 1's H
        if t == 0:
            assert not z_before.any()  # Z starts at zero
        else:
            assert z_before is highway[t - 1][1]  # and runs along time


def test_without_the_highway_layer_1_reads_layer_0():
    model = tiny_model(highway=False)
    calls = record(model)
    model(torch.rand(2, 3, 1, 8, 8), horizon=1)
    assert model.highway is None and calls[1][1][0] is calls[0][2][0]
    with pytest.raises(ValueError, match="highway"):
        tiny_model(num_layers=1)
    assert tiny_model(num_layers=1, highway=False)(torch.rand(1, 2, 1, 8, 8), horizon=1)[0].shape[1] == 1


def test_the_prediction_comes_from_the_top_layer():
    model = tiny_model()
    tops = []
    model.cells[2].register_forward_hook(lambda module, args, out: tops.append(out[0]))
    predictions, _ = model(torch.rand(2, 2, 1, 8, 8), horizon=1)
    assert torch.allclose(predictions[:, 0], F.pixel_shuffle(model.head(tops[-1]), 2))


def test_sampling_gradients_and_evaluation():
    model = tiny_model(scheduled_sampling=True, reverse_scheduled_sampling=True).train()
    model.teacher_forcing_ratio = 0.5
    predictions, aux = model(torch.rand(2, 3, 1, 8, 8), torch.rand(2, 2, 1, 8, 8))
    assert aux.item() > 0  # reverse scheduled sampling: the encoder's predictions are scored
    (predictions.pow(2).mean() + aux).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    inputs = torch.rand(2, 3, 1, 8, 8)
    assert torch.equal(model(inputs, torch.rand(2, 5, 1, 8, 8))[0], model(inputs, horizon=5)[0])
