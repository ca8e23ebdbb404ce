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
from seqtool.decode.settings import DecodeOptions, SearchSettings
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


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task.problem=repeat"], "task.problem"),
        (["task.lag=1", "task.min_lag=1"], "lag"),
        (["task.problem=ntm_copy", "task.eval_lengths=[30,40]"], "task.eval_lengths"),
        (["task.problem=ntm_copy", "task.width=0"], "task.width"),
    ],
)
def test_config_errors_are_user_errors(overrides, message):
    """Refused when composed (seqtool.schema) or, at the latest, when the task is built."""
    from seqtool.config import instantiate

    with pytest.raises(UserError, match=message):
        instantiate(compose(["model=recurrent", "task=memory", *overrides]).task)


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


# ------------------------------------------------------------------- the NTM's bit problems
def bit_task(problem: str = "ntm_copy", **changes) -> MemoryTask:
    options = dict(width=4, length=6, min_length=1, max_repeats=3, eval_lengths=[2, 6, 9], val_size=5)
    return make_task(problem, **(options | changes))


@pytest.mark.parametrize("length", [1, 4, 20])
def test_ntm_copy_layout_is_graves(length):
    x, y, scored = problems.ntm_copy(np.random.default_rng(0), 30, length, 8)
    steps = 2 * length + 1
    assert x.shape == (30, steps, 9) and y.shape == (30, steps, 8) and scored.shape == (30, steps)
    vectors = x[:, :length, :8]
    assert set(np.unique(vectors)) <= {0.0, 1.0}
    assert (x[:, :, 8] == np.eye(steps)[length]).all()  # the delimiter, on its own channel, once
    assert (x[:, length:, :8] == 0).all()  # blank inputs while the copy is written
    np.testing.assert_array_equal(y[:, length + 1 :], vectors)
    assert (y[:, : length + 1] == 0).all()
    assert (scored == (np.arange(steps) > length)).all()  # the last L steps


def test_repeat_copy_layout_repeats_then_marks_the_end():
    rng = np.random.default_rng(2)
    x, y, scored = problems.repeat_copy(rng, 40, 3, 5, max_repeats=4)
    counts = x[:, 3, 6]  # the repeat count at the delimiter step, normalised
    assert (x[:, 3, 5] == 1).all() and x.shape[2] == 7 and y.shape[2] == 6
    for r in range(1, 5):
        rows = np.flatnonzero(np.isclose(counts, (r - 2.5) / math.sqrt((16 - 1) / 12)))
        assert rows.size  # every count from 1 to 4 occurs among 40 draws
        for i in rows:
            end = 3 + 1 + 3 * r
            np.testing.assert_array_equal(y[i, 4:end, :5], np.tile(x[i, :3, :5], (r, 1)))
            assert y[i, end, 5] == 1 and y[i, :, 5].sum() == 1  # one end marker, after the R copies
            assert scored[i].sum() == 3 * r + 1 and scored[i, 4 : end + 1].all()
    assert x.shape[1] == 3 + 2 + 3 * (scored.sum(1).max() - 1) // 3  # padded to the most repeats
    many = problems.normalised_repeats(np.arange(1, 11), 10)
    assert abs(many.mean()) < 1e-6 and abs(many.var() - 1) < 1e-6  # mean 0, variance 1 over 1..R_max


def test_bit_problems_give_sizes_and_shape():
    assert bit_task().model_kwargs() == {"input_size": 5, "output_size": 4}
    assert bit_task("repeat_copy").model_kwargs() == {"input_size": 6, "output_size": 5}
    assert bit_task().shape == bit_task("repeat_copy").shape == "many-to-many synchronous"


def test_bit_loss_is_binary_cross_entropy_on_the_scored_steps_only():
    task = bit_task()
    batch = next(iter(task.batches("train", train=True)))
    logits = torch.randn(*batch.y.shape, generator=torch.Generator().manual_seed(0))

    class Fixed(nn.Module):
        def forward(self, x, state=None):
            return logits, None

    loss = task.loss(Fixed(), batch)
    scored = batch.scored
    expected = nn.functional.binary_cross_entropy_with_logits(
        logits[scored], batch.y[scored], reduction="sum"
    )
    assert torch.allclose(loss.total, expected) and loss.count == int(scored.sum()) * 4
    logits[~scored] = 100.0  # the steps before the delimiter do not count
    assert torch.allclose(task.loss(Fixed(), batch).total, expected)


class Copier(nn.Module):
    """The perfect copier: at output step k it answers the k-th input vector (logits ±5), or zeros (a
    logit of 0: probability 1/2) when `coin` is set."""

    def __init__(self, width: int, coin: bool = False):
        super().__init__()
        self.width, self.coin = width, coin

    def forward(self, x, state=None):
        length = int(x[0, :, self.width].argmax())
        logits = torch.zeros(x.shape[0], x.shape[1], self.width)
        if not self.coin:
            logits[:, length + 1 :] = (x[:, :length, : self.width] * 2 - 1) * 5
        return logits, None


