"""The Moving MNIST metrics against values known in closed form (scikit-image is not a dependency)."""

import math

import pytest
import torch

from seqtool.video_metrics import (
    PSNR_CAP_DB,
    MetricSums,
    copy_last,
    frame_mae,
    frame_metrics,
    frame_mse,
    frame_psnr,
    frame_ssim,
    zeros,
)


def frames(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_identical_frames_are_perfect_with_psnr_capped():
    x = frames(2, 3, 1, 64, 64)
    metrics = frame_metrics(x, x.clone())
    assert torch.equal(metrics["mse"], torch.zeros(2, 3)) and torch.equal(metrics["mae"], torch.zeros(2, 3))
    assert torch.allclose(metrics["ssim"], torch.ones(2, 3))
    assert torch.equal(metrics["psnr"], torch.full((2, 3), PSNR_CAP_DB))  # +inf, capped


def test_a_constant_offset_gives_the_known_mse_mae_and_psnr():
    x = frames(2, 3, 1, 64, 64) * 0.8
    y = x + 0.1  # every pixel off by 0.1
    assert torch.allclose(frame_mse(y, x), torch.full((2, 3), 4096 * 0.01), rtol=1e-4)  # summed over pixels
    assert torch.allclose(frame_mae(y, x), torch.full((2, 3), 4096 * 0.1), rtol=1e-4)
    assert torch.allclose(frame_psnr(y, x), torch.full((2, 3), 10 * math.log10(1 / 0.01)), atol=1e-3)  # 20 dB


def test_ssim_of_two_flat_frames_is_its_luminance_term():
    # Flat frames a and b: no variance, so SSIM = (2ab + C1) / (a² + b² + C1), C1 = (0.01 · 1.0)².
    a, b, c1 = 0.5, 0.6, (0.01 * 1.0) ** 2
    ssim = frame_ssim(torch.full((1, 1, 1, 32, 32), b), torch.full((1, 1, 1, 32, 32), a))
    assert ssim.item() == pytest.approx((2 * a * b + c1) / (a**2 + b**2 + c1), rel=1e-5)


def test_ssim_is_symmetric_and_below_one_for_noise():
    x, y = frames(1, 2, 1, 32, 32, seed=1), frames(1, 2, 1, 32, 32, seed=2)
    forward, backward = frame_ssim(x, y), frame_ssim(y, x)
    assert torch.allclose(forward, backward, atol=1e-6) and (forward < 0.2).all()


def test_the_baselines():
    inputs = frames(2, 4, 1, 8, 8)
    repeated = copy_last(inputs, 3)
    assert repeated.shape == (2, 3, 1, 8, 8) and torch.equal(repeated[:, 2], inputs[:, -1])
    assert torch.equal(zeros(inputs, 5), torch.zeros(2, 5, 1, 8, 8))


def test_sums_average_over_sequences_per_step_then_over_steps():
    truth = torch.zeros(3, 2, 1, 16, 16)
    prediction = truth.clone()
    prediction[:, 1] = 0.5  # step 1 perfect, step 2 off by 0.5 on all 256 pixels: MSE 256 · 0.25 = 64
    sums = MetricSums()
    sums.add(prediction[:2], truth[:2])
    sums.add(prediction[2:], truth[2:])
    assert sums.count == 3
    assert sums.curves()["mse"] == pytest.approx([0.0, 64.0])
    means = sums.means("_model")
    assert means["mse_model"] == pytest.approx(32.0) and means["mae_model"] == pytest.approx(64.0)
    assert all(isinstance(value, float) for value in means.values())
    whole = MetricSums()  # the batch at once: the same means as in two parts
    whole.add(prediction, truth)
    assert whole.means()["mse"] == pytest.approx(32.0)
