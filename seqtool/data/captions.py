"""Captioning data from files: the Flickr8k text release, Karpathy's split JSON, an `image,caption` CSV, a
Hugging Face dataset; a word vocabulary; image loading (PIL) and the transforms.

Every reader gives the same thing, per split, a list of entries (image name or object, its captions)::

    Flickr8k.token.txt    1000268201_693b08cb0e.jpg#0<TAB>A child in a pink dress is climbing ...
                          + Flickr_8k.{train,dev,test}Images.txt (one image name a line) -> train/val/test
    dataset_flickr8k.json {"images": [{"filename", "filepath"?, "split": train|restval|val|test,
                          "sentences": [{"raw": ...}, ...]}, ...]}   (restval joins train)
    captions.csv          image,caption (header), one row per caption; split by the Flickr8k lists when
                          splits_dir is given, else every 10th image (sorted by name) to val, the next to test

Images are decoded once, converted to RGB (grayscale, palette and RGBA too: alpha over white) and resized
to resize_size × resize_size; an unreadable or missing image is skipped and counted, never a crash.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqtool.data.vocab import BOS, EOS, PAD, SPECIALS, UNK  # noqa: F401 - the one set, re-exported
from seqtool.errors import UserError

SPLITS = ("train", "val", "test")
FLICKR8K_LISTS = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt",
                  "test": "Flickr_8k.testImages.txt"}  # fmt: skip
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class Entry:
    image: Any  # a file name under image_dir, a path, or an image object (PIL, HF {"bytes"/"path"})
    captions: list[str]
    name: str = ""  # what decode output and messages call it

    def __post_init__(self):
        self.name = self.name or str(self.image)


# ---------------------------------------------------------------------------------------------- words


@dataclass(frozen=True)
class CaptionFiles:
    """task.files: captions and their images on disk (task.data flickr8k, karpathy or csv)."""

    image_dir: str | None  # the folder of images the captions name
    captions: str | None  # flickr8k: Flickr8k.token.txt[.gz]; karpathy: the JSON; csv: `image,caption`
    splits_dir: str | None  # the Flickr_8k.{train,dev,test}Images.txt lists


@dataclass(frozen=True)
class CaptionHub:
    """task.hub: a Hugging Face dataset (hub name, or a folder saved with save_to_disk)."""

    name: str | None
    image_column: str
    captions_column: str  # one string or a list of strings per row
    train_split: str
    val_split: str
    test_split: str | None

    @property
    def splits(self) -> dict[str, str | None]:
        return {"train": self.train_split, "val": self.val_split, "test": self.test_split}


def tokenize(text: str) -> list[str]:
    """Lowercased words and numbers; punctuation dropped (as in Karpathy's preprocessing)."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


class WordVocab:
    """Words <-> ids, the four specials first, then by falling frequency in the train captions."""

    def __init__(self, words: list[str]) -> None:
        self.words = list(words)
        self.index = {word: i for i, word in enumerate(self.words)}

    @classmethod
    def build(cls, captions: list[list[str]], min_frequency: int) -> WordVocab:
        counts = Counter(word for caption in captions for word in caption)
        kept = sorted((w for w, n in counts.items() if n >= min_frequency), key=lambda w: (-counts[w], w))
        return cls(SPECIALS + kept)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: list[str]) -> list[int]:
        return [self.index.get(token, UNK) for token in tokens]

    def tokens(self, ids: list[int]) -> list[str]:
        return [self.words[i] for i in ids]

    def decode(self, ids: list[int]) -> str:
        """The words of ids joined by spaces; pad, BOS and EOS left out (<unk> stays visible)."""
        return " ".join(self.words[i] for i in ids if i not in (PAD, BOS, EOS))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"kind": "word", "words": self.words}, ensure_ascii=False), "utf-8")

    @classmethod
    def load(cls, path: Path) -> WordVocab:
        try:
            words = json.loads(path.read_text(encoding="utf-8"))["words"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserError(f"{path} is not a seqtool word vocabulary ({error})") from None
        if not isinstance(words, list) or words[: len(SPECIALS)] != SPECIALS:
            raise UserError(f"{path} is not a seqtool word vocabulary (it must start with {SPECIALS})")
        return cls(words)


# -------------------------------------------------------------------------------------------- readers


def _open_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise UserError(f"{what}={path}: no such file")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{what}={path} cannot be read as UTF-8 text ({error})") from None


def _split_lists(splits_dir: Path) -> dict[str, str]:
    """image name -> split, from the Flickr_8k.{train,dev,test}Images.txt lists in splits_dir."""
    split_of: dict[str, str] = {}
    for split, file in FLICKR8K_LISTS.items():
        for line in _open_text(splits_dir / file, "task.files.splits_dir").splitlines():
            if line.strip():
                split_of[line.strip()] = split
    return split_of


def _group(rows: list[tuple[str, str]], split_of, what: str) -> dict[str, list[Entry]]:
    """(image, caption) rows -> entries per split; `split_of(image)` names the split (or None: dropped)."""
    captions: dict[str, list[str]] = {}
    for image, caption in rows:
        captions.setdefault(image, []).append(caption)
    splits: dict[str, list[Entry]] = {split: [] for split in SPLITS}
    for image in sorted(captions):
        split = split_of(image)
        if split is not None:
            splits[split].append(Entry(image, captions[image]))
    if not any(splits.values()):
        raise UserError(f"{what}: no image is in a split (are the split lists for these captions?)")
    return splits


def read_flickr8k(token_file: Path, splits_dir: Path | None) -> dict[str, list[Entry]]:
    """Flickr8k.token.txt[.gz] (`NAME.jpg#k<TAB>caption`) with the split lists (default: its folder)."""
    text = _open_text(token_file, "task.files.captions")
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        if not tab or "#" not in key:
            raise UserError(f"{token_file} line {number} is not `IMAGE#k<TAB>caption`: {line[:60]!r}")
        rows.append((key.rsplit("#", 1)[0], caption))
    split_of = _split_lists(splits_dir or token_file.parent)
    return _group(rows, split_of.get, str(token_file))


def read_karpathy(json_file: Path) -> dict[str, list[Entry]]:
    """A Karpathy split file (dataset_flickr8k.json, dataset_coco.json ...); restval joins train."""
    try:
        images = json.loads(_open_text(json_file, "task.files.captions"))["images"]
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{json_file} is not a Karpathy split JSON with an 'images' list ({error})") from None
    if not isinstance(images, list):
        kind = type(images).__name__
        raise UserError(f"{json_file} is not a Karpathy split JSON: its 'images' is a {kind}, not a list")
    splits: dict[str, list[Entry]] = {split: [] for split in SPLITS}
    for number, image in enumerate(images):
        try:
            name = str(Path(image.get("filepath", "")) / image["filename"])
            split = {"restval": "train"}.get(image["split"], image["split"])
            sentences = [s.get("raw") or " ".join(s.get("tokens", [])) for s in image["sentences"]]
        except (KeyError, TypeError, AttributeError) as error:
            raise UserError(
                f"{json_file}: image {number} lacks filename, split or sentences ({error})"
            ) from None
        if split in splits:
            splits[split].append(Entry(name, sentences))
    return splits


def read_csv(csv_file: Path, splits_dir: Path | None) -> dict[str, list[Entry]]:
    """`image,caption` rows (flickr8k_1k's captions.txt); split by the Flickr8k lists in splits_dir when
    given, else every 10th image (by name) to val and the one after it to test."""
    reader = csv.reader(io.StringIO(_open_text(csv_file, "task.files.captions")))
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header[:2]] != ["image", "caption"]:
        raise UserError(f"{csv_file} must start with the header `image,caption`, got {header}")
    rows = [(row[0], ",".join(row[1:])) for row in reader if row]
    if splits_dir is not None:
        return _group(rows, _split_lists(splits_dir).get, str(csv_file))
    order = {name: i for i, name in enumerate(sorted({image for image, _ in rows}))}
    return _group(rows, lambda image: {8: "val", 9: "test"}.get(order[image] % 10, "train"), str(csv_file))


