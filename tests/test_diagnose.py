"""Gradient through time: the step-by-step replay equals the stack's own forward, the norms equal
torch.autograd.grad on an independent loop, and `seqtool diagnose --grad-through-time` end to end."""

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from seqtool.cli import app
from seqtool.diagnose import grad_through_time, layer_cells, measure, replay
from seqtool.errors import UserError
from seqtool.models.cells import make_rnn
from seqtool.models.char_rnn import CharRNN
from seqtool.models.recurrent import RecurrentModel
from seqtool.tasks.memory import MemoryTask
from tests.helpers import assert_user_error, seqtool

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

OPTIONS = dict(
    embedding_size=3,
    hidden_size=4,
    num_layers=2,
    dropout=0.0,
    variational_dropout=False,
    layer_norm=False,
    weight_norm=False,
    forget_bias=1.0,
)


@pytest.mark.parametrize(
    "cell, options",
    [
        ("rnn", {}),
        ("lstm", {}),
        ("gru", {}),
        ("lstm", {"layer_norm": True}),
        ("gru", {"weight_norm": True}),
        ("lstm", {"variational_dropout": True, "dropout": 0.3}),  # fused one-layer modules
        ("rnn", {"num_layers": 1}),
    ],
)
def test_the_step_by_step_replay_equals_the_stacks_forward(cell, options):
    torch.manual_seed(0)
    settings = {"num_layers": 2} | options
    rnn = make_rnn(cell, 3, 5, **settings).eval()
    x = torch.randn(4, 7, 3)
    outputs, state = rnn(x)
    kind, cells = layer_cells(rnn)
    hidden = replay(cells, kind, x)
    assert kind == cell and len(hidden) == settings["num_layers"] and len(hidden[0]) == 7
    assert torch.allclose(torch.stack(hidden[-1], dim=1), outputs, atol=1e-5)  # [B, T, H]
    final = state[0] if cell == "lstm" else state  # [L, B, H]
    for k, layer in enumerate(hidden):
        assert torch.allclose(layer[-1], final[k], atol=1e-5)


