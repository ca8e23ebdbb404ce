"""E3D-LSTM: the recall gate against a plain softmax over the stored memories, one cell step against its
equations, the causal 3-D convolution, the window of frames, the τ stored memories, sampling, gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from seqtool.models.e3d_lstm import E3DLSTM, CausalConv3d, EideticCell, recall


def tiny_model(**changes) -> E3DLSTM:
    options = dict(
        channels=1,
        image_size=8,
        hidden_channels=3,
        num_layers=2,
        kernel_size=3,
        patch_size=2,
        window=2,
        temporal_kernel_size=2,
        memory_steps=2,
        scheduled_sampling=False,
        reverse_scheduled_sampling=False,
    )
    torch.manual_seed(0)
    return E3DLSTM(**(options | changes))


@torch.no_grad()
def plain_recall(r, memories):
    """One query position at a time: weights = softmax over every (memory, position) of r · C, then the
    weighted sum of those C vectors. r [B, H, D, h, w], memories: a list of [B, H, D, h, w]."""
    out = torch.zeros_like(r)
    for b in range(r.shape[0]):
        stored = [memory[b, :, d, y, x] for memory in memories for d, y, x in positions(r)]  # each [H]
        for d, y, x in positions(r):
            query = r[b, :, d, y, x]
            scores = torch.tensor([float(query @ value) for value in stored])
            weights = [math.exp(s - scores.max()) for s in scores.tolist()]
            total = sum(weights)
            out[b, :, d, y, x] = sum(w / total * value for w, value in zip(weights, stored))
    return out


def positions(r):
    return [(d, y, x) for d in range(r.shape[2]) for y in range(r.shape[3]) for x in range(r.shape[4])]


def test_the_recall_gate_is_a_softmax_over_the_stored_memories():
    torch.manual_seed(1)
    r = torch.rand(2, 3, 2, 2, 3)
    memories = [torch.randn(2, 3, 2, 2, 3) for _ in range(3)]
    assert torch.allclose(recall(r, memories), plain_recall(r, memories), atol=1e-5)
    same = torch.randn(1, 3, 1, 1, 1).expand(2, 3, 2, 2, 3)  # one vector stored everywhere: the weights
    assert torch.allclose(recall(r, [same, same]), same, atol=1e-6)  # sum to 1, so it comes back as it is


def test_the_3d_convolution_is_causal_in_the_window_and_keeps_the_size():
    torch.manual_seed(2)
    conv = CausalConv3d(2, 4, temporal=2, spatial=3)
    x = torch.randn(1, 2, 3, 5, 5)
    y = conv(x)
    assert y.shape == (1, 4, 3, 5, 5)
    later = x.clone()
    later[:, :, 2] += 1.0  # a change in the last frame reaches only the last position
    changed = (conv(later) - y).abs().amax(dim=(0, 1, 3, 4))
    assert changed[:2].max() == 0 and changed[2] > 0
    first = F.conv2d(x[:, :, 0], conv.weight[:, :, 1], conv.bias, padding=1)  # position 0: frame 0 only
    assert torch.allclose(y[:, :, 0], first, atol=1e-5)


def conv3d(layer, inputs, block, hidden=3):
    """Block `block` (H rows) of a CausalConv3d over the concatenation of `inputs`, one input at a time."""
    rows = slice(block * hidden, (block + 1) * hidden)
    weights = torch.split(layer.weight[rows], [tensor.shape[1] for tensor in inputs], dim=1)
    total = sum(F.conv3d(F.pad(t, (1, 1, 1, 1, 1, 0)), w) for t, w in zip(inputs, weights))
    return total + layer.bias[rows, None, None, None] if layer.bias is not None else total


def layer_norm(v, gain, bias, eps=1e-5):
    mean = v.mean(dim=(1, 2, 3, 4), keepdim=True)
    var = v.var(dim=(1, 2, 3, 4), unbiased=False, keepdim=True)
    return (v - mean) / torch.sqrt(var + eps) * gain[:, None, None, None] + bias[:, None, None, None]


def test_one_cell_step_follows_its_equations():
    torch.manual_seed(3)
    cell = EideticCell(2, 3, 3, 2)
    torch.nn.init.normal_(cell.norm.weight), torch.nn.init.normal_(cell.norm.bias)
    x = torch.randn(2, 2, 2, 4, 4)
    h, c, m = (torch.randn(2, 3, 2, 4, 4) for _ in range(3))
    memories = [torch.randn(2, 3, 2, 4, 4) for _ in range(2)]

    r = torch.sigmoid(conv3d(cell.conv_xh, [x, h], 0))
    i = torch.sigmoid(conv3d(cell.conv_xh, [x, h], 1))
    g = torch.tanh(conv3d(cell.conv_xh, [x, h], 2))
    c_next = i * g + layer_norm(c + plain_recall(r, memories), cell.norm.weight, cell.norm.bias)
    i_m = torch.sigmoid(conv3d(cell.conv_xm, [x, m], 0))
    g_m = torch.tanh(conv3d(cell.conv_xm, [x, m], 1))
    f_m = torch.sigmoid(conv3d(cell.conv_xm, [x, m], 2))
    m_next = i_m * g_m + f_m * m
    o = torch.sigmoid(conv3d(cell.conv_xh, [x, h], 3) + conv3d(cell.conv_o, [c_next, m_next], 0))
    h_next = o * torch.tanh(F.conv3d(torch.cat([c_next, m_next], 1), cell.conv_1x1x1.weight))

    for got, expected in zip(cell(x, h, c, m, memories), (h_next, c_next, m_next)):
        assert torch.allclose(got, expected, atol=1e-5)


def test_windows_of_frames_tau_stored_memories_and_the_zigzag():
    model = tiny_model(memory_steps=2)
    calls = []
    for layer, cell in enumerate(model.cells):
        cell.register_forward_hook(
            lambda module, args, out, layer=layer: calls.append((layer, [*args[:4], list(args[4])], out))
        )
    inputs = torch.rand(2, 4, 1, 8, 8)
    predictions, _ = model(inputs, horizon=2)
    assert predictions.shape == (2, 2, 1, 8, 8)
    patches = F.pixel_unshuffle(inputs.flatten(0, 1), 2).unflatten(0, (2, 4))  # [B, T, 4, 4, 4]
    bottom = [args for layer, args, _ in calls if layer == 0]
    assert not bottom[0][0][:, :, 0].any() and torch.equal(bottom[0][0][:, :, 1], patches[:, 0])
    for t in range(1, 4):  # the clip at step t: frames t-1 and t
        assert torch.equal(bottom[t][0], patches[:, t - 1 : t + 1].transpose(1, 2))
    top = [(args, out) for layer, args, out in calls if layer == 1]
    history = list(top[0][0][4])  # C^k_0: zeros
    assert len(history) == 1 and not history[0].any()
    for args, out in top:  # each step recalls over the C of the last τ = 2 steps
        assert len(args[4]) == len(history[-2:]) and all(a is b for a, b in zip(args[4], history[-2:]))
        history.append(out[1])
    for n in range(1, len(calls)):
        assert calls[n][1][3] is calls[n - 1][2][2]  # M: layer below, or the top layer at t-1


def test_sampling_gradients_and_evaluation():
    model = tiny_model(scheduled_sampling=True, reverse_scheduled_sampling=True).train()
    model.teacher_forcing_ratio = 0.5
    predictions, aux = model(torch.rand(2, 3, 1, 8, 8), torch.rand(2, 2, 1, 8, 8))
    assert aux.item() > 0
    (predictions.pow(2).mean() + aux).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    inputs = torch.rand(2, 3, 1, 8, 8)
    assert torch.equal(model(inputs, torch.rand(2, 4, 1, 8, 8))[0], model(inputs, horizon=4)[0])
    with pytest.raises(ValueError, match="memory_steps"):
        tiny_model(memory_steps=0)
