"""ConvLSTM: the cell against its equations, every shape through the encoder–forecaster, sampling."""

import pytest
import torch
import torch.nn.functional as F

from seqtool.models.convlstm import ConvLSTM, ConvLSTMCell, feed_mask


def tiny_model(**changes) -> ConvLSTM:
    options = dict(
        channels=1,
        image_size=8,
        hidden_channels=3,
        num_layers=2,
        kernel_size=3,
        patch_size=2,
        peephole=True,
        scheduled_sampling=False,
        reverse_scheduled_sampling=False,
    )
    torch.manual_seed(0)
    return ConvLSTM(**(options | changes))


def record_calls(cells) -> list[tuple[str, tuple, tuple]]:
    """(name, inputs, outputs) of every cell call, in call order."""
    calls = []
    for name, cell in cells:
        cell.register_forward_hook(lambda module, args, output, name=name: calls.append((name, args, output)))
    return calls


@pytest.mark.parametrize("peephole", [True, False])
def test_the_cell_follows_its_equations(peephole):
    torch.manual_seed(1)
    inputs, hidden, grid = 2, 3, 4
    cell = ConvLSTMCell(inputs, hidden, 3, grid_size=grid if peephole else None)
    if peephole:  # they start at zero; make them count
        for weight in (cell.w_ci, cell.w_cf, cell.w_co):
            torch.nn.init.normal_(weight)
    x, h, c = (
        torch.randn(1, inputs, grid, grid),
        torch.randn(1, hidden, grid, grid),
        torch.randn(1, hidden, grid, grid),
    )

    # By hand: W_x* x + W_h* h + b for each gate, from the slices of the one fused convolution.
    w_x, w_h, bias = cell.conv.weight[:, :inputs], cell.conv.weight[:, inputs:], cell.conv.bias
    pre = F.conv2d(x, w_x, bias, padding=1) + F.conv2d(h, w_h, padding=1)  # [1, 4H, 4, 4]
    pre_i, pre_f, pre_g, pre_o = pre.split(hidden, dim=1)
    zero = torch.zeros(hidden, grid, grid)
    w_ci, w_cf, w_co = (cell.w_ci, cell.w_cf, cell.w_co) if peephole else (zero, zero, zero)
    i = torch.sigmoid(pre_i + w_ci * c)
    f = torch.sigmoid(pre_f + w_cf * c)
    c_next = f * c + i * torch.tanh(pre_g)
    o = torch.sigmoid(pre_o + w_co * c_next)
    h_next = o * torch.tanh(c_next)

    got_h, got_c = cell(x, (h, c))
    assert torch.allclose(got_c, c_next, atol=1e-6) and torch.allclose(got_h, h_next, atol=1e-6)


def test_the_forget_gate_bias_starts_at_one():
    cell = ConvLSTMCell(2, 3, 3)
    assert torch.equal(cell.conv.bias[3:6], torch.ones(3))


def test_every_shape_through_the_encoder_forecaster():
    model = tiny_model()
    calls = record_calls(
        [(f"encoder.{k}", cell) for k, cell in enumerate(model.encoder.cells)]
        + [(f"forecaster.{k}", cell) for k, cell in enumerate(model.forecaster.cells)]
    )
    heads = record_calls([("head", model.head)])
    inputs = torch.rand(5, 4, 1, 8, 8)  # [B, T_in, C, H, W]
    predictions, aux = model(inputs, horizon=3)
    assert predictions.shape == (5, 3, 1, 8, 8) and aux.shape == ()
    # T_in - 1 = 3 encoder steps, then K = 3 forecaster steps, each climbing both layers
    assert [name for name, _, _ in calls] == ["encoder.0", "encoder.1"] * 3 + [
        "forecaster.0",
        "forecaster.1",
    ] * 3
    for name, (x, (h, c)), (h_next, c_next) in calls:
        channels = 4 if name.endswith(".0") else 3  # layer 0 reads 1 · 2² patch channels, layer 1 reads h
        assert x.shape == (5, channels, 4, 4)
        assert h.shape == c.shape == h_next.shape == c_next.shape == (5, 3, 4, 4)
    assert len(heads) == 3 and heads[0][1][0].shape == (5, 2 * 3, 4, 4) and heads[0][2].shape == (5, 4, 4, 4)


