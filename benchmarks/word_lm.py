"""Training throughput (words/s) of seqtool's word LM (experiment=ptb_small) beside a plain PyTorch loop.

The plain side is the textbook model, nn.Embedding -> nn.LSTM(num_layers=2) -> nn.Linear, of the same
sizes (Zaremba et al.'s small: 2 x 200, vocabulary ~10k), drawn from the same U(-0.1, 0.1), trained with
SGD at the same lr and clip_grad_norm_ at the same norm, on the same [20, 20] TBPTT windows of the
trainer's own streams (state carried and detached). The sides run in alternating rounds; each reports its
median. overhead = plain / seqtool - 1: what the trainer and seqtool's model cost per step.

    cd /work/main && .venv/bin/python benchmarks/word_lm.py [--data-dir ../shared/data/ptb] [--device cuda]

Without --data-dir the words are the embedded default's (the stdlib source), capped at PTB's 10,002
entries. The last line printed is the result as JSON, for a note to quote.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from harness import built_trainer, comparison, machine, measure_steps, print_result, timing_parser
from seqtool.train import Trainer


def parse_args() -> argparse.Namespace:
    parser = timing_parser(__doc__.splitlines()[0], steps=20, warmup=3, precision=False)
    parser.add_argument("--data-dir", default=None, help="a PTB folder (ptb.train.txt, ptb.valid.txt)")
    return parser.parse_args()


def overrides(args: argparse.Namespace) -> list[str]:
    """experiment=ptb_small as it is, on PTB or on the embedded default capped at PTB's vocabulary."""
    items = ["experiment=ptb_small", f"device={args.device}", "trainer.progress=false",
             "trainer.tensorboard=false", "trainer.precision=fp32"]  # fmt: skip
    if args.data_dir:
        return [*items, f"task.data_dir='{Path(args.data_dir).resolve()}'"]
    return [*items, "task.embedded_default=true", "task.max_vocab=10002"]


class PlainLM(nn.Module):
    """Embedding -> nn.LSTM -> Linear, every parameter ~ U(-r, r)."""

    def __init__(self, vocab_size: int, size: int, layers: int, init_range: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, size)
        self.lstm = nn.LSTM(size, size, layers, batch_first=True)
        self.output = nn.Linear(size, vocab_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -init_range, init_range)

    def forward(self, tokens: Tensor, state: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple]:
        outputs, state = self.lstm(self.embedding(tokens), state)  # [B, T, H]
        return self.output(outputs), state  # [B, T, V]


def plain_steps(cfg: DictConfig, tokens: Tensor, vocab_size: int) -> Iterator[None]:
    """The reference: an endless hand-written TBPTT loop over tokens [B, N]; each next() is one step."""
    model = PlainLM(vocab_size, cfg.model.hidden_size, cfg.model.num_layers, cfg.model.init_range)
    model.to(tokens.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.trainer.optimizer.lr)
    length = int(cfg.task.seq_len)
    while True:
        state = None  # each pass over the rows starts from a fresh state
        for start in range(0, tokens.shape[1] - length, length):
            x, y = tokens[:, start : start + length], tokens[:, start + 1 : start + length + 1]  # [B, T]
            optimizer.zero_grad(set_to_none=True)
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.clip_norm)
            optimizer.step()
            state = tuple(s.detach() for s in state)
            yield


def report(args: argparse.Namespace, cfg: DictConfig, trainer: Trainer, seqtool: float, plain: float) -> None:
    print_result(
        {
            **machine(trainer.device),
            "model": f"lstm {cfg.model.num_layers}x{cfg.model.hidden_size}, vocab {len(trainer.task.vocab)}",
            "words": "PTB" if args.data_dir else "embedded default (stdlib source)",
            "batch": [int(cfg.task.batch_size), int(cfg.task.seq_len)],
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
        plain = plain_steps(cfg, tokens, len(trainer.task.vocab))
        medians = measure_steps(
            {"seqtool": lambda: trainer.train_step(batches), "plain": lambda: next(plain)},
            warmup=args.warmup,
            steps=args.steps,
            rounds=args.rounds,
            items_per_step=int(cfg.task.batch_size) * int(cfg.task.seq_len),
            device=device,
            unit="tok/s",
        )
        report(args, cfg, trainer, medians["seqtool"], medians["plain"])


if __name__ == "__main__":
    main()
