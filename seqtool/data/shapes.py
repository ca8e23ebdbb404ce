"""The embedded captioning data: images of one to three coloured shapes, with captions from a small grammar.

A scene puts each shape in its own cell of a 3×3 grid (a little jitter inside the cell), so any two shapes
are apart along x or along y by at least one cell, and the words for where they are mean one thing::

    +-----+-----+-----+      columns differ -> "to the left of" / "to the right of"
    |  ●  |     |     |      same column    -> "above" / "below"
    +-----+-----+-----+
    |     |     |  ▲  |      a shape is "small" or (unnamed) large; colours and kinds never repeat
    +-----+-----+-----+      within a scene, so "the blue square" names one shape
    |     |  ■  |     |
    +-----+-----+-----+

Captions (the first is the canonical one, shapes in reading order; the others reorder them)::

    one shape:    a red circle
    two shapes:   a red circle to the left of a small blue square
    three shapes: a red circle to the left of a small blue square and a green triangle below it

Scene i of a split depends only on (seed, split, i): the same data in every run, on every machine.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from dataclasses import dataclass

import numpy as np

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 70),
    "blue": (50, 100, 240),
    "yellow": (235, 215, 40),
    "purple": (160, 60, 200),
}
KINDS = ("circle", "square", "triangle")
SIZES = ("small", "large")
GRID = 3  # cells per side


@dataclass(frozen=True)
class ShapesSource:
    """task.shapes: the generated scenes; scene i of a split is the same in every run (by seed)."""

    train_size: int  # images per split
    val_size: int
    test_size: int
    max_objects: int  # 1 to 3 shapes per image
    captions_per_image: int  # references per image (the shapes in different orders)

    def __post_init__(self) -> None:
        if not 1 <= self.max_objects <= 3:
            raise ValueError("task.shapes.max_objects must be 1, 2 or 3")

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": self.train_size, "val": self.val_size, "test": self.test_size}


@dataclass(frozen=True)
class Shape:
    kind: str  # circle | square | triangle
    colour: str  # a key of COLOURS
    size: str  # small | large
    x: float  # centre, pixels from the left
    y: float  # centre, pixels from the top
    cell: tuple[int, int]  # (row, column) in the 3×3 grid

    def words(self, *, definite: bool = False) -> str:
        """'a small red circle' (or 'the red circle' once it has been introduced)."""
        if definite:
            return f"the {self.colour} {self.kind}"
        size = "small " if self.size == "small" else ""
        return f"a {size}{self.colour} {self.kind}"


def relation(a: Shape, b: Shape) -> str:
    """Where a is with respect to b: by column when the columns differ, else by row."""
    if a.cell[1] != b.cell[1]:
        return "to the left of" if a.cell[1] < b.cell[1] else "to the right of"
    return "above" if a.cell[0] < b.cell[0] else "below"


def describe(shapes: list[Shape]) -> str:
    """One caption of the shapes in the given order (the second one is the anchor of a third)."""
    first = shapes[0].words()
    if len(shapes) == 1:
        return first
    caption = f"{first} {relation(shapes[0], shapes[1])} {shapes[1].words()}"
    if len(shapes) == 3:
        caption += f" and {shapes[2].words()} {relation(shapes[2], shapes[1])} it"
    return caption


def captions(shapes: list[Shape], count: int) -> list[str]:
    """Up to `count` distinct captions: reading order first, then the other orders of the shapes."""
    reading = sorted(shapes, key=lambda s: s.cell)
    found: list[str] = []
    for order in itertools.permutations(reading):
        caption = describe(list(order))
        if caption not in found:
            found.append(caption)
        if len(found) == count:
            break
    return found


def _rng(seed: int, split: str, index: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}/{split}/{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def scene(seed: int, split: str, index: int, *, image_size: int, max_objects: int) -> list[Shape]:
    """The shapes of scene `index` of a split: 1..max_objects, distinct cells, colours and kinds."""
    rng = _rng(seed, split, index)
    count = rng.randint(1, max_objects)
    cells = rng.sample([(r, c) for r in range(GRID) for c in range(GRID)], count)
    looks = rng.sample([(k, c) for k in KINDS for c in COLOURS], count)
    cell_size = image_size / GRID
    shapes = []
    for (row, column), (kind, colour) in zip(cells, looks):
        jitter = cell_size * 0.1
        x = (column + 0.5) * cell_size + rng.uniform(-jitter, jitter)
        y = (row + 0.5) * cell_size + rng.uniform(-jitter, jitter)
        shapes.append(Shape(kind, colour, rng.choice(SIZES), x, y, (row, column)))
    return shapes


def radius(shape: Shape, image_size: int) -> float:
    """Half the side of a shape's bounding box, in pixels (it always stays inside its cell)."""
    cell_size = image_size / GRID
    return cell_size * (0.2 if shape.size == "small" else 0.38)


