"""The captioning task: batches, the loss, exact resume, the metrics against hand computations, and
`seqtool train/decode/eval` on a tiny shapes run (CliRunner; subprocesses for the user errors)."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from seqtool import commands
from seqtool.cli import app
from seqtool.config import compose
from seqtool.data import shapes
from seqtool.data.captions import EOS, PAD
from seqtool.errors import UserError
from seqtool.metrics import caption_metrics
from seqtool.tasks.captioning import CaptioningTask
from tests.helpers import assert_user_error, quick_trainer, seqtool

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


TINY_MODEL = ["model.encoder_channels=[4,8]", "model.grid_size=4", "model.embedding_size=8",
              "model.hidden_size=16", "model.attention_size=8"]  # fmt: skip


def tiny_run(run_dir: Path, *extra: str, steps: int = 4) -> list[str]:
    """Overrides for a shapes captioning run of a few seconds: 32×32 images, a tiny model."""
    return [
        "model=captioner",
        "task=captioning",
        f"run_dir={run_dir}",
        "task.image_size=32",
        "task.resize_size=32",
        "task.shapes.train_size=40",
        "task.shapes.val_size=6",
        "task.shapes.test_size=6",
        "task.batch_size=8",
        *TINY_MODEL,
        *quick_trainer(steps),
        *extra,
    ]


def make_task(tmp_path: Path, **changes) -> CaptioningTask:
    """A small shapes task; `changes` are task keys (a nested one spelled with "__": files__captions)."""
    from seqtool.config import instantiate

    options = dict(seed=0, image_size=32, resize_size=32, shapes__train_size=30, shapes__val_size=5,
                   shapes__test_size=5, batch_size=4, eval_batch_size=4) | changes  # fmt: skip
    overrides = [f"task.{key.replace('__', '.')}={value}" for key, value in options.items()]
    task = instantiate(compose(["task=captioning", *overrides]).task)
    task.setup(tmp_path)
    return task


def make_model(task: CaptioningTask):
    from seqtool.config import instantiate

    torch.manual_seed(0)
    cfg = compose(["model=captioner", *TINY_MODEL])
    return instantiate(cfg.model, **task.model_kwargs())


def test_batches_hold_images_and_shifted_captions(tmp_path):
    task = make_task(tmp_path)
    batch = next(iter(task.batches("train", train=True)))
    assert batch.images.shape == (4, 3, 32, 32) and batch.tgt_in.shape == batch.tgt_out.shape
    for row, image in enumerate(batch.index):
        words = batch.tgt_out[row][batch.tgt_out[row] != PAD].tolist()
        assert words[-1] == EOS and batch.tgt_in[row, 1 : len(words)].tolist() == words[:-1]
        caption = task.vocab.decode(words)
        assert caption in task.split("train").captions[image]  # a reference of that very image
        assert shapes.agrees(caption, task.scenes["train"][image])
    assert (tmp_path / "vocab" / "words.json").is_file()


def test_the_loss_is_summed_cross_entropy_plus_the_penalty(tmp_path):
    task = make_task(tmp_path)
    model = make_model(task).eval()
    batch = next(iter(task.batches("val", train=False)))
    loss = task.loss(model, batch)
    out = model(batch.images, batch.tgt_in)
    nll = F.cross_entropy(
        out.logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD, reduction="sum"
    )
    assert out.penalty.sum() > 0
    assert torch.isclose(loss.total, nll + out.penalty.sum()) and loss.count == int(
        (batch.tgt_out != PAD).sum()
    )


def test_the_train_stream_resumes_exactly(tmp_path):
    task = make_task(tmp_path)
    stream = iter(task.batches("train", train=True))
    for _ in range(30):  # past the first epoch: fewer than 30 × 3 captions of 4 per batch
        next(stream)
    saved = task.state_dict()
    expected = next(stream)
    resumed = make_task(tmp_path)
    resumed.load_state_dict(saved)
    again = next(iter(resumed.batches("train", train=True)))
    assert torch.equal(again.images, expected.images) and torch.equal(again.tgt_in, expected.tgt_in)


def test_a_curriculum_draws_the_easiest_captions_first(tmp_path):
    task = make_task(tmp_path)
    short = max(len(ids) for _, ids in task.examples()[: math.ceil(0.1 * len(task.examples()))])
    batch = next(iter(task.batches("train", train=True, competence=lambda: 0.1)))
    assert int((batch.tgt_out != PAD).sum(1).max()) <= short + 1


def test_caption_metrics_against_hand_computed_values():
    hypotheses = ["a red circle", "a blue square above it"]
    references = [["a red circle", "a small red circle"], ["a blue square"]]
    metrics = caption_metrics(hypotheses, references)
    # BLEU-1: clipped unigram matches 3 + 3 of 8 words; closest reference lengths 3 + 3 < 8: no brevity
    # penalty
    assert metrics["bleu1"] == pytest.approx(100 * 6 / 8)
    # BLEU-2: bigrams 2/2 and 2/4 matched -> sqrt(6/8 · 4/6)
    assert metrics["bleu2"] == pytest.approx(100 * math.sqrt(6 / 8 * 4 / 6))
    assert metrics["exact_match"] == 50.0
    perfect = caption_metrics([refs[-1] for refs in references], references)
    assert perfect["bleu4"] == pytest.approx(100.0) and perfect["exact_match"] == 100.0


def test_cider_d_is_reported_where_pycocoevalcap_is_installed():
    pytest.importorskip("pycocoevalcap")
    references = [
        ["a red circle", "a small red circle"],
        ["a blue square above a circle", "one blue square"],
        ["two green triangles", "a pair of green triangles"],
    ]
    right = caption_metrics(["a red circle", "one blue square", "two green triangles"], references)
    shuffled = caption_metrics(["one blue square", "two green triangles", "a red circle"], references)
    # CIDEr-D rewards the consensus n-grams of an image's own references: the right captions score
    # high, the same captions on the wrong images score nothing (they share no n-gram there but "a")
    assert right["cider_d"] > 100.0 and shuffled["cider_d"] < 0.2 * right["cider_d"]


def test_evaluate_decodes_every_image_and_scores_all_references(tmp_path):
    task = make_task(tmp_path)
    metrics = task.evaluate(make_model(task).eval(), "val")
    assert {"loss", "perplexity", "bleu1", "bleu2", "bleu3", "bleu4", "exact_match"} <= set(metrics)
    hypotheses = [
        line.split("\t")[1] for line in (tmp_path / "hypotheses" / "val.txt").read_text().splitlines()
    ]
    true = [shapes.agrees(h, scene) for h, scene in zip(hypotheses, task.scenes["val"])]
    assert metrics["scene_agreement"] == 100.0 * sum(true) / len(true)
    lines = (tmp_path / "hypotheses" / "val.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == task.split("val").names


def test_the_flickr8k_task_trains_on_the_images_it_has(shared_data, tmp_path):
    """The real Flickr8k captions and split lists with a stand-in folder of four train images."""
    text = shared_data / "flickr8k_text"
    train_names = (text / "Flickr_8k.trainImages.txt").read_text().split()[:4]
    folder = tmp_path / "images"
    folder.mkdir()
    for n, name in enumerate(train_names):
        Image.new("RGB", (50, 40), (40 * n, 90, 200)).save(folder / name)
    (folder / (text / "Flickr_8k.devImages.txt").read_text().split()[0]).write_bytes(b"corrupt")
    task = make_task(tmp_path / "run", data="flickr8k", files__captions=str(text / "Flickr8k.token.txt.gz"),
                     files__image_dir=str(folder), resize_size=36, random_flip=True)  # fmt: skip
    assert task.split("train").names == sorted(train_names) and len(task.vocab) > 20
    loss = task.loss(make_model(task), next(iter(task.batches("train", train=True))))
    assert math.isfinite(loss.total.item()) and loss.total.requires_grad
    with pytest.raises(UserError, match="val split has no readable image"):
        task.split("val")


# ---------------------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("captioning") / "run"
    commands.train(compose(tiny_run(run_dir)))
    return run_dir


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Two shapes images, one grayscale, one RGBA, one corrupt file."""
    folder = tmp_path / "images"
    folder.mkdir()
    generated = shapes.generate(9, "test", 2, image_size=48, max_objects=2, captions_per_image=1)
    for n, image in enumerate(generated.images):
        Image.fromarray(image).save(folder / f"scene{n}.png")
    Image.new("L", (30, 20), 90).save(folder / "grey.jpg")
    Image.new("RGBA", (20, 20), (255, 0, 0, 128)).save(folder / "rgba.png")
    (folder / "zz_corrupt.jpg").write_bytes(b"\xff\xd8 truncated")
    return folder


