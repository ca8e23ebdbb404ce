"""Training throughput (sequences/s) of seqtool's NTM via `Trainer.train_step` beside a plain PyTorch loop.

Both sides train the same NTM (the plain side a copy of the trainer's model, so the same weights) on the
copy task at one fixed length (task.min_length = task.length, so every step does the same work), with
Adam at the same lr and the experiment's clipping (global norm, then each element) on the binary
cross-entropy of the scored steps. The plain side draws its batches once beforehand, so its time has no
data generation; seqtool's side generates every batch on the fly, as in training. Sides run in
alternating rounds; each reports its median. overhead = plain / seqtool - 1.

    cd /work/main && .venv/bin/python benchmarks/ntm.py [--device cuda] [--length 20] [--batch-size 32]

The last line printed is the result as JSON, for a note to quote.
"""

from __future__ import annotations

import argparse
import copy
import itertools
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from harness import built_trainer, comparison, machine, measure_steps, print_result, timing_parser
from seqtool.data import memory_problems as problems


def parse_args() -> argparse.Namespace:
    parser = timing_parser(__doc__.splitlines()[0], steps=10, warmup=2, precision=False)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--length", type=int, default=20, help="vectors to copy (the experiment trains 1..20)"
    )
    return parser.parse_args()


def overrides(args: argparse.Namespace) -> list[str]:
    """The experiment's NTM and trainer, one fixed length, fp32 (the NTM's addressing is in fp32)."""
    return [
        "experiment=ntm_copy",
        f"device={args.device}",
        f"task.batch_size={args.batch_size}",
        f"task.length={args.length}",
        f"task.min_length={args.length}",
        f"task.eval_lengths=[{args.length}]",
        "trainer.precision=fp32",
        "trainer.progress=false",
        "trainer.tensorboard=false",
    ]


def plain_steps(cfg: DictConfig, model: nn.Module, batches: list[tuple]) -> Iterator[None]:
    """The reference: Adam, BCE on the scored steps, clip the norm then the elements; each next() a step."""
    trainer = cfg.trainer
    optimizer = torch.optim.Adam(
        model.parameters(), lr=trainer.optimizer.lr, betas=tuple(trainer.optimizer.betas)
    )
    for x, y, scored in itertools.cycle(batches):
        optimizer.zero_grad(set_to_none=True)
        logits, _ = model(x)  # [B, 2L + 1, W]
        loss = F.binary_cross_entropy_with_logits(logits[scored], y[scored])
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), trainer.clip_norm)
        nn.utils.clip_grad_value_(model.parameters(), trainer.clip_value)
        optimizer.step()
        yield


def main() -> None:
    args = parse_args()
    with built_trainer(overrides(args)) as (cfg, trainer):
        device = trainer.device
        rng = np.random.default_rng(0)
        drawn = [problems.ntm_copy(rng, args.batch_size, args.length, int(cfg.task.width)) for _ in range(4)]
        batches = [tuple(torch.from_numpy(a).to(device) for a in arrays) for arrays in drawn]
        plain = plain_steps(cfg, copy.deepcopy(trainer.model), batches)
        stream = trainer.task.batches("train", train=True)
        medians = measure_steps(
            {"seqtool": lambda: trainer.train_step(stream), "plain": lambda: next(plain)},
            warmup=args.warmup,
            steps=args.steps,
            rounds=args.rounds,
            items_per_step=args.batch_size,
            device=device,
            unit="seq/s",
        )
        model = trainer.model
        print_result(
            {
                **machine(device),
                "model": f"NTM, controller {model.controller.hidden_size}, memory "
                f"{model.memory_size} x {model.memory_width}",
                "params": sum(p.numel() for p in model.parameters()),
                "batch": [args.batch_size, 2 * args.length + 1],
                "steps": args.steps,
                "warmup": args.warmup,
                "rounds": args.rounds,
                **comparison(medians["seqtool"], medians["plain"], unit="seq", digits=1),
            }
        )


if __name__ == "__main__":
    main()
