"""The schema of seqtool's configs, declared once: types, ranges, rules between keys, what resume may change.

    types    the annotations of each `_target_` constructor (int, float, bool, str, Literal, list, tuple,
             Optional), read by seqtool.config, so they cannot drift from the code; ROOT_TYPES for the
             few keys of conf/config.yaml that no constructor takes
    ranges   RANGES below, keyed by config path (`model.hidden_size` holds for every model that has one;
             `key[]` bounds each element of a list); a key without an entry is only type-checked
    rules    RULES below: constraints between keys of one part (min <= max, heads divides d_model), and
             PAIRING_RULES between the model and its task (share_all_embeddings needs joint_vocab), checked
             with the model's fit to its task, where a config is to be trained (seqtool.config);
             a rule whose keys a config lacks does not apply
    resume   RESUMABLE: the keys `seqtool train --resume RUN key=value` may change

Every refusal is one line naming the key, its value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

ROOT_TYPES: dict[str, Any] = {
    "name": str | int,  # name=2024 reads as a number; it still names runs/2024/
    "run_dir": str | None,
    "seed": int,
    "device": Literal["auto", "cpu", "cuda", "mps"],
    "init_from": str | None,  # a pretrained run or checkpoint directory (seqtool/finetune.py)
}


@dataclass(frozen=True)
class Range:
    """low <= value <= high (either end open, or absent); `note` says what the value means at the edge."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        """`1 to 26` for whole numbers, `in [0, 1)`, `> 0` or `>= 1` otherwise; then the note."""
        if self.high is None:
            text = f"{'>' if self.low_open else '>='} {self.low:g}"
        elif self.low is None:
            text = f"{'<' if self.high_open else '<='} {self.high:g}"
        elif (
            isinstance(self.low, int) and isinstance(self.high, int) and not (self.low_open or self.high_open)
        ):
            text = f"{self.low} to {self.high}"
        else:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"in {left}{self.low:g}, {self.high:g}{right}"
        return f"{text} ({self.note})" if self.note else text


COUNT = Range(low=1)  # sizes, steps, layers: at least one
NONNEGATIVE = Range(low=0)
POSITIVE = Range(low=0, low_open=True)
SHARE = Range(low=0.0, high=1.0)  # a ratio or probability, both ends included
DROPOUT = Range(low=0, high=1, high_open=True)  # p = 1 would drop everything

RANGES: dict[str, Range] = {
    # --- the trainer ------------------------------------------------------------------------------------
    "trainer.max_steps": COUNT,
    "trainer.max_epochs": Range(low=1, note="null: trainer.max_steps alone ends the run"),
    "trainer.grad_accum": COUNT,
    "trainer.clip_norm": Range(
        low=0, low_open=True, note="null: no clipping; 0 or less would zero or flip the gradient"
    ),
    "trainer.clip_value": Range(low=0, low_open=True, note="null: no clipping; 0 would zero every gradient"),
    "trainer.eval_every": COUNT,
    "trainer.patience": Range(low=1, note="null: never stop early"),
    "trainer.keep_best": COUNT,
    "trainer.log_every": COUNT,
    "trainer.sample_every": Range(low=0, note="0: never"),
    "trainer.divergence.factor": Range(low=1, low_open=True, note="null: only NaN/inf count as divergence"),
    "trainer.divergence.window": COUNT,
    "trainer.optimizer.lr": POSITIVE,
    "trainer.optimizer.betas[]": Range(low=0, high=1, high_open=True),
    "trainer.optimizer.weight_decay": NONNEGATIVE,
    "trainer.optimizer.momentum": Range(low=0, high=1, high_open=True),
    "trainer.lr_schedule.warmup_steps": Range(low=0, note="0: no warmup"),
    "trainer.lr_schedule.min_ratio": SHARE,
    "trainer.lr_schedule.plateau_factor": Range(low=0, high=1, low_open=True),
    "trainer.lr_schedule.plateau_patience": COUNT,
    "trainer.lr_schedule.decay_after_epoch": Range(low=0, note="0: decay from the first epoch"),
    "trainer.lr_schedule.decay_factor": Range(low=0, high=1, low_open=True, note="1: no decay"),
    "trainer.curriculum.initial": Range(low=0, high=1, low_open=True),
    "trainer.curriculum.steps": COUNT,
    "trainer.teacher_forcing.k": POSITIVE,
    "trainer.teacher_forcing.min_ratio": SHARE,
    "trainer.teacher_forcing.steps": COUNT,
    "trainer.aux_lm_weight": Range(low=0, note="0: no auxiliary LM loss"),
    "task.max_train_examples": Range(low=1, note="null: every train example"),
    "finetune.body_lr_scale": Range(
        low=0, low_open=True, note="finetune.freeze_body=true keeps the body fixed"
    ),
    # --- models (a key holds for every model that has it) -----------------------------------------------
    **dict.fromkeys(
        [
            f"model.{key}"
            for key in (
                "embedding_size",
                "hidden_size",
                "num_layers",
                "encoder_layers",
                "decoder_layers",
                "d_model",
                "heads",
                "ffn_size",
                "max_positions",
                "grid_size",
                "attention_size",
                "hidden_channels",
                "kernel_size",
                "patch_size",
                "controller_size",
                "memory_size",
                "memory_width",
                "window",
                "temporal_kernel_size",
                "memory_steps",
            )
        ]
        + ["model.encoder_channels[]"],
        COUNT,
    ),  # fmt: skip
    "model.dropout": DROPOUT,
    "model.init_range": Range(low=0, low_open=True, note="null: torch's initialisation"),
    "model.doubly_stochastic": NONNEGATIVE,
    "model.decouple_beta": NONNEGATIVE,
    "model.reconstruct_weight": NONNEGATIVE,
    "model.shift_range": NONNEGATIVE,
    "model.local_window": Range(low=0, note="D of local attention; local_p needs >= 1"),
    # --- tasks (a key holds for every task that has it) -------------------------------------------------
    **dict.fromkeys(
        [
            f"task.{key}"
            for key in (
                "batch_size",
                "eval_batch_size",
                "seq_len",
                "min_seq_len",
                "max_chars",
                "eval_max_chars",
                "min_frequency",
                "max_source_length",
                "max_target_length",
                "max_tokens",
                "bucket_size",
                "eval_beam",
                "eval_max_sentences",
                "image_size",
                "resize_size",
                "max_caption_length",
                "max_images",
                "eval_max_len",
                "eval_max_images",
                "digit_size",
                "num_digits",
                "input_frames",
                "target_frames",
                "eval_sequences",
                "test_sequences",
                "lag",
                "min_lag",
                "val_size",
                "test_size",
                "width",
                "length",
                "min_length",
                "max_repeats",
                "synthetic.train_size",
                "synthetic.val_size",
                "synthetic.min_length",
                "synthetic.max_length",
                "shapes.train_size",
                "shapes.val_size",
                "shapes.captions_per_image",
            )
        ],
        COUNT,
    ),  # fmt: skip
    "task.val_fraction": DROPOUT,
    "task.test_fraction": DROPOUT,
    "task.vocab_size": Range(low=5, note="the 4 special tokens and at least one more"),
    "task.max_vocab": Range(low=5, note="the 4 special tokens and at least one word; null: every word"),
    "task.eval_max_tokens": Range(low=2, note="null: the whole split"),
    "task.label_smoothing": DROPOUT,
    "task.eval_alpha": NONNEGATIVE,
    "task.eval_max_len_ratio": NONNEGATIVE,
    "task.eval_max_len_offset": NONNEGATIVE,
    "task.preview_sentences": NONNEGATIVE,
    "task.preview_images": NONNEGATIVE,
    "task.step_length": NONNEGATIVE,
    "task.l1_weight": NONNEGATIVE,
    "task.synthetic.test_size": Range(low=0, note="0: no test split"),
    "task.shapes.test_size": Range(low=0, note="0: no test split"),
    "task.synthetic.alphabet": Range(low=1, high=26, note="the first N lowercase letters"),
    "task.shapes.max_objects": Range(low=1, high=3),
}


# ---------------------------------------------------------------------------------------- rules
# A rule reads the resolved config (plain dicts) and returns what is wrong, or None. It applies only when
# the keys it names are there: `value(cfg, "model.heads")` is None for a model without heads.
Rule = Callable[[dict[str, Any]], "str | None"]


def value(cfg: dict[str, Any], path: str) -> Any:
    """The value at a dotted path, or None where any part of the path is missing."""
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def at_most(smaller: str, larger: str, why: str = "") -> Rule:
    """smaller <= larger, where both keys are set."""

    def rule(cfg: dict[str, Any]) -> str | None:
        low, high = value(cfg, smaller), value(cfg, larger)
        if low is None or high is None or low <= high:
            return None
        return f"{smaller}={low} is above {larger}={high}; it must be at most that" + (
            f" ({why})" if why else ""
        )

    return rule


def divides(divisor: str, multiple: str, why: str) -> Rule:
    """multiple % divisor == 0, where both keys are set."""

    def rule(cfg: dict[str, Any]) -> str | None:
        d, m = value(cfg, divisor), value(cfg, multiple)
        if d is None or m is None or d < 1 or m % d == 0:
            return None
        return f"{divisor}={d} does not divide {multiple}={m} ({why})"

    return rule


def equal_when(flag: str, first: str, second: str) -> Rule:
    """first == second when flag is true (tied matrices need one size)."""

    def rule(cfg: dict[str, Any]) -> str | None:
        a, b = value(cfg, first), value(cfg, second)
        if value(cfg, flag) is not True or a is None or b is None or a == b:
            return None
        return f"{flag}=true shares one matrix, so it needs {first} == {second} (got {a} and {b})"

    return rule


def needs(flag: str, other: str) -> Rule:
    """flag=true only together with other=true."""

    def rule(cfg: dict[str, Any]) -> str | None:
        if value(cfg, flag) is True and value(cfg, other) is False:
            return f"{flag}=true needs {other}=true (one vocabulary for both sides)"
        return None

    return rule


def odd(key: str, why: str) -> Rule:
    def rule(cfg: dict[str, Any]) -> str | None:
        size = value(cfg, key)
        return None if size is None or size % 2 == 1 else f"{key}={size} must be odd ({why})"

    return rule


def fractions_leave_train(cfg: dict[str, Any]) -> str | None:
    """The char LM cuts [train | val | test] from one text: val + test must leave some for train."""
    val, test = value(cfg, "task.val_fraction"), value(cfg, "task.test_fraction")
    if val is None or test is None or val + test < 1:
        return None
    return f"task.val_fraction={val} + task.test_fraction={test} leave no text to train on: keep the sum < 1"


def teacher_forcing_decays(cfg: dict[str, Any]) -> str | None:
    """ε_i = k^i decays only for k < 1; ε_i = k / (k + exp(i/k)) starts near 1 only for k >= 1."""
    kind, k = value(cfg, "trainer.teacher_forcing.kind"), value(cfg, "trainer.teacher_forcing.k")
    if kind == "exponential" and not k < 1:
        return f"trainer.teacher_forcing.k={k} must be < 1 for kind=exponential (ε = k^step decays only then)"
    if kind == "inverse_sigmoid" and not k >= 1:
        return f"trainer.teacher_forcing.k={k} must be >= 1 for kind=inverse_sigmoid (ε = k/(k+exp(step/k)))"
    return None


def local_p_has_a_window(cfg: dict[str, Any]) -> str | None:
    """local_p's Gaussian has σ = D/2: D = 0 would divide by zero (local_m may attend to p_t alone)."""
    if value(cfg, "model.attention") == "local_p" and value(cfg, "model.local_window") == 0:
        return "model.local_window=0 must be >= 1 for model.attention=local_p (its Gaussian has sigma = D/2)"
    return None


