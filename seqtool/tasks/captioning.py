"""Image captioning: images and their reference captions, teacher-forced cross-entropy plus the model's
doubly stochastic penalty, and BLEU-1..4 (CIDEr-D when pycocoevalcap is installed) by decoding.

What the model sees of one (image, caption) pair, caption words w1..wn::

    images   [B, 3, S, S]          normalised; a random crop (and flip) in training, the centre crop otherwise
    tgt_in   <s> w1 ... wn <pad>   [B, T]
    tgt_out  w1 ... wn </s> <pad>  [B, T]   what each position predicts

Every reference caption is a training example. The endless train stream is a function of its position
(epoch = a fixed permutation of the examples by seed), so a checkpoint needs only that position.
Evaluation decodes each image once and scores it against all of its references.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqtool.by_length import refuse as refuse_by_length
from seqtool.data import captions as data
from seqtool.data import shapes
from seqtool.data.batching import pad
from seqtool.data.captions import BOS, EOS, PAD, ImageSet, WordVocab, tokenize
from seqtool.data.vocab import saved_vocabulary
from seqtool.decode.generate import Decoded, DecodeInput, Start, decode_batched
from seqtool.decode.output import Text
from seqtool.decode.settings import Beam, DecodeOptions, Greedy, SearchSettings
from seqtool.errors import UserError
from seqtool.metrics import caption_metrics, perplexity
from seqtool.progress import warn
from seqtool.tasks.base import Competence, Loss

VOCAB_FILE = Path("vocab") / "words.json"
Source = Literal["shapes", "flickr8k", "karpathy", "csv", "hf"]


@dataclass
class CaptionBatch:
    images: Tensor  # shape: [B, 3, S, S]
    tgt_in: Tensor  # shape: [B, T] BOS + caption ids
    tgt_out: Tensor  # shape: [B, T] caption ids + EOS
    index: list[int]  # the image of each row, in its split


class CaptioningTask:
    """Caption images; see conf/task/captioning.yaml for every option."""

    shape = "one-to-many"  # an image in, a caption out (seqtool.shapes)

    def __init__(
        self,
        *,
        data: Source,
        files: data.CaptionFiles,
        hub: data.CaptionHub,
        shapes: shapes.ShapesSource,
        image_size: int,
        resize_size: int,
        random_flip: bool,
        min_frequency: int,
        max_caption_length: int,
        max_images: int | None,
        batch_size: int,
        eval_batch_size: int,
        eval_beam: int,
        eval_max_len: int,
        eval_max_images: int | None,
        preview_images: int,
        seed: int,
    ) -> None:
        if data in ("flickr8k", "karpathy", "csv") and not files.captions:
            raise ValueError(
                f"task.data={data} needs task.files.captions (the captions file) and task.files.image_dir"
            )
        if data == "hf" and not hub.name:
            raise ValueError("task.data=hf needs task.hub.name")
        if resize_size < image_size or image_size < 8:
            raise ValueError(f"need 8 ≤ task.image_size ≤ task.resize_size, got {image_size}, {resize_size}")
        if min(batch_size, eval_batch_size, eval_beam, eval_max_len, max_caption_length, min_frequency) < 1:
            raise ValueError(
                "task batch sizes, eval_beam, eval_max_len, max_caption_length, min_frequency ≥ 1"
            )
        self.source, self.seed = data, seed
        self.image_dir = Path(files.image_dir) if files.image_dir else None
        self.captions_file = Path(files.captions) if files.captions else None
        self.splits_dir = Path(files.splits_dir) if files.splits_dir else None
        self.hub, self.shapes = hub, shapes
        self.image_size, self.resize_size, self.random_flip = image_size, resize_size, random_flip
        self.min_frequency, self.max_caption_length, self.max_images = (
            min_frequency,
            max_caption_length,
            max_images,
        )
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.eval_search = SearchSettings(Beam(size=eval_beam) if eval_beam > 1 else Greedy())
        self.eval_max_len, self.eval_max_images, self.preview_images = (
            eval_max_len,
            eval_max_images,
            preview_images,
        )
        self.device, self.run_dir, self.rank, self.world_size = torch.device("cpu"), Path("."), 0, 1
        self.position = 0  # train batches this rank has taken
        self.sets: dict[str, ImageSet] = {}
        self.scenes: dict[str, list[list[shapes.Shape]]] = {}
        self._entries: dict[str, list[data.Entry]] | None = None
        self._examples: list[tuple[int, list[int]]] | None = None
        self._epoch_orders: dict[int, Tensor] = {}

    # -------------------------------------------------------------------------------------- data
    def setup(
        self, run_dir: Path, *, rank: int = 0, world_size: int = 1, device: torch.device | None = None
    ) -> None:
        """Load the run's vocabulary, or read the train captions and build it. Images are read when a
        split is first needed, so decoding a run needs neither the data nor the image folder."""
        self.run_dir, self.rank, self.world_size = Path(run_dir), rank, world_size
        self.device = device or torch.device("cpu")
        path = self.run_dir / VOCAB_FILE
        if saved_vocabulary(self.run_dir, [path]):
            self.vocab = WordVocab.load(path)
            return
        self.vocab = WordVocab.build([tokenize(c) for cs in self.split("train").captions for c in cs],
                                     self.min_frequency)  # fmt: skip
        if rank == 0:
            self.vocab.save(path)

    def split(self, name: str) -> ImageSet:
        """The decoded images and captions of a split (read once)."""
        if name not in self.sets:
            if name not in data.SPLITS:
                raise UserError(f"the captioning task has splits train, val and test, not {name!r}")
            self.sets[name] = self._shapes(name) if self.source == "shapes" else self._read(name)
        return self.sets[name]

    def _shapes(self, name: str) -> ImageSet:
        generated = shapes.generate(
            self.seed, name, self._cap(self.shapes.sizes[name]), image_size=self.resize_size,
            max_objects=self.shapes.max_objects, captions_per_image=self.shapes.captions_per_image,
        )  # fmt: skip
        self.scenes[name] = generated.scenes
        names = [f"{name}/{i:05d}" for i in range(len(generated.captions))]
        return ImageSet(generated.images, generated.captions, names)

    def _cap(self, count: int) -> int:
        return count if self.max_images is None else min(count, self.max_images)

    def _read(self, name: str) -> ImageSet:
        if self._entries is None:
            self._entries = self._read_entries()
        entries = self._entries[name][: self._cap(len(self._entries[name]))]
        loaded = data.load_images(entries, self.image_dir, self.resize_size)
        if not loaded.names:
            raise UserError(
                f"the {name} split has no readable image with a caption ({len(entries)} named, "
                f"{len(loaded.missing)} not in task.files.image_dir={self.image_dir}, "
                f"{len(loaded.skipped)} unreadable)"
            )
        self._report(name, len(entries), loaded)
        return loaded

    def _read_entries(self) -> dict[str, list[data.Entry]]:
        if self.source == "hf":
            return data.read_hf(
                self.hub.name, self.hub.image_column, self.hub.captions_column, self.hub.splits
            )
        if self.image_dir is None or not self.image_dir.is_dir():
            raise UserError(
                f"task.files.image_dir={self.image_dir}: no such folder (the images of task.files.captions)"
            )
        if self.source == "flickr8k":
            return data.read_flickr8k(self.captions_file, self.splits_dir)
        if self.source == "karpathy":
            return data.read_karpathy(self.captions_file)
        return data.read_csv(self.captions_file, self.splits_dir)

    def _report(self, name: str, named: int, loaded: ImageSet) -> None:
        """Say what was skipped or converted (one line each); nothing when all was well."""
        if loaded.missing:
            warn(f"{name}: {len(loaded.missing)} of {named} images named by the captions are not in "
                 f"task.files.image_dir, skipped (e.g. {loaded.missing[0]})")  # fmt: skip
        if loaded.skipped:
            first, why = loaded.skipped[0]
            warn(f"{name}: {len(loaded.skipped)} unreadable images skipped (e.g. {first}: {why})")
        if loaded.empty_captions:
            warn(f"{name}: {loaded.empty_captions} empty captions skipped")
        if loaded.converted:
            modes = ", ".join(f"{count} {mode}" for mode, count in sorted(loaded.converted.items()))
            warn(f"{name}: converted to RGB: {modes} (RGBA over white)")

    def model_kwargs(self) -> dict[str, Any]:
        return {"vocab_size": len(self.vocab), "pad_index": PAD, "bos_index": BOS, "eos_index": EOS}

    def difficulty(self, example: tuple[int, list[int]]) -> float:
        """Caption length in words."""
        return float(len(example[1]))

    # ----------------------------------------------------------------------------------- batches
    def examples(self) -> list[tuple[int, list[int]]]:
        """Every train (image, caption ids) within task.max_caption_length, easiest first."""
        if self._examples is None:
            train = self.split("train")
            pairs = [(i, self.vocab.encode(tokenize(c))) for i, cs in enumerate(train.captions) for c in cs]
            kept = [pair for pair in pairs if len(pair[1]) <= self.max_caption_length]
            if not kept:
                raise UserError(
                    f"no train caption has at most task.max_caption_length={self.max_caption_length} words"
                )
            self._examples = sorted(kept, key=self.difficulty)
        return self._examples

    def batches(self, split: str, *, train: bool, competence: Competence | None = None):
        """The endless, resumable train stream, or one pass over a split (first reference of each image)."""
        if train:
            return self._train_batches(competence or (lambda: 1.0))
        images = self.split(split)
        index = list(range(len(images.names)))
        chunks = [index[s : s + self.eval_batch_size] for s in range(0, len(index), self.eval_batch_size)]
        return (self._collate(images, i, [self._ids(images.captions[j][0]) for j in i], None) for i in chunks)

    def _ids(self, caption: str) -> list[int]:
        return self.vocab.encode(tokenize(caption))

    def _train_batches(self, competence: Competence) -> Iterator[CaptionBatch]:
        while True:
            picked = self._batch_examples(self.position, competence())
            generator = torch.Generator().manual_seed(
                self.seed * 1_000_003 + self.position * self.world_size + self.rank
            )
            self.position += 1
            yield self._collate(
                self.split("train"), [i for i, _ in picked], [ids for _, ids in picked], generator
            )

    def _batch_examples(self, position: int, competence: float) -> list[tuple[int, list[int]]]:
        """Epochs of seeded permutations (ranks interleave); with competence c < 1, a seeded draw from the
        easiest ceil(c · N) examples (Platanios et al. 2019)."""
        examples, size = self.examples(), self.batch_size
        if competence < 1.0:
            pool = max(size, math.ceil(competence * len(examples)))
            draw = torch.Generator().manual_seed(self.seed + 7919 * (position * self.world_size + self.rank))
            return [
                examples[i] for i in torch.randint(min(pool, len(examples)), (size,), generator=draw).tolist()
            ]
        start = (position * self.world_size + self.rank) * size
        return [examples[int(self._epoch_order(k // len(examples))[k % len(examples)])]
                for k in range(start, start + size)]  # fmt: skip

    def _epoch_order(self, epoch: int) -> Tensor:
        if epoch not in self._epoch_orders:
            self._epoch_orders = {epoch: torch.randperm(len(self.examples()),
                                  generator=torch.Generator().manual_seed(self.seed + epoch))}  # fmt: skip
        return self._epoch_orders[epoch]

    def _collate(self, images: ImageSet, index: list[int], ids: list[list[int]], generator) -> CaptionBatch:
        pixels = self._pixels(images.images[index], train=generator is not None, generator=generator)
        tgt_in, tgt_out = pad([[BOS] + row for row in ids], PAD), pad([row + [EOS] for row in ids], PAD)
        return CaptionBatch(pixels, tgt_in.to(self.device), tgt_out.to(self.device), index)

    def _pixels(self, images: np.ndarray, *, train: bool = False, generator=None) -> Tensor:
        return data.to_model_input(
            images, image_size=self.image_size, train=train, flip=self.random_flip, generator=generator
        ).to(self.device)

    # ------------------------------------------------------------------------------ loss, metrics
    def loss(self, model: nn.Module, batch: CaptionBatch) -> Loss:
        """Σ over captions of -log p(caption | image) + λ Σ_i (1 - Σ_t α_ti)², over the number of words."""
        out = model(batch.images, batch.tgt_in)
        nll = F.cross_entropy(out.logits.flatten(0, 1).float(), batch.tgt_out.flatten(), ignore_index=PAD,
                              reduction="sum")  # fmt: skip
        return Loss(total=nll + out.penalty.float().sum(), count=int((batch.tgt_out != PAD).sum()))

    def evaluate(
        self, model: nn.Module, split: str, search: SearchSettings | None = None, by_length: Any = None
    ) -> dict[str, float]:
        """loss and perplexity (teacher forcing, every reference), then bleu1..4, exact_match (0-100, a
        hypothesis equal to any reference), cider_d (with pycocoevalcap) by decoding each image once;
        on shapes also scene_agreement (0-100: captions that are true to their scene, see shapes.agrees).
        search None (training): at most task.eval_max_images images, decoded with task.eval_beam."""
        if by_length is not None:
            refuse_by_length("captioning")
        images = self.split(split)
        count = len(images.names)
        if search is None and self.eval_max_images is not None:
            count = min(count, self.eval_max_images)
        search = self.eval_search if search is None else search.with_default(self.eval_search.strategy)
        total, words = 0.0, 0
        with torch.no_grad():
            for start in range(0, count, self.eval_batch_size):
                index = list(range(start, min(start + self.eval_batch_size, count)))
                rows = [(i, self._ids(c)) for i in index for c in images.captions[i]]
                batch = self._collate(images, [i for i, _ in rows], [ids for _, ids in rows], None)
                logits = model(batch.images, batch.tgt_in).logits  # the NLL alone: no penalty
                total += float(F.cross_entropy(logits.flatten(0, 1).float(), batch.tgt_out.flatten(),
                                               ignore_index=PAD, reduction="sum"))  # fmt: skip
                words += int((batch.tgt_out != PAD).sum())
        found = self.caption(model, images.images[:count], search)
        hypotheses = [self.vocab.decode(c.tokens[0]) for c in found]
        references = [[" ".join(tokenize(r)) for r in refs] for refs in images.captions[:count]]
        self._write_hypotheses(split, images.names[:count], hypotheses)
        mean = total / max(words, 1)
        metrics = {"loss": mean, "perplexity": perplexity(mean), **caption_metrics(hypotheses, references)}
        if self.source == "shapes":  # true to the scene in any order, not only in a reference's
            true = sum(shapes.agrees(h, scene) for h, scene in zip(hypotheses, self.scenes[split]))
            metrics["scene_agreement"] = 100.0 * true / max(count, 1)
        return metrics

    def _write_hypotheses(self, split: str, names: list[str], hypotheses: list[str]) -> None:
        path = self.run_dir / "hypotheses" / f"{split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{n}\t{h}\n" for n, h in zip(names, hypotheses)), encoding="utf-8")

    # ------------------------------------------------------------------------------------ decode
    decode_output = Text(labelled=True)  # NAME<TAB>caption
    default_strategy = Beam(size=5)
    end_token = EOS

    def caption(self, model: nn.Module, images: np.ndarray, search: SearchSettings) -> list[Decoded]:
        """n-best captions of uint8 images [N, S, S, 3] (centre crop), in batches, by the shared search."""
        return self.decode(
            model, [DecodeInput(str(n), image, 1, n) for n, image in enumerate(images)], search
        )

    def decode_inputs(
        self, model: nn.Module, options: DecodeOptions, search: SearchSettings
    ) -> Iterator[list[DecodeInput]]:
        """--input's images (a file or a folder), or the first --num val images; --num copies of each
        when sampling."""
        names, images = self._decode_images(options)
        copies = search.strategy.copies(options.num)
        yield [DecodeInput(name, image, 1, n, copy)
               for n, (name, image) in enumerate(zip(names, images)) for copy in range(copies)]  # fmt: skip

    def _decode_images(self, options: DecodeOptions) -> tuple[list[str], np.ndarray]:
        """The names and uint8 images [N, S, S, 3] to caption: --input's, or the first --num val images."""
        if options.input is None:
            val = self.split("val")
            count = min(options.num, len(val.names))
            return val.names[:count], val.images[:count]
        if options.input == "-":
            raise UserError(
                "captioning reads images: give --input IMAGE or --input FOLDER, not standard input"
            )
        return data.read_image_input(Path(options.input), self.resize_size)

    def decode(self, model: nn.Module, inputs: list[DecodeInput], search: SearchSettings) -> list[Decoded]:
        return decode_batched(model, inputs, search, start=self._start, budget=self.eval_batch_size)

    def _start(self, model: nn.Module, inputs: list[DecodeInput], search: SearchSettings) -> Start:
        """Encode the images' feature grids; every caption starts at BOS."""
        pixels = self._pixels(np.stack([item.value for item in inputs]))  # shape: [B, 3, S, S]
        first = torch.full((pixels.size(0),), BOS, dtype=torch.long, device=pixels.device)  # shape: [B]
        state = model.init_state(model.encode(pixels), pixels.size(0))
        return Start(state, first, search.max_len or self.eval_max_len, EOS)

    def render(self, item: DecodeInput, tokens: list[int]) -> str:
        return self.vocab.decode(tokens)

    def plot_attention(self, item: DecodeInput, decoded: Decoded, directory: Path) -> int:
        """The (centre-cropped) image and each word's attention over it, as <n>_<name>.png."""
        if decoded.attention is None:
            return 0
        from seqtool.plots import plot_attention_overlay

        start = (self.resize_size - self.image_size) // 2
        crop = item.value[start : start + self.image_size, start : start + self.image_size]
        weights = decoded.attention[0]  # shape: [steps, L], the last row is the EOS step's
        words = self.vocab.tokens(decoded.tokens[0])
        words += ["</s>"] * (weights.shape[0] - len(words))
        grid = math.isqrt(weights.shape[1])
        stem = Path(item.label).stem if Path(item.label).suffix else item.label.replace("/", "_")
        plot_attention_overlay(
            crop, words, weights.view(-1, grid, grid), directory / f"{item.index:04d}_{stem}.png"
        )
        return 1

    def preview(self, model: nn.Module) -> str:
        """A few val images as `name: hypothesis (reference: ...)` lines."""
        images = self.split("val")
        count = min(self.preview_images, len(images.names))
        found = self.caption(model, images.images[:count], self.eval_search)
        return "".join(f"{images.names[i]}: {self.vocab.decode(found[i].tokens[0])} "
                       f"(reference: {images.captions[i][0]})\n" for i in range(count))  # fmt: skip

    # ------------------------------------------------------------------------------ resumability
    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])