def read_hf(name: str, image_column: str, captions_column: str, splits: dict[str, str | None]):
    """A Hugging Face dataset (hub name, or a folder saved with save_to_disk) with an image column and a
    captions column (one string or a list of strings per row)."""
    try:
        import datasets
    except ImportError:
        raise UserError("task.hub.name needs the `datasets` package: pip install datasets") from None
    out: dict[str, list[Entry]] = {split: [] for split in SPLITS}
    try:
        if Path(name).is_dir():
            loaded = datasets.load_from_disk(name)
            get = lambda split: loaded[split]  # noqa: E731
        else:
            get = lambda split: datasets.load_dataset(name, split=split)  # noqa: E731
        for split, hf_split in splits.items():
            if hf_split is None:
                continue
            table = get(hf_split)
            for column in (image_column, captions_column):
                if column not in table.column_names:
                    raise UserError(f"{name} [{hf_split}] has no column {column!r} ({table.column_names})")
            for i, row in enumerate(table):
                captions = row[captions_column]
                captions = [captions] if isinstance(captions, str) else list(captions or [])
                out[split].append(Entry(row[image_column], captions, name=f"{hf_split}/{i}"))
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - offline, unknown dataset, missing split: all the user's
        raise UserError(f"task.hub.name={name}: cannot load it ({type(error).__name__}: {error})") from None
    return out