def shifts_fit_memory(cfg: dict[str, Any]) -> str | None:
    """The NTM's head shifts by -R..R: 2R + 1 shifts must fit in the N memory locations."""
    shift, size = value(cfg, "model.shift_range"), value(cfg, "model.memory_size")
    if shift is None or size is None or 2 * shift + 1 <= size:
        return None
    return f"model.shift_range={shift} needs 2R + 1 <= model.memory_size={size} locations"


def fine_tuning_needs_a_body(cfg: dict[str, Any]) -> str | None:
    """finetune.* says how a pretrained body trains: without init_from there is none; frozen, it has no lr."""
    frozen, scale = value(cfg, "finetune.freeze_body"), value(cfg, "finetune.body_lr_scale")
    changed = [f"finetune.freeze_body={str(frozen).lower()}"] if frozen else []
    changed += [f"finetune.body_lr_scale={scale}"] if scale not in (None, 1, 1.0) else []
    if changed and not value(cfg, "init_from"):
        return f"{changed[0]} applies to a pretrained body: give init_from=RUN (a run to fine-tune from)"
    if len(changed) == 2:
        return f"{changed[0]} keeps the body fixed, so {changed[1]} would mean nothing: give one of them"
    return None


# (task.min_lag above task.lag is no error: the lag curriculum clamps to the full lag.)
RULES: list[Rule] = [
    at_most("task.min_seq_len", "task.seq_len", "the length curriculum starts below the full segment"),
    at_most("task.synthetic.min_length", "task.synthetic.max_length"),
    at_most("task.min_length", "task.length", "the length curriculum starts below the longest"),
    at_most("task.image_size", "task.resize_size", "images are cropped out of the resized ones"),
    at_most("task.digit_size", "task.image_size", "the glyphs move inside the frame"),
    fractions_leave_train,
    divides("model.heads", "model.d_model", "each head gets d_model / heads dimensions"),
    odd("model.kernel_size", "same-size convolutions"),
    equal_when("model.tie_weights", "model.embedding_size", "model.hidden_size"),
    equal_when("model.tie_embeddings", "model.embedding_size", "model.hidden_size"),
    teacher_forcing_decays,
    local_p_has_a_window,
    shifts_fit_memory,
    fine_tuning_needs_a_body,
]

