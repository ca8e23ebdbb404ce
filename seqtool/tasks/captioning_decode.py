"""`seqtool decode` for the captioning task: read images (a file, a folder, or the first val images),
caption them through the shared search, print the captions, draw the attention overlays.

    NAME<TAB>caption                   one line per image
    NAME<TAB>SCORE<TAB>caption         one line per hypothesis with --nbest N (beam) or --num N (sampling)

An unreadable file in a folder is skipped and counted (a warning); when nothing is readable, or --input
is one unreadable file, it is a user error.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from seqtool.data import captions as data
from seqtool.data.io import write_output
from seqtool.decode.settings import DecodeOptions, check_nbest
from seqtool.errors import UserError
from seqtool.progress import warn


def run_decode(task: Any, model: nn.Module, options: DecodeOptions) -> None:
    search = options.search if options.search.strategy else replace(options.search, strategy="beam")
    check_nbest(search)
    names, images = read_images(task, options)
    copies = options.num if search.strategy == "sample" else 1
    found = task.caption(model, np.repeat(images, copies, axis=0), search)
    several = copies > 1 or (search.strategy == "beam" and search.nbest > 1)
    lines = []
    for n, name in enumerate(names):
        for result in found[n * copies : (n + 1) * copies]:
            for tokens, score in zip(result.tokens, result.scores):
                text = task.vocab.decode(tokens)
                lines.append(f"{name}\t{score:.4f}\t{text}" if several else f"{name}\t{text}")
                if not several:
                    break
    write_output("".join(line + "\n" for line in lines), options.output)
    if options.plot_dir is not None:
        plot(task, names, images, [found[n * copies] for n in range(len(names))], options.plot_dir)


def read_images(task: Any, options: DecodeOptions) -> tuple[list[str], np.ndarray]:
    """The names and uint8 images [N, S, S, 3] to caption: --input's, or the first --num val images."""
    if options.input is None:
        val = task.split("val")
        count = min(options.num, len(val.names))
        return val.names[:count], val.images[:count]
    if options.input == "-":
        raise UserError("captioning reads images: give --input IMAGE or --input FOLDER, not standard input")
    files = data.image_files(Path(options.input))
    names, arrays, skipped, notes = [], [], [], Counter()
    for file in files:
        try:
            arrays.append(data.load_resized(file, task.resize_size, notes))
            names.append(str(file))
        except data.BadImage as error:
            skipped.append((file, error))
    if not arrays:
        first, why = skipped[0]
        raise UserError(
            f"--input {options.input}: no readable image ({len(skipped)} skipped; {first}: {why})"
        )
    if skipped:
        first, why = skipped[0]
        warn(f"{len(skipped)} unreadable images skipped (e.g. {first}: {why})")
    if notes:
        warn("converted to RGB: " + ", ".join(f"{n} {mode}" for mode, n in sorted(notes.items())))
    return names, np.stack(arrays)


def plot(task: Any, names: list[str], images: np.ndarray, found: list[Any], directory: Path) -> None:
    """One PNG per image: the (centre-cropped) image and each word's attention map over it."""
    from seqtool.plots import plot_attention_overlay

    if found and found[0].attention is None:
        warn("this model has no attention (model.attention=none), so --plot-attention wrote nothing")
        return
    start = (task.resize_size - task.image_size) // 2
    crops = images[:, start : start + task.image_size, start : start + task.image_size]
    for n, (name, crop, result) in enumerate(zip(names, crops, found)):
        weights = result.attention[0]  # [steps, L]: the last row is the EOS step's
        words = task.vocab.tokens(result.tokens[0])
        words += ["</s>"] * (weights.shape[0] - len(words))
        grid = math.isqrt(weights.shape[1])
        stem = Path(name).stem if Path(name).suffix else name.replace("/", "_")
        plot_attention_overlay(crop, words, weights.view(-1, grid, grid), directory / f"{n:04d}_{stem}.png")