def test_the_forecaster_starts_from_the_encoder_states_and_reads_the_last_given_frame():
    model = tiny_model()
    calls = record_calls(
        [("encoder.1", model.encoder.cells[1]), ("forecaster.0", model.forecaster.cells[0])]
        + [("forecaster.1", model.forecaster.cells[1]), ("encoder.0", model.encoder.cells[0])]
    )
    inputs = torch.rand(2, 3, 1, 8, 8)
    model(inputs, horizon=2)
    encoder_last = [out for name, _, out in calls if name == "encoder.1"][-1]
    forecaster_top_first = next(args for name, args, _ in calls if name == "forecaster.1")
    assert forecaster_top_first[1][0] is encoder_last[0] and forecaster_top_first[1][1] is encoder_last[1]
    first_input = next(args for name, args, _ in calls if name == "forecaster.0")[0]
    assert torch.equal(first_input, F.pixel_unshuffle(inputs[:, -1], 2))  # frame T_in, as 2×2 patches


@pytest.mark.parametrize(("ratio", "feeds_truth"), [(1.0, True), (0.0, False)])
def test_scheduled_sampling_feeds_truth_with_probability_epsilon(ratio, feeds_truth):
    model = tiny_model(scheduled_sampling=True).train()
    model.teacher_forcing_ratio = ratio
    calls = record_calls([("forecaster.0", model.forecaster.cells[0])])
    heads = record_calls([("head", model.head)])
    inputs, targets = torch.rand(2, 3, 1, 8, 8), torch.rand(2, 4, 1, 8, 8)
    model(inputs, targets)
    for k in range(1, 4):  # forecast step k reads frame T_in + k: the truth, or the prediction of it
        fed = calls[k][1][0]
        expected = F.pixel_unshuffle(targets[:, k - 1], 2) if feeds_truth else heads[k - 1][2]
        assert torch.equal(fed, expected)


def test_without_scheduled_sampling_training_feeds_its_own_predictions():
    model = tiny_model(scheduled_sampling=False).train()
    model.teacher_forcing_ratio = 1.0  # ignored
    inputs, targets = torch.rand(2, 3, 1, 8, 8), torch.rand(2, 4, 1, 8, 8)
    torch.manual_seed(5)
    trained_way, _ = model(inputs, targets)
    rolled_out, _ = model(inputs, horizon=4)
    assert torch.equal(trained_way, rolled_out)


def test_evaluation_ignores_the_targets():
    model = tiny_model(scheduled_sampling=True).eval()
    inputs, targets = torch.rand(2, 3, 1, 8, 8), torch.rand(2, 4, 1, 8, 8)
    assert torch.equal(model(inputs, targets)[0], model(inputs, horizon=4)[0])


def test_the_feed_mask_is_drawn_per_sequence_from_the_global_rng():
    torch.manual_seed(3)
    first = feed_mask(4000, 3, 5, 0.3, scheduled=True, reverse=True, device=torch.device("cpu"))
    torch.manual_seed(3)
    again = feed_mask(4000, 3, 5, 0.3, scheduled=True, reverse=True, device=torch.device("cpu"))
    assert torch.equal(first, again) and first.shape == (4000, 7)
    assert first[:, 0].all()  # frame 1 is always the truth
    assert first[:, 1:3].float().mean().item() == pytest.approx(1 - 0.3 / 2, abs=0.02)  # reverse: 1 - ε/2
    assert first[:, 3:].float().mean().item() == pytest.approx(0.3, abs=0.02)  # forecast: ε
    plain = feed_mask(2, 3, 5, 0.3, scheduled=False, reverse=False, device=torch.device("cpu"))
    assert plain[:, :3].all() and not plain[:, 3:].any()


