"""The memory task family: the adding and copy generators, their baselines, the loss on the right
positions, the lag curriculum and an exactly resumable train stream."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from seqtool.config import compose
from seqtool.data import memory_problems as problems
from seqtool.decode.generate import DecodeInput
from seqtool.errors import UserError
from seqtool.models.recurrent import RecurrentModel
from seqtool.tasks.memory import MemoryBatch, MemoryTask

pytestmark = pytest.mark.usefixtures("one_thread")


def make_task(problem: str = "adding", **changes) -> MemoryTask:
    options = dict(problem=problem, lag=12, min_lag=2, batch_size=8, val_size=50, test_size=20, seed=3)
    task = MemoryTask(**(options | changes))
    task.setup(".")
    return task


def tiny_model(task: MemoryTask, **changes) -> RecurrentModel:
    options = dict(
        cell="lstm",
        embedding_size=4,
        hidden_size=6,
        num_layers=1,
        dropout=0.0,
        variational_dropout=False,
        layer_norm=False,
        weight_norm=False,
        forget_bias=1.0,
    )
    return RecurrentModel(**(options | task.model_kwargs() | changes))


# ------------------------------------------------------------------------------------ generators
@pytest.mark.parametrize("lag", [2, 3, 10, 51])
def test_adding_has_one_marker_in_each_half_and_sums_the_marked_values(lag):
    x, y = problems.adding(np.random.default_rng(0), 200, lag)
    assert x.shape == (200, lag, 2) and y.shape == (200,) and x.dtype == y.dtype == np.float32
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(np.unique(markers)) <= {0.0, 1.0}
    assert (markers.sum(1) == 2).all()
    half = lag // 2
    assert (markers[:, :half].sum(1) == 1).all() and (markers[:, half:].sum(1) == 1).all()
    np.testing.assert_allclose(y, (values * markers).sum(1), rtol=1e-6)


@pytest.mark.parametrize("lag", [1, 5, 30])
def test_copy_layout_is_arjovskys(lag):
    x, y = problems.copy_memory(np.random.default_rng(0), 100, lag)
    length = lag + 20
    assert x.shape == y.shape == (100, length) and x.dtype == np.int64
    symbols = x[:, :10]
    assert ((symbols >= 1) & (symbols <= 8)).all()
    assert (x[:, 10 : lag + 9] == problems.BLANK).all()  # T - 1 blanks
    assert (x[:, lag + 9] == problems.DELIMITER).all()  # the delimiter, T steps after the last symbol
    assert (x[:, lag + 10 :] == problems.BLANK).all()
    assert (y[:, : lag + 10] == problems.BLANK).all()  # blanks, then the 10 symbols
    np.testing.assert_array_equal(y[:, -10:], symbols)


def test_baselines_are_the_formulas():
    assert problems.adding_baseline_mse() == 1 / 6
    for lag in (1, 10, 100):
        assert problems.copy_baseline_loss(lag) == 10 * math.log(8) / (lag + 20)
    _, y = problems.adding(np.random.default_rng(1), 200_000, 20)
    assert abs(float(((y - 1.0) ** 2).mean()) - 1 / 6) < 0.003  # predicting 1 scores about 1/6


class Constant(nn.Module):
    """A model that always answers the same: 1 for adding; blanks then uniform symbols for copy."""

    def forward(self, x, state=None):
        if x.dim() == 3:  # adding
            return torch.ones(x.shape[0], 1), None
        logits = torch.full((*x.shape, problems.COPY_VOCAB), -1e9)
        logits[:, :-10, problems.BLANK] = 0.0
        logits[:, -10:, 1 : problems.COPY_ALPHABET + 1] = 0.0
        return logits, None


def test_evaluate_reports_the_baselines_beside_the_model_and_the_baseline_model_scores_them():
    adding = make_task("adding", val_size=20_000, batch_size=5000)
    metrics = adding.evaluate(Constant(), "val")
    assert set(metrics) == {"loss", "mse", "baseline_mse", "accuracy", "baseline_accuracy"}
    assert metrics["baseline_mse"] == 1 / 6 and abs(metrics["mse"] - 1 / 6) < 0.01
    assert abs(metrics["accuracy"] - metrics["baseline_accuracy"]) < 0.01

    copy = make_task("copy", lag=7)
    metrics = copy.evaluate(Constant(), "val")
    assert set(metrics) == {"loss", "baseline_loss", "accuracy", "baseline_accuracy"}
    assert metrics["baseline_loss"] == 10 * math.log(8) / 27
    assert metrics["loss"] == pytest.approx(metrics["baseline_loss"], rel=1e-6)


# ----------------------------------------------------------------------------------------- loss
def test_adding_loss_is_on_the_last_state_only():
    task = make_task("adding")
    model = tiny_model(task).eval()
    every_step = tiny_model(task, many_to_one=False).eval()
    every_step.load_state_dict(model.state_dict())
    batch = next(iter(task.batches("train", train=True)))
    loss = task.loss(model, batch)
    assert loss.count == 8
    per_step = every_step(batch.x)[0][..., 0]  # [B, T]: the head on every step
    assert torch.allclose(loss.total, (per_step[:, -1] - batch.y).pow(2).sum())
    assert not torch.allclose(loss.total, (per_step[:, -2] - batch.y).pow(2).sum())


def test_copy_loss_is_on_every_position():
    task = make_task("copy", lag=5)
    model = tiny_model(task)
    batch = next(iter(task.batches("train", train=True)))
    loss = task.loss(model, batch)
    logits = model(batch.x)[0]
    assert loss.count == batch.y.numel() == 8 * 25
    expected = nn.functional.cross_entropy(logits.flatten(0, 1), batch.y.flatten(), reduction="sum")
    assert torch.allclose(loss.total, expected)


def test_model_kwargs_and_shape_follow_the_problem():
    assert make_task("adding").model_kwargs() == {"input_size": 2, "output_size": 1, "many_to_one": True}
    assert make_task("copy").model_kwargs() == {"vocab_size": 10}
    assert make_task("adding").shape == "many-to-one"
    assert make_task("copy").shape == "many-to-many synchronous"


# --------------------------------------------------------------------------- stream, curriculum
def take(batches, n: int) -> list[MemoryBatch]:
    return [next(batches) for _ in range(n)]


@pytest.mark.parametrize("problem", ["adding", "copy"])
def test_resumed_train_stream_is_exactly_the_uninterrupted_one(problem):
    steps = iter(range(100))
    schedule = [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]  # a curriculum: the lag grows along the stream
    uninterrupted = take(
        make_task(problem).batches("train", train=True, competence=lambda: schedule[next(steps)]), 6
    )

    first = make_task(problem)
    stream = first.batches("train", train=True, competence=lambda: schedule[0])
    take(stream, 3)
    state = first.state_dict()
    assert state == {"position": 3}
    resumed_task = make_task(problem)
    resumed_task.load_state_dict(state)
    later = iter(schedule[3:])
    resumed = take(resumed_task.batches("train", train=True, competence=lambda: next(later)), 3)
    for a, b in zip(uninterrupted[3:], resumed):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert [a.x.shape[1] for a in uninterrupted] != [uninterrupted[-1].x.shape[1]] * 6  # the lag grew


def test_ranks_interleave_and_val_test_are_fixed_and_apart():
    rank0, rank1 = make_task(), make_task()
    rank0.setup(".", rank=0, world_size=2)
    rank1.setup(".", rank=1, world_size=2)
    single = take(make_task().batches("train", train=True), 4)
    assert torch.equal(next(rank0.batches("train", train=True)).x, single[0].x)
    assert torch.equal(next(rank1.batches("train", train=True)).x, single[1].x)
    assert torch.equal(make_task().fixed_set("val").x, make_task().fixed_set("val").x)
    assert not torch.equal(make_task().fixed_set("val").x[:20], make_task().fixed_set("test").x)
    assert sum(len(b.y) for b in make_task().batches("val", train=False)) == 50
    with pytest.raises(UserError, match="splits val and test"):
        make_task().fixed_set("train")


def test_the_curriculum_is_over_the_lag():
    task = make_task("copy", lag=40, min_lag=5)
    assert [task.lag_for(c) for c in (0.01, 0.25, 0.5, 1.0)] == [5, 10, 20, 40]
    batch = next(iter(task.batches("train", train=True, competence=lambda: 0.25)))
    assert batch.x.shape == (8, 30) and task.difficulty(batch) == 10.0
    assert task.difficulty(task.fixed_set("val")) == 40.0
    adding = make_task("adding", lag=20)
    assert adding.difficulty(next(iter(adding.batches("train", train=True, competence=lambda: 0.5)))) == 10.0


def test_config_errors_are_user_errors():
    with pytest.raises(UserError, match="task.problem"):
        compose(["task=memory", "task.problem=repeat"])
    cfg = compose(["task=memory", "task.lag=1"])
    from seqtool.config import instantiate

    with pytest.raises(UserError, match="lag"):
        instantiate(cfg.task)


def test_decode_renders_what_was_asked_beside_the_answer():
    for problem in ("adding", "copy"):
        task = make_task(problem)
        model = tiny_model(task).eval()
        lines = task.preview(model).splitlines()
        assert len(lines) == 4
        item = DecodeInput("val:0", 0)
        text = task.render(item, task.decode(model, [item])[0].tokens[0])
        assert text == lines[0]
        if problem == "adding":
            x, y = task.fixed_set("val").x[0], task.fixed_set("val").y[0]
            assert f"= {float(y):.3f}" in text and f"{float(x[:, 0][x[:, 1] > 0][0]):.3f} +" in text
        else:
            wanted = "".join(str(t) for t in task.fixed_set("val").y[0, -10:].tolist())
            assert text.startswith(f"remember {wanted}   recalled ")
