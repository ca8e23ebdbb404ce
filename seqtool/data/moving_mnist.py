"""Moving MNIST (Srivastava et al. 2015), generated on the fly, and the readers it needs.

A sequence is ``num_digits`` glyphs (MNIST digits, or embedded shapes when no MNIST is given) bouncing
inside an ``image_size``² frame; frames combine the glyphs with a pixel-wise max::

    position p in [0, 1]², direction θ ~ U[0, 2π), each frame p += step_length · (cos θ, sin θ),
    reflected at the walls; the glyph's top-left corner is at p · (image_size - glyph_size)

Sequence i of a split comes from its own generator ``numpy.random.default_rng([seed, split, i])``, so a
split is fixed by its seed and the train stream's position is just the next index (exact resume).

Also here: the MNIST IDX reader, the Hugging Face loader (online only) and the .npy frame loader.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from seqtool.data.io import readable_file, writing
from seqtool.errors import UserError

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
EVAL_DIGITS = 2000  # held-out digits when one IDX file must give both training and evaluation digits
STANDARD_TEST_SHAPE = (20, 10000, 64, 64)  # mnist_test_seq.npy, laid out [T, N, H, W]
STANDARD_TEST_SHA256 = "c2a3e8d3939c001ab77bf543f130157424efa486bb4d0974d2cebb773b13f8b3"


@dataclass(frozen=True)
class MovingGlyphs:
    """Bouncing-glyph sequences; ``sequences(indices)`` is [N, T, H, W] uint8, the same for the same index."""

    glyphs: np.ndarray  # shape: [G, S, S] uint8, the digits or shapes to draw from
    image_size: int
    num_frames: int
    num_digits: int
    step_length: float
    seed: int
    split: str

    def sequence(self, index: int) -> np.ndarray:
        """Sequence `index` of this split. shape: [T, H, W] uint8"""
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index])
        size = self.glyphs.shape[1]
        frames = np.zeros((self.num_frames, self.image_size, self.image_size), dtype=np.uint8)
        for _ in range(self.num_digits):
            glyph = self.glyphs[rng.integers(len(self.glyphs))]
            for frame, (top, left) in zip(frames, self.trajectory(rng, self.image_size - size)):
                region = frame[top : top + size, left : left + size]
                np.maximum(region, glyph, out=region)
        return frames

    def trajectory(self, rng: np.random.Generator, canvas: int) -> np.ndarray:
        """Top-left corners of one glyph, reflected at the walls. shape: [T, 2] (row, column)"""
        position, theta = rng.random(2), rng.random() * 2 * np.pi
        velocity = np.array([np.sin(theta), np.cos(theta)])
        corners = np.empty((self.num_frames, 2), dtype=np.int64)
        for t in range(self.num_frames):
            position = position + velocity * self.step_length
            bounced = (position < 0) | (position > 1)
            velocity = np.where(bounced, -velocity, velocity)
            position = np.clip(position, 0.0, 1.0)
            corners[t] = (position * canvas).astype(np.int64)
        return corners

    def sequences(self, indices: range | list[int]) -> np.ndarray:
        """shape: [N, T, H, W] uint8"""
        return np.stack([self.sequence(index) for index in indices])


# ------------------------------------------------------------------------------------------ glyphs
def resize_glyphs(glyphs: np.ndarray, size: int) -> np.ndarray:
    """[G, S, S] uint8 -> [G, size, size] uint8 (antialiased bilinear)."""
    if glyphs.shape[1] == size:
        return glyphs
    images = torch.from_numpy(glyphs).float().unsqueeze(1)  # [G, 1, S, S]
    resized = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()


def shape_glyphs(size: int, supersample: int = 4) -> np.ndarray:
    """The embedded default: squares, circles and triangles, filled and outlined, 5 scales each.

    shape: [30, size, size] uint8 (drawn at `supersample`× and averaged, so the edges are antialiased)
    """
    n = size * supersample
    v, u = (np.mgrid[0:n, 0:n] + 0.5) / n * 2 - 1  # pixel centres in [-1, 1]², v pointing down

    def inside(kind: str, s: float) -> np.ndarray:
        if kind == "square":
            return np.maximum(abs(u), abs(v)) <= 0.75 * s
        if kind == "circle":
            return u**2 + v**2 <= s**2
        return (v <= 0.8 * s) & (abs(u) <= (v + s) / 1.8)  # triangle, apex up at (0, -s)

    masks = []
    for kind in ("square", "circle", "triangle"):
        for s in (0.55, 0.65, 0.75, 0.85, 0.95):
            masks += [inside(kind, s), inside(kind, s) & ~inside(kind, s - 0.3)]
    stacked = np.stack(masks).astype(np.float32).reshape(-1, size, supersample, size, supersample)
    return (stacked.mean(axis=(2, 4)) * 255).round().astype(np.uint8)


# ------------------------------------------------------------------------------------------ MNIST
def read_idx_images(path: Path) -> np.ndarray:
    """An IDX image file (magic 0x803, big-endian; gzipped or not). shape: [N, rows, cols] uint8"""
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    if len(data) < 16 or struct.unpack(">I", data[:4])[0] != 0x803:
        raise UserError(f"{path} is not an MNIST IDX image file (expected magic number 0x803)")
    count, rows, cols = struct.unpack(">III", data[4:16])
    if len(data) != 16 + count * rows * cols:
        raise UserError(
            f"{path} is truncated: {count}×{rows}×{cols} images need {16 + count * rows * cols} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def _find_idx(directory: Path, prefix: str) -> Path | None:
    for name in (f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"):
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def mnist_digits(path: str) -> dict[str, np.ndarray]:
    """Training and evaluation digits from a directory of IDX files (or one IDX file), each [N, 28, 28].

    train-images + t10k-images: train from the first, evaluation from the second. One file alone (the
    10,000 t10k digits, say): its last 2,000 digits are held out for evaluation, the rest train.
    """
    where = Path(path).expanduser()
    if where.is_file():
        train_file, eval_file = None, where
    elif where.is_dir():
        train_file, eval_file = _find_idx(where, "train"), _find_idx(where, "t10k")
    else:
        raise UserError(f"task.mnist_path={path}: no such file or directory")
    if train_file and eval_file:
        return {"train": read_idx_images(train_file), "eval": read_idx_images(eval_file)}
    only = train_file or eval_file
    if only is None:
        raise UserError(
            f"task.mnist_path={path}: no t10k-images-idx3-ubyte[.gz] or train-images-idx3-ubyte[.gz]"
        )
    return split_digits(read_idx_images(only), str(only))


def split_digits(images: np.ndarray, origin: str) -> dict[str, np.ndarray]:
    """The last EVAL_DIGITS images held out for evaluation, the rest for training."""
    if len(images) <= EVAL_DIGITS:
        raise UserError(f"{origin} has {len(images)} digits; need more than {EVAL_DIGITS} to hold some out")
    return {"train": images[:-EVAL_DIGITS], "eval": images[-EVAL_DIGITS:]}


def hub_digits(name: str) -> dict[str, np.ndarray]:
    """MNIST-like digits from a Hugging Face dataset ("image" column; train and test splits; online only)."""
    try:
        import datasets

        parts = {
            key: datasets.load_dataset(name, split=split)
            for key, split in [("train", "train"), ("eval", "test")]
        }
    except Exception as error:  # noqa: BLE001 - offline, unknown name, bad split all arrive as different types
        raise UserError(
            f"cannot load {name!r} from the Hugging Face hub ({type(error).__name__}); it needs network "
            "access, or give local IDX files with task.mnist_path=DIR"
        ) from None
    if "image" not in parts["train"].column_names:
        raise UserError(f"{name} has no 'image' column; it has {parts['train'].column_names}")
    return {
        key: np.stack([np.asarray(image.convert("L")) for image in part["image"]])
        for key, part in parts.items()
    }


# ------------------------------------------------------------------------------------------- .npy
def load_npy(path: str, *, what: str = "--input") -> np.ndarray:
    """A .npy array of frames, memory-mapped (mnist_test_seq.npy is 800 MB); not yet validated."""
    file = readable_file(path, what)
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:  # EOFError: an empty file
        raise UserError(f"{what} {path} is not a readable .npy array ({error})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise UserError(f"{what} {path} is an .npz archive; save one array with numpy.save")
    return array


def as_sequences(array: np.ndarray, *, what: str = "--input") -> tuple[np.ndarray, str]:
    """Sequences [N, T, H, W] and the layout they came in: "THW" (one sequence), "NTHW", or "TNHW", the
    standard mnist_test_seq.npy layout, recognised by its shape (20, 10000, 64, 64)."""
    if 0 in array.shape:
        raise UserError(f"{what} has shape {tuple(array.shape)}: it holds no sequences (an axis of length 0)")
    if array.ndim == 3:
        return array[None], "THW"
    if array.ndim == 4 and array.shape == STANDARD_TEST_SHAPE:
        return np.swapaxes(array, 0, 1), "TNHW"
    if array.ndim == 4:
        return array, "NTHW"
    raise UserError(
        f"{what} has shape {tuple(array.shape)}: expected [T, H, W] or [N, T, H, W] frames "
        "(or the standard [20, 10000, 64, 64] layout of mnist_test_seq.npy)"
    )


def save_sequences(frames: Tensor, layout: str, as_uint8: bool, path: Path) -> None:
    """frames [N, K, 1, H, W] in [0, 1] to .npy in the input's layout, uint8 (0-255) or float32 (0-1)."""
    array = frames[:, :, 0].numpy()  # [N, K, H, W]
    array = (array * 255).round().astype(np.uint8) if as_uint8 else array.astype(np.float32)
    if layout == "THW":
        array = array[0]
    elif layout == "TNHW":
        array = np.swapaxes(array, 0, 1)
    # np.save into a file truncates silently on a full disk (numpy does not check the short write), so
    # the array is serialised in memory and written with a checked write.
    buffer = io.BytesIO()
    np.save(buffer, array)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buffer.getvalue())


def to_unit_frames(array: np.ndarray, *, what: str = "--input") -> Tensor:
    """uint8 (0-255) or float (0-1) sequences [N, T, H, W] -> float32 frames [N, T, 1, H, W] in [0, 1]."""
    if array.dtype == np.uint8:
        return torch.from_numpy(np.array(array)).float().div_(255).unsqueeze(2)  # a copy: mmaps are read-only
    if not np.issubdtype(array.dtype, np.floating):
        raise UserError(f"{what} has dtype {array.dtype}: give uint8 frames (0-255) or float frames (0-1)")
    frames = torch.from_numpy(np.array(array, dtype=np.float32))
    if torch.isnan(frames).any():
        raise UserError(f"{what} contains NaN values")
    low, high = float(frames.min()), float(frames.max())
    if low < 0 or high > 1:
        raise UserError(
            f"{what} has float values in [{low:g}, {high:g}]: "
            "float frames must lie in [0, 1] (or give uint8 0-255)"
        )
    return frames.unsqueeze(2)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(Path(path).expanduser(), "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
