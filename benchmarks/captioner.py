"""Images/s of seqtool's captioner beside a plain PyTorch loop: training (`Trainer.train_step`) and greedy
decoding (`CaptioningTask.caption` through the shared search).

The plain side is a reference Show-Attend-Tell written here in a few lines, of the same size: the same
residual CNN (seqtool's encoder module, so the comparison is of everything around it), an LSTMCell with
additive attention, the gate and the deep output, and a plain greedy loop that feeds the whole batch
until max_len (no early stop per row). Its training batches are the same as seqtool's, in the same order,
drawn beforehand, so its time has no data preparation; seqtool's side builds every batch on the fly (crop,
normalise), as in training.
Sides run in alternating rounds (benchmarks/harness.py); each reports its median. Training counts one
image per caption row.

    cd /work/main && .venv/bin/python benchmarks/captioner.py [--device cuda] [--batch-size 32]

The last line printed is the result as JSON, for a note to quote.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness import comparison, machine, measure_steps, print_result, timing_parser
from seqtool.commands import build_trainer, resolve_device
from seqtool.config import compose, instantiate
from seqtool.data.captions import BOS, PAD
from seqtool.decode.settings import Greedy, SearchSettings
from seqtool.models.captioner import Encoder
from seqtool.train import Trainer


def parse_args() -> argparse.Namespace:
    parser = timing_parser(__doc__.splitlines()[0], steps=5, warmup=2, precision=False)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--decode-batch", type=int, default=64, help="images per greedy decoding call")
    parser.add_argument("--max-len", type=int, default=16, help="decoded words (+ EOS) per image")
    return parser.parse_args()


def overrides(args: argparse.Namespace) -> list[str]:
    """experiment=shapes_captioner, a constant lr, nothing logged."""
    return [
        "experiment=shapes_captioner",
        f"device={args.device}",
        f"task.batch_size={args.batch_size}",
        f"task.eval_batch_size={args.decode_batch}",
        "task.shapes.train_size=512",
        "task.shapes.val_size=64",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "trainer.lr_schedule.kind=constant",
        "trainer.lr_schedule.warmup_steps=0",
    ]


class PlainSAT(nn.Module):
    """The reference captioner, as one would write it in an afternoon."""

    def __init__(self, encoder: nn.Module, features: int, vocab: int, embed: int, hidden: int, attn: int):
        super().__init__()
        self.encoder = encoder
        self.init_h, self.init_c = nn.Linear(features, hidden), nn.Linear(features, hidden)
        self.enc_att, self.dec_att, self.full_att = (
            nn.Linear(features, attn),
            nn.Linear(hidden, attn),
            nn.Linear(attn, 1),
        )
        self.f_beta, self.embedding = nn.Linear(hidden, 1), nn.Embedding(vocab, embed)
        self.lstm = nn.LSTMCell(embed + features, hidden)
        self.L_h, self.L_z, self.L_o = (
            nn.Linear(hidden, embed),
            nn.Linear(features, embed),
            nn.Linear(embed, vocab),
        )

    def start(self, images: Tensor):
        a = self.encoder(images)
        mean = a.mean(1)
        return a, self.enc_att(a), torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))

    def step(self, y: Tensor, a: Tensor, keys: Tensor, h: Tensor, c: Tensor):
        alpha = self.full_att(torch.tanh(keys + self.dec_att(h).unsqueeze(1))).squeeze(-1).softmax(-1)
        z = torch.sigmoid(self.f_beta(h)) * (alpha.unsqueeze(-1) * a).sum(1)
        e = self.embedding(y)
        h, c = self.lstm(torch.cat([e, z], -1), (h, c))
        return self.L_o(e + self.L_h(h) + self.L_z(z)), alpha, h, c

    def forward(self, images: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor]:
        a, keys, h, c = self.start(images)
        logits, alphas = [], []
        for t in range(tgt_in.size(1)):
            out, alpha, h, c = self.step(tgt_in[:, t], a, keys, h, c)
            logits.append(out)
            alphas.append(alpha)
        return torch.stack(logits, 1), torch.stack(alphas, 1)

    @torch.inference_mode()
    def greedy(self, images: Tensor, max_len: int) -> Tensor:
        a, keys, h, c = self.start(images)
        y, words = torch.full((images.size(0),), BOS, device=images.device), []
        for _ in range(max_len):
            out, _, h, c = self.step(y, a, keys, h, c)
            y = out.argmax(-1)
            words.append(y)
        return torch.stack(words, 1)


def plain_model(cfg, trainer: Trainer) -> PlainSAT:
    m = cfg.model
    torch.manual_seed(cfg.seed)
    encoder = Encoder("resnet", list(m.encoder_channels), m.grid_size, None, None, False)
    vocab = len(trainer.task.vocab)
    model = PlainSAT(encoder, encoder.out_channels, vocab, m.embedding_size, m.hidden_size, m.attention_size)
    return model.to(trainer.device)


def plain_train_steps(cfg, trainer: Trainer, model: PlainSAT, count: int, run_dir: Path) -> Iterator[None]:
    """Cross-entropy + λ Σ_i (1 - Σ_t α)² with AdamW and clipping, over `count` batches drawn beforehand
    from a second task of the same seed: the very batches, in the same order, that seqtool's side draws
    (caption lengths vary from batch to batch, and the LSTM's cost with them)."""
    o = cfg.trainer.optimizer
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay
    )
    twin = instantiate(cfg.task)
    twin.setup(run_dir, device=trainer.device)
    stream = twin.batches("train", train=True)
    batches = [next(stream) for _ in range(count)]
    while True:
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            logits, alpha = model(batch.images, batch.tgt_in)
            mask = (batch.tgt_in != PAD).unsqueeze(-1).float()
            penalty = ((1 - (alpha * mask).sum(1)) ** 2).sum()
            ce = F.cross_entropy(
                logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD, reduction="sum"
            )
            ((ce + cfg.model.doubly_stochastic * penalty) / (batch.tgt_out != PAD).sum()).backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.clip_norm)
            optimizer.step()
            yield


