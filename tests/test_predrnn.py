"""PredRNN: the ST-LSTM cell against its equations, shapes, the zigzag memory hand-off, decoupling."""

import pytest
import torch
import torch.nn.functional as F

from seqtool.models.predrnn import PredRNN, STLSTMCell


def tiny_model(**changes) -> PredRNN:
    options = dict(
        channels=1,
        image_size=8,
        hidden_channels=3,
        num_layers=3,
        kernel_size=3,
        patch_size=2,
        decouple_beta=0.0,
        scheduled_sampling=False,
        reverse_scheduled_sampling=False,
    )
    torch.manual_seed(0)
    return PredRNN(**(options | changes))


def test_the_st_lstm_cell_follows_its_equations():
    torch.manual_seed(1)
    cell = STLSTMCell(2, 3, 3)
    x = torch.randn(1, 2, 4, 4)
    h, c, m = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)

    def conv(tensor, layer, rows, padding=1):  # rows r of W (gate r · H ... ) applied by hand
        weight = layer.weight[rows * 3 : (rows + 1) * 3]
        bias = layer.bias[rows * 3 : (rows + 1) * 3] if layer.bias is not None else None
        return F.conv2d(tensor, weight, bias, padding=padding)

    i = torch.sigmoid(conv(x, cell.conv_x, 0) + conv(h, cell.conv_h, 0))
    f = torch.sigmoid(conv(x, cell.conv_x, 1) + conv(h, cell.conv_h, 1))
    g = torch.tanh(conv(x, cell.conv_x, 2) + conv(h, cell.conv_h, 2))
    c_next = f * c + i * g
    i_m = torch.sigmoid(conv(x, cell.conv_x, 3) + conv(m, cell.conv_m, 0))
    f_m = torch.sigmoid(conv(x, cell.conv_x, 4) + conv(m, cell.conv_m, 1))
    g_m = torch.tanh(conv(x, cell.conv_x, 5) + conv(m, cell.conv_m, 2))
    m_next = f_m * m + i_m * g_m
    memory = torch.cat([c_next, m_next], dim=1)
    o = torch.sigmoid(conv(x, cell.conv_x, 6) + conv(h, cell.conv_h, 3) + conv(memory, cell.conv_o, 0))
    h_next = o * torch.tanh(conv(memory, cell.conv_1x1, 0, padding=0))

    got = cell(x, h, c, m)
    for value, expected in zip(got, (h_next, c_next, m_next, i * g, i_m * g_m)):
        assert torch.allclose(value, expected, atol=1e-6)


def test_shapes_and_the_zigzag_memory_hand_off():
    model = tiny_model()
    calls = []
    for layer, cell in enumerate(model.cells):
        cell.register_forward_hook(lambda module, args, out, layer=layer: calls.append((layer, args, out)))
    inputs = torch.rand(2, 4, 1, 8, 8)
    predictions, aux = model(inputs, horizon=3)
    assert predictions.shape == (2, 3, 1, 8, 8) and aux.item() == 0.0
    steps = 4 + 3 - 1  # frame t in, frame t + 1 out
    assert [layer for layer, _, _ in calls] == [0, 1, 2] * steps
    for n, (layer, (x, h, c, m), out) in enumerate(calls):
        assert x.shape == (
            (2, 4, 4, 4) if layer == 0 else (2, 3, 4, 4)
        )  # 1 · 2² patch channels at the bottom
        assert h.shape == c.shape == m.shape == (2, 3, 4, 4) and all(o.shape == (2, 3, 4, 4) for o in out)
        if n == 0:
            assert not m.any()  # M starts at zero
        else:  # M at (t, l) is what (t, l - 1) produced; at (t, 0) it is what (t - 1, top) produced
            previous_layer, _, previous_out = calls[n - 1]
            assert previous_layer == (layer - 1) % 3 and m is previous_out[2]
    for n in range(3, len(calls)):  # h and c run along time within a layer
        layer, (_, h, c, _), _ = calls[n]
        assert h is calls[n - 3][2][0] and c is calls[n - 3][2][1]


def test_the_prediction_comes_from_the_top_layer():
    model = tiny_model()
    tops = []
    model.cells[2].register_forward_hook(lambda module, args, out: tops.append(out[0]))
    predictions, _ = model(torch.rand(2, 2, 1, 8, 8), horizon=1)
    assert torch.allclose(predictions[:, 0], F.pixel_shuffle(model.head(tops[-1]), 2))


def test_the_increment_similarity_is_the_mean_absolute_cosine():
    model = tiny_model()
    torch.nn.init.eye_(model.adapter.weight[:, :, 0, 0])  # the identity 1×1 convolution
    delta = torch.randn(2, 3, 4, 4)
    assert model.increment_similarity(delta, delta).item() == pytest.approx(1.0)
    assert model.increment_similarity(delta, -delta).item() == pytest.approx(1.0)  # |cos|
    stripes = torch.zeros(2, 3, 4, 4)
    stripes[..., 0, :] = 1.0
    other = torch.zeros(2, 3, 4, 4)
    other[..., 1, :] = 1.0
    assert model.increment_similarity(stripes, other).item() == pytest.approx(0.0)  # orthogonal


def test_the_decoupling_loss_is_beta_times_the_mean_similarity_in_training_only():
    model = tiny_model(decouple_beta=0.5).train()
    similarities = []
    original = model.increment_similarity
    model.increment_similarity = lambda dc, dm: similarities.append(original(dc, dm)) or similarities[-1]
    inputs, targets = torch.rand(2, 3, 1, 8, 8), torch.rand(2, 2, 1, 8, 8)
    _, aux = model(inputs, targets)
    assert len(similarities) == (3 + 2 - 1) * 3  # every step, every layer
    assert aux.item() == pytest.approx(0.5 * torch.stack(similarities).mean().item())
    assert model.eval()(inputs, horizon=2)[1].item() == 0.0
    with pytest.raises(ValueError, match="decouple_beta"):
        tiny_model(decouple_beta=-1.0)


def test_scheduled_sampling_and_gradients():
    model = tiny_model(scheduled_sampling=True, reverse_scheduled_sampling=True, decouple_beta=0.1).train()
    model.teacher_forcing_ratio = 0.5
    predictions, aux = model(torch.rand(2, 3, 1, 8, 8), torch.rand(2, 2, 1, 8, 8))
    (predictions.pow(2).mean() + aux).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    inputs = torch.rand(2, 3, 1, 8, 8)
    assert torch.equal(model(inputs, torch.rand(2, 5, 1, 8, 8))[0], model(inputs, horizon=5)[0])
