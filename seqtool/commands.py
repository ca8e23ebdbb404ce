"""What the CLI commands do, as plain functions a test can call: train, load a run, decode, evaluate.

train(cfg)             compose -> instantiate task -> instantiate model (init_from: copy a pretrained
                       body into it) -> instantiate trainer -> fit
load_run(dir)          the run's saved config -> task (its saved vocab) -> model (its best/last weights)
decode(run, options)   the task's inputs -> the search -> the outputs, laid out as the task says
evaluate(run, ...)     the task's metrics of a split (or of --src/--ref files) with a search
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from seqtool import distributed, shapes
from seqtool.checkpoint import find_checkpoint, load_checkpoint, load_model_weights
from seqtool.config import instantiate, load_run_config, new_run_dir, save_config
from seqtool.data.io import check_writable_folder
from seqtool.decode.settings import DecodeOptions, SearchSettings
from seqtool.errors import UserError
from seqtool.finetune import InitFrom

if TYPE_CHECKING:
    from seqtool.by_length import ByLength
    from seqtool.tasks.base import Task
    from seqtool.train import Trainer


def resolve_device(name: str) -> torch.device:
    """auto picks CUDA, then Apple MPS, then the CPU; asking for a missing one is a user error."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is available; use device=cpu or device=auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("device=mps but Apple's MPS backend is not available; use device=cpu or device=auto")
    if name not in ("cpu", "cuda", "mps"):
        raise UserError(f"device={name!r}: use auto, cpu, cuda or mps")
    if name == "cuda" and distributed.world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(name)


def is_main_process() -> bool:
    """False on the other ranks of a torchrun launch, which train but stay quiet."""
    return distributed.rank() == 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build(cfg: DictConfig, run_dir: Path, device: torch.device) -> tuple[Task, nn.Module]:
    """The task (set up on its data) and a fresh model sized by it."""
    task = instantiate(cfg.task)
    shapes.check_fits(str(cfg.model._target_), task)  # before setup reads any data
    task.setup(run_dir, rank=distributed.rank(), world_size=distributed.world_size(), device=device)
    shapes.check_model_kwargs(str(cfg.model._target_), task.model_kwargs())
    model = instantiate(cfg.model, **task.model_kwargs())
    return task, model.to(device)


def build_trainer(
    cfg: DictConfig, run_dir: Path, device: torch.device, *, init_from: InitFrom | None = None
) -> Trainer:
    """What `seqtool train` trains, seeded as the config says: the task, a fresh model (with init_from,
    the pretrained body copied into it: seqtool/finetune.py), the Trainer."""
    seed_everything(int(cfg.seed))
    if init_from is not None:
        init_from.carry_vocabulary()  # before the task's setup, which loads it
    task, model = build(cfg, run_dir, device)
    model_target = str(cfg.model._target_)
    groups = None
    if init_from is not None:
        groups = init_from.parameter_groups(model, model_target=model_target, record=is_main_process())
    return instantiate(
        cfg.trainer,
        task=task,
        model=model,
        run_dir=run_dir,
        device=device,
        model_target=model_target,
        parameter_groups=groups,
    )


def train(cfg: DictConfig, *, resume: Path | None = None) -> tuple[Path, dict[str, float]]:
    """Train as the config says (or continue the run in `resume`); returns the run dir and last metrics."""
    device = resolve_device(str(cfg.device))
    distributed.init(device)
    try:
        run_dir = Path(resume) if resume else Path(distributed.broadcast(str(new_run_dir(cfg))))
        check_writable_folder(run_dir, "--resume" if resume else "run_dir=")
        if not resume and (run_dir / "checkpoints").exists():
            raise UserError(
                f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another run_dir"
            )
        # a missing or checkpoint-less init_from is refused before the run directory is written
        init_from = InitFrom.of(cfg, run_dir, resuming=resume is not None)
        if distributed.rank() == 0:
            save_config(cfg, run_dir)
        trainer = build_trainer(cfg, run_dir, device, init_from=init_from)
        if resume:
            trainer.resume(run_dir / "checkpoints" / "last")
        metrics = trainer.fit()
        if distributed.rank() == 0:
            _plot_curves(run_dir)
        return run_dir, metrics
    finally:
        distributed.shutdown()


def _plot_curves(run_dir: Path) -> None:
    from seqtool.plots import plot_training_curves

    plot_training_curves(run_dir / "metrics.jsonl", run_dir / "plots" / "curves.png")


def resume_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """The saved config of a run to continue, with overrides such as a larger trainer.max_steps."""
    check_run_directory(run_dir)
    if find_checkpoint(Path(run_dir) / "checkpoints" / "last") is None:
        load_run_config(run_dir)  # a clear error if it is not a run at all
        raise UserError(f"{run_dir} has no checkpoint to resume from (checkpoints/last is missing)")
    return load_run_config(run_dir, overrides)


@dataclass
class LoadedRun:
    cfg: DictConfig | None  # None for a run built in memory (tests)
    task: Task
    model: nn.Module
    device: torch.device
    run_dir: Path | None = None  # where `seqtool eval` records its results (None: in memory, not recorded)
    checkpoint: str | None = None  # best or last, as loaded
    step: int | None = None  # the checkpoint's training step


CHECKPOINTS = ("best", "last")


def check_run_directory(run_dir: Path) -> None:
    """The run-directory layer's first check: a path that is a file is not a run (config.yaml, the
    checkpoints and the vocabulary are checked where they are read: config, checkpoint, data.vocab)."""
    if Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise UserError(f"{run_dir} is a file, not a run directory; give the folder `seqtool train` made")


