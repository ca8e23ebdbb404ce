"""The shared trainer on a toy regression task (clipping, accumulation, NaN, early stop) and on the
real char LM (exact resume)."""

import json
import math

import pytest
import torch
from torch import nn

from seqtool import commands
from seqtool.checkpoint import load_checkpoint
from seqtool.config import compose, instantiate
from seqtool.errors import TrainingDiverged
from seqtool.tasks.base import Loss
from tests.helpers import tiny_corpus, tiny_run


class ToyTask:
    """y = 3x on fixed random batches; `poison_at` makes the loss NaN at that call."""

    def __init__(self, poison_at: int | None = None, val_losses: list[float] | None = None) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=generator)
        self.y = self.x.sum(dim=1, keepdim=True) * 3
        self.calls, self.poison_at, self.val_losses = 0, poison_at, val_losses

    def batches(self, split, *, train, competence=None):
        while True:
            yield self.x[(self.calls * 8) % 64 :][:8], self.y[(self.calls * 8) % 64 :][:8]

    def loss(self, model, batch):
        self.calls += 1
        x, y = batch
        total = ((model(x) - y) ** 2).sum()
        if self.calls == self.poison_at:
            total = total * float("nan")
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
