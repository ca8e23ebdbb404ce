"""The shared Trainer: one class, one plain loop, no knowledge of text or video.

Per optimizer step::

    lr    = peak_lr * schedule(step) * plateau_scale
    for each of grad_accum micro-batches:          # gradients add up; the loss is a mean per token
        loss = task.loss(model, batch) / grad_accum
        loss.backward()
    norm  = global gradient norm (logged before clipping)
    clip, optimizer.step(), log, and every eval_every steps: evaluate, checkpoint, early-stop check

The task owns the batches and the loss; the schedules are pure functions of the step; the checkpoint
holds everything needed to continue exactly (weights, optimizer, RNG, the task's stream position).

Epochs, where a task has them (one pass over a fixed training set, `task.steps_per_epoch()`), are a
count of steps too: epoch = step // steps_per_epoch. So `max_epochs`, `eval_every: epoch` and the
epoch_decay lr schedule stay functions of the step, and a run resumed mid-epoch continues exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from seqtool import distributed
from seqtool.checkpoint import (
    BestKeeper,
    load_checkpoint,
    load_model_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from seqtool.errors import TrainingDiverged, UserError
from seqtool.progress import TrainingProgress
from seqtool.schedules import Competence, LRSchedule, TeacherForcing
from seqtool.tasks.base import Task


class Interrupted(Exception):
    """Ctrl-C during training: the last checkpoint was saved, exit 130."""


@dataclass
class DivergenceGuard:
    """A step diverged when its loss is NaN/inf, or above `factor` × the median of the last `window`
    accepted losses and above the first step's loss (conf/trainer/default.yaml: trainer.divergence).
    The median, not the mean, so one spike does not raise the bar for the next. The first loss (the
    untrained model's) as a second bar because a small loss is noisy in ratio terms: an NTM copying at
    0.005 bits of cross-entropy jumps 30× on one hard batch and recovers, which is not divergence until
    it is worse than knowing nothing. Checked from the second step on, and not while the median is 0
    (a solved copy task: any rounding above it would count as a spike)."""

    factor: float | None
    window: int
    recent: deque[float] = field(init=False, repr=False)
    first: float | None = field(init=False, default=None)  # the loss of the first accepted step

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.window)

    def verdict(self, loss: float, grad_norm: float) -> str | None:
        """What diverged at this step (for the message), or None when the step may be taken."""
        if not math.isfinite(loss):
            return f"loss {loss}"
        if not math.isfinite(grad_norm):
            return f"gradient norm {grad_norm}"
        if self.factor is not None and self.recent:
            median = statistics.median(self.recent)
            if median > 0 and loss > self.factor * median and loss > (self.first or 0.0):
                return (f"loss {loss:.4g} above trainer.divergence.factor={self.factor:g} × {median:.4g}, "
                        f"the median of the last {len(self.recent)} steps")  # fmt: skip
        return None

    def accept(self, loss: float) -> None:
        if self.first is None:
            self.first = loss
        self.recent.append(loss)


class Trainer:
    """Fits a model on a task. Built from conf/trainer/*.yaml; task, model, run_dir and device come
    from `seqtool.commands.train`."""

    def __init__(
        self,
        *,
        task: Task,
        model: nn.Module,
        run_dir: Path,
        device: torch.device,
        model_target: str,
        max_steps: int,
        grad_accum: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_schedule: LRSchedule,
        clip_norm: float | None,
        clip_value: float | None,
        curriculum: Competence,
        teacher_forcing: TeacherForcing,
        eval_every: int | Literal["epoch"],
        eval_metric: str,
        eval_mode: Literal["min", "max"],
        patience: int | None,
        keep_best: int,
        log_every: int,
        sample_every: int,
        precision: Literal["auto", "fp32", "bf16"],
        on_nonfinite: Literal["stop", "skip"],
        progress: bool,
        tensorboard: bool,
        divergence: DivergenceGuard | None = None,  # None: runs saved before the guard (NaN/inf only)
        compile: bool = False,  # torch.compile the model's training forward (evaluation stays eager)
        max_epochs: int | None = None,  # None: max_steps alone ends the run (and runs saved before epochs)
        aux_lm_weight: float = 0.0,  # λ of the LM loss a task adds to its own (task=classify, tagging)
        parameter_groups: list[dict[str, Any]] | None = None,  # a fine-tuned model's (seqtool/finetune.py)
    ) -> None:
        # The ranges of these arguments are checked when the config is composed (seqtool/schema.py).
        self.task, self.model, self.run_dir, self.device = task, model, Path(run_dir), device
        self.model_target = model_target
        self.grad_accum = grad_accum
        self.lr_schedule, self.curriculum, self.teacher_forcing = lr_schedule, curriculum, teacher_forcing
        self.clip_norm, self.clip_value = clip_norm, clip_value
        uses_epochs = max_epochs is not None or eval_every == "epoch" or lr_schedule.kind == "epoch_decay"
        self.steps_per_epoch = self._steps_per_epoch() if uses_epochs else None
        # The run ends at max_steps or after max_epochs, whichever comes first.
        self.max_steps = max_steps
        if max_epochs is not None:
            self.max_steps = min(max_steps, max_epochs * self.steps_per_epoch)
        self.eval_every = self.steps_per_epoch if eval_every == "epoch" else eval_every
        self.eval_metric, self.patience = eval_metric, patience
        self.log_every, self.sample_every, self.on_nonfinite = log_every, sample_every, on_nonfinite
        self.divergence = divergence or DivergenceGuard(factor=None, window=1)
        self.show_progress, self.use_tensorboard = progress, tensorboard
        self.autocast_dtype = _autocast_dtype(precision, device)
        self.is_main = distributed.rank() == 0

        if aux_lm_weight:
            if not hasattr(task, "aux_lm_weight"):
                raise UserError(
                    f"trainer.aux_lm_weight={aux_lm_weight} adds a language-model loss to the task's own "
                    "(task=classify, task=tagging); this task has none"
                )
            task.aux_lm_weight = aux_lm_weight

        self.model.to(device)
        # A fine-tuned model's groups: its head, and its pretrained body unless frozen; a group's lr_scale
        # (finetune.body_lr_scale) multiplies the optimizer's lr, before any schedule.
        self.optimizer = optimizer(parameter_groups or self.model.parameters())
        self.peak_lrs = [group["lr"] * group.get("lr_scale", 1.0) for group in self.optimizer.param_groups]
        self.trained_model = self._wrap_distributed(self.model)
        if compile:
            # Only the training forward is compiled: evaluation and decoding call other methods with other
            # shapes (one step at a time), where recompiling would cost more than it saves. The weights stay
            # self.model's, so checkpoints keep their names (no "_orig_mod." prefix).
            self.trained_model = torch.compile(self.trained_model)
        self.best = BestKeeper(self.run_dir / "checkpoints", keep=keep_best, mode=eval_mode)
        self.step = 0
        self.plateau_scale = 1.0
        self.evals_without_improvement = 0
        self.stop_requested = False

    def _steps_per_epoch(self) -> int:
        """Optimizer steps in one pass over the training set, from the task's batches per pass."""
        # Only tasks with a fixed training set have epochs; the synthetic ones draw new examples forever.
        batches = getattr(self.task, "steps_per_epoch", None)
        if batches is None:
            raise UserError(
                f"{type(self.task).__name__} has no epochs (its training stream is endless): "
                "set trainer.max_steps and an integer trainer.eval_every, and an lr schedule other than "
                "epoch_decay"
            )
        return max(1, math.ceil(batches() / self.grad_accum))

    def _wrap_distributed(self, model: nn.Module) -> nn.Module:
        if distributed.world_size() == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    # ----------------------------------------------------------------------------------------- the loop
    def fit(self) -> dict[str, float]:
        """Train from self.step to max_steps; returns the last evaluation's metrics."""
        self.model.train()
        batches = iter(self.task.batches("train", train=True, competence=lambda: self.curriculum(self.step)))
        last_eval: dict[str, float] = {}
        with (
            self._logger() as log,
            self._sigint_saves(),
            TrainingProgress(
                self.max_steps, start=self.step, enabled=self.show_progress and self.is_main
            ) as bar,
        ):
            window = _Window()
            # the model's size rides on the first log line of a run: `seqtool compare` shows it
            trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
            first_log = {"params": trainable} if self.step == 0 else {}
            while self.step < self.max_steps and not self._early_stopped():
                stats = self.train_step(batches)
                self.step += 1
                window.add(stats)
                bar.update(self.step, stats)
                if self.step % self.log_every == 0 or self.step == self.max_steps:
                    log(window.summary(self.step) | self._replica_check() | first_log)
                    window, first_log = _Window(), {}
                if self.step % self.eval_every == 0 or self.step == self.max_steps:
                    last_eval = self.evaluate_and_checkpoint(log)
                    bar.note(self.step, last_eval)
                if self.stop_requested:
                    self.save_last()
                    raise Interrupted(f"interrupted at step {self.step}; resume with --resume {self.run_dir}")
        return last_eval

    def train_step(self, batches: Iterator[Any]) -> dict[str, float]:
        """One optimizer step over grad_accum micro-batches; returns what gets logged."""
        lr = self._set_learning_rate()
        self._hand_teacher_forcing_ratio()
        self.optimizer.zero_grad(set_to_none=True)
        started, total_loss, total_count = time.perf_counter(), 0.0, 0
        for _ in range(self.grad_accum):
            with self._autocast():
                loss = self.task.loss(self.trained_model, next(batches))
            mean = loss.total / max(loss.count, 1)
            (mean / self.grad_accum).backward()
            total_loss = (
                total_loss + loss.total.detach().float()
            )  # stays on the device: no sync per micro-batch
            total_count += loss.count
        # One device-to-host sync per step, for the finiteness check and the log.
        summed_loss, grad_norm = torch.stack([total_loss, self._clip_gradients()]).tolist()
        mean_loss = summed_loss / max(total_count, 1)
        if distributed.world_size() > 1:  # every rank judges the same loss, so all stop or skip together
            mean_loss = distributed.all_reduce_sum(summed_loss) / max(
                distributed.all_reduce_sum(total_count), 1
            )
        if diverged := self.divergence.verdict(mean_loss, grad_norm):
            return self._diverged(diverged, mean_loss, grad_norm, lr)
        self.divergence.accept(mean_loss)
        self.optimizer.step()
        elapsed = time.perf_counter() - started
        return {
            "loss": mean_loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "count": total_count,
            "seconds": elapsed,
            "competence": self.curriculum(self.step),
        }

    def _replica_check(self) -> dict[str, float]:
        """Under DDP, how far the ranks' weights have drifted apart (0.0 when they are in sync)."""
        if distributed.world_size() == 1:
            return {}
        with torch.no_grad():
            checksum = sum(float(p.double().sum()) for p in self.model.parameters())
        sums = distributed.gather(checksum)
        return {"replica_spread": max(sums) - min(sums)}

    def _autocast(self) -> torch.autocast:
        """bf16 autocast where precision asks for it (CUDA by default); a no-op context elsewhere."""
        enabled = self.autocast_dtype is not None
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32, enabled=enabled)

    def _set_learning_rate(self) -> float:
        factor = self.lr_schedule(self.step, self.max_steps, self.steps_per_epoch) * self.plateau_scale
        for group, peak in zip(self.optimizer.param_groups, self.peak_lrs):
            group["lr"] = peak * factor
        return self.optimizer.param_groups[0]["lr"]

    def _hand_teacher_forcing_ratio(self) -> None:
        # Scheduled sampling lives in the model's forward; the trainer only says how much truth to feed.
        if hasattr(self.model, "teacher_forcing_ratio"):
            self.model.teacher_forcing_ratio = self.teacher_forcing(self.step)

    def _clip_gradients(self) -> torch.Tensor:
        """Clip by value and/or global norm; return the global norm measured before any clipping."""
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(parameters, self.clip_norm or math.inf).float()
        if self.clip_value is not None:
            torch.nn.utils.clip_grad_value_(parameters, self.clip_value)
        return norm

    def _diverged(self, what: str, loss: float, grad_norm: float, lr: float) -> dict[str, float]:
        """Stop (exit 3, the last good checkpoint kept) or skip the step without updating the weights."""
        if self.on_nonfinite == "stop":
            raise TrainingDiverged(
                f"{what} at step {self.step + 1}; stopped without overwriting the last good checkpoint "
                f"in {self.run_dir / 'checkpoints'} "
                "(lower the lr, clip harder, or set trainer.on_nonfinite=skip)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": loss, "lr": lr, "grad_norm": grad_norm, "count": 0, "seconds": 0.0, "skipped": 1}

    # ------------------------------------------------------------------ evaluation and checkpoints
    def evaluate_and_checkpoint(self, log: Callable[[dict], None]) -> dict[str, float]:
        """Evaluate on val (rank 0), keep best-k, save last, update plateau and early-stop counters."""
        metrics, improved = distributed.broadcast(self._judge() if self.is_main else None)
        value = metrics[self.eval_metric]
        self.evals_without_improvement = 0 if improved else self.evals_without_improvement + 1
        stalled = self.evals_without_improvement
        self.plateau_scale = self.lr_schedule.after_evaluation(self.plateau_scale, stalled)
        state = self.trainer_state()
        if self.is_main:
            epoch = {"epoch": round(self.step / self.steps_per_epoch, 4)} if self.steps_per_epoch else {}
            log({"step": self.step, **epoch, **{f"val_{key}": val for key, val in metrics.items()}})
            self.best.offer(value, self.step, model=self.model, trainer_state=state, meta=self._meta(value))
        self.save_last(value, state)
        if self.is_main:
            self._write_sample()
        return metrics

    def _judge(self) -> tuple[dict[str, float], bool]:
        """The validation metrics, and whether the watched one beats the best so far."""
        metrics = self._evaluate()
        if self.eval_metric not in metrics:
            raise UserError(f"trainer.eval_metric={self.eval_metric!r} is not one of {sorted(metrics)}")
        return metrics, self.best.is_better(metrics[self.eval_metric])

    def _evaluate(self) -> dict[str, float]:
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                metrics = self.task.evaluate(self.model, "val")
        finally:
            self.model.train()
        # Numbers become floats (a tensor or numpy scalar would not serialise); text such as a BLEU
        # signature passes through.
        return {key: value if isinstance(value, str) else float(value) for key, value in metrics.items()}

    def _write_sample(self) -> None:
        if not self.sample_every or self.step % self.sample_every and self.step != self.max_steps:
            return
        self.model.eval()
        try:
            text = self.task.preview(self.model)
        finally:
            self.model.train()
        samples = self.run_dir / "samples"
        samples.mkdir(parents=True, exist_ok=True)
        (samples / f"step_{self.step:07d}.txt").write_text(text, encoding="utf-8")

    def _early_stopped(self) -> bool:
        return self.patience is not None and self.evals_without_improvement >= self.patience

    def trainer_state(self) -> dict[str, Any]:
        """Everything besides the weights that an exact resume needs; plain types (weights_only-safe)."""
        per_rank = distributed.gather({"task": self.task.state_dict(), "rng": rng_state()})
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "per_rank": per_rank,
            "best": self.best.state_dict(),
            "plateau_scale": self.plateau_scale,
            "evals_without_improvement": self.evals_without_improvement,
            "recent_losses": list(self.divergence.recent),
            "first_loss": self.divergence.first,
        }

    def _meta(self, metric: float | None) -> dict[str, Any]:
        return {
            "model": self.model_target,
            "step": self.step,
            "metric": metric,
            "metric_name": self.eval_metric,
        }

    def save_last(self, value: float | None = None, state: dict[str, Any] | None = None) -> None:
        """checkpoints/last: the weights, the trainer state (every rank's part) and the metric `value`."""
        state = self.trainer_state() if state is None else state
        if self.is_main:
            save_checkpoint(
                self.run_dir / "checkpoints" / "last",
                model=self.model,
                trainer_state=state,
                meta=self._meta(value),
            )

    def resume(self, checkpoint_dir: Path) -> None:
        """Restore weights, optimizer, counters, RNG and the task's stream position from a checkpoint."""
        checkpoint = load_checkpoint(checkpoint_dir, map_location=self.device)
        load_model_weights(self.model, checkpoint, expected_model=self.model_target)
        state = checkpoint.trainer_state
        per_rank = state["per_rank"]
        if len(per_rank) != distributed.world_size():
            raise UserError(f"{checkpoint_dir} was saved by {len(per_rank)} processes; resume with as many")
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.plateau_scale = int(state["step"]), float(state["plateau_scale"])
        self.evals_without_improvement = int(state["evals_without_improvement"])
        # checkpoints saved before the divergence guard have no recent losses: it starts afresh
        self.divergence.recent.extend(float(loss) for loss in state.get("recent_losses", []))
        first = state.get("first_loss", self.divergence.recent[0] if self.divergence.recent else None)
        self.divergence.first = None if first is None else float(first)
        self.best.load_state_dict(state["best"])
        mine = per_rank[distributed.rank()]
        self.task.load_state_dict(mine["task"])
        set_rng_state(mine["rng"])

    # -------------------------------------------------------------------------------- plumbing
    @contextlib.contextmanager
    def _logger(self):
        """A `log(record)` that appends to metrics.jsonl and TensorBoard (rank 0 only)."""
        if not self.is_main:
            yield lambda record: None
            return
        writer = _tensorboard_writer(self.run_dir / "tb") if self.use_tensorboard else None
        started = time.perf_counter()
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as file:

            def log(record: dict[str, Any]) -> None:
                # "time": wall seconds since this process began fitting (0 again after a resume)
                record = record | {"time": round(time.perf_counter() - started, 3)}
                file.write(json.dumps(record) + "\n")
                file.flush()
                for key, value in record.items():
                    if writer is not None and key != "step" and isinstance(value, (int, float)):
                        writer.add_scalar(key, value, record["step"])

            try:
                yield log
            finally:
                if writer is not None:
                    writer.close()

    @contextlib.contextmanager
    def _sigint_saves(self):
        """The first Ctrl-C asks the loop to save and stop at the end of the step; a second one aborts."""

        def request_stop(signum, frame):
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True

        try:
            previous = signal.signal(signal.SIGINT, request_stop)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


class _Window:
    """Running sums between two log lines, summed over the ranks when there are several."""

    def __init__(self) -> None:
        self.loss_sum = self.count = self.seconds = 0.0
        self.skipped = 0
        self.last: dict[str, float] = {}

    def add(self, stats: dict[str, float]) -> None:
        self.last = stats
        if stats.get("skipped"):  # a non-finite step: counted, but its NaN must not poison the mean
            self.skipped += 1
            return
        self.loss_sum += stats["loss"] * stats["count"]
        self.count += stats["count"]
        self.seconds += stats["seconds"]

    def summary(self, step: int) -> dict[str, Any]:
        loss_sum, count = distributed.all_reduce_sum(self.loss_sum), distributed.all_reduce_sum(self.count)
        record = {
            "step": step,
            "loss": loss_sum / count if count else self.last["loss"],
            "lr": self.last["lr"],
            "grad_norm": self.last["grad_norm"],
            "tokens_per_s": count / max(self.seconds, 1e-9),  # time inside train_step: no eval, no logging
            "competence": self.last.get("competence", 1.0),
        }
        if self.skipped:
            record["skipped_steps"] = self.skipped
        return record


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA when asked or on auto; fp32 elsewhere (CPU autocast is slower than fp32)."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _tensorboard_writer(directory: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(directory))
