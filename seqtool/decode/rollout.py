"""Frame rollout for the video models: predict K frames after the given ones, in batches, as frames.

The models take ``(inputs [B, T_in, C, H, W], targets=None, horizon=K)`` and feed back their own
predictions after the given frames; rollout returns those predictions clipped to [0, 1] (metrics and
saved frames live there), on the CPU. Also here: what `seqtool decode` makes of a rollout (plots, a
summary line).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from seqtool.video_metrics import clamp_frames, copy_last, frame_mse


def rollout(
    model: nn.Module, inputs: Tensor, horizon: int, *, batch_size: int, device: torch.device
) -> Tensor:
    """inputs [N, T_in, C, H, W] in [0, 1] -> predictions [N, K, C, H, W] in [0, 1] (float32, CPU)."""
    chunks = []
    with torch.no_grad():
        for chunk in inputs.split(batch_size):
            predictions, _ = model(chunk.to(device, torch.float32), horizon=horizon)  # [b, K, C, H, W]
            chunks.append(clamp_frames(predictions).cpu())
    return torch.cat(chunks)


def write_plots(
    inputs: Tensor, truth: Tensor | None, predictions: Tensor, directory: Path, limit: int = 4
) -> None:
    """For the first `limit` sequences: sequence_<i>.png, a strip input | truth | prediction, and
    sequence_<i>.gif, (input then truth) | (input then prediction). Frames [N, T, 1, H, W] in [0, 1]."""
    from seqtool.plots import plot_frame_strip, save_frames_gif

    for i in range(min(limit, len(inputs))):
        given, predicted = inputs[i, :, 0].numpy(), predictions[i, :, 0].numpy()  # [T, H, W]
        rows = [("input", given)] + ([("truth", truth[i, :, 0].numpy())] if truth is not None else [])
        plot_frame_strip([*rows, ("prediction", predicted)], directory / f"sequence_{i:03d}.png")
        true_pane = np.concatenate([given, truth[i, :, 0].numpy()]) if truth is not None else given
        save_frames_gif([true_pane, np.concatenate([given, predicted])], directory / f"sequence_{i:03d}.gif")


def describe(inputs: Tensor, truth: Tensor | None, predictions: Tensor, output: Path | None) -> str:
    """One line on what was predicted, with the mean per-frame MSE against the truth when it is known."""
    count, horizon = predictions.shape[:2]
    line = f"predicted {horizon} frames after {inputs.shape[1]} given ones for {count} sequence(s)"
    if truth is not None:
        model = float(frame_mse(predictions, truth).mean())
        baseline = float(frame_mse(copy_last(inputs, horizon), truth).mean())
        line += f"; MSE per frame {model:.2f} (copy last frame: {baseline:.2f})"
    return line + (f"; wrote {output}" if output is not None else "")