def load_run(run_dir: Path, *, checkpoint: str = "best", device: str = "auto") -> LoadedRun:
    """Rebuild a run's task and model from its directory, with the chosen checkpoint's weights (eval mode).
    Everything decoding needs is checked before the task reads any data: the config, a checkpoint
    (best, else last), and (in the task's setup) the vocabulary."""
    if checkpoint not in CHECKPOINTS:
        raise UserError(f"--checkpoint {checkpoint}: use best or last")
    check_run_directory(run_dir)
    cfg = load_run_config(run_dir)
    torch_device = resolve_device(device)
    checkpoints = Path(run_dir) / "checkpoints"
    if not checkpoints.is_dir():
        raise UserError(
            f"{run_dir} has no checkpoint (no checkpoints/best or checkpoints/last): it stopped before its "
            "first one; resume it with seqtool train --resume, or give another run"
        )
    directory = checkpoints / checkpoint
    if checkpoint == "best" and not directory.is_dir():
        directory = checkpoints / "last"
    saved = load_checkpoint(directory, map_location=torch_device)
    task, model = build(cfg, Path(run_dir), torch_device)
    load_model_weights(model, saved, expected_model=str(cfg.model._target_))
    model.eval()
    return LoadedRun(cfg=cfg, task=task, model=model, device=torch_device, run_dir=Path(run_dir),
                     checkpoint=directory.name, step=saved.meta["step"])  # fmt: skip


def decode(run: LoadedRun, options: DecodeOptions) -> str | None:
    """`seqtool decode` for every task: read the task's inputs, search (the strategy the options name,
    else the task's default), write the hypotheses or frames and their plots (seqtool.decode.output).
    With options.activations_dir, no search: a char LM's units along a text (returns their summary)."""
    if options.activations_dir is not None:
        from seqtool import activations

        return activations.plot(run, options)
    check_decode_options(run.task, options)
    refuse_search(run.task, options.search, "decode")
    search = options.search.with_default(run.task.default_strategy)
    if search.strategy is not None:
        search.strategy.check(run.task.end_token)
    run.task.decode_output.write(run.task, run.model, options, search)


def check_decode_options(task: Task, options: DecodeOptions) -> None:
    """Refuse an option this run's task would ignore: --prime where it reads no text, --horizon where it
    predicts no frames, --prime beside --input."""
    layout = task.decode_output
    if options.prime and options.input is not None:
        raise UserError("--prime and --input both give the text to decode; give one")
    if options.prime and not layout.reads_prime:
        raise UserError(
            "--prime is text to continue (char LM) or translate; this run's task does not read text, "
            "give --input (or nothing, for its own val inputs)"
        )
    if options.horizon is not None and not layout.predicts_frames:
        raise UserError("--horizon is how many frames a video model predicts; this run decodes text")


def refuse_search(task: Task, search: SearchSettings, command: str) -> None:
    """A task that does not search (a video rollout), or whose evaluation does not decode (the char LM's
    and the memory task's scores), refuses search settings instead of ignoring them."""
    given = {"--beam/--greedy/sampling": search.strategy is not None, "--max-len": search.max_len is not None,
             "--min-len": search.min_len > 0, "--no-repeat-ngram": search.no_repeat_ngram > 0}  # fmt: skip
    asked = [name for name, present in given.items() if present]
    if not asked:
        return
    if task.default_strategy is None:
        raise UserError(
            f"video prediction is a rollout of frames, not a search: {', '.join(asked)} does not apply "
            "(--horizon sets the frames)"
        )
    if command == "eval" and task.end_token is None:
        raise UserError(
            f"this run's evaluation scores its outputs without decoding (loss, bpc, accuracy): "
            f"{', '.join(asked)} does not apply to seqtool eval of it"
        )


def evaluate(
    run: LoadedRun,
    split: str,
    search: SearchSettings,
    *,
    src: Path | None = None,
    ref: Path | None = None,
    by_length: ByLength | None = None,
) -> dict[str, Any]:
    """`seqtool eval`: the metrics of a split, or of parallel --src/--ref files scored as a split; with
    by_length also per source-length bucket ("by_length", and RUN/eval/by_length_<split>.json)."""
    if split not in ("val", "test"):
        raise UserError(f"--split {split}: use val or test")
    if (src is None) != (ref is None):
        raise UserError("--src and --ref go together")
    refuse_search(run.task, search, "eval")
    if src is not None:
        split = run.task.add_split("files", src=src, ref=ref)
    started = time.perf_counter()
    with torch.no_grad():
        metrics = run.task.evaluate(run.model, split, search=search, by_length=by_length)
    if run.run_dir is not None:
        record_evaluation(run, split, search, metrics, seconds=time.perf_counter() - started)
    return metrics


def record_evaluation(
    run: LoadedRun, split: str, search: SearchSettings, metrics: dict[str, Any], *, seconds: float
) -> None:
    """Append the evaluation to RUN/eval/evals.jsonl, which `seqtool compare RUN --evals` reads: the
    split, the checkpoint, the search settings (strategy "default": the task's own), the numbers."""
    strategy = search.strategy
    settings = {
        "strategy": "default" if strategy is None else type(strategy).__name__.lower(),
        "beam": getattr(strategy, "size", 1 if strategy is not None else None),
        "length_penalty": getattr(strategy, "alpha", 0.0 if strategy is not None else None),
        "max_len": search.max_len, "min_len": search.min_len, "no_repeat_ngram": search.no_repeat_ngram,
    }  # fmt: skip
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    record = {"split": split, "checkpoint": run.checkpoint, "step": run.step, "search": settings,
              "metrics": numbers, "seconds": round(seconds, 3)}  # fmt: skip
    target = run.run_dir / "eval" / "evals.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")