def test_decode_captions_a_folder_and_draws_attention(trained, image_folder, tmp_path):
    plots = tmp_path / "plots"
    args = [
        "decode",
        str(trained),
        "--input",
        str(image_folder),
        "--beam",
        "3",
        "--plot-attention",
        str(plots),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "\t" in line]
    assert [Path(line.split("\t")[0]).name for line in lines] == [
        "grey.jpg",
        "rgba.png",
        "scene0.png",
        "scene1.png",
    ]
    assert "warning: 1 unreadable images skipped" in result.output
    pngs = sorted(p.name for p in plots.glob("*.png"))
    assert len(pngs) == 4 and pngs[0] == "0000_grey.png"
    nbest = runner.invoke(app, ["decode", str(trained), "--num", "2", "--beam", "3", "--nbest", "2"])
    rows = [line.split("\t") for line in nbest.stdout.splitlines()]
    assert [row[0] for row in rows] == ["val/00000"] * 2 + ["val/00001"] * 2
    assert float(rows[0][1]) >= float(rows[1][1])


def test_eval_json_prints_bleu_1_to_4(trained):
    result = runner.invoke(app, ["eval", str(trained), "--split", "test", "--json", "--beam", "2"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert {"bleu1", "bleu2", "bleu3", "bleu4", "exact_match", "loss"} <= set(metrics)
    assert 0 <= metrics["bleu4"] <= metrics["bleu1"] <= 100


def test_bad_inputs_are_one_line_user_errors(trained, tmp_path):
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"not an image")
    assert_user_error(seqtool("decode", str(trained), "--input", str(corrupt)), "no readable image")
    (tmp_path / "empty").mkdir()
    data = tmp_path / "dataset.json"
    data.write_text(
        json.dumps({"images": [{"filename": "gone.jpg", "split": "train", "sentences": [{"raw": "a"}]}]})
    )
    result = seqtool("train", *tiny_run(tmp_path / "run", "task.data=karpathy", f"task.files.captions={data}",
                                        f"task.files.image_dir={tmp_path / 'empty'}"))  # fmt: skip
    assert_user_error(result, "the train split has no readable image with a caption (1 named, 1 not in")


@pytest.mark.slow
def test_a_short_shapes_run_learns_to_caption(tmp_path):
    """Train → eval --json → decode through the command line: a tiny model learns the grammar (whether
    its captions are true takes a larger one: see docs/captioning.md)."""
    run_dir = tmp_path / "run"
    overrides = tiny_run(run_dir, steps=400)
    overrides = [o for o in overrides if not o.startswith(("task.shapes.train_size", "model.hidden_size"))]
    overrides += ["task.shapes.train_size=400", "task.shapes.val_size=40", "model.hidden_size=48",
                  "trainer.eval_every=400", "trainer.optimizer.lr=0.005"]  # fmt: skip
    result = runner.invoke(app, ["train", *overrides])
    assert result.exit_code == 0, result.output
    first = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])["loss"]
    scored = runner.invoke(app, ["eval", str(run_dir), "--json"])
    metrics = json.loads(scored.stdout)
    assert metrics["loss"] < first / 3  # from about log V to well below
    assert metrics["bleu4"] > 30.0, metrics  # an untrained model scores about 1
    assert 0.0 <= metrics["scene_agreement"] <= 100.0
    decoded = runner.invoke(app, ["decode", str(run_dir), "--num", "3", "--greedy"])
    captions = [line.split("\t")[1] for line in decoded.stdout.splitlines()]
    assert len(captions) == 3 and all(shapes.parse(c) is not None for c in captions), captions
