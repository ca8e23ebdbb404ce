"""The recurrent model: its shapes for both task shapes, every cell option through make_rnn, the
incremental-decoder contract, the model/task pairing table, and that an LSTM learns the adding problem."""

import pytest
import torch
from torch import nn

from seqtool import shapes
from seqtool.config import _resolve_target, compose
from seqtool.errors import UserError
from seqtool.models.cells import StackedRNN
from seqtool.models.recurrent import RecurrentModel
from tests.helpers import assert_user_error, quick_trainer, seqtool

pytestmark = pytest.mark.usefixtures("one_thread")

OPTIONS = dict(
    cell="lstm",
    embedding_size=5,
    hidden_size=7,
    num_layers=2,
    dropout=0.0,
    variational_dropout=False,
    layer_norm=False,
    weight_norm=False,
    forget_bias=1.0,
)


def model(**changes) -> RecurrentModel:
    return RecurrentModel(**(OPTIONS | changes))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_many_to_many_tokens_give_logits_at_every_step(cell):
    net = model(cell=cell, vocab_size=10)
    logits, state = net(torch.randint(0, 10, (3, 6)))
    assert logits.shape == (3, 6, 10)
    h = state[0] if cell == "lstm" else state
    assert h.shape == (2, 3, 7)
    assert isinstance(net.embedding, nn.Embedding)


def test_many_to_one_vectors_give_one_prediction_from_the_last_state():
    net = model(input_size=2, output_size=1, many_to_one=True)
    x = torch.randn(4, 9, 2)
    prediction, _ = net(x)
    assert prediction.shape == (4, 1)
    assert isinstance(net.embedding, nn.Linear)
    outputs, _ = net.rnn(net.embedding(x))  # [B, T, H]
    assert torch.allclose(prediction, net.output(outputs[:, -1]))


@pytest.mark.parametrize(
    "changes, kind",
    [
        ({}, nn.LSTM),
        ({"cell": "gru"}, nn.GRU),
        ({"layer_norm": True}, StackedRNN),
        ({"weight_norm": True}, StackedRNN),
        ({"variational_dropout": True, "dropout": 0.2}, StackedRNN),
    ],
)
def test_the_stack_comes_from_make_rnn_with_every_cell_option(changes, kind):
    net = model(vocab_size=10, **changes)
    assert type(net.rnn) is kind
    net.train()
    logits, _ = net(torch.randint(0, 10, (2, 5)))
    logits.sum().backward()
    assert all(p.grad is not None for p in net.rnn.parameters())


def test_forget_bias_reaches_the_lstm():
    net = model(vocab_size=10, forget_bias=2.5)
    bias = net.rnn.bias_ih_l0 + net.rnn.bias_hh_l0
    assert torch.allclose(bias[7:14], torch.full((7,), 2.5))


def test_inputs_must_be_tokens_or_vectors():
    with pytest.raises(ValueError, match="exactly one"):
        model(vocab_size=10, input_size=2, output_size=1)
    with pytest.raises(ValueError, match="exactly one"):
        model(output_size=1)
    with pytest.raises(ValueError, match="output_size"):
        model(input_size=2)


def test_step_by_step_decoding_matches_forward():
    net = model(vocab_size=10).eval()
    tokens = torch.randint(0, 10, (3, 6))
    logits, _ = net(tokens)
    state = net.init_state(net.encode(None), 3)
    for t in range(6):
        log_probs, state = net.step(tokens[:, t], state)
        assert torch.allclose(log_probs, logits[:, t].log_softmax(-1), atol=1e-5)
    reordered = net.reorder(state, torch.tensor([2, 0]))
    assert reordered[0].shape == (2, 2, 7)


# ------------------------------------------------------------------------------ pairing table
def conf_classes(group: str) -> dict[str, type]:
    return {name: _resolve_target(target, group) for name, target in shapes._conf_targets(group)}


def test_every_model_and_task_declares_known_shapes():
    for name, cls in conf_classes("model").items():
        assert cls.task_shapes and set(cls.task_shapes) <= set(shapes.SHAPES), name
    for name, cls in conf_classes("task").items():
        variants = shapes.task_variants(cls)
        assert variants and set(variants.values()) <= set(shapes.SHAPES), name


def test_every_model_fits_some_task():
    for name, cls in conf_classes("model").items():
        assert shapes.fitting_tasks(cls), name


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (
            ["model=recurrent", "task=translation"],
            ["model=recurrent does not fit task=translation", "task=memory task.problem=adding"],
        ),
        (
            ["model=char_rnn", "task=memory"],
            [
                "task=memory task.problem=adding: the task is many-to-one",
                "task=charlm, task=lm, task=memory task.problem=copy",
            ],
        ),
    ],
)
def test_a_wrong_pairing_is_refused_before_reading_data(overrides, fragments):
    from seqtool.config import instantiate

    cfg = compose(overrides)
    with pytest.raises(UserError) as error:
        shapes.check_fits(str(cfg.model._target_), instantiate(cfg.task))
    for fragment in fragments:
        assert fragment in str(error.value)


def test_a_model_that_cannot_take_the_tasks_sizes_is_refused():
    message = "model=convlstm cannot be built for this task: it takes no pad_index, src_vocab_size"
    with pytest.raises(UserError, match=message):
        shapes.check_model_kwargs("seqtool.models.convlstm.ConvLSTM", {"src_vocab_size": 5, "pad_index": 0})


def test_bad_pairing_exits_2_with_one_line(tmp_path):
    result = seqtool("train", "model=recurrent", "task=translation", "trainer=smoke", f"run_dir={tmp_path}/r")
    assert_user_error(
        result, "tasks that fit model=recurrent: task=charlm, task=lm, task=memory task.problem=adding"
    )
    result = seqtool("train", "model=char_rnn", "task=memory", "trainer=smoke", f"run_dir={tmp_path}/c")
    assert_user_error(result, "model=char_rnn does not fit task=memory task.problem=adding")
    assert not (tmp_path / "c" / "checkpoints").exists()


# ------------------------------------------------------------------------------------ learning
def test_an_lstm_learns_the_adding_problem_at_lag_10(tmp_path):
    """300 steps of the shared trainer take the val MSE far below the 1/6 of predicting 1."""
    from seqtool import commands

    cfg = compose(
        [
            "model=recurrent",
            "task=memory",
            "task.problem=adding",
            "task.lag=10",
            "task.val_size=500",
            "model.cell=lstm",
            "model.hidden_size=32",
            "model.embedding_size=16",
            "seed=0",
            f"run_dir={tmp_path}/run",
            *quick_trainer(300),
            "trainer.log_every=100",
        ]
    )
    _, metrics = commands.train(cfg)
    assert metrics["baseline_mse"] == pytest.approx(1 / 6)
    assert metrics["mse"] < metrics["baseline_mse"] / 5, metrics
