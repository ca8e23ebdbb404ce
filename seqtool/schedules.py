"""Schedules as pure functions of the step: learning rate, curriculum competence, teacher forcing.

Each is a small frozen dataclass built from YAML (`_target_: seqtool.schedules.X`) whose `__call__`
maps a step to a number, so a resumed run recomputes exactly what an uninterrupted one had.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class LRSchedule:
    """Multiplier of the peak learning rate at a step; with kind plateau, times a scale that
    after_evaluation() cuts when the validation metric stops improving; with kind epoch_decay, a
    function of the epoch the step falls in (the trainer says how many steps make an epoch)."""

    kind: Literal["constant", "cosine", "inverse_sqrt", "plateau", "epoch_decay"]
    warmup_steps: int
    min_ratio: float
    plateau_factor: float
    plateau_patience: int
    # Defaults only for runs saved before epoch_decay existed (conf/trainer/default.yaml sets them).
    decay_after_epoch: int = 0
    decay_factor: float = 1.0

    def __call__(self, step: int, max_steps: int, steps_per_epoch: int | None = None) -> float:
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        # 1) constant and plateau: linear warmup, then flat (plateau cuts come from evaluations)
        if self.kind in ("constant", "plateau"):
            return warmup
        # 2) inverse square root (Vaswani et al. 2017): rises linearly, then decays as 1/sqrt(step)
        if self.kind == "inverse_sqrt":
            return warmup if step < self.warmup_steps else math.sqrt(self.warmup_steps / (step + 1))
        # 3) epoch decay (Zaremba et al. 2014): flat for the first decay_after_epoch epochs, then
        #    × decay_factor once per epoch: epoch n (counted from 1) runs at decay_factor^max(0, n - k)
        if self.kind == "epoch_decay":
            if steps_per_epoch is None:
                raise ValueError("the epoch_decay schedule needs the number of steps per epoch")
            epoch = step // steps_per_epoch + 1
            return warmup * self.decay_factor ** max(0, epoch - self.decay_after_epoch)
        # 4) cosine from the peak down to min_ratio at max_steps (Loshchilov & Hutter 2017)
        if step < self.warmup_steps:
            return warmup
        progress = min(1.0, (step - self.warmup_steps) / max(1, max_steps - self.warmup_steps))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def after_evaluation(self, scale: float, evals_without_improvement: int) -> float:
        """The plateau scale after an evaluation: times plateau_factor after every plateau_patience
        evaluations in a row without improvement (ReduceLROnPlateau); unchanged for the other kinds."""
        stalled = evals_without_improvement > 0 and evals_without_improvement % self.plateau_patience == 0
        return scale * self.plateau_factor if self.kind == "plateau" and stalled else scale


@dataclass(frozen=True)
class Competence:
    """Curriculum competence c(t) in (0, 1] (Platanios et al. 2019): the share of the training data,
    easiest first, a step may draw from. None means no curriculum."""

    kind: Literal["none", "linear", "sqrt"]
    initial: float
    steps: int

    def __call__(self, step: int) -> float:
        if self.kind == "none" or step >= self.steps:
            return 1.0
        c0, t = self.initial, step / self.steps
        if self.kind == "linear":  # c(t) = t (1 - c0) + c0
            return min(1.0, t * (1 - c0) + c0)
        return min(1.0, math.sqrt(t * (1 - c0**2) + c0**2))  # c(t) = sqrt(t (1 - c0²) + c0²)


@dataclass(frozen=True)
class TeacherForcing:
    """Probability of feeding the ground truth (not the model's own prediction) at a step, the
    scheduled-sampling ratio ε_i of Bengio et al. (2015)."""

    kind: Literal["none", "linear", "exponential", "inverse_sigmoid"]
    k: float
    min_ratio: float
    steps: int

    def __call__(self, step: int) -> float:
        if self.kind == "none":
            return 1.0
        if self.kind == "linear":  # ε_i = max(ε_min, 1 - i (1 - ε_min) / steps)
            return max(self.min_ratio, 1.0 - step * (1.0 - self.min_ratio) / self.steps)
        if self.kind == "exponential":  # ε_i = k^i with k < 1
            return max(self.min_ratio, self.k**step)
        # inverse sigmoid: ε_i = k / (k + exp(i / k)) with k ≥ 1
        return max(self.min_ratio, self.k / (self.k + math.exp(min(step / self.k, 700.0))))