def main() -> None:
    args = parse_args()
    cfg = compose(overrides(args))
    device = resolve_device(str(cfg.device))
    timing = dict(warmup=args.warmup, steps=args.steps, rounds=args.rounds, device=device, unit="images/s")
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build_trainer(cfg, Path(run_dir), device)
        task, model = trainer.task, trainer.model
        batches = task.batches("train", train=True)
        plain = plain_model(cfg, trainer)
        count = args.warmup + args.rounds * args.steps
        plain_steps = plain_train_steps(cfg, trainer, plain, count, Path(run_dir))
        print("training")
        train = measure_steps(
            {"seqtool": lambda: trainer.train_step(batches), "plain": lambda: next(plain_steps)},
            items_per_step=args.batch_size,
            **timing,
        )
        images = task.split("val").images[: args.decode_batch]
        pixels = task._pixels(images)
        search = SearchSettings(Greedy(), max_len=args.max_len)
        model.eval()
        plain.eval()
        print("greedy decoding")
        decode = measure_steps(
            {
                "seqtool": lambda: task.caption(model, images, search),
                "plain": lambda: plain.greedy(pixels, args.max_len),
            },
            items_per_step=len(images),
            **timing,
        )
    m = cfg.model
    result = machine(device) | {
        "model": f"captioner resnet {list(m.encoder_channels)}, grid {m.grid_size}, LSTM {m.hidden_size}",
        "train_batch": args.batch_size,
        "decode_batch": len(images),
        "max_len": args.max_len,
    }
    for what, medians in (("train", train), ("decode", decode)):
        figures = comparison(medians["seqtool"], medians["plain"], unit="images")
        result |= {f"{what}_{key}": value for key, value in figures.items()}
    print_result(result)


if __name__ == "__main__":
    main()