def test_reverse_scheduled_sampling_trains_the_encoder_predictions():
    model = tiny_model(reverse_scheduled_sampling=True).train()
    inputs, targets = torch.rand(2, 4, 1, 8, 8), torch.rand(2, 2, 1, 8, 8)
    _, aux = model(inputs, targets)
    assert aux.item() > 0 and aux.requires_grad
    assert model.eval()(inputs, horizon=2)[1].item() == 0.0


def test_gradients_reach_every_parameter():
    model = tiny_model(scheduled_sampling=True, reverse_scheduled_sampling=True).train()
    model.teacher_forcing_ratio = 0.5
    predictions, aux = model(torch.rand(2, 3, 1, 8, 8), torch.rand(2, 2, 1, 8, 8))
    (predictions.pow(2).mean() + aux).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"patch_size": 3}, "not divisible"),
        ({"kernel_size": 4}, "must be odd"),
        ({"num_layers": 0}, "at least 1"),
    ],
)
def test_impossible_geometry_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(**changes)


# ------------------------------------------------------------------ the composite model (reconstruct=true)
def test_the_composite_model_reconstructs_the_read_frames_in_reverse_and_sums_the_losses():
    model = tiny_model(reconstruct=True, reconstruct_weight=0.5).train()
    encoder = record_calls([("encoder.1", model.encoder.cells[1])])
    reconstructor = record_calls(
        [(f"reconstructor.{k}", cell) for k, cell in enumerate(model.reconstructor.cells)]
    )
    heads = record_calls([("head", model.reconstruction_head)])
    inputs, targets = torch.rand(2, 4, 1, 8, 8), torch.rand(2, 2, 1, 8, 8)
    predictions, aux = model(inputs, targets)
    # T_in - 1 = 3 frames read by the encoder, reconstructed in reverse by 3 steps of the second decoder
    assert [name for name, _, _ in reconstructor] == ["reconstructor.0", "reconstructor.1"] * 3
    first_top = reconstructor[1][1][1]
    assert first_top[0] is encoder[-1][2][0] and first_top[1] is encoder[-1][2][1]  # starts from the encoder
    assert all(not args[0].any() for name, args, _ in reconstructor if name.endswith(".0"))  # reads zeros
    reversed_inputs = F.pixel_unshuffle(inputs[:, :3].flip(1).flatten(0, 1), 2).unflatten(0, (2, 3))
    reconstructed = torch.stack([out for _, _, out in heads], dim=1)
    assert torch.allclose(aux, 0.5 * F.mse_loss(reconstructed, reversed_inputs))


def test_the_reconstructor_changes_training_only_and_leaves_the_predictions_alone():
    composite = tiny_model(reconstruct=True).eval()
    plain = tiny_model()
    assert sum(p.numel() for p in plain.parameters()) < sum(p.numel() for p in composite.parameters())
    extra = plain.load_state_dict(composite.state_dict(), strict=False).unexpected_keys
    assert extra and all(key.startswith("reconstruct") for key in extra)
    inputs = torch.rand(2, 3, 1, 8, 8)
    predictions, aux = composite(inputs, horizon=2)
    assert aux.item() == 0.0 and torch.equal(predictions, plain.eval()(inputs, horizon=2)[0])
    composite.train()
    (composite(inputs, torch.rand(2, 2, 1, 8, 8))[1]).backward()  # the reconstruction alone trains
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in composite.reconstructor.parameters())
    assert all(p.grad.abs().sum() > 0 for p in composite.encoder.parameters())  # ... the encoder too
    assert all(p.grad is None for p in composite.forecaster.parameters())  # and not the forecaster
    with pytest.raises(ValueError, match="reconstruct_weight"):
        tiny_model(reconstruct=True, reconstruct_weight=-1.0)
