"""Frame-prediction metrics of the common Moving MNIST protocol (as in PredRNN and OpenSTL).

Frames are in [0, 1]; every metric is computed per predicted frame, then averaged over frames and
sequences (and, for the curves, over sequences only, per horizon step)::

    MSE  = sum over pixels of (x̂ - x)²        per frame (64×64: 4096 pixels, so 0 ≤ MSE ≤ 4096)
    MAE  = sum over pixels of |x̂ - x|
    SSIM = torchmetrics SSIM, Gaussian window 11×11 with σ = 1.5, k1 = 0.01, k2 = 0.03, data_range 1.0
    PSNR = 10 · log10(1 / mean over pixels of (x̂ - x)²)  (torchmetrics, data_range 1.0), capped at 100 dB
           (an exact frame would be +inf and make every mean infinite)

Baselines beside the model: "copy_last" repeats the last given frame, "zeros" predicts black frames.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

SSIM_SETTINGS = {"gaussian_kernel": True, "sigma": 1.5, "kernel_size": 11, "k1": 0.01, "k2": 0.03}
DATA_RANGE = 1.0
PSNR_CAP_DB = 100.0
METRICS = ("mse", "mae", "ssim", "psnr")


def frame_mse(predictions: Tensor, targets: Tensor) -> Tensor:
    """[B, K, C, H, W] twice -> squared error summed over each frame's pixels [B, K]."""
    return (predictions.float() - targets.float()).pow(2).sum(dim=(2, 3, 4))


def frame_mae(predictions: Tensor, targets: Tensor) -> Tensor:
    """[B, K, C, H, W] twice -> absolute error summed over each frame's pixels [B, K]."""
    return (predictions.float() - targets.float()).abs().sum(dim=(2, 3, 4))


def frame_ssim(predictions: Tensor, targets: Tensor) -> Tensor:
    """[B, K, C, H, W] twice -> SSIM of each frame [B, K] (settings pinned in SSIM_SETTINGS)."""
    images = predictions.float().flatten(0, 1), targets.float().flatten(0, 1)  # [B K, C, H, W]
    values = structural_similarity_index_measure(
        *images, data_range=DATA_RANGE, reduction="none", **SSIM_SETTINGS
    )
    return values.view(predictions.shape[:2])


def frame_psnr(predictions: Tensor, targets: Tensor) -> Tensor:
    """[B, K, C, H, W] twice -> PSNR in dB of each frame [B, K], capped at PSNR_CAP_DB."""
    images = predictions.float().flatten(0, 1), targets.float().flatten(0, 1)  # [B K, C, H, W]
    values = peak_signal_noise_ratio(*images, data_range=DATA_RANGE, reduction="none", dim=(1, 2, 3))
    return values.clamp(max=PSNR_CAP_DB).view(predictions.shape[:2])


def frame_metrics(predictions: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """Every metric of every frame: name -> [B, K]."""
    functions = {"mse": frame_mse, "mae": frame_mae, "ssim": frame_ssim, "psnr": frame_psnr}
    return {name: function(predictions, targets) for name, function in functions.items()}


def copy_last(inputs: Tensor, horizon: int) -> Tensor:
    """The "copy the last frame" baseline: inputs [B, T, C, H, W] -> [B, horizon, C, H, W]."""
    return inputs[:, -1:].expand(-1, horizon, -1, -1, -1)


def zeros(inputs: Tensor, horizon: int) -> Tensor:
    """The "all zeros" baseline: black frames [B, horizon, C, H, W]."""
    return inputs.new_zeros(inputs.shape[0], horizon, *inputs.shape[2:])


class MetricSums:
    """Running per-step sums of each metric over sequences; means overall and per horizon step."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}  # name -> [K], summed over sequences
        self.count = 0

    def add(self, predictions: Tensor, targets: Tensor) -> None:
        """predictions, targets [B, K, C, H, W] in [0, 1]."""
        for name, values in frame_metrics(predictions, targets).items():
            step_sums = values.sum(dim=0).double().cpu()  # [K]
            self.sums[name] = self.sums[name] + step_sums if name in self.sums else step_sums
        self.count += predictions.shape[0]

    def curves(self) -> dict[str, list[float]]:
        """name -> mean per horizon step, [K] floats."""
        return {name: (total / max(self.count, 1)).tolist() for name, total in self.sums.items()}

    def means(self, suffix: str = "") -> dict[str, float]:
        """name + suffix -> mean over frames and sequences."""
        return {name + suffix: float(sum(values) / len(values)) for name, values in self.curves().items()}


def clamp_frames(frames: Tensor) -> Tensor:
    """Predictions as frames: float32, clipped to [0, 1] (a linear output head may overshoot)."""
    return torch.clamp(frames.float(), 0.0, 1.0)
