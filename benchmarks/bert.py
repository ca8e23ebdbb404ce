"""Masked-LM training throughput (sequences/s) of seqtool's BERT through `Trainer.train_step`, beside a
plain PyTorch BERT of the same size: nn.Embedding (token, position, segment) + LayerNorm,
nn.TransformerEncoder (post-LN, GELU), and the tied MLM head, trained by a hand-written loop.

Both sides train on the same task's batches (task=mlm, 15 % masked 80/10/10, logits only at the masked
positions), with AdamW at the same lr and clip_grad_norm_ at the same max norm, in alternating rounds
(seqtool, plain, seqtool, ...); each side reports its median. ratio = seqtool / plain.

    cd /work/main && .venv/bin/python benchmarks/bert.py [--device cuda] [--threads 1] \
        [--data-dir ../shared/data/sst2 --tsv-column sentence]

The sizes are conf/experiment/bert_small.yaml's. The last line printed is the result as JSON.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from harness import autocast, built_trainer, comparison, machine, measure_steps, print_result, timing_parser
from seqtool.config import instantiate
from seqtool.models.bert import IGNORE, PAD


def parse_args():
    parser = timing_parser(__doc__.splitlines()[0], steps=10, warmup=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--data-dir", default=None, help="task.data_dir (default: the embedded stdlib text)")
    parser.add_argument("--tsv-column", default=None, help="task.tsv_column, e.g. sentence for SST-2")
    return parser.parse_args()


def overrides(args) -> list[str]:
    """experiment=bert_small on the chosen text, with a constant lr so both sides step with the same one."""
    items = ["experiment=bert_small", f"device={args.device}", f"trainer.precision={args.precision}",
             "trainer.progress=false", "trainer.tensorboard=false", "trainer.lr_schedule.kind=constant",
             "trainer.lr_schedule.warmup_steps=0", "task.max_chars=1000000"]  # fmt: skip
    if args.data_dir:
        items.append(f"task.data_dir='{Path(args.data_dir).resolve()}'")
    if args.tsv_column:
        items.append(f"task.tsv_column={args.tsv_column}")
    return items


class PlainBert(nn.Module):
    """BERT from torch's own modules: the reference side."""

    def __init__(self, vocab_size: int, d_model: int, heads: int, num_layers: int, ffn_size: int,
                 max_positions: int, dropout: float) -> None:  # fmt: skip
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, d_model)
        self.positions = nn.Embedding(max_positions, d_model)
        self.segments = nn.Embedding(2, d_model)
        self.class_token = nn.Parameter(torch.randn(d_model) * 0.02)
        self.norm, self.dropout = nn.LayerNorm(d_model), nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, ffn_size, dropout, activation="gelu", batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.transform = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.LayerNorm(d_model))
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, tokens: Tensor, segments: Tensor, predict: Tensor) -> Tensor:
        """tokens, segments [B, T], predict [B, T] bool -> logits [N, V] at the N predicted positions."""
        x = torch.cat(
            [self.class_token.expand(len(tokens), 1, -1), self.tokens(tokens)], dim=1
        )  # [B, 1+T, D]
        x = x + self.positions.weight[: x.size(1)] + self.segments(F.pad(segments, (1, 0)))
        h = self.encoder(self.dropout(self.norm(x)), src_key_padding_mask=F.pad(tokens == PAD, (1, 0)))
        return F.linear(self.transform(h[:, 1:][predict]), self.tokens.weight, self.bias)


def plain_steps(
    cfg: DictConfig, model: nn.Module, batches: Iterator, dtype: torch.dtype | None
) -> Iterator[None]:
    """The reference loop; each next() is one step."""
    optim = cfg.trainer.optimizer
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim.lr, betas=tuple(optim.betas),
                                  weight_decay=optim.weight_decay)  # fmt: skip
    device = next(model.parameters()).device
    while True:
        batch = next(batches)
        chosen = batch.targets != IGNORE
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            logits = model(batch.tokens, batch.segments, chosen)
            loss = F.cross_entropy(logits.float(), batch.targets[chosen])
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.clip_norm)
        optimizer.step()
        yield


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with built_trainer(overrides(args)) as (cfg, trainer):
        device = trainer.device
        twin_task = instantiate(cfg.task)  # the same batches, from a stream of its own
        twin_task.setup(trainer.run_dir, device=device)
        m = cfg.model
        plain_model = PlainBert(len(twin_task.vocab), m.d_model, m.heads, m.num_layers, m.ffn_size,
                                m.max_positions, m.dropout).to(device)  # fmt: skip
        plain = plain_steps(cfg, plain_model, twin_task.batches("train", train=True), trainer.autocast_dtype)
        batches = trainer.task.batches("train", train=True)
        medians = measure_steps(
            {"seqtool": lambda: trainer.train_step(batches), "plain": lambda: next(plain)},
            warmup=args.warmup, steps=args.steps, rounds=args.rounds,
            items_per_step=cfg.task.batch_size, device=device, unit="seq/s",
        )  # fmt: skip
        params = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
        print_result({
            **machine(device),
            "model": f"bert {m.num_layers}x{m.d_model}, {m.heads} heads, ffn {m.ffn_size}",
            "vocab": len(twin_task.vocab),
            "params_seqtool": params(trainer.model), "params_plain": params(plain_model),
            "batch": [cfg.task.batch_size, cfg.task.seq_len],
            "precision": "bf16" if trainer.autocast_dtype else "fp32",
            "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
            **comparison(medians["seqtool"], medians["plain"], unit="sequences", digits=1),
        })  # fmt: skip


if __name__ == "__main__":
    main()
