"""Training throughput (sentences/s) of the joint BiLSTM tagger through seqtool's `Trainer.train_step`,
beside a plain PyTorch loop of the same sizes.

The plain side is what one writes by hand: nn.Embedding -> nn.LSTM(bidirectional) over packed
sequences -> a tag nn.Linear per word and an intent nn.Linear over the two final states, cross-entropy
of both, AdamW, clip_grad_norm_. Both sides train on the same token-budget batches (drawn once from the
task and cycled), at the same lr and clip norm, in alternating rounds; each reports its median round.
ratio = seqtool / plain sentences per second.

    cd /work/main && .venv/bin/python benchmarks/tagging.py [--data ../shared/data/atis] [--device cuda]

Without --data the sentences are the embedded flight corpus. The last line printed is the result as JSON.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from harness import built_trainer, comparison, machine, measure_steps, print_result, timing_parser
from seqtool.tasks.tagging import IGNORE, TagBatch


def parse_args() -> argparse.Namespace:
    parser = timing_parser(__doc__.splitlines()[0], steps=20, warmup=3, precision=False)
    parser.add_argument("--data", default=None, help="a JointBERT directory (ATIS); default: embedded")
    parser.add_argument("--embedding-size", type=int, default=64)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=800, help="padded words per batch")
    return parser.parse_args()


def overrides(args: argparse.Namespace) -> list[str]:
    """The benchmark's shape as config overrides: a joint BiLSTM, no dropout, a constant lr."""
    items = [
        "task=tagging", "model=tagger", f"device={args.device}", "model.cell=lstm",
        "model.bidirectional=true", f"model.embedding_size={args.embedding_size}",
        f"model.hidden_size={args.hidden_size}", "model.dropout=0.0", "model.forget_bias=null",
        f"task.max_tokens={args.max_tokens}", "trainer.progress=false", "trainer.tensorboard=false",
        "trainer.precision=fp32", "trainer.lr_schedule.kind=constant", "trainer.lr_schedule.warmup_steps=0",
    ]  # fmt: skip
    return items + ([f"task.data_dir={Path(args.data).resolve()}"] if args.data else [])


class PlainTagger(nn.Module):
    """The hand-written joint BiLSTM tagger: packed sequences, torch's own bidirectional LSTM."""

    def __init__(self, vocab_size: int, num_tags: int, num_intents: int, embedding: int, hidden: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True, bidirectional=True)
        self.tags = nn.Linear(2 * hidden, num_tags)
        self.intent = nn.Linear(2 * hidden, num_intents)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        lengths = (tokens != 0).sum(1).cpu()
        packed = pack_padded_sequence(self.embedding(tokens), lengths, batch_first=True, enforce_sorted=False)
        outputs, (h, _) = self.lstm(packed)  # h [2, B, H]: the forward and backward final states
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=tokens.size(1))
        return self.tags(outputs), self.intent(torch.cat([h[0], h[1]], dim=-1))  # [B, T, S], [B, I]


def plain_step(model: PlainTagger, optimizer: torch.optim.Optimizer, batch: TagBatch, clip: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    tag_logits, intent_logits = model(batch.tokens)
    loss = F.cross_entropy(tag_logits.flatten(0, 1), batch.tags.flatten(), ignore_index=IGNORE)
    loss = loss + F.cross_entropy(intent_logits, batch.intents, ignore_index=IGNORE)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()


def main() -> None:
    args = parse_args()
    with built_trainer(overrides(args)) as (cfg, trainer):
        device = trainer.device
        stream = trainer.task.batches("train", train=True)
        batches = [next(stream) for _ in range(args.steps)]  # both sides cycle these
        sentences = sum(len(b.index) for b in batches) / len(batches)
        plain = PlainTagger(
            **trainer.task.model_kwargs(), embedding=args.embedding_size, hidden=args.hidden_size
        ).to(device)
        optimizer = torch.optim.AdamW(plain.parameters(), lr=cfg.trainer.optimizer.lr)
        theirs, ours = itertools.cycle(batches), itertools.cycle(batches)
        medians = measure_steps(
            {"seqtool": lambda: trainer.train_step(ours),
             "plain": lambda: plain_step(plain, optimizer, next(theirs), cfg.trainer.clip_norm)},
            warmup=args.warmup, steps=args.steps, rounds=args.rounds, items_per_step=sentences,
            device=device, unit="sentences/s",
        )  # fmt: skip
        print_result(
            {
                **machine(device),
                "model": f"joint BiLSTM tagger, {args.embedding_size}-d embeddings, {args.hidden_size} per "
                f"direction, {sum(p.numel() for p in trainer.model.parameters()):,} parameters",
                "data": args.data or "embedded flight corpus",
                "sentences_per_batch": round(sentences, 1),
                "steps": args.steps,
                "rounds": args.rounds,
                **comparison(medians["seqtool"], medians["plain"], unit="sentences", digits=0),
            }
        )


if __name__ == "__main__":
    main()
