"""The shared trainer on a toy regression task (clipping, accumulation, NaN, early stop) and on the
real char LM (exact resume)."""

import json
import math
import re

import pytest
import torch
from torch import nn

from seqtool import commands
from seqtool.checkpoint import load_checkpoint
from seqtool.config import compose, instantiate
from seqtool.errors import TrainingDiverged
from seqtool.tasks.base import Loss
from seqtool.train import DivergenceGuard
from tests.bad_inputs import outcome
from tests.helpers import tiny_corpus, tiny_run


class ToyTask:
    """y = 3x on fixed random batches; `poison_at` multiplies the loss at that call by `poison` (NaN)."""

    def __init__(
        self,
        poison_at: int | None = None,
        val_losses: list[float] | None = None,
        poison: float = float("nan"),
    ) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=generator)
        self.y = self.x.sum(dim=1, keepdim=True) * 3
        self.calls, self.poison_at, self.val_losses, self.poison = 0, poison_at, val_losses, poison

    def batches(self, split, *, train, competence=None):
        while True:
            yield self.x[(self.calls * 8) % 64 :][:8], self.y[(self.calls * 8) % 64 :][:8]

    def loss(self, model, batch):
        self.calls += 1
        x, y = batch
        total = ((model(x) - y) ** 2).sum()
        if self.calls == self.poison_at:
            total = total * self.poison
        return Loss(total=total, count=len(y))

    def evaluate(self, model, split):
        if self.val_losses:
            return {"loss": self.val_losses.pop(0)}
        with torch.no_grad():
            return {"loss": float(((model(self.x) - self.y) ** 2).mean())}

    def preview(self, model):
        return "toy"

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]


def toy_trainer(tmp_path, task, *overrides):
    cfg = compose(
        [
            "trainer.progress=false",
            "trainer.tensorboard=false",
            "trainer.log_every=1",
            "trainer.lr_schedule.kind=constant",
            "trainer.lr_schedule.warmup_steps=0",
            *overrides,
        ]
    )
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    return instantiate(
        cfg.trainer,
        task=task,
        model=model,
        run_dir=tmp_path,
        device=torch.device("cpu"),
        model_target="torch.nn.Linear",
    )


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_logged_norm_is_measured_before_clipping_and_clipping_bounds_it(tmp_path):
    trainer = toy_trainer(tmp_path, ToyTask(), "trainer.clip_norm=0.5", "trainer.max_steps=1")
    batches = trainer.task.batches("train", train=True)
    trainer.optimizer.zero_grad()
    x, y = trainer.task.x[:8], trainer.task.y[:8]
    (((trainer.model(x) - y) ** 2).sum() / 8).backward()
    expected = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in trainer.model.parameters()))
    trainer.task.calls = 0
    stats = trainer.train_step(batches)
    assert stats["grad_norm"] == pytest.approx(expected, rel=1e-5)
    after = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in trainer.model.parameters()))
    assert expected > 0.5 and after == pytest.approx(0.5, rel=1e-4)


def test_clipping_by_value_bounds_every_element(tmp_path):
    trainer = toy_trainer(tmp_path, ToyTask(), "trainer.clip_norm=null", "trainer.clip_value=0.01")
    trainer.train_step(trainer.task.batches("train", train=True))
    assert max(float(p.grad.abs().max()) for p in trainer.model.parameters()) <= 0.01 + 1e-9


