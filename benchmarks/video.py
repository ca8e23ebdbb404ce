"""Training throughput (frames/s) of a seqtool video model (`Trainer.train_step`) beside a plain PyTorch loop.

`--model` picks the model; the plain side is a reference of the same cell written here in a few lines, of
the same size (batch, frames, layers, channels, kernel, patch), on p×p patches, feeding back its own
predictions after the given frames:

    convlstm    encoder and forecaster stacks, one convolution over [x, h] per layer, no peepholes, a 1×1
                head over all layers' h
    composite   the same plus the reconstructor stack and head of the composite model (reconstruct=true):
                frames T_in-1 .. 1 from the encoder's states, reading zeros; its MSE joins the loss
    predrnn_pp  one stack of causal LSTMs over every step, the zigzag M, the gradient highway between
                layers 0 and 1, a 1×1 head on the top H
    e3d_lstm    one stack of E3D-LSTM cells over windows of 2 frames (2×k×k causal 3-D convolutions), the
                recall over the last 5 memories, the zigzag M, a 2×1×1 head on the top H

It trains with AdamW
at the same lr and clip_grad_norm_ at the same max norm on batches drawn once from the task beforehand,
so its time has no data generation; seqtool's side generates every batch on the fly, as in training.
Sides run in alternating rounds; each reports its median. frames/s counts every frame of a sequence
(T_in + K) once per training step.

    cd /work/main && .venv/bin/python benchmarks/video.py [--model e3d_lstm] [--device cuda] [--channels-last]

The last line printed is the result as JSON, for a note to quote.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from harness import autocast, built_trainer, comparison, machine, measure_steps, print_result, timing_parser
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
    parser.add_argument("--model", choices=sorted(PLAIN), default="convlstm", help="which cell to time")
    parser.add_argument("--channels-last", action="store_true", help="channels_last weights (for CUDA)")
    return parser.parse_args()


def overrides(args: argparse.Namespace) -> list[str]:
    """The benchmark's shape as config overrides; free-running (no scheduled sampling), constant lr."""
    model = {
        "convlstm": ["model=convlstm", "model.peephole=false"],
        "composite": ["model=convlstm", "model.peephole=false", "model.reconstruct=true"],
        "predrnn_pp": ["model=predrnn_pp"],
        "e3d_lstm": [
            "model=e3d_lstm",
            "model.window=2",
            "model.temporal_kernel_size=2",
            "model.memory_steps=5",
        ],
    }[args.model]
    return [
        *model,
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
        f"trainer.precision={args.precision}",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "trainer.lr_schedule.kind=constant",
        "trainer.lr_schedule.warmup_steps=0",
    ]


