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
import copy
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from harness import autocast, built_trainer, comparison, machine, measure_steps, print_result, timing_parser
from seqtool.train import Trainer


def parse_args() -> argparse.Namespace:
    parser = timing_parser(__doc__.splitlines()[0], steps=20, warmup=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm")
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


def twin_model(trainer: Trainer) -> nn.Module:
    """The reference side's CharRNN: a copy of the trainer's, so both start from the same weights."""
    return copy.deepcopy(trainer.model)


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
            with autocast(device, dtype):
                logits, state = model(x, state)  # [B, T, V]
                loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.clip_norm)
            optimizer.step()
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            yield


def report(args: argparse.Namespace, trainer: Trainer, seqtool: float, plain: float) -> None:
    print_result(
        {
            **machine(trainer.device),
            "model": f"{args.cell} {args.layers}x{args.hidden_size}, vocab {len(trainer.task.vocab)}",
            "batch": [args.batch_size, args.seq_len],
            "precision": "bf16" if trainer.autocast_dtype else "fp32",
            "steps": args.steps,
            "warmup": args.warmup,
            "rounds": args.rounds,
            **comparison(seqtool, plain, unit="tokens", digits=0),
        }
    )


def main() -> None:
    args = parse_args()
    with built_trainer(overrides(args)) as (cfg, trainer):
        device = trainer.device
        batches = trainer.task.batches("train", train=True)
        tokens = trainer.task.train_rows.to(device)  # shape: [B, N], the trainer's own streams
        plain = plain_steps(cfg, twin_model(trainer), tokens, trainer.autocast_dtype)
        medians = measure_steps(
            {"seqtool": lambda: trainer.train_step(batches), "plain": lambda: next(plain)},
            warmup=args.warmup,
            steps=args.steps,
            rounds=args.rounds,
            items_per_step=args.batch_size * args.seq_len,
            device=device,
            unit="tok/s",
        )
        report(args, trainer, medians["seqtool"], medians["plain"])


if __name__ == "__main__":
    main()
