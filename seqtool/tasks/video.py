"""Video frame prediction on Moving MNIST: data, loss, the protocol's metrics, decode to .npy and plots.

    one sequence: T_in + K frames [T, 1, H, W] in [0, 1]
        inputs  = frames [0, T_in)           what the model is given
        targets = frames [T_in, T_in + K)    what it must predict (K grows with the curriculum competence)

Splits: train is an endless stream of generated sequences 0, 1, 2, ... (its position, the next index, is
all a checkpoint needs); val is `eval_sequences` generated from held-out digits (cheap enough to run
during training); test is the first `test_sequences` of `test_npy` (the standard mnist_test_seq.npy)
when given, else `test_sequences` generated from held-out digits with another seed.
Loss per frame: mean over pixels of (x̂ - x)² (+ l1_weight · |x̂ - x|), plus the model's auxiliary loss.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqtool.by_length import refuse as refuse_by_length
from seqtool.data import moving_mnist as data
from seqtool.decode.generate import DecodeInput
from seqtool.decode.output import Frames
from seqtool.decode.rollout import rollout
from seqtool.decode.settings import DecodeOptions, SearchSettings
from seqtool.errors import UserError
from seqtool.tasks.base import Competence, Loss
from seqtool.video_metrics import MetricSums, clamp_frames, copy_last, zeros

ASCII_RAMP = " .:-=+*#%@"


@dataclass
class Clip:
    inputs: Tensor  # shape: [B, T_in, 1, H, W]
    targets: Tensor  # shape: [B, K, 1, H, W]


@dataclass
class DecodeClip:
    """What `seqtool decode` continues: sequences, the truth after them (if given) and how to save."""

    inputs: Tensor  # shape: [N, T_in, 1, H, W] in [0, 1]
    truth: Tensor | None  # shape: [N, <= K, 1, H, W], the frames after the inputs when the input holds them
    horizon: int  # K, the frames to predict
    layout: str  # the input array's layout (NTHW, TNHW, ...), so the predictions are saved in it
    as_uint8: bool  # the input was uint8 0-255: save the predictions so too


class VideoTask:
    """Predict the next K frames of bouncing digits (or shapes); metrics MSE, MAE, SSIM, PSNR + baselines."""

    shape = "many-to-many asynchronous"  # frames in, the next frames out (seqtool.shapes)

    def __init__(
        self,
        *,
        mnist_path: str | None,
        hf_name: str | None,
        test_npy: str | None,
        check_test_npy: bool,
        image_size: int,
        digit_size: int,
        num_digits: int,
        input_frames: int,
        target_frames: int,
        step_length: float,
        batch_size: int,
        eval_batch_size: int,
        eval_sequences: int,
        test_sequences: int,
        l1_weight: float,
        seed: int,
    ) -> None:
        if mnist_path and hf_name:
            raise ValueError("give task.mnist_path or task.hf_name, not both")
        if image_size < 11:
            raise ValueError(f"task.image_size={image_size} is below 11, the SSIM window")
        if not 1 <= digit_size <= image_size:
            raise ValueError(
                f"task.digit_size={digit_size} must be between 1 and task.image_size={image_size}"
            )
        sizes = (num_digits, input_frames, target_frames, batch_size, eval_batch_size)
        if min(sizes) < 1 or min(eval_sequences, test_sequences) < 1 or step_length <= 0 or l1_weight < 0:
            raise ValueError(
                "task.num_digits, input_frames, target_frames, batch sizes and sequence counts must be ≥ 1, "
                "task.step_length > 0 and task.l1_weight ≥ 0"
            )
        self.mnist_path, self.hf_name = mnist_path, hf_name
        self.test_npy, self.check_test_npy = test_npy, check_test_npy
        self.image_size, self.digit_size, self.num_digits = image_size, digit_size, num_digits
        self.input_frames, self.target_frames, self.step_length = input_frames, target_frames, step_length
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.eval_sequences, self.test_sequences = eval_sequences, test_sequences
        self.l1_weight, self.seed = l1_weight, seed
        self.device, self.run_dir, self.rank, self.world_size = torch.device("cpu"), Path("."), 0, 1
        self.position = 0  # train batches this rank has taken
        self._generators: dict[str, data.MovingGlyphs] = {}
        self._test_array: np.ndarray | None = None
        self._baselines: dict[str, dict[str, MetricSums]] = {}

    # -------------------------------------------------------------------------------------- data
    def setup(
        self, run_dir: Path, *, rank: int = 0, world_size: int = 1, device: torch.device | None = None
    ) -> None:
        """Remember where the run lives; digits are read when first needed. A new run reads test_npy now,
        so a missing or malformed test file is refused before training rather than after it."""
        self.run_dir, self.rank, self.world_size = Path(run_dir), rank, world_size
        self.device = device or torch.device("cpu")
        if self.test_npy and not (self.run_dir / "checkpoints").exists():
            self.test_array()

    def generator(self, split: str) -> data.MovingGlyphs:
        """The sequence generator of a split (train digits for train, held-out digits for val and test)."""
        if split not in self._generators:
            glyphs = self._glyphs()["train" if split == "train" else "eval"]
            self._generators[split] = data.MovingGlyphs(
                glyphs=glyphs,
                image_size=self.image_size,
                num_frames=self.input_frames + self.target_frames,
                num_digits=self.num_digits,
                step_length=self.step_length,
                seed=self.seed,
                split=split,
            )
        return self._generators[split]

    def _glyphs(self) -> dict[str, np.ndarray]:
        if self.mnist_path or self.hf_name:
            digits = data.mnist_digits(self.mnist_path) if self.mnist_path else data.hub_digits(self.hf_name)
            return {key: data.resize_glyphs(images, self.digit_size) for key, images in digits.items()}
        shapes = data.shape_glyphs(self.digit_size)  # the embedded default: no data needed
        return {"train": shapes, "eval": shapes}

    def test_array(self) -> np.ndarray:
        """The first test_sequences of test_npy, checked. shape: [N, T, H, W] (memory-mapped)"""
        if self._test_array is None:
            what = f"task.test_npy={self.test_npy}"
            if self.check_test_npy and data.sha256_of(self.test_npy) != data.STANDARD_TEST_SHA256:
                raise UserError(f"{what} is not the standard mnist_test_seq.npy (sha256 differs)")
            array, _ = data.as_sequences(data.load_npy(self.test_npy, what="task.test_npy"), what=what)
            self.check_frames(array.shape, what=what, needed=self.input_frames + self.target_frames)
            self._test_array = array[: self.test_sequences]
        return self._test_array

    def check_frames(self, shape: tuple[int, ...], *, what: str, needed: int) -> None:
        """Sequences [N, T, H, W] must have ≥ `needed` frames of the size the model was trained on."""
        frames, height, width = shape[1:]
        if (height, width) != (self.image_size, self.image_size):
            raise UserError(
                f"{what} has {height}×{width} frames but this model works on "
                f"{self.image_size}×{self.image_size} frames (task.image_size)"
            )
        if frames < needed:
            raise UserError(
                f"{what} has {frames} frames per sequence; {needed} are needed "
                "(if it is laid out [T, N, H, W], swap the first two axes)"
            )

    def split_size(self, split: str) -> int:
        if split == "val":
            return self.eval_sequences
        if split == "test":
            return len(self.test_array()) if self.test_npy else self.test_sequences
        raise UserError(f"the video task has splits val and test, not {split!r}")

    def sequences(self, split: str, indices: range) -> Tensor:
        """Frames of sequences `indices` of a split, on the device. shape: [N, T, 1, H, W] in [0, 1]"""
        if split == "test" and self.test_npy:
            array = self.test_array()[indices.start : indices.stop, : self.input_frames + self.target_frames]
            return data.to_unit_frames(array, what=f"task.test_npy={self.test_npy}").to(self.device)
        uint8 = torch.from_numpy(self.generator(split).sequences(indices))  # [N, T, H, W]
        return uint8.to(self.device).float().div_(255).unsqueeze(2)

    def model_kwargs(self) -> dict[str, Any]:
        return {"channels": 1, "image_size": self.image_size}

    def difficulty(self, example: Clip) -> float:
        return float(example.targets.shape[1])

    def target_length(self, competence: float) -> int:
        """The curriculum over the horizon: competence c trains on the first ceil(c · K) target frames."""
        return max(1, min(self.target_frames, math.ceil(competence * self.target_frames)))

    def batches(self, split: str, *, train: bool, competence: Competence | None = None) -> Iterator[Clip]:
        """The endless, resumable train stream, or one pass over an evaluation split."""
        if train:
            return self._train_clips(competence or (lambda: 1.0))
        return self._eval_clips(split)

    def _train_clips(self, competence: Competence) -> Iterator[Clip]:
        while True:
            first = (self.position * self.world_size + self.rank) * self.batch_size  # ranks interleave
            frames = self.sequences("train", range(first, first + self.batch_size))
            self.position += 1
            yield self._clip(frames, self.target_length(competence()))

    def _eval_clips(self, split: str) -> Iterator[Clip]:
        count = self.split_size(split)
        for start in range(0, count, self.eval_batch_size):
            frames = self.sequences(split, range(start, min(start + self.eval_batch_size, count)))
            yield self._clip(frames, self.target_frames)

    def _clip(self, frames: Tensor, horizon: int) -> Clip:
        end = self.input_frames + horizon
        return Clip(inputs=frames[:, : self.input_frames], targets=frames[:, self.input_frames : end])

    # ------------------------------------------------------------------------------ loss, metrics
    def loss(self, model: nn.Module, batch: Clip) -> Loss:
        """Per frame: mean over pixels of (x̂ - x)² (+ l1_weight · |x̂ - x|), summed over frames; the
        model's aux_loss (a mean) counts once per frame."""
        predictions, aux_loss = model(batch.inputs, batch.targets)  # [B, K, 1, H, W], []
        error = predictions.float() - batch.targets
        per_frame = error.pow(2).mean(dim=(2, 3, 4))  # [B, K]
        if self.l1_weight:
            per_frame = per_frame + self.l1_weight * error.abs().mean(dim=(2, 3, 4))
        count = per_frame.numel()
        return Loss(total=per_frame.sum() + aux_loss.float() * count, count=count)

    def evaluate(
        self, model: nn.Module, split: str, search: Any = None, by_length: Any = None
    ) -> dict[str, float]:
        """loss (pixel MSE), mse, mae, ssim, psnr of the model's rollouts and of the copy-last and zeros
        baselines (see seqtool/video_metrics.py); writes plots/horizon_<split>.png and .json."""
        if by_length is not None:
            refuse_by_length("video prediction")
        scores, squared, pixels = MetricSums(), 0.0, 0
        baselines = self._baselines.get(split) or {"copy_last": MetricSums(), "zeros": MetricSums()}
        with torch.no_grad():
            for clip in self._eval_clips(split):
                predictions, _ = model(clip.inputs, horizon=self.target_frames)  # [B, K, 1, H, W]
                squared += float(F.mse_loss(predictions.float(), clip.targets, reduction="sum"))
                pixels += clip.targets.numel()
                scores.add(clamp_frames(predictions), clip.targets)
                if split not in self._baselines:  # they do not depend on the model: computed once
                    baselines["copy_last"].add(copy_last(clip.inputs, self.target_frames), clip.targets)
                    baselines["zeros"].add(zeros(clip.inputs, self.target_frames), clip.targets)
        self._baselines[split] = baselines
        metrics = {"loss": squared / pixels, **scores.means()}
        for name, sums in baselines.items():
            metrics |= sums.means(f"_{name}")
        self._write_curves(split, {"model": scores, **baselines})
        return metrics

    def _write_curves(self, split: str, sums: dict[str, MetricSums]) -> None:
        from seqtool.plots import plot_horizon_curves

        curves = {name: metric_sums.curves() for name, metric_sums in sums.items()}
        plots = self.run_dir / "plots"
        plots.mkdir(parents=True, exist_ok=True)
        (plots / f"horizon_{split}.json").write_text(json.dumps(curves, indent=1))
        panels = {
            metric: {name: lines[metric] for name, lines in curves.items()} for metric in ("mse", "ssim")
        }
        plot_horizon_curves(
            panels, plots / f"horizon_{split}.png", title=f"{split}: metrics per horizon step"
        )

    # ------------------------------------------------------------------------------------ decode
    decode_output = Frames()  # .npy in the input's layout, strips and GIFs
    default_strategy = None  # a rollout, not a search
    end_token = None

    def decode_inputs(
        self, model: nn.Module, options: DecodeOptions, search: SearchSettings
    ) -> Iterator[list[DecodeInput]]:
        """--input's sequences (default: the first --num val sequences): their first input_frames frames
        to continue for --horizon frames, and the truth after them when the sequences hold it."""
        horizon = options.horizon or self.target_frames
        frames, layout, as_uint8 = self._decode_input(options)  # [N, T, 1, H, W] in [0, 1]
        truth_end = self.input_frames + horizon
        truth = frames[:, self.input_frames : truth_end] if frames.shape[1] >= truth_end else None
        clip = DecodeClip(frames[:, : self.input_frames], truth, horizon, layout, as_uint8)
        yield [DecodeInput(options.input or "val", clip, len(frames))]

    def decode(self, model: nn.Module, inputs: list[DecodeInput], search: SearchSettings) -> list[Tensor]:
        """The predicted frames [N, K, 1, H, W] in [0, 1] of each input's sequences."""
        return [self.rollout(model, item.value.inputs, item.value.horizon) for item in inputs]

    def rollout(self, model: nn.Module, inputs: Tensor, horizon: int) -> Tensor:
        """inputs [N, T_in, 1, H, W] in [0, 1] -> predictions [N, K, 1, H, W], in eval batches."""
        return rollout(model, inputs, horizon, batch_size=self.eval_batch_size, device=self.device)

    def render(self, item: DecodeInput, tokens: list[int]) -> str:
        raise NotImplementedError("video predictions are frames, written by seqtool.decode.output.Frames")

    def plot_attention(self, item: DecodeInput, decoded: Any, directory: Path) -> int:
        return 0  # the frame strips of --plot are written with the predictions

    def add_split(self, name: str, *, src: Path, ref: Path) -> str:
        raise UserError("video scores its own splits; --src/--ref are for translation")

    def _decode_input(self, options: DecodeOptions) -> tuple[Tensor, str, bool]:
        """--input's sequences [N, T, 1, H, W] (checked), their layout and whether they were uint8."""
        if options.input is None:
            count = min(options.num, self.eval_sequences)
            return self.sequences("val", range(count)).cpu(), "NTHW", False
        what = f"--input {options.input}"
        array, layout = data.as_sequences(data.load_npy(options.input), what=what)
        self.check_frames(array.shape, what=what, needed=self.input_frames)
        return data.to_unit_frames(array, what=what), layout, array.dtype == np.uint8

    def preview(self, model: nn.Module) -> str:
        """Truth | prediction of the last predicted frame of val sequence 0, as text; a strip in plots/."""
        from seqtool.plots import plot_frame_strip

        frames = self.sequences("val", range(0, 1))  # [1, T, 1, H, W]
        clip = self._clip(frames, self.target_frames)
        prediction = self.rollout(model, clip.inputs, self.target_frames)[0]  # [K, 1, H, W]
        rows = [
            ("input", clip.inputs[0, :, 0]),
            ("truth", clip.targets[0, :, 0]),
            ("prediction", prediction[:, 0]),
        ]
        plot_frame_strip(
            [(label, x.cpu().numpy()) for label, x in rows], self.run_dir / "plots" / "preview.png"
        )
        return ascii_pair(clip.targets[0, -1, 0].cpu(), prediction[-1, 0]) + "\n"

    # ------------------------------------------------------------------------------ resumability
    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])


def ascii_art(frame: Tensor, columns: int = 32) -> list[str]:
    """A frame [H, W] in [0, 1] as text lines (a character is twice as tall as it is wide)."""
    rows = max(1, columns * frame.shape[0] // (2 * frame.shape[1]))
    small = F.adaptive_avg_pool2d(frame[None, None].float(), (rows, columns))[0, 0]  # [rows, columns]
    index = (small.clamp(0, 1) * (len(ASCII_RAMP) - 1)).round().long()
    return ["".join(ASCII_RAMP[i] for i in row) for row in index.tolist()]


def ascii_pair(truth: Tensor, prediction: Tensor) -> str:
    """Truth and prediction [H, W] side by side as text, with a header."""
    left, right = ascii_art(truth), ascii_art(prediction)
    width = len(left[0])
    lines = [f"{'truth (last frame)':<{width}} | prediction"]
    return "\n".join(lines + [f"{a} | {b}" for a, b in zip(left, right)])