def render(shapes: list[Shape], image_size: int) -> np.ndarray:
    """The scene as an RGB image on black. shape: [H, W, 3] uint8"""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (image_size, image_size))
    draw = ImageDraw.Draw(image)
    for shape in shapes:
        r, x, y, fill = radius(shape, image_size), shape.x, shape.y, COLOURS[shape.colour]
        if shape.kind == "circle":
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
        elif shape.kind == "square":
            draw.rectangle([x - r, y - r, x + r, y + r], fill=fill)
        else:  # an upward triangle in the same box
            draw.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=fill)
    return np.asarray(image)


@dataclass
class ShapesSplit:
    images: np.ndarray  # shape: [N, H, W, 3] uint8
    captions: list[list[str]]  # [N][captions of image n]
    scenes: list[list[Shape]]  # [N][shapes]


def generate(
    seed: int, split: str, size: int, *, image_size: int, max_objects: int, captions_per_image: int
) -> ShapesSplit:
    """`size` scenes of a split, rendered, with their captions."""
    scenes = [scene(seed, split, i, image_size=image_size, max_objects=max_objects) for i in range(size)]
    images = np.stack([render(shapes, image_size) for shapes in scenes]) if scenes else np.zeros((0,))
    return ShapesSplit(images, [captions(shapes, captions_per_image) for shapes in scenes], scenes)


# ------------------------------------------------------------------------------- reading captions back

_SHAPE = r"an? (?P<{0}size>small )?(?P<{0}colour>\w+) (?P<{0}kind>circle|square|triangle)"
_RELATION = r"(?P<{0}>to the left of|to the right of|above|below)"
CAPTION = re.compile(
    "^"
    + _SHAPE.format("a")
    + "(?: "
    + _RELATION.format("ab")
    + " "
    + _SHAPE.format("b")
    + "(?: and "
    + _SHAPE.format("c")
    + " "
    + _RELATION.format("cb")
    + " it)?)?$"
)


def parse(caption: str) -> tuple[list[tuple[str, str, str]], list[tuple[int, str, int]]] | None:
    """A caption of the grammar as its shapes [(size, colour, kind)] and relations [(i, relation, j)];
    None when it is not a sentence of the grammar."""
    match = CAPTION.match(caption)
    if match is None:
        return None
    shapes, relations = [], []
    for name in "abc":
        if match.group(f"{name}kind"):
            size = "small" if match.group(f"{name}size") else "large"
            shapes.append((size, match.group(f"{name}colour"), match.group(f"{name}kind")))
    if match.group("ab"):
        relations.append((0, match.group("ab"), 1))
    if match.group("cb"):
        relations.append((2, match.group("cb"), 1))
    return shapes, relations


def agrees(caption: str, shapes: list[Shape]) -> bool:
    """True when the caption names exactly the scene's shapes and every relation it states holds by
    the shapes' pixel centres (not by their grid cells): what a reader of the image would check."""
    parsed = parse(caption)
    if parsed is None:
        return False
    named, relations = parsed
    by_look = {(s.size, s.colour, s.kind): s for s in shapes}
    if len(named) != len(shapes) or set(named) != set(by_look):
        return False
    for i, words, j in relations:
        a, b = by_look[named[i]], by_look[named[j]]
        holds = {
            "to the left of": a.x < b.x,
            "to the right of": a.x > b.x,
            "above": a.y < b.y,
            "below": a.y > b.y,
        }[words]
        if not holds:
            return False
    return True
