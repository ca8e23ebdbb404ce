"""Hand-written cells against torch's (and irnn/residual against plain loops of their equations), the
fused and hand-written stacks against each other, the options, and every cell inside the models."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqtool.diagnose import layer_cells, replay
from seqtool.models.cells import (
    CELLS as ALL_CELLS,
)
from seqtool.models.cells import (
    CellLayer,
    FusedIRNN,
    GRUCell,
    IRNNCell,
    LockedDropout,
    LSTMCell,
    ResidualCell,
    RNNCell,
    StackedRNN,
    make_cell,
    make_rnn,
)

CELLS = ["rnn", "lstm", "gru", "irnn"]  # the cells with a torch counterpart (irnn: torch's ReLU RNN)
OURS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell, "irnn": IRNNCell, "residual": ResidualCell}
TORCH_CELLS = {
    "rnn": nn.RNNCell,
    "lstm": nn.LSTMCell,
    "gru": nn.GRUCell,
    "irnn": partial(nn.RNNCell, nonlinearity="relu"),
}
TORCH_STACKS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU, "irnn": partial(nn.RNN, nonlinearity="relu")}
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
    fused_class = FusedIRNN if cell == "irnn" else TORCH_STACKS[cell]
    plain = make_rnn(cell, D, H, L, dropout=0.3)
    assert type(plain) is fused_class and plain.batch_first and plain.dropout == 0.3
    if cell in ("rnn", "irnn"):
        assert plain.nonlinearity == {"rnn": "tanh", "irnn": "relu"}[cell]
    locked = make_rnn(cell, D, H, L, dropout=0.3, variational_dropout=True)
    assert all(type(layer) is fused_class for layer in locked.layers)
    for option in ("layer_norm", "weight_norm"):
        stack = make_rnn(cell, D, H, L, **{option: True})
        assert isinstance(stack, StackedRNN)
        assert all(isinstance(layer.cell, OURS[cell]) for layer in stack.layers)


def test_unknown_cell_is_refused():
    with pytest.raises(ValueError, match="cell must be one of rnn, lstm, gru, irnn, residual, got 'x'"):
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


@pytest.mark.parametrize("cell", ALL_CELLS)
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


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_layer_norm_makes_the_cell_invariant_to_weight_scale(cell):
    torch.manual_seed(8)
    x, state = torch.randn(B, D), random_state(cell)
    normed, plain = OURS[cell](D, H, layer_norm=True), OURS[cell](D, H)
    if cell in ("irnn", "residual"):  # W x at init (std 0.001): variance near LayerNorm's eps, not scale-free
        randomise(normed), randomise(plain)
    for module, invariant in ((normed, True), (plain, False)):
        before = flat(module(x, state))
        with torch.no_grad():
            module.weight_ih.mul_(10.0)
            module.weight_hh.mul_(3.0)
        after = flat(module(x, state))
        same = all(torch.allclose(b, a, atol=1e-4) for b, a in zip(before, after, strict=True))
        assert same == invariant


@pytest.mark.parametrize("cell", ALL_CELLS)
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


# irnn and residual: their equations written out as plain loops, their inits, and why they exist.


def randomise(module: nn.Module) -> nn.Module:
    """Replace every parameter by N(0, 0.5²) draws, so that no init (identity, zeros) hides a term."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0.0, 0.5)
    return module


def loop_of_the_equation(cell: str, weights: dict[str, torch.Tensor], x: torch.Tensor, h: torch.Tensor):
    """h_t for t = 1..T of x [B, T, D] from h_0 [B, H], written from the papers' equations:
    irnn h_t = ReLU(W x_t + U h_{t-1} + b), residual h_t = h_{t-1} + tanh(W x_t + U h_{t-1} + b)."""
    W, U = weights["weight_ih"], weights["weight_hh"]
    b = weights["bias_ih"] + weights["bias_hh"]
    outputs = []
    for t in range(x.shape[1]):
        pre_activation = x[:, t] @ W.T + h @ U.T + b  # [B, H]
        h = torch.relu(pre_activation) if cell == "irnn" else h + torch.tanh(pre_activation)
        outputs.append(h)
    return torch.stack(outputs, dim=1)  # [B, T, H]