def reference_norms(net: nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> list[list[float]]:
    """The equations of a fused rnn/lstm stack written out here, and torch.autograd.grad of L_T."""
    rnn = net.rnn
    x = net.embedding(inputs).detach()  # [B, T, E]
    batch, steps, _ = x.shape
    layers, size = rnn.num_layers, rnn.hidden_size
    h = [x.new_zeros(batch, size) for _ in range(layers)]
    c = [x.new_zeros(batch, size) for _ in range(layers)]
    hidden = [[] for _ in range(layers)]
    for t in range(steps):
        below = x[:, t]
        for k in range(layers):
            weights = [
                getattr(rnn, f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
            pre = below @ weights[0].T + weights[2] + h[k] @ weights[1].T + weights[3]
            if isinstance(rnn, nn.LSTM):
                i, f, g, o = pre.chunk(4, dim=1)
                c[k] = torch.sigmoid(f) * c[k] + torch.sigmoid(i) * torch.tanh(g)
                h[k] = torch.sigmoid(o) * torch.tanh(c[k])
            else:
                h[k] = torch.tanh(pre)
            hidden[k].append(h[k])
            below = h[k]
    prediction = net.output(h[-1])
    if target.is_floating_point():
        loss = (prediction.squeeze(-1) - target).pow(2).sum()
    else:
        loss = F.cross_entropy(prediction, target[:, -1], reduction="sum")
    grads = torch.autograd.grad(loss, [state for layer in hidden for state in layer])
    return [
        [float(grads[k * steps + t].norm(dim=-1).mean()) for t in reversed(range(steps))]
        for k in range(layers)
    ]


def assert_close(norms: list[list[float]], expected: list[list[float]]) -> None:
    assert [len(layer) for layer in norms] == [len(layer) for layer in expected]
    for layer, wanted in zip(norms, expected):
        assert layer == pytest.approx(wanted, rel=1e-4, abs=1e-9)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_norms_equal_autograd_on_the_written_out_equations_tokens(cell):
    torch.manual_seed(1)
    net = RecurrentModel(cell=cell, vocab_size=6, **OPTIONS).eval()
    inputs, target = torch.randint(0, 6, (5, 8)), torch.randint(0, 6, (5, 8))
    result = measure(net, inputs, target)
    expected = reference_norms(net, inputs, target)
    assert len(result.norms) == 2 and len(result.norms[0]) == 8 and result.steps == 8
    assert_close(result.norms, expected)
    assert all(p.grad is None for p in net.parameters())  # the diagnostic leaves no gradients behind


def test_many_to_one_norms_use_the_tasks_loss():
    torch.manual_seed(2)
    task = MemoryTask(problem="adding", lag=9, min_lag=2, batch_size=6, val_size=6, test_size=6, seed=0)
    task.setup(".")
    net = RecurrentModel(cell="lstm", **OPTIONS, **task.model_kwargs()).eval()
    batch = next(iter(task.batches("val", train=False)))
    result = measure(net, batch.x, batch.y)
    assert_close(result.norms, reference_norms(net, batch.x, batch.y))
    assert result.loss * result.sequences == pytest.approx(
        float(task.loss(net, batch).total.detach()), rel=1e-5
    )


def test_the_char_rnn_is_diagnosed_too():
    torch.manual_seed(3)
    net = CharRNN(vocab_size=7, cell="lstm", tie_weights=False, **OPTIONS).eval()
    segment = SimpleNamespace(x=torch.randint(0, 7, (3, 10)), y=torch.randint(0, 7, (3, 10)))
    result = measure(net, segment.x, segment.y)
    assert_close(result.norms, reference_norms(net, segment.x, segment.y))
    assert result.cell == "lstm" and all(n > 0 for layer in result.norms for n in layer)


def test_a_model_without_a_recurrent_stack_is_a_user_error():
    with pytest.raises(UserError, match="needs a recurrent model"):
        grad_through_time(SimpleNamespace(model=nn.Linear(2, 2), task=None))
    with pytest.raises(UserError, match="cannot replay"):
        layer_cells(nn.Linear(2, 2))


def test_train_eval_decode_diagnose_end_to_end(tmp_path):
    run_dir = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            "model=recurrent",
            "task=memory",
            "task.problem=copy",
            "trainer=smoke",
            f"run_dir={run_dir}",
            "task.lag=6",
            "task.val_size=40",
            "model.hidden_size=16",
            "device=cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (run_dir / "checkpoints" / "last" / "model.safetensors").is_file()

    result = runner.invoke(app, ["eval", str(run_dir), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert metrics["baseline_loss"] == pytest.approx(10 * 2.0794415416798357 / 26)
    assert 0 <= metrics["accuracy"] <= 1 and metrics["loss"] > 0

    result = runner.invoke(app, ["decode", str(run_dir), "--num", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[0] for line in result.output.splitlines()] == ["val:0", "val:1"]
    assert "\tremember " in result.output and "recalled" in result.output

    plot = tmp_path / "gtt.png"
    args = ["diagnose", str(run_dir), "--grad-through-time", "--device", "cpu"]
    result = runner.invoke(app, [*args, "--output", str(plot), "--json"])
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.output)
    assert numbers["steps"] == 26 and len(numbers["norms"]) == 1 and len(numbers["norms"][0]) == 26
    assert numbers["distance"] == list(range(26)) and numbers["plot"] == str(plot)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    result = runner.invoke(app, args)  # a table, and the plot in the run directory
    assert result.exit_code == 0, result.output
    assert "distance" in result.output and "layer 1" in result.output
    assert (run_dir / "plots" / "grad_through_time.png").is_file()

    assert_user_error(seqtool("diagnose", str(run_dir)), "name a diagnostic: --grad-through-time")