# --------------------------------------------------------------------------------------------- images


class BadImage(Exception):
    """An image that cannot be decoded (corrupt, truncated, not an image)."""


def open_rgb(source: Any, notes: Counter | None = None):
    """A PIL image in RGB from a path, bytes, a PIL image or an HF {"bytes", "path"} dict. Grayscale and
    palette images are converted; RGBA goes over white. Counts what it converted in `notes`."""
    from PIL import Image, UnidentifiedImageError

    try:
        if isinstance(source, dict):
            source = source.get("bytes") or source.get("path")
        if isinstance(source, bytes):
            source = io.BytesIO(source)
        image = source if isinstance(source, Image.Image) else Image.open(source)
        image.load()  # decode now: a truncated file fails here, not later
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise BadImage(f"{type(error).__name__}: {error}") from None
    if image.mode == "RGB":
        return image
    if notes is not None:
        notes[{"L": "grayscale", "I;16": "grayscale", "I": "grayscale"}.get(image.mode, image.mode)] += 1
    if image.mode in ("I;16", "I", "F"):  # 16-bit or float grey: scale to 8 bits before converting
        grey = np.asarray(image, dtype=np.float64)
        image = Image.fromarray((255 * grey / max(grey.max(), 1)).astype(np.uint8))
    if "A" in image.getbands() or image.mode == "P" and "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def load_resized(source: Any, size: int, notes: Counter | None = None) -> np.ndarray:
    """An image as RGB resized to size × size. shape: [size, size, 3] uint8; BadImage if unreadable."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, (str, Path)):
        if not Path(source).is_file():
            raise BadImage(f"no such file: {source}")
        try:
            source = Image.open(source)
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise BadImage(f"{type(error).__name__}: {error}") from None
        if source.format == "JPEG":
            source.draft("RGB", (size, size))  # decode at a reduced scale: several times faster
    image = open_rgb(source, notes)
    return np.asarray(image.resize((size, size), Image.BILINEAR, reducing_gap=2.0))


@dataclass
class ImageSet:
    """The readable images of a split, decoded and resized once, with their captions."""

    images: np.ndarray  # shape: [N, S, S, 3] uint8
    captions: list[list[str]]  # [N][raw captions]
    names: list[str]  # [N]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why) of the unreadable
    missing: list[str] = field(default_factory=list)  # names the captions give but the folder lacks
    empty_captions: int = 0
    converted: Counter = field(default_factory=Counter)  # mode -> images converted to RGB


def load_images(entries: list[Entry], image_dir: Path | None, size: int) -> ImageSet:
    """Decode each entry's image (under image_dir when it is a name); skip and count the missing, the
    unreadable and the empty captions."""
    arrays, captions, names = [], [], []
    result = ImageSet(np.zeros((0, size, size, 3), np.uint8), [], [])
    for entry in entries:
        kept = [c.strip() for c in entry.captions if isinstance(c, str) and tokenize(c)]
        result.empty_captions += len(entry.captions) - len(kept)
        if not kept:
            continue
        source = entry.image
        if isinstance(source, str) and image_dir is not None:
            source = image_dir / source
            if not source.is_file():
                result.missing.append(entry.name)
                continue
        try:
            arrays.append(load_resized(source, size, result.converted))
        except BadImage as error:
            result.skipped.append((entry.name, str(error)))
            continue
        captions.append(kept)
        names.append(entry.name)
    if arrays:
        result.images = np.stack(arrays)
    result.captions, result.names = captions, names
    return result


def image_files(path: Path) -> list[Path]:
    """--input as a list of image files: the file itself, or a folder's images sorted by name."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"--input {path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return files
    raise UserError(f"--input {path}: no such file or folder")


