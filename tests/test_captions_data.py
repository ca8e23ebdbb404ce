"""Captioning data: the shapes generator (deterministic, captions true to their scenes), the Flickr8k,
Karpathy-JSON, CSV and Hugging Face readers, image loading (corrupt, missing, grayscale, RGBA) and the
transforms."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seqtool.data import captions as data
from seqtool.data import shapes
from seqtool.errors import UserError


# ------------------------------------------------------------------------------------------------ shapes
def test_the_shapes_generator_is_deterministic_by_seed():
    first = shapes.generate(3, "train", 40, image_size=64, max_objects=3, captions_per_image=3)
    again = shapes.generate(3, "train", 40, image_size=64, max_objects=3, captions_per_image=3)
    other = shapes.generate(4, "train", 40, image_size=64, max_objects=3, captions_per_image=3)
    val = shapes.generate(3, "val", 40, image_size=64, max_objects=3, captions_per_image=3)
    assert np.array_equal(first.images, again.images) and first.captions == again.captions
    assert not np.array_equal(first.images, other.images) and not np.array_equal(first.images, val.images)
    assert first.images.shape == (40, 64, 64, 3) and first.images.dtype == np.uint8
    assert {len(s) for s in first.scenes} == {1, 2, 3}


def test_every_caption_agrees_with_its_scene_and_the_image_shows_it():
    generated = shapes.generate(0, "train", 300, image_size=64, max_objects=3, captions_per_image=5)
    for image, captions, scene in zip(generated.images, generated.captions, generated.scenes):
        assert captions and len(set(captions)) == len(captions)
        assert len(captions) == min(5, {1: 1, 2: 2, 3: 6}[len(scene)])
        for caption in captions:
            assert shapes.agrees(caption, scene), (caption, scene)
        for shape in scene:  # the pixel at each centre has the shape's colour
            assert tuple(image[int(shape.y), int(shape.x)]) == shapes.COLOURS[shape.colour]


def test_agrees_rejects_captions_that_contradict_the_scene():
    scene = [
        shapes.Shape("circle", "red", "large", 10.0, 10.0, (0, 0)),
        shapes.Shape("square", "blue", "small", 53.0, 11.0, (0, 2)),
    ]
    assert shapes.describe(scene) == "a red circle to the left of a small blue square"
    assert shapes.agrees("a small blue square to the right of a red circle", scene)
    for wrong in [
        "a red circle to the right of a small blue square",  # the relation
        "a red circle to the left of a blue square",  # the size
        "a red circle to the left of a small green square",  # the colour
        "a red circle",  # a shape left out
        "a red circle near a small blue square",  # not the grammar
    ]:
        assert not shapes.agrees(wrong, scene), wrong


# ------------------------------------------------------------------------------------------------ words
def test_words_vocabulary_keeps_frequent_words_and_round_trips(tmp_path):
    captions = [data.tokenize(c) for c in ["A dog runs .", "a dog's ball", "A cat"]]
    assert captions[1] == ["a", "dog's", "ball"]
    vocab = data.WordVocab.build(captions, min_frequency=2)
    assert vocab.words == data.SPECIALS + ["a"]
    assert vocab.encode(["a", "dog"]) == [4, data.UNK]
    vocab.save(tmp_path / "words.json")
    assert data.WordVocab.load(tmp_path / "words.json").words == vocab.words
    (tmp_path / "bad.json").write_text('{"words": ["a"]}')
    with pytest.raises(UserError, match="not a seqtool word vocabulary"):
        data.WordVocab.load(tmp_path / "bad.json")


# ----------------------------------------------------------------------------------------------- images
def write_image(path: Path, mode: str = "RGB", colour=(200, 30, 30), size=(40, 30), fmt=None) -> Path:
    fill = {"L": 128, "RGBA": (*colour, 0), "I;16": 40000}.get(mode, colour)
    Image.new(mode, size, fill).save(path, format=fmt or ("PNG" if mode in ("RGBA", "I;16") else "JPEG"))
    return path


def stand_in_folder(directory: Path, names: list[str]) -> Path:
    """An image folder holding (some of) the named images: RGB JPEGs, one grayscale, one RGBA (a PNG
    under the .jpg name), one corrupt file."""
    directory.mkdir(parents=True, exist_ok=True)
    for n, name in enumerate(names):
        mode = {1: "L", 2: "RGBA"}.get(n, "RGB")
        write_image(directory / name, mode)
    (directory / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return directory


def test_images_are_rgb_whatever_their_mode():
    transparent = data.open_rgb(write_image_in_memory("RGBA"))
    assert transparent.mode == "RGB" and transparent.getpixel((0, 0)) == (255, 255, 255)  # over white
    deep_grey = data.open_rgb(write_image_in_memory("I;16"))
    assert deep_grey.mode == "RGB" and deep_grey.getpixel((0, 0)) == (255, 255, 255)  # 16-bit scaled
    notes = __import__("collections").Counter()
    assert data.open_rgb(write_image_in_memory("L"), notes).getpixel((0, 0)) == (128, 128, 128)
    assert notes == {"grayscale": 1}
    with pytest.raises(data.BadImage):
        data.open_rgb(b"not an image")


def write_image_in_memory(mode: str) -> bytes:
    import io

    buffer = io.BytesIO()
    write_image(buffer, mode, fmt="PNG")
    return buffer.getvalue()


def test_load_images_skips_and_counts_the_missing_the_corrupt_and_the_empty_captions(tmp_path):
    folder = stand_in_folder(tmp_path / "images", ["a.jpg", "b.jpg", "c.jpg"])
    entries = [
        data.Entry("a.jpg", ["A red thing .", "  "]),
        data.Entry("b.jpg", ["grey"]),
        data.Entry("c.jpg", ["transparent"]),
        data.Entry("corrupt.jpg", ["broken"]),
        data.Entry("gone.jpg", ["missing"]),
        data.Entry("a.jpg", ["", "."]),  # no caption left: dropped before its image is read
    ]
    loaded = data.load_images(entries, folder, 24)
    assert loaded.names == ["a.jpg", "b.jpg", "c.jpg"] and loaded.images.shape == (3, 24, 24, 3)
    assert loaded.captions[0] == ["A red thing ."]
    assert loaded.missing == ["gone.jpg"] and [name for name, _ in loaded.skipped] == ["corrupt.jpg"]
    assert loaded.empty_captions == 3
    assert loaded.converted == {"grayscale": 1, "RGBA": 1}
    assert loaded.images[0, 12, 12].tolist() == pytest.approx([200, 30, 30], abs=8)  # JPEG is lossy


# ---------------------------------------------------------------------------------------------- readers
def test_the_flickr8k_reader_reads_the_real_release(shared_data, tmp_path):
    text = shared_data / "flickr8k_text"
    splits = data.read_flickr8k(text / "Flickr8k.token.txt.gz", None)  # the lists beside it
    assert [len(splits[s]) for s in data.SPLITS] == [6000, 1000, 1000]
    assert all(len(entry.captions) == 5 for s in data.SPLITS for entry in splits[s])
    first_train = (text / "Flickr_8k.trainImages.txt").read_text().split()[0]
    entry = next(e for e in splits["train"] if e.image == first_train)
    line = next(
        line
        for line in gzip.open(text / "Flickr8k.token.txt.gz", "rt")
        if line.startswith(first_train + "#0")
    )
    assert entry.captions[0] == line.split("\t", 1)[1].rstrip("\n")

    # a stand-in folder with two train images and one test image of the release
    picked = [splits["train"][0].image, splits["train"][1].image, splits["test"][0].image]
    folder = stand_in_folder(tmp_path / "images", picked)
    train = data.load_images(splits["train"], folder, 16)
    assert train.names == picked[:2] and train.captions[0] == splits["train"][0].captions
    assert len(train.missing) == 5998
    assert data.load_images(splits["test"], folder, 16).names == picked[2:]


def test_the_csv_reader_with_the_standard_lists_splits_flickr8k_1k_as_documented(shared_data):
    splits = data.read_csv(shared_data / "flickr8k_1k" / "captions.txt", shared_data / "flickr8k_text")
    assert [len(splits[s]) for s in data.SPLITS] == [753, 113, 125]  # 9 images are in no list
    assert all(len(entry.captions) == 5 for s in data.SPLITS for entry in splits[s])
    alone = data.read_csv(shared_data / "flickr8k_1k" / "captions.txt", None)
    assert [len(alone[s]) for s in data.SPLITS] == [800, 100, 100]


def test_the_karpathy_reader_reads_a_split_json(tmp_path):
    images = [
        {"filename": "a.jpg", "split": "train", "sentences": [{"raw": "A dog .", "tokens": ["a", "dog"]}]},
        {
            "filename": "b.jpg",
            "filepath": "val2014",
            "split": "restval",
            "sentences": [{"tokens": ["a", "cat"]}],
        },
        {"filename": "c.jpg", "split": "val", "sentences": [{"raw": "A bird"}, {"raw": "Birds"}]},
        {"filename": "d.jpg", "split": "test", "sentences": [{"raw": "A fish"}]},
    ]
    path = tmp_path / "dataset_flickr8k.json"
    path.write_text(json.dumps({"images": images, "dataset": "flickr8k"}))
    splits = data.read_karpathy(path)
    assert [(e.image, e.captions) for e in splits["train"]] == [
        ("a.jpg", ["A dog ."]),
        ("val2014/b.jpg", ["a cat"]),  # restval joins train; filepath/filename as in dataset_coco.json
    ]
    assert splits["val"][0].captions == ["A bird", "Birds"] and splits["test"][0].image == "d.jpg"
    path.write_text(json.dumps({"images": [{"filename": "x.jpg"}]}))
    with pytest.raises(UserError, match="image 0 lacks filename, split or sentences"):
        data.read_karpathy(path)
    path.write_text("[1, 2]")
    with pytest.raises(UserError, match="not a Karpathy split JSON"):
        data.read_karpathy(path)


def test_malformed_caption_files_are_user_errors(tmp_path):
    (tmp_path / "tokens.txt").write_text("a.jpg A dog without a tab\n")
    with pytest.raises(UserError, match="line 1 is not `IMAGE#k<TAB>caption`"):
        data.read_flickr8k(tmp_path / "tokens.txt", tmp_path)
    (tmp_path / "c.csv").write_text("file,text\na.jpg,a dog\n")
    with pytest.raises(UserError, match="header `image,caption`"):
        data.read_csv(tmp_path / "c.csv", None)
    with pytest.raises(UserError, match="no such file"):
        data.read_csv(tmp_path / "none.csv", None)


def test_the_hugging_face_reader_reads_a_saved_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {
        "image": [Image.new("RGB", (8, 8), (0, 90, 0))] * 2,
        "captions": [["a green square", "green"], "one"],
    }
    rows["captions"] = [["a green square", "green"], ["one"]]
    features = datasets.Features(
        {"image": datasets.Image(), "captions": datasets.Sequence(datasets.Value("string"))}
    )
    dataset = datasets.Dataset.from_dict(rows, features=features)
    datasets.DatasetDict({"train": dataset, "validation": dataset}).save_to_disk(str(tmp_path / "hf"))
    splits = data.read_hf(str(tmp_path / "hf"), "image", "captions", {"train": "train", "val": "validation",
                                                                        "test": None})  # fmt: skip
    assert [e.captions for e in splits["train"]] == [["a green square", "green"], ["one"]]
    assert splits["test"] == [] and splits["val"][1].name == "validation/1"
    loaded = data.load_images(splits["train"], None, 8)
    assert tuple(loaded.images[0, 4, 4]) == (0, 90, 0)
    with pytest.raises(UserError, match="no column 'caption'"):
        data.read_hf(str(tmp_path / "hf"), "image", "caption", {"train": "train"})


# ------------------------------------------------------------------------------------------- transforms
def test_centre_crop_normalises_and_random_crops_stay_inside():
    images = np.arange(2 * 6 * 6 * 3, dtype=np.uint8).reshape(2, 6, 6, 3)
    centre = data.to_model_input(images, image_size=4, train=False, flip=True, mean=(0, 0, 0), std=(1, 1, 1))
    expected = torch.from_numpy(images[:, 1:5, 1:5]).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(centre, expected)  # the centre, never flipped outside training
    normalised = data.to_model_input(images, image_size=6, train=False, flip=False)
    mean = torch.tensor(data.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(data.IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(normalised * std + mean, torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    generator = torch.Generator().manual_seed(0)
    corners = data.crop_boxes(500, 6, 4, train=True, generator=generator)
    assert corners.min() == 0 and corners.max() == 2  # every offset of the 3 × 3 possible ones
    crops = data.to_model_input(images, image_size=4, train=True, flip=True, generator=generator,
                                mean=(0, 0, 0), std=(1, 1, 1))  # fmt: skip
    assert crops.shape == (2, 3, 4, 4)


def test_image_files_lists_a_folder_or_one_file(tmp_path):
    write_image(tmp_path / "b.jpg")
    write_image(tmp_path / "a.png", fmt="PNG")
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in data.image_files(tmp_path)] == ["a.png", "b.jpg"]
    assert data.image_files(tmp_path / "b.jpg") == [tmp_path / "b.jpg"]
    with pytest.raises(UserError, match="no such file or folder"):
        data.image_files(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no image files"):
        data.image_files(tmp_path / "empty")
