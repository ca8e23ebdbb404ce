"""Training throughput (frames/s) of seqtool's ConvLSTM via `Trainer.train_step` beside a plain PyTorch loop.

The plain side is a reference ConvLSTM written here in a few lines (encoder and forecaster stacks, one
convolution over [x, h] per layer, no peepholes, 1×1 head over all layers' h, p×p patches, feeding back its
own predictions), of the same size: batch, frames, layers, channels, kernel and patch. It trains with AdamW
at the same lr and clip_grad_norm_ at the same max norm on batches drawn once from the task beforehand,
so its time has no data generation; seqtool's side generates every batch on the fly, as in training.
Sides run in alternating rounds; each reports its median. frames/s counts every frame of a sequence
(T_in + K) once per training step.

    cd /work/main && .venv/bin/python benchmarks/video.py [--device cuda] [--precision bf16] [--channels-last]

The last line printed is the result as JSON, for a note to quote.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from harness import autocast, comparison, machine, measure_steps, print_result, timing_parser
from seqtool.commands import build_trainer, resolve_device
from seqtool.config import compose
from seqtool.train import Trainer


def parse_args() -> argparse.Namespace:
    parser = timing_parser(__doc__.splitlines()[0], steps=5, warmup=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--input-frames", type=int, default=10)
    parser.add_argument("--target-frames", type=int, default=10)
    parser.add_argument("--hidden-channels", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--kernel-size", type=int, default=3)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--channels-last", action="store_true", help="channels_last weights (for CUDA)")
    return parser.parse_args()


def overrides(args: argparse.Namespace) -> list[str]:
    """The benchmark's shape as config overrides; free-running (no scheduled sampling), constant lr."""
    return [
        "model=convlstm",
        "task=video",
        f"device={args.device}",
        f"task.batch_size={args.batch_size}",
        f"task.image_size={args.image_size}",
        f"task.digit_size={min(28, args.image_size * 7 // 16)}",
        f"task.input_frames={args.input_frames}",
        f"task.target_frames={args.target_frames}",
        f"model.hidden_channels={args.hidden_channels}",
        f"model.num_layers={args.layers}",
        f"model.kernel_size={args.kernel_size}",
        f"model.patch_size={args.patch_size}",
        "model.peephole=false",
        f"trainer.precision={args.precision}",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "trainer.lr_schedule.kind=constant",
        "trainer.lr_schedule.warmup_steps=0",
    ]


class PlainConvLSTM(nn.Module):
    """The reference: stacked ConvLSTM encoder and forecaster, as one would write it in an afternoon."""

    def __init__(self, channels: int, hidden: int, layers: int, kernel: int, patch: int) -> None:
        super().__init__()
        inputs = [channels * patch**2] + [hidden] * (layers - 1)

        def stack() -> nn.ModuleList:
            return nn.ModuleList(
                nn.Conv2d(i + hidden, 4 * hidden, kernel, padding=kernel // 2) for i in inputs
            )

        self.encoder, self.forecaster = stack(), stack()
        self.head = nn.Conv2d(layers * hidden, channels * patch**2, 1)
        self.hidden, self.patch = hidden, patch

    @staticmethod
    def step(
        convs: nn.ModuleList, x: Tensor, state: list[tuple[Tensor, Tensor]]
    ) -> list[tuple[Tensor, Tensor]]:
        new = []
        for conv, (h, c) in zip(convs, state):
            i, f, g, o = conv(torch.cat([x, h], 1)).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            new.append((h, c))
            x = h
        return new

    def forward(self, inputs: Tensor, horizon: int) -> Tensor:
        """inputs [B, T, C, H, W] -> predictions [B, K, C, H, W]."""
        x = F.pixel_unshuffle(inputs.flatten(0, 1), self.patch).unflatten(0, inputs.shape[:2])
        zeros = x.new_zeros(x.shape[0], self.hidden, *x.shape[-2:])
        state = [(zeros, zeros)] * len(self.encoder)
        for t in range(x.shape[1] - 1):
            state = self.step(self.encoder, x[:, t], state)
        frame, outputs = x[:, -1], []
        for _ in range(horizon):
            state = self.step(self.forecaster, frame, state)
            frame = self.head(torch.cat([h for h, _ in state], 1))
            outputs.append(frame)
        return F.pixel_shuffle(torch.stack(outputs, 1).flatten(0, 1), self.patch).unflatten(
            0, (x.shape[0], horizon)
        )


def plain_steps(cfg: DictConfig, args: argparse.Namespace, trainer: Trainer) -> Iterator[None]:
    """The reference loop over 4 pre-drawn batches; each next() is one optimizer step."""
    torch.manual_seed(cfg.seed)
    model = PlainConvLSTM(1, args.hidden_channels, args.layers, args.kernel_size, args.patch_size).to(
        trainer.device
    )
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optim, dtype = cfg.trainer.optimizer, trainer.autocast_dtype
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay
    )
    stream = trainer.task.batches("train", train=True)
    clips = [next(stream) for _ in range(4)]
    while True:
        for clip in clips:
            optimizer.zero_grad(set_to_none=True)
            with autocast(trainer.device, dtype):
                predictions = model(clip.inputs, clip.targets.shape[1])
            loss = F.mse_loss(predictions.float(), clip.targets)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.clip_norm)
            optimizer.step()
            yield


def report(args: argparse.Namespace, trainer: Trainer, seqtool: float, plain: float) -> None:
    print_result(
        {
            **machine(trainer.device),
            "model": f"convlstm {args.layers}x{args.hidden_channels}, "
            f"kernel {args.kernel_size}, patch {args.patch_size}",
            "batch": [
                args.batch_size,
                args.input_frames + args.target_frames,
                args.image_size,
                args.image_size,
            ],
            "precision": "bf16" if trainer.autocast_dtype else "fp32",
            "channels_last": args.channels_last,
            "steps": args.steps,
            "warmup": args.warmup,
            "rounds": args.rounds,
            **comparison(seqtool, plain, unit="frames"),
        }
    )


def main() -> None:
    args = parse_args()
    cfg = compose(overrides(args))
    device = resolve_device(str(cfg.device))
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build_trainer(cfg, Path(run_dir), device)
        if args.channels_last:  # in place: the optimizer keeps the very same parameters
            trainer.model.to(memory_format=torch.channels_last)
        batches = trainer.task.batches("train", train=True)
        plain = plain_steps(cfg, args, trainer)
        medians = measure_steps(
            {"seqtool": lambda: trainer.train_step(batches), "plain": lambda: next(plain)},
            warmup=args.warmup,
            steps=args.steps,
            rounds=args.rounds,
            items_per_step=args.batch_size * (args.input_frames + args.target_frames),  # T_in + K frames
            device=device,
            unit="frames/s",
        )
        report(args, trainer, medians["seqtool"], medians["plain"])


if __name__ == "__main__":
    main()
