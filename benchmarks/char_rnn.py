"""Training throughput (tokens/s) of seqtool's `Trainer.train_step` beside a plain PyTorch loop.

Both sides train an identically seeded CharRNN on [B, T] TBPTT windows of the same token rows (hidden
state carried and detached), with AdamW at the same lr and clip_grad_norm_ at the same max norm. They run
in alternating rounds (seqtool, plain, seqtool, ...) so machine noise hits both; each side reports its
median. overhead = plain / seqtool - 1: the extra time per step that the trainer costs (goal: ≤ 10%).

    cd /work/main && .venv/bin/python benchmarks/char_rnn.py [--device cuda] [--steps 50] [--corpus PATH]

The last line printed is the result as JSON, for a note to quote.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from seqtool.commands import resolve_device
from seqtool.config import compose, instantiate
from seqtool.train import Trainer


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per round and side")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per side before round 1")
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating timings per side; the median counts"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--corpus", default=None, help="a text file; default: the embedded stdlib source")
    return parser.parse_args()


def overrides(args: argparse.Namespace) -> list[str]:
    """The benchmark's shape as config overrides; a constant lr so both sides step with the same one."""
    items = [
        f"device={args.device}",
        f"task.batch_size={args.batch_size}",
        f"task.seq_len={args.seq_len}",
        f"task.min_seq_len={args.seq_len}",
        f"model.cell={args.cell}",
        f"model.hidden_size={args.hidden_size}",
        f"model.num_layers={args.layers}",
        f"trainer.precision={args.precision}",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "trainer.lr_schedule.kind=constant",
        "trainer.lr_schedule.warmup_steps=0",
    ]
    if args.corpus:
        items.append(f"task.path='{Path(args.corpus).resolve()}'")
    return items


def build_trainer(cfg: DictConfig, run_dir: Path, device: torch.device) -> Trainer:
    """The task (set up on its corpus), a seeded model and the Trainer, as `seqtool train` builds them."""
    task = instantiate(cfg.task)
    task.setup(run_dir, device=device)
    torch.manual_seed(cfg.seed)
    model = instantiate(cfg.model, **task.model_kwargs())
    return instantiate(
        cfg.trainer,
        task=task,
        model=model,
        run_dir=run_dir,
        device=device,
        model_target=str(cfg.model._target_),
    )


def twin_model(cfg: DictConfig, trainer: Trainer, device: torch.device) -> nn.Module:
    """A second CharRNN, built and seeded like the trainer's (checked: identical weights before training)."""
    torch.manual_seed(cfg.seed)
    model = instantiate(cfg.model, **trainer.task.model_kwargs()).to(device)
    pairs = zip(model.state_dict().values(), trainer.model.state_dict().values(), strict=True)
    assert all(torch.equal(ours, theirs) for ours, theirs in pairs)
    return model


def plain_steps(
    cfg: DictConfig, model: nn.Module, tokens: Tensor, dtype: torch.dtype | None
) -> Iterator[None]:
    """The reference: an endless hand-written TBPTT loop over tokens [B, N]; each next() is one step."""
    optim, length, device = cfg.trainer.optimizer, int(cfg.task.seq_len), tokens.device
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay
    )
    while True:
        state = None  # each pass over the rows starts from a fresh state
        for start in range(0, tokens.shape[1] - length, length):
            x, y = tokens[:, start : start + length], tokens[:, start + 1 : start + length + 1]  # [B, T]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits, state = model(x, state)  # [B, T, V]
                loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.clip_norm)
            optimizer.step()
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            yield


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tokens_per_second(step: Callable[[], object], args: argparse.Namespace, device: torch.device) -> float:
    """Time args.steps calls of `step`, each one optimizer step on B × T tokens."""
    synchronize(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize(device)
    return args.steps * args.batch_size * args.seq_len / (time.perf_counter() - started)


def measure(
    sides: dict[str, Callable[[], object]], args: argparse.Namespace, device: torch.device
) -> dict[str, float]:
    """Warm each side up, then time them in alternating rounds (A B, B A, ...) against drift and bursts."""
    for step in sides.values():
        for _ in range(args.warmup):
            step()
    runs: dict[str, list[float]] = {name: [] for name in sides}
    for round_index in range(args.rounds):
        order = list(sides) if round_index % 2 == 0 else list(reversed(sides))
        for name in order:
            runs[name].append(tokens_per_second(sides[name], args, device))
        print(
            f"round {round_index + 1}: " + ", ".join(f"{name} {runs[name][-1]:,.0f} tok/s" for name in sides)
        )
    return {name: statistics.median(values) for name, values in runs.items()}


def report(args: argparse.Namespace, trainer: Trainer, seqtool: float, plain: float) -> None:
    """A small table, then the same figures as one line of JSON."""
    ratio, device = seqtool / plain, trainer.device
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": f"{args.cell} {args.layers}x{args.hidden_size}, vocab {len(trainer.task.vocab)}",
        "batch": [args.batch_size, args.seq_len],
        "precision": "bf16" if trainer.autocast_dtype else "fp32",
        "steps": args.steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "seqtool_tokens_per_s": round(seqtool),
        "plain_tokens_per_s": round(plain),
        "ratio": round(ratio, 4),
        "overhead_pct": round((1 / ratio - 1) * 100, 2),
    }
    for key, value in result.items():
        print(f"{key:>22}  {value}")
    print(json.dumps(result))


def main() -> None:
    args = parse_args()
    cfg = compose(overrides(args))
    device = resolve_device(str(cfg.device))
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build_trainer(cfg, Path(run_dir), device)
        batches = trainer.task.batches("train", train=True)
        tokens = trainer.task.train_rows.to(device)  # shape: [B, N], the trainer's own streams
        plain = plain_steps(cfg, twin_model(cfg, trainer, device), tokens, trainer.autocast_dtype)
        medians = measure(
            {"seqtool": lambda: trainer.train_step(batches), "plain": lambda: next(plain)}, args, device
        )
        report(args, trainer, medians["seqtool"], medians["plain"])


if __name__ == "__main__":
    main()