# ----------------------------------------------------------------------------------------- transforms


def read_image_input(path: Path, size: int) -> tuple[list[str], np.ndarray]:
    """`seqtool decode --input` for captioning: the names and uint8 images [N, size, size, 3] of an image
    or a folder. Unreadable files in a folder are skipped and counted (a warning); when none is
    readable it is a UserError."""
    from seqtool.progress import warn

    names, arrays, skipped, notes = [], [], [], Counter()
    for file in image_files(path):
        try:
            arrays.append(load_resized(file, size, notes))
            names.append(str(file))
        except BadImage as error:
            skipped.append((file, error))
    if not arrays:
        first, why = skipped[0]
        raise UserError(f"--input {path}: no readable image ({len(skipped)} skipped; {first}: {why})")
    if skipped:
        first, why = skipped[0]
        warn(f"{len(skipped)} unreadable images skipped (e.g. {first}: {why})")
    if notes:
        warn("converted to RGB: " + ", ".join(f"{n} {mode}" for mode, n in sorted(notes.items())))
    return names, np.stack(arrays)


def crop_boxes(count: int, source: int, target: int, *, train: bool, generator: torch.Generator | None):
    """Top-left corners [count, 2] of target × target crops of source × source images: random in
    training, the centre otherwise."""
    if not train or source == target:
        return torch.full((count, 2), (source - target) // 2, dtype=torch.long)
    return torch.randint(0, source - target + 1, (count, 2), generator=generator)


def to_model_input(
    images: np.ndarray,
    *,
    image_size: int,
    train: bool,
    flip: bool,
    generator: torch.Generator | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> Tensor:
    """uint8 images [B, S, S, 3] -> normalised floats [B, 3, image_size, image_size]: a random crop and
    (when flip) a random horizontal flip in training, the centre crop otherwise."""
    batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # [B, 3, S, S]
    corners = crop_boxes(len(batch), batch.shape[-1], image_size, train=train, generator=generator)
    crops = [
        image[:, y : y + image_size, x : x + image_size] for image, (y, x) in zip(batch, corners.tolist())
    ]
    out = torch.stack(crops).float().div_(255)  # [B, 3, h, w]
    if train and flip:
        flipped = torch.rand(len(out), generator=generator) < 0.5
        out[flipped] = out[flipped].flip(-1)
    mean_t, std_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return (out - mean_t) / std_t