def test_accumulating_two_half_batches_equals_one_batch(tmp_path):
    task = ToyTask()
    task.batches = lambda split, **_: iter([(task.x[:4], task.y[:4]), (task.x[4:8], task.y[4:8])])
    split = toy_trainer(tmp_path / "a", task, "trainer.grad_accum=2", "trainer.clip_norm=null")
    split.train_step(task.batches("train"))
    whole = toy_trainer(tmp_path / "b", ToyTask(), "trainer.clip_norm=null")
    whole.train_step(whole.task.batches("train", train=True))
    for a, b in zip(split.model.parameters(), whole.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_nan_loss_stops_without_overwriting_the_last_good_checkpoint(tmp_path):
    trainer = toy_trainer(tmp_path, ToyTask(poison_at=5), "trainer.max_steps=10", "trainer.eval_every=2")
    with pytest.raises(TrainingDiverged, match="step 5"):
        trainer.fit()
    assert load_checkpoint(tmp_path / "checkpoints" / "last").meta["step"] == 4


def test_a_nan_loss_can_be_skipped(tmp_path):
    trainer = toy_trainer(tmp_path, ToyTask(poison_at=3), "trainer.max_steps=6", "trainer.on_nonfinite=skip")
    trainer.fit()
    assert trainer.step == 6
    logged = [r for r in records(tmp_path) if "loss" in r]
    assert [r["step"] for r in logged if r.get("skipped_steps")] == [3]
    assert all(math.isfinite(r["loss"]) for r in logged if r["step"] != 3)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_early_stopping_after_patience_evaluations_without_improvement(tmp_path):
    task = ToyTask(val_losses=[1.0, 0.5, 0.6, 0.7, 0.8, 0.9])
    trainer = toy_trainer(
        tmp_path, task, "trainer.max_steps=100", "trainer.eval_every=1", "trainer.patience=2"
    )
    trainer.fit()
    assert trainer.step == 4  # best at step 2, then two evaluations without improvement
    assert load_checkpoint(tmp_path / "checkpoints" / "best").meta["step"] == 2


def test_reduce_on_plateau_cuts_the_learning_rate(tmp_path):
    task = ToyTask(val_losses=[1.0, 1.1, 1.2, 1.3, 1.4])
    trainer = toy_trainer(
        tmp_path,
        task,
        "trainer.max_steps=5",
        "trainer.eval_every=1",
        "trainer.lr_schedule.kind=plateau",
        "trainer.lr_schedule.plateau_patience=2",
    )
    trainer.fit()
    assert trainer.plateau_scale == 0.25  # two cuts after 2 + 2 bad evaluations
    assert records(tmp_path)[-2]["lr"] == pytest.approx(trainer.peak_lrs[0] * 0.5)


def test_resumed_training_is_exactly_the_uninterrupted_run(tmp_path):
    """2N steps straight == N steps, then --resume for N more: identical loss at every step."""
    corpus = tiny_corpus(tmp_path)
    common = [
        "trainer.lr_schedule.kind=constant",
        "model.dropout=0.3",
        "trainer.curriculum.kind=linear",
        "trainer.curriculum.steps=6",
    ]
    straight = tmp_path / "straight"
    commands.train(compose(tiny_run(corpus, straight, *common, steps=12)))
    halves = tmp_path / "halves"
    commands.train(compose(tiny_run(corpus, halves, *common, steps=6)))
    commands.train(commands.resume_config(halves, ["trainer.max_steps=12"]), resume=halves)

    def losses(run_dir):
        return {r["step"]: r["loss"] for r in records(run_dir) if "loss" in r}

    assert sorted(losses(halves)) == list(range(1, 13))
    assert losses(halves) == losses(straight)


@pytest.mark.parametrize(("choice", "optimizer"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam)])
def test_the_optimizer_group_picks_the_optimizer(tmp_path, choice, optimizer):
    trainer = toy_trainer(tmp_path, ToyTask(), f"trainer/optimizer={choice}", "trainer.max_steps=3")
    assert type(trainer.optimizer) is optimizer
    before = trainer.evaluate_and_checkpoint(lambda record: None)["loss"]
    trainer.fit()
    assert trainer.task.evaluate(trainer.model, "val")["loss"] < before


# -------------------------------------------------------------------------------- the divergence guard
def test_the_guard_compares_a_loss_with_the_median_of_its_window():
    guard = DivergenceGuard(factor=10.0, window=3)
    assert guard.verdict(1e9, 1.0) is None  # nothing to compare the first step with
    for loss in [1.0, 100.0, 2.0, 3.0]:  # the window keeps the last three: 100, 2, 3 (median 3)
        guard.accept(loss)
    assert guard.verdict(30.0, 1.0) is None
    assert "loss 30.01 above trainer.divergence.factor=10 × 3, the median of the last 3" in guard.verdict(
        30.01, 1.0
    )
    assert (
        guard.verdict(float("inf"), 1.0) == "loss inf"
        and guard.verdict(1.0, float("nan")) == "gradient norm nan"
    )
    assert DivergenceGuard(factor=None, window=3).verdict(1e30, 1.0) is None  # factor null: NaN/inf only
    noisy_but_learning = DivergenceGuard(factor=10.0, window=3)
    for loss in [0.7, 0.005, 0.004, 0.005]:  # median 0.005 of the last three; the first step's loss 0.7
        noisy_but_learning.accept(loss)
    assert noisy_but_learning.verdict(0.16, 1.0) is None  # 32x the median, but better than untrained
    assert "above trainer.divergence.factor=10" in noisy_but_learning.verdict(0.71, 1.0)
    solved = DivergenceGuard(factor=10.0, window=3)
    solved.accept(0.0)
    assert solved.verdict(1e-7, 1.0) is None  # a median of 0 has no multiple to exceed


