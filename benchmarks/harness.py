"""What every benchmark here shares: fair timing of two sides (seqtool and a plain PyTorch reference)
and one way to print the result.

Machine noise (another job, a turbo burst, thermal drift) would favour whichever side ran at a quiet
moment, so the sides run in alternating rounds (A B, B A, A B, ...) and each reports its median round.
On CUDA the clock reads only after a synchronize, or it would time kernel launches, not kernels.

Scripts import it as a sibling module (`python benchmarks/NAME.py` puts benchmarks/ on sys.path).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig

from seqtool.commands import build_trainer, resolve_device
from seqtool.config import compose
from seqtool.train import Trainer


@contextlib.contextmanager
def built_trainer(overrides: list[str]) -> Iterator[tuple[DictConfig, Trainer]]:
    """The config the overrides compose and the Trainer `seqtool train` builds from it (the task set up,
    the model on its device), in a run directory removed afterwards: the seqtool side of a benchmark."""
    cfg = compose(overrides)
    device = resolve_device(str(cfg.device))
    with tempfile.TemporaryDirectory() as run_dir:
        yield cfg, build_trainer(cfg, Path(run_dir), device)


def timing_parser(
    description: str, *, steps: int, warmup: int, rounds: int = 5, precision: bool = True
) -> argparse.ArgumentParser:
    """The options the step-timing benchmarks share: where it runs (and in which precision), and how
    each side is timed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    if precision:
        parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--steps", type=int, default=steps, help="timed calls per round and side")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed calls per side before round 1")
    parser.add_argument("--rounds", type=int, default=rounds, help="alternating rounds; the median counts")
    return parser


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """bf16 autocast where dtype is given (the trainer's precision on CUDA), a no-op otherwise."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def rate(step: Callable[[], object], *, steps: int, items_per_step: float, device: torch.device) -> float:
    """Items (tokens, frames, images) per second over `steps` calls of `step`."""
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps * items_per_step / (time.perf_counter() - started)


def alternate(sides: dict[str, Callable[[], float]], *, rounds: int, unit: str) -> dict[str, float]:
    """Call each side (it returns its own throughput) in alternating rounds; the median per side."""
    runs: dict[str, list[float]] = {name: [] for name in sides}
    for round_index in range(rounds):
        order = list(sides) if round_index % 2 == 0 else list(reversed(sides))
        for name in order:
            runs[name].append(sides[name]())
        print(
            f"round {round_index + 1}: " + ", ".join(f"{name} {runs[name][-1]:,.1f} {unit}" for name in sides)
        )
    return {name: statistics.median(values) for name, values in runs.items()}


def measure_steps(
    steps_by_side: dict[str, Callable[[], object]],
    *,
    warmup: int,
    steps: int,
    rounds: int,
    items_per_step: float,
    device: torch.device,
    unit: str,
) -> dict[str, float]:
    """Warm each side up (`warmup` untimed steps), then time `steps` steps per round, alternating."""
    for step in steps_by_side.values():
        for _ in range(warmup):
            step()

    def timed(step: Callable[[], object]) -> Callable[[], float]:
        return lambda: rate(step, steps=steps, items_per_step=items_per_step, device=device)

    return alternate({name: timed(step) for name, step in steps_by_side.items()}, rounds=rounds, unit=unit)


def machine(device: torch.device) -> dict[str, object]:
    """Where the figures were taken, for the note that quotes them."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    return {"device": name, "torch": torch.__version__, "threads": torch.get_num_threads()}


def comparison(seqtool: float, plain: float, *, unit: str, digits: int = 1) -> dict[str, float]:
    """seqtool's throughput beside the reference's, in `unit`s per second; overhead = the extra time
    per step that seqtool costs."""
    return {
        f"seqtool_{unit}_per_s": round(seqtool, digits),
        f"plain_{unit}_per_s": round(plain, digits),
        "ratio": round(seqtool / plain, 4),
        "overhead_pct": round((plain / seqtool - 1) * 100, 2),
    }


def print_result(result: dict[str, object]) -> None:
    """A small table, then the same figures as one line of JSON (the last line, for notes to quote)."""
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:>{width}}  {value}")
    print(json.dumps(result))