@pytest.mark.parametrize("cell", ["irnn", "residual"])
def test_new_cells_match_a_plain_loop_of_their_equation(cell):
    torch.manual_seed(10)
    stack = randomise(StackedRNN(cell, D, H, 1))
    weights = {name: stack_parameter(stack, name, 0).detach() for name in NAMES}
    x, h_0 = torch.randn(B, T, D), torch.randn(1, B, H)
    outputs, h_T = stack(x, h_0)
    expected = loop_of_the_equation(cell, weights, x, h_0[0])
    torch.testing.assert_close(outputs, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(h_T[0], expected[:, -1], atol=1e-6, rtol=0)


def test_fused_irnn_is_torchs_relu_rnn_and_replays_step_by_step():
    """make_rnn's fused irnn equals the hand-written IRNN cells with its weights, and diagnose's replay
    (which copies the fused weights into IRNNCells) gives the same h_t."""
    torch.manual_seed(11)
    fused = randomise(make_rnn("irnn", D, H, L))
    assert type(fused) is FusedIRNN
    handwritten = StackedRNN("irnn", D, H, L)
    copy_fused_into(fused, handwritten)
    x = torch.randn(B, T, D)
    expected_out, expected_h = fused(x)
    got_out, got_h = handwritten(x)
    torch.testing.assert_close(got_out, expected_out, atol=1e-6, rtol=0)
    torch.testing.assert_close(got_h, expected_h, atol=1e-6, rtol=0)
    kind, cells = layer_cells(fused)
    assert kind == "irnn" and all(isinstance(c, IRNNCell) for c in cells)
    torch.testing.assert_close(
        torch.stack(replay(cells, kind, x)[-1], dim=1), expected_out, atol=1e-6, rtol=0
    )


def assert_irnn_init(weight_ih: torch.Tensor, weight_hh: torch.Tensor, *biases: torch.Tensor) -> None:
    """U = I, b = 0, W ~ N(0, 0.001²)."""
    torch.testing.assert_close(weight_hh.detach(), torch.eye(weight_hh.shape[0]), atol=0, rtol=0)
    for bias in biases:
        assert torch.count_nonzero(bias) == 0
    weight_ih = weight_ih.detach()
    assert abs(float(weight_ih.std()) - 0.001) < 1e-4 and abs(float(weight_ih.mean())) < 1e-4


def test_irnn_starts_from_the_identity_in_every_path():
    torch.manual_seed(12)
    size = 64  # 64 x 64 input weights: their std is measured to within 10 %
    cell = IRNNCell(size, size)
    assert_irnn_init(cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    normed = IRNNCell(size, size, weight_norm=True)  # weight norm keeps the init's weights
    assert_irnn_init(normed.weight_ih, normed.weight_hh.detach(), normed.bias_ih, normed.bias_hh)
    fused = FusedIRNN(size, size, 2, bidirectional=True)  # every layer and direction
    for k in range(2):
        for suffix in ("", "_reverse"):
            names = [f"{name}_l{k}{suffix}" for name in NAMES]
            assert_irnn_init(*(getattr(fused, name) for name in names))
    # What the init is for: with no input an untrained IRNN carries a non-negative state unchanged.
    h_0 = torch.rand(1, B, size)
    _, h_T = make_rnn("irnn", size, size, 1)(torch.zeros(B, 50, size), h_0)
    torch.testing.assert_close(h_T, h_0, atol=0, rtol=0)


def test_residual_cell_with_g_zero_keeps_the_state():
    """h_t = h_{t-1} + g(x_t, h_{t-1}): with W, U, b = 0 (g = 0) the state is h_0 at every step, whatever
    the input; at init the branch is nearly zero (every weight ~ N(0, 0.001²), b = 0), so h_1 ≈ h_0."""
    torch.manual_seed(13)
    cell = ResidualCell(64, 64)  # 64 x 64 weights: their std is measured to within 10 %
    for weight in (cell.weight_ih, cell.weight_hh):
        assert abs(float(weight.detach().std()) - 0.001) < 1e-4
    assert torch.count_nonzero(cell.bias_ih) + torch.count_nonzero(cell.bias_hh) == 0
    h, x = torch.randn(B, 64), torch.randn(B, 64)
    assert float((cell(x, h) - h).abs().max()) < 0.1  # |g| <= |W x| + |U h| ~ 0.001 * sqrt(64) * 3
    cell = ResidualCell(D, H)
    with torch.no_grad():
        for parameter in cell.parameters():
            parameter.zero_()
    h_0 = torch.randn(1, B, H)
    outputs, h_T = CellLayer(cell)(torch.randn(B, T, D) * 10, h_0)
    torch.testing.assert_close(outputs, h_0[0].unsqueeze(1).expand(B, T, H), atol=0, rtol=0)
    torch.testing.assert_close(h_T, h_0, atol=0, rtol=0)


def gradient_from_the_end_to_the_start(stack: nn.Module, steps: int) -> float:
    """‖∂ sum(h_T) / ∂h_0‖ over a batch of random inputs, for a one-layer stack of width H."""
    torch.manual_seed(14)
    h_0 = (1 + torch.rand(1, 8, stack.hidden_size)).requires_grad_()  # positive: the IRNN's ReLU passes it
    _, h_T = stack(torch.randn(8, steps, D), h_0)
    (gradient,) = torch.autograd.grad(h_T.sum(), h_0)
    return float(gradient.norm())


def test_irnn_and_residual_carry_the_gradient_where_a_tanh_rnn_loses_it():
    """Over 100 steps with the same W, U, b the tanh RNN's ∂h_T/∂h_0 (a product of contractions) falls
    by many decades; the residual cell's identity path and the IRNN's identity init keep it."""
    torch.manual_seed(15)
    rnn, residual = StackedRNN("rnn", D, 16, 1), StackedRNN("residual", D, 16, 1)
    residual.load_state_dict(rnn.state_dict())
    tanh_rnn = gradient_from_the_end_to_the_start(rnn, 100)
    assert tanh_rnn < 1e-6
    assert gradient_from_the_end_to_the_start(residual, 100) > 1e3 * tanh_rnn
    # An untrained IRNN (W ~ N(0, 0.001²)) keeps h > 0, where ReLU is the identity: ∂h_T/∂h_0 = U^T = I.
    irnn = gradient_from_the_end_to_the_start(make_rnn("irnn", D, 16, 1), 100)
    assert irnn == pytest.approx(float(torch.ones(8, 16).norm()), rel=1e-3)


@pytest.mark.parametrize("cell", ["irnn", "residual"])
def test_make_rnn_and_make_cell_build_the_new_cells(cell):
    expected = OURS[cell]
    assert isinstance(make_cell(cell, D, H), expected)
    for options in ({"layer_norm": True}, {"dropout": 0.3, "variational_dropout": True}, {}):
        stack = make_rnn(cell, D, H, L, **options)
        if cell == "irnn" and "layer_norm" not in options:
            continue  # fused: FusedIRNN (tested above)
        assert isinstance(stack, StackedRNN) and all(
            isinstance(layer.cell, expected) for layer in stack.layers
        )
    with pytest.raises(ValueError, match="no fused torch kernel"):
        StackedRNN("residual", D, H, L, fused=True)


def train_steps(model: nn.Module, batch: tuple, loss_of, steps: int = 40) -> tuple[float, float]:
    """Adam on one fixed batch: (first loss, last loss)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_of(model, *batch)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return losses[0], losses[-1]


def lm_loss(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    logits, _ = model(tokens[:, :-1])  # [B, T-1, V]
    return F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())


@pytest.mark.parametrize("cell", ["irnn", "residual"])
@pytest.mark.parametrize("model_name", ["recurrent", "char_rnn", "seq2seq"])
def test_models_built_with_the_new_cells_learn_a_batch(cell, model_name):
    """Each model that takes model.cell runs irnn and residual (seq2seq: encoder and decoder) and lowers
    its loss on one small batch in 40 steps; its state is one tensor h [L, B, H], as for rnn and gru."""
    from seqtool.models.char_rnn import CharRNN
    from seqtool.models.recurrent import RecurrentModel
    from seqtool.models.seq2seq import Seq2SeqAttention

    torch.manual_seed(16)
    options = {"variational_dropout": False, "layer_norm": False, "weight_norm": False, "forget_bias": None}
    common = {"cell": cell, "embedding_size": 8, "hidden_size": 16, "dropout": 0.0} | options
    tokens = torch.randint(3, 12, (4, 9))
    if model_name == "recurrent":
        model = RecurrentModel(num_layers=2, vocab_size=12, **common)
        first, last = train_steps(model, (tokens,), lm_loss)
        assert model.init_state(None, 4).shape == (2, 4, 16)
    elif model_name == "char_rnn":
        model = CharRNN(vocab_size=12, num_layers=2, tie_weights=False, **common)
        first, last = train_steps(model, (tokens,), lm_loss)
    else:
        model = Seq2SeqAttention(
            src_vocab_size=12, tgt_vocab_size=12, pad_index=0, bos_index=1, eos_index=2, encoder_layers=1,
            decoder_layers=1, bidirectional=True, attention="general", local_window=2, input_feeding=True,
            reverse_source=False, tie_embeddings=False, **common,
        )  # fmt: skip
        assert model.encoder.handwritten == (cell == "residual")  # residual has no fused kernel
        first, last = train_steps(model, (tokens,), seq2seq_loss)
    assert last < 0.7 * first


def seq2seq_loss(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Teacher-forced cross-entropy of copying the source."""
    tgt = torch.cat([torch.ones_like(tokens[:, :1]), tokens], dim=1)  # <s> y_1 .. y_T
    logits = model(tokens, tgt[:, :-1])  # [B, T, V]
    return F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten())
