"""Training throughput (sentences/s) of seqtool's BiLSTM classifier via `Trainer.train_step` beside a plain
PyTorch loop of the same network.

The plain side is what one writes by hand: nn.Embedding, a bidirectional nn.LSTM over packed sequences,
attention pooling a = softmax(wᵀ tanh(W h_t)) over the real positions, nn.Linear; AdamW at the same lr,
the mean cross-entropy, the same gradient-norm clipping. Both sides start from the same weights (copied
into the plain modules) and train on the same batches: the task's own length-bucketed train batches,
drawn once beforehand and cycled, so neither side's time includes reading data. Sides run in alternating
rounds; each reports its median. overhead = plain / seqtool - 1.

    cd /work/main && .venv/bin/python benchmarks/classify.py [--data ../shared/data/sst2] [--device cuda]

Without --data it trains on the embedded generated reviews. The last line printed is the result as JSON.
"""

from __future__ import annotations

import argparse
import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from harness import built_trainer, comparison, machine, measure_steps, print_result, timing_parser


def parse_args() -> argparse.Namespace:
    parser = timing_parser(__doc__.splitlines()[0], steps=20, warmup=3, precision=False)
    parser.add_argument("--data", default=None, help="a GLUE-style directory (train.tsv[.gz], dev.tsv)")
    return parser.parse_args()


class PlainBiLSTM(nn.Module):
    """The reference network, written as a PyTorch user would."""

    def __init__(
        self, vocab_size: int, embedding_size: int, hidden_size: int, attention_size: int, classes: int
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.lstm = nn.LSTM(embedding_size, hidden_size, batch_first=True, bidirectional=True)
        self.project = nn.Linear(2 * hidden_size, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)
        self.dropout = nn.Dropout(0.3)
        self.output = nn.Linear(2 * hidden_size, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens != 0  # [B, T]
        lengths = mask.sum(1).cpu()
        x = self.dropout(self.embedding(tokens))
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=tokens.size(1))
        scores = self.score(torch.tanh(self.project(h))).squeeze(-1).masked_fill(~mask, float("-inf"))
        sentence = (torch.softmax(scores, dim=1).unsqueeze(-1) * h).sum(1)  # [B, 2H]
        return self.output(self.dropout(sentence))


def copy_weights(seqtool_model: nn.Module, plain: PlainBiLSTM) -> None:
    """Start the plain network where seqtool's starts: the embedding, both LSTM directions, the heads."""
    encoder = seqtool_model.encoder
    with torch.no_grad():
        plain.embedding.weight.copy_(encoder.embedding.weight)
        for direction, suffix in zip(encoder.layers[0], ("", "_reverse")):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(plain.lstm, f"{name}_l0{suffix}").copy_(getattr(direction, f"{name}_l0"))
        plain.project.load_state_dict(seqtool_model.pooling.project.state_dict())
        plain.score.load_state_dict(seqtool_model.pooling.score.state_dict())
        plain.output.load_state_dict(seqtool_model.output.state_dict())


def main() -> None:
    args = parse_args()
    data = [f"task.data_dir={args.data}"] if args.data else []  # none: the generated reviews
    overrides = ["experiment=sst2", *data, f"device={args.device}", "trainer.precision=fp32",
                 "trainer.progress=false", "trainer.tensorboard=false"]  # fmt: skip
    with built_trainer(overrides) as (cfg, trainer):
        device = trainer.device
        stream = trainer.task.batches("train", train=True)
        batches = [next(stream) for _ in range(args.steps)]  # one round: every batch once
        sentences = sum(len(batch.labels) for batch in batches) / len(batches)
        model = cfg.model
        sizes = trainer.task.model_kwargs()  # vocab_size, num_classes
        plain = PlainBiLSTM(sizes["vocab_size"], model.embedding_size, model.hidden_size,
                            model.attention_size, sizes["num_classes"]).to(device)  # fmt: skip
        copy_weights(trainer.model, plain)
        optimizer = torch.optim.AdamW(plain.parameters(), lr=cfg.trainer.optimizer.lr,
                                      betas=tuple(cfg.trainer.optimizer.betas))  # fmt: skip
        plain_batches = itertools.cycle(batches)

        def plain_step() -> None:
            batch = next(plain_batches)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(plain(batch.tokens), batch.labels).backward()
            nn.utils.clip_grad_norm_(plain.parameters(), cfg.trainer.clip_norm)
            optimizer.step()

        seqtool_batches = itertools.cycle(batches)
        trainer.model.train()
        medians = measure_steps(
            {"seqtool": lambda: trainer.train_step(seqtool_batches), "plain": plain_step},
            warmup=args.warmup, steps=args.steps, rounds=args.rounds, items_per_step=sentences,
            device=device, unit="sent/s",
        )  # fmt: skip
        print_result(
            {
                **machine(device),
                "model": f"BiLSTM {model.hidden_size}x2, attention pooling, embedding {model.embedding_size}",
                "data": args.data or "generated reviews",
                "params": sum(p.numel() for p in trainer.model.parameters()),
                "sentences_per_batch": round(sentences, 1),
                "steps": args.steps,
                "rounds": args.rounds,
                **comparison(medians["seqtool"], medians["plain"], unit="sentences", digits=1),
            }
        )


if __name__ == "__main__":
    main()