class PlainConvLSTM(nn.Module):
    """The reference: stacked ConvLSTM encoder and forecaster, as one would write it in an afternoon
    (reconstruct: plus the composite model's reconstructor)."""

    def __init__(
        self, channels: int, hidden: int, layers: int, kernel: int, patch: int, reconstruct: bool = False
    ) -> None:
        super().__init__()
        inputs = [channels * patch**2] + [hidden] * (layers - 1)

        def stack() -> nn.ModuleList:
            return nn.ModuleList(
                nn.Conv2d(i + hidden, 4 * hidden, kernel, padding=kernel // 2) for i in inputs
            )

        self.encoder, self.forecaster = stack(), stack()
        self.head = nn.Conv2d(layers * hidden, channels * patch**2, 1)
        self.reconstructor = stack() if reconstruct else None
        self.reconstruction_head = nn.Conv2d(layers * hidden, channels * patch**2, 1) if reconstruct else None
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

    def forward(self, inputs: Tensor, horizon: int) -> tuple[Tensor, Tensor]:
        """inputs [B, T, C, H, W] -> predictions [B, K, C, H, W], reconstruction MSE."""
        x = F.pixel_unshuffle(inputs.flatten(0, 1), self.patch).unflatten(0, inputs.shape[:2])
        zeros = x.new_zeros(x.shape[0], self.hidden, *x.shape[-2:])
        state = [(zeros, zeros)] * len(self.encoder)
        for t in range(x.shape[1] - 1):
            state = self.step(self.encoder, x[:, t], state)
        encoded, frame, outputs = state, x[:, -1], []
        for _ in range(horizon):
            state = self.step(self.forecaster, frame, state)
            frame = self.head(torch.cat([h for h, _ in state], 1))
            outputs.append(frame)
        aux = x.new_zeros(())
        if self.reconstructor is not None:
            state, blank, rebuilt = encoded, torch.zeros_like(x[:, 0]), []
            for _ in range(x.shape[1] - 1):
                state = self.step(self.reconstructor, blank, state)
                rebuilt.append(self.reconstruction_head(torch.cat([h for h, _ in state], 1)))
            aux = F.mse_loss(torch.stack(rebuilt, 1), x[:, :-1].flip(1))
        return unpatch(outputs, self.patch), aux


def unpatch(outputs: list[Tensor], patch: int) -> Tensor:
    """K patch grids [B, C p², h, w] -> frames [B, K, C, H, W]."""
    stacked = torch.stack(outputs, 1)
    return F.pixel_shuffle(stacked.flatten(0, 1), patch).unflatten(0, stacked.shape[:2])


class PlainPredRNNpp(nn.Module):
    """The reference: causal LSTMs (C, then M from C), the zigzag M, a GHU between layers 0 and 1."""

    def __init__(self, channels: int, hidden: int, layers: int, kernel: int, patch: int) -> None:
        super().__init__()
        inputs, pad = [channels * patch**2] + [hidden] * (layers - 1), kernel // 2
        self.cells = nn.ModuleList(
            nn.ModuleDict(
                {
                    "xhc": nn.Conv2d(i + 2 * hidden, 3 * hidden, kernel, padding=pad),
                    "xcm": nn.Conv2d(i + 2 * hidden, 3 * hidden, kernel, padding=pad),
                    "m": nn.Conv2d(hidden, hidden, kernel, padding=pad),
                    "o": nn.Conv2d(i + 3 * hidden, hidden, kernel, padding=pad),
                    "cm": nn.Conv2d(2 * hidden, hidden, 1),
                }
            )
            for i in inputs
        )
        self.ghu_x = nn.Conv2d(hidden, 2 * hidden, kernel, padding=pad)
        self.ghu_z = nn.Conv2d(hidden, 2 * hidden, kernel, padding=pad, bias=False)
        self.head = nn.Conv2d(hidden, channels * patch**2, 1)
        self.hidden, self.patch = hidden, patch

    def forward(self, inputs: Tensor, horizon: int) -> tuple[Tensor, Tensor]:
        x = F.pixel_unshuffle(inputs.flatten(0, 1), self.patch).unflatten(0, inputs.shape[:2])
        zeros = x.new_zeros(x.shape[0], self.hidden, *x.shape[-2:])
        h, c, m, z = [zeros] * len(self.cells), [zeros] * len(self.cells), zeros, zeros
        frame, outputs = None, []
        for t in range(x.shape[1] + horizon - 1):
            inp = x[:, t] if t < x.shape[1] else frame
            for k, w in enumerate(self.cells):
                g, i, f = w["xhc"](torch.cat([inp, h[k], c[k]], 1)).chunk(3, 1)
                c[k] = torch.sigmoid(f) * c[k] + torch.sigmoid(i) * torch.tanh(g)
                g2, i2, f2 = w["xcm"](torch.cat([inp, c[k], m], 1)).chunk(3, 1)
                m = torch.sigmoid(f2) * torch.tanh(w["m"](m)) + torch.sigmoid(i2) * torch.tanh(g2)
                o = torch.tanh(w["o"](torch.cat([inp, h[k], c[k], m], 1)))
                h[k] = o * torch.tanh(w["cm"](torch.cat([c[k], m], 1)))
                inp = h[k]
                if k == 0:
                    p, s = (self.ghu_x(inp) + self.ghu_z(z)).chunk(2, 1)
                    s = torch.sigmoid(s)
                    z = inp = s * torch.tanh(p) + (1 - s) * z
            if t >= x.shape[1] - 1:
                frame = self.head(h[-1])
                outputs.append(frame)
        return unpatch(outputs, self.patch), x.new_zeros(())


class PlainE3DLSTM(nn.Module):
    """The reference: E3D-LSTM cells over 2-frame windows, recall over the last 5 memories, zigzag M."""

    def __init__(self, channels: int, hidden: int, layers: int, kernel: int, patch: int) -> None:
        super().__init__()
        inputs, size = [channels * patch**2] + [hidden] * (layers - 1), (2, kernel, kernel)
        self.cells = nn.ModuleList(
            nn.ModuleDict(
                {
                    "xh": nn.Conv3d(i + hidden, 4 * hidden, size),
                    "xm": nn.Conv3d(i + hidden, 3 * hidden, size),
                    "o": nn.Conv3d(2 * hidden, hidden, size, bias=False),
                    "cm": nn.Conv3d(2 * hidden, hidden, 1, bias=False),
                    "norm": nn.GroupNorm(1, hidden),
                }
            )
            for i in inputs
        )
        self.head = nn.Conv3d(hidden, channels * patch**2, (2, 1, 1))
        self.hidden, self.patch, self.pad = hidden, patch, (kernel // 2,) * 4 + (1, 0)

    def forward(self, inputs: Tensor, horizon: int) -> tuple[Tensor, Tensor]:
        x = F.pixel_unshuffle(inputs.flatten(0, 1), self.patch).unflatten(0, inputs.shape[:2])
        zeros = x.new_zeros(x.shape[0], self.hidden, 2, *x.shape[-2:])
        h, c, m = [zeros] * len(self.cells), [zeros] * len(self.cells), zeros
        history = [[zeros] for _ in self.cells]
        previous, frame, outputs = torch.zeros_like(x[:, 0]), None, []
        for t in range(x.shape[1] + horizon - 1):
            current = x[:, t] if t < x.shape[1] else frame
            inp, previous = torch.stack([previous, current], 2), current
            for k, w in enumerate(self.cells):
                r, i, g, o = w["xh"](F.pad(torch.cat([inp, h[k]], 1), self.pad)).chunk(4, 1)
                query = torch.sigmoid(r).flatten(2).transpose(1, 2)
                keys = torch.stack(history[k], 2).flatten(2).transpose(1, 2)
                recalled = (torch.softmax(query @ keys.transpose(1, 2), -1) @ keys).transpose(1, 2)
                c[k] = torch.sigmoid(i) * torch.tanh(g) + w["norm"](c[k] + recalled.reshape(c[k].shape))
                i2, g2, f2 = w["xm"](F.pad(torch.cat([inp, m], 1), self.pad)).chunk(3, 1)
                m = torch.sigmoid(i2) * torch.tanh(g2) + torch.sigmoid(f2) * m
                cm = torch.cat([c[k], m], 1)
                h[k] = torch.sigmoid(o + w["o"](F.pad(cm, self.pad))) * torch.tanh(w["cm"](cm))
                history[k] = (history[k] + [c[k]])[-5:]
                inp = h[k]
            if t >= x.shape[1] - 1:
                frame = self.head(h[-1]).squeeze(2)
                outputs.append(frame)
        return unpatch(outputs, self.patch), x.new_zeros(())


PLAIN = {
    "convlstm": PlainConvLSTM,
    "composite": lambda *sizes: PlainConvLSTM(*sizes, reconstruct=True),
    "predrnn_pp": PlainPredRNNpp,
    "e3d_lstm": PlainE3DLSTM,
}


def plain_steps(cfg: DictConfig, args: argparse.Namespace, trainer: Trainer) -> Iterator[None]:
    """The reference loop over 4 pre-drawn batches; each next() is one optimizer step."""
    torch.manual_seed(cfg.seed)
    sizes = (1, args.hidden_channels, args.layers, args.kernel_size, args.patch_size)
    model = PLAIN[args.model](*sizes).to(trainer.device)
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
                predictions, aux = model(clip.inputs, clip.targets.shape[1])
            loss = F.mse_loss(predictions.float(), clip.targets) + aux.float()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.clip_norm)
            optimizer.step()
            yield


def report(args: argparse.Namespace, trainer: Trainer, seqtool: float, plain: float) -> None:
    print_result(
        {
            **machine(trainer.device),
            "model": f"{args.model} {args.layers}x{args.hidden_channels}, "
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
    with built_trainer(overrides(args)) as (cfg, trainer):
        device = trainer.device
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