def test_a_loss_spike_stops_training_like_a_nan(tmp_path):
    task = ToyTask(poison_at=5, poison=1e6)
    trainer = toy_trainer(tmp_path, task, "trainer.max_steps=10", "trainer.eval_every=2")
    with pytest.raises(TrainingDiverged, match=r"loss .* above trainer.divergence.factor=20 .* at step 5"):
        trainer.fit()
    assert load_checkpoint(tmp_path / "checkpoints" / "last").meta["step"] == 4


def test_a_skipped_spike_leaves_the_weights_and_the_median_alone(tmp_path):
    trainer = toy_trainer(
        tmp_path, ToyTask(poison_at=3, poison=1e6), "trainer.max_steps=3", "trainer.on_nonfinite=skip"
    )
    batches = trainer.task.batches("train", train=True)
    for _ in range(2):
        trainer.train_step(batches)
        trainer.step += 1
    before = [p.detach().clone() for p in trainer.model.parameters()]
    window = list(trainer.divergence.recent)
    assert trainer.train_step(batches)["skipped"] == 1
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert list(trainer.divergence.recent) == window


def test_a_diverging_run_ends_with_exit_3_and_keeps_its_last_good_checkpoint(tmp_path):
    """End to end: SGD without clipping on the adding problem (an unbounded MSE), the lr rising 0.1 per
    step through a long warmup. The loss explodes after a dozen steps; the guard stops the run before
    the step that exploded is taken or checkpointed."""
    run = tmp_path / "run"
    result = outcome(
        [
            "train",
            "task=memory",
            "model=recurrent",
            "task.lag=5",
            "task.min_lag=2",
            "task.batch_size=8",
            "task.val_size=8",
            "task.test_size=8",
            "model.embedding_size=4",
            "model.hidden_size=8",
            "trainer/optimizer=sgd",
            "trainer.optimizer.lr=100",
            "trainer.lr_schedule.kind=constant",
            "trainer.lr_schedule.warmup_steps=1000",
            "trainer.clip_norm=null",
            "trainer.max_steps=60",
            "trainer.eval_every=2",
            "trainer.log_every=1",
            "trainer.sample_every=0",
            "trainer.progress=false",
            "trainer.tensorboard=false",
            "device=cpu",
            f"run_dir={run}",
        ]
    )
    lines = result.lines()
    assert result.code == 3 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    stopped = int(re.search(r"above trainer\.divergence\.factor=20 .* at step (\d+);", lines[0]).group(1))
    logged = records(run)
    losses = {r["step"]: r["loss"] for r in logged if "loss" in r}
    evaluations = {r["step"]: r["val_loss"] for r in logged if "val_loss" in r}
    assert max(losses) == stopped - 1 < 60  # the diverged step is neither taken nor logged
    last, best = load_checkpoint(run / "checkpoints" / "last"), load_checkpoint(run / "checkpoints" / "best")
    assert last.meta["step"] == max(evaluations) and last.meta["metric"] == evaluations[max(evaluations)]
    best_step = min(evaluations, key=evaluations.get)
    assert (best.meta["step"], best.meta["metric"]) == (best_step, evaluations[best_step])
    assert evaluations[best_step] < 1.0 < max(evaluations.values())  # it learned, then it broke


def test_a_compiled_training_forward_trains_the_same_weights_under_the_same_names(tmp_path, monkeypatch):
    """trainer.compile=true: task.loss gets the torch.compile'd model (dynamo's eager backend here, so the
    test traces the real graph without waiting for a C++ compiler), the weights follow the eager run, and
    the checkpoint names them as the eager model does (no "_orig_mod." prefix)."""
    compiled_with = []
    real_compile = torch.compile

    def eager_compile(model, **kwargs):
        compiled_with.append(model)
        return real_compile(model, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    steps = ("trainer.max_steps=3", "trainer.eval_every=3")
    (tmp_path / "compiled").mkdir(), (tmp_path / "eager").mkdir()
    compiled = toy_trainer(tmp_path / "compiled", ToyTask(), "trainer.compile=true", *steps)
    eager = toy_trainer(tmp_path / "eager", ToyTask(), *steps)
    assert compiled_with == [compiled.model] and compiled.trained_model is not compiled.model
    compiled.fit()
    eager.fit()
    for ours, reference in zip(compiled.model.parameters(), eager.model.parameters(), strict=True):
        torch.testing.assert_close(ours, reference)
    saved = load_checkpoint(tmp_path / "compiled" / "checkpoints" / "last")
    assert set(saved.model_state) == set(eager.model.state_dict())