# Models that prepend a class position to every sentence (BERT's, the classifier's Transformer encoder's).
CLASS_POSITION_MODELS = ("seqtool.models.bert.Bert", "seqtool.models.classifier.Classifier")


def sentence_fits_positions(cfg: dict[str, Any]) -> str | None:
    """task.max_length tokens (with a class position, where the model prepends one) fit the position table."""
    length, positions = value(cfg, "task.max_length"), value(cfg, "model.max_positions")
    if length is None or positions is None:
        return None
    target = value(cfg, "model._target_")
    if target == "seqtool.models.classifier.Classifier" and value(cfg, "model.encoder") != "transformer":
        return None  # a recurrent or bag encoder has no position table
    needed = length + (1 if target in CLASS_POSITION_MODELS else 0)
    if needed <= positions:
        return None
    extra = " and the class position" if needed > length else ""
    return (
        f"task.max_length={length}{extra} need {needed} positions, more than "
        f"model.max_positions={positions}; lower task.max_length or raise model.max_positions"
    )


# Between a model and its task: they hold once the model fits the task (a config composed only to build
# a task or a model may pair it with the default of the other group).
PAIRING_RULES: list[Rule] = [
    at_most("task.seq_len", "model.max_positions", "a segment must fit the model's positions"),
    sentence_fits_positions,
    divides("model.patch_size", "task.image_size", "frames are cut into patch_size × patch_size patches"),
    needs("model.share_all_embeddings", "task.joint_vocab"),
]


# --------------------------------------------------------------------------------------- resume
# What `seqtool train --resume RUN key=value` may change: how long to train and how often to look,
# not what the weights, the optimizer state or the data stream were made with. The lr schedule follows
# trainer.max_steps (cosine decays to its end), so a longer run stretches it; everything else keeps its
# saved value, and an override of it is refused with the old and the new value.
RESUMABLE = (
    "trainer.max_steps",
    "trainer.max_epochs",
    "trainer.eval_every",
    "trainer.log_every",
    "trainer.sample_every",
    "trainer.patience",
    "trainer.keep_best",
    "trainer.on_nonfinite",
    "trainer.divergence.factor",
    "trainer.divergence.window",
    "trainer.precision",
    "trainer.compile",
    "trainer.progress",
    "trainer.tensorboard",
    "device",
)