def test_bits_wrong_per_length_the_perfect_copier_and_the_coin():
    task = bit_task()
    perfect = task.evaluate(Copier(4), "val")
    keys = {f"{kind}_at_{n}" for kind in ("bits_wrong", "baseline_bits_wrong") for n in (2, 6, 9)}
    assert (
        set(perfect)
        == {"loss", "baseline_loss", "cost_per_sequence", "bits_wrong", "baseline_bits_wrong"} | keys
    )
    assert all(perfect[f"bits_wrong_at_{n}"] == 0 for n in (2, 6, 9)) and perfect["bits_wrong"] == 0
    assert perfect["baseline_bits_wrong_at_9"] == 9 * 4 / 2  # a fair coin gets half of L · W bits
    assert perfect["baseline_bits_wrong"] == (2 * 4 / 2 + 6 * 4 / 2) / 2  # lengths 2 and 6 are trained on
    coin = task.evaluate(Copier(4, coin=True), "val")
    assert coin["loss"] == pytest.approx(math.log(2)) == coin["baseline_loss"]
    assert coin["cost_per_sequence"] == pytest.approx((2 * 4 + 6 * 4) / 2)  # 1 bit of cost per scored bit
    # a logit of 0 reads as bit 0: it is wrong exactly where the target is 1
    ones = {
        n: float(data.y[data.scored].sum()) / len(data.y) for n, data in task.fixed_lengths("val").items()
    }
    assert coin["bits_wrong_at_9"] == pytest.approx(ones[9])
    assert coin["bits_wrong"] == pytest.approx((ones[2] + ones[6]) / 2)


@pytest.mark.parametrize("problem", ["ntm_copy", "repeat_copy"])
def test_bit_train_stream_draws_lengths_within_the_curriculum_and_resumes_exactly(problem):
    task = bit_task(problem, length=12)
    batches = take(task.batches("train", train=True, competence=lambda: 0.5), 40)
    lengths = {task.difficulty(b) for b in batches}
    assert lengths == set(map(float, range(1, 7)))  # uniform over 1..ceil(0.5 · 12)
    resumed = bit_task(problem, length=12)
    resumed.load_state_dict({"position": 30})
    for a, b in zip(batches[30:], take(resumed.batches("train", train=True, competence=lambda: 0.5), 10)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.scored, b.scored)


def test_bit_val_sets_are_fixed_per_length():
    first, second = bit_task().fixed_lengths("val"), bit_task().fixed_lengths("val")
    assert list(first) == [2, 6, 9] and all(torch.equal(first[n].x, second[n].x) for n in first)
    assert first[9].x.shape == (5, 19, 5)
    assert not torch.equal(bit_task().fixed_lengths("test")[2].x, first[2].x)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"eval_lengths": [30, 40]}, "at least one must lie in the training range 1..6"),
        ({"width": 0}, "task.width"),
        ({"min_length": 7}, "task.length ≥ task.min_length"),
    ],
)
def test_bad_bit_keys_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        bit_task(**changes)


def test_decode_shows_the_bits_and_the_copy():
    task = bit_task()
    inputs = list(task.decode_inputs(nn.Identity(), DecodeOptions(num=4), SearchSettings()))[0]
    assert [item.label for item in inputs] == [
        "val:length=2:0",
        "val:length=6:0",
        "val:length=9:0",
        "val:length=2:1",
    ]
    decoded = task.decode(Copier(4), inputs)
    text = task.render(inputs[1], decoded[1].tokens[0])
    vectors = task.fixed_lengths("val")[6].x[0, :6, :4].int().tolist()
    bits = " ".join("".join(map(str, v)) for v in vectors)
    assert text == f"copy 6 × 4 bits: {bits} -> {bits} (0 of 24 bits wrong)"
    coin = task.decode(Copier(4, coin=True), inputs[:1])[0].tokens[0]
    assert task.render(inputs[0], coin).endswith(
        f"-> 0000 0000 ({int(task.fixed_lengths('val')[2].y[0].sum())} of 8 bits wrong)"
    )


def test_plot_memory_draws_an_ntm_and_skips_an_lstm(tmp_path):
    from seqtool.models.ntm import NTM

    task = bit_task()
    item = DecodeInput("val:length=6:0", 1)
    machine = NTM(**task.model_kwargs(), controller_size=8, memory_size=10, memory_width=4, shift_range=1,
                  memory_init=1e-6)  # fmt: skip
    assert task.plot_memory(machine, item, None, tmp_path) == 1
    assert (tmp_path / "memory_val_length6_0.png").stat().st_size > 1000
    assert task.plot_memory(tiny_model(task), item, None, tmp_path / "lstm") == 0
    assert not (tmp_path / "lstm").exists()


def test_an_lstm_takes_bit_vectors_and_the_ntm_config_composes():
    task = bit_task("repeat_copy")
    batch = next(iter(task.batches("train", train=True)))
    outputs, _ = tiny_model(task)(batch.x)
    assert outputs.shape == batch.y.shape  # per-bit logits at every step
    cfg = compose(["model=ntm", "task=memory", "task.problem=ntm_copy"])
    from seqtool.config import instantiate

    built = instantiate(cfg.model, **instantiate(cfg.task).model_kwargs())
    assert built.memory_size == 128 and built.memory_width == 20
