"""The video task: the Moving MNIST generator, the MNIST and .npy readers, exact resume, evaluation,
`seqtool decode/eval` on a tiny run (CliRunner; subprocesses for the user errors), and end-to-end runs."""

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from seqtool.cli import app
from seqtool.data import moving_mnist as data
from seqtool.errors import UserError
from seqtool.tasks.video import VideoTask
from tests.helpers import assert_user_error, quick_trainer, seqtool

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def tiny_run(run_dir: Path, *extra: str, model: str = "convlstm", steps: int = 4) -> list[str]:
    """Overrides for a video run of a few seconds: 16×16 frames, 3 in, 2 out."""
    return [
        f"model={model}",
        "task=video",
        f"run_dir={run_dir}",
        "task.image_size=16",
        "task.digit_size=6",
        "task.input_frames=3",
        "task.target_frames=2",
        "task.batch_size=2",
        "task.eval_batch_size=4",
        "task.eval_sequences=4",
        "task.test_sequences=4",
        "model.hidden_channels=4",
        "model.patch_size=2",
        *quick_trainer(steps),
        *extra,
    ]


def make_task(tmp_path: Path, **changes) -> VideoTask:
    options = dict(
        mnist_path=None,
        hf_name=None,
        test_npy=None,
        check_test_npy=False,
        image_size=16,
        digit_size=6,
        num_digits=2,
        input_frames=3,
        target_frames=4,
        step_length=0.1,
        batch_size=2,
        eval_batch_size=4,
        eval_sequences=6,
        test_sequences=4,
        l1_weight=0.0,
        seed=0,
    )
    task = VideoTask(**(options | changes))
    task.setup(tmp_path)
    return task


# ------------------------------------------------------------------------------------ the generator
def generator(**changes) -> data.MovingGlyphs:
    options = dict(
        glyphs=data.shape_glyphs(28),
        image_size=64,
        num_frames=20,
        num_digits=2,
        step_length=0.1,
        seed=0,
        split="train",
    )
    return data.MovingGlyphs(**(options | changes))


def test_a_sequence_is_fixed_by_seed_split_and_index():
    frames = generator().sequence(7)
    assert frames.shape == (20, 64, 64) and frames.dtype == np.uint8 and frames.max() > 200
    assert np.array_equal(frames, generator().sequence(7))
    assert not np.array_equal(frames, generator().sequence(8))
    assert not np.array_equal(frames, generator(split="val").sequence(7))
    assert not np.array_equal(frames, generator(seed=1).sequence(7))
    assert np.array_equal(generator().sequences(range(7, 9))[0], frames)


def test_glyphs_stay_inside_the_frame_and_bounce():
    square = np.full((1, 10, 10), 255, dtype=np.uint8)
    frames = generator(glyphs=square, num_digits=1, num_frames=200).sequence(0)
    assert (frames.reshape(200, -1).sum(axis=1) == 100 * 255).all()  # the whole glyph, every frame
    rows = np.array([np.flatnonzero(frame.any(axis=1))[0] for frame in frames])
    columns = np.array([np.flatnonzero(frame.any(axis=0))[0] for frame in frames])
    assert rows.min() >= 0 and rows.max() <= 54 and columns.max() <= 54
    steps = np.abs(np.diff(rows)) + np.abs(np.diff(columns))
    assert steps.max() <= 2 * 0.1 * 54 + 2 and (steps > 0).mean() > 0.9  # it moves, a few pixels a frame
    turns = np.diff(np.sign(np.diff(rows[rows > 0])))
    assert (turns != 0).any()  # it bounced off a wall


def test_the_embedded_shapes():
    shapes = data.shape_glyphs(28)
    assert shapes.shape == (30, 28, 28) and shapes.dtype == np.uint8
    assert (shapes.reshape(30, -1).max(axis=1) == 255).all() and shapes[:, 0, 0].max() == 0
    assert data.resize_glyphs(shapes, 14).shape == (30, 14, 14)


# ------------------------------------------------------------------------------------------ readers
def write_idx(path: Path, images: np.ndarray, *, magic: int = 0x803, compress: bool = True) -> Path:
    payload = struct.pack(">IIII", magic, *images.shape) + images.tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def test_the_idx_reader_and_the_held_out_split(tmp_path):
    images = np.arange(2100 * 4 * 4, dtype=np.uint32).astype(np.uint8).reshape(2100, 4, 4)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    assert np.array_equal(data.read_idx_images(tmp_path / "t10k-images-idx3-ubyte.gz"), images)
    digits = data.mnist_digits(str(tmp_path))
    assert np.array_equal(digits["train"], images[:100]) and np.array_equal(digits["eval"], images[100:])
    raw = write_idx(tmp_path / "raw", images[:3], compress=False)
    assert data.read_idx_images(raw).shape == (3, 4, 4)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (struct.pack(">IIII", 0x801, 1, 2, 2) + bytes(4), "not an MNIST IDX image file"),
        (struct.pack(">IIII", 0x803, 5, 2, 2) + bytes(4), "truncated"),
        (b"\x1f\x8b not really gzip", "cannot read"),
    ],
)
def test_bad_idx_files_are_user_errors(tmp_path, content, message):
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        data.read_idx_images(path)


def test_the_shared_mnist_digits_split_8000_2000(shared_data):
    if not (shared_data / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("../shared/data/mnist has no t10k-images-idx3-ubyte.gz")
    digits = data.mnist_digits(str(shared_data / "mnist"))
    assert digits["train"].shape == (8000, 28, 28) and digits["eval"].shape == (2000, 28, 28)


def test_the_npy_loader(tmp_path):
    one = np.random.default_rng(0).integers(0, 256, (5, 16, 16), dtype=np.uint8)
    np.save(tmp_path / "one.npy", one)
    array, layout = data.as_sequences(data.load_npy(str(tmp_path / "one.npy")))
    frames = data.to_unit_frames(array)
    assert layout == "THW" and frames.shape == (1, 5, 1, 16, 16) and frames.dtype == torch.float32
    assert torch.allclose(frames[0, :, 0] * 255, torch.from_numpy(one).float())
    batch = np.random.default_rng(1).random((2, 5, 16, 16))
    array, layout = data.as_sequences(batch)
    assert layout == "NTHW" and torch.allclose(
        data.to_unit_frames(array).double()[:, :, 0], torch.from_numpy(batch)
    )
    standard = np.broadcast_to(np.zeros(1, dtype=np.uint8), data.STANDARD_TEST_SHAPE)  # no memory
    array, layout = data.as_sequences(standard)
    assert layout == "TNHW" and array.shape == (10000, 20, 64, 64)
    np.savez(tmp_path / "two.npz", a=one, b=one)
    with pytest.raises(UserError, match="npz archive"):
        data.load_npy(str(tmp_path / "two.npz"))


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((16, 16)), "expected [T, H, W] or [N, T, H, W]"),
        (np.zeros((2, 3, 16, 16), dtype=np.int64), "dtype int64"),
        (np.full((3, 16, 16), 2.0), "must lie in [0, 1]"),
        (np.full((3, 16, 16), np.nan), "NaN"),
    ],
)
def test_bad_frames_are_user_errors(array, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        data.to_unit_frames(data.as_sequences(array)[0])


# ---------------------------------------------------------------------------------------- the task
def test_the_train_stream_resumes_exactly(tmp_path):
    task = make_task(tmp_path)
    stream = iter(task.batches("train", train=True))
    batches = [next(stream) for _ in range(4)]
    assert batches[0].inputs.shape == (2, 3, 1, 16, 16) and batches[0].targets.shape == (2, 4, 1, 16, 16)
    resumed = make_task(tmp_path)
    resumed.load_state_dict(make_task(tmp_path).state_dict() | {"position": 3})
    assert task.state_dict() == {"position": 4}
    again = next(iter(resumed.batches("train", train=True)))
    assert torch.equal(again.inputs, batches[3].inputs) and torch.equal(again.targets, batches[3].targets)


def test_ranks_read_different_sequences(tmp_path):
    ranks = [make_task(tmp_path) for _ in range(2)]
    for rank, task in enumerate(ranks):
        task.setup(tmp_path, rank=rank, world_size=2)
    first, second = (next(iter(task.batches("train", train=True))).inputs for task in ranks)
    assert not torch.equal(first, second)


def test_the_curriculum_shortens_the_horizon(tmp_path):
    task = make_task(tmp_path)
    clip = next(iter(task.batches("train", train=True, competence=lambda: 0.3)))
    assert clip.targets.shape[1] == 2 and task.difficulty(clip) == 2.0  # ceil(0.3 · 4)


def test_evaluation_reports_the_model_and_the_baselines_and_plots_the_horizon(tmp_path):
    task = make_task(tmp_path)

    def copy_last_frame(inputs, targets=None, horizon=None):
        return inputs[:, -1:].expand(-1, horizon, -1, -1, -1), inputs.new_zeros(())

    metrics = task.evaluate(copy_last_frame, "val")
    names = {
        f"{metric}{suffix}"
        for metric in ("mse", "mae", "ssim", "psnr")
        for suffix in ("", "_copy_last", "_zeros")
    }
    assert set(metrics) == names | {"loss"} and all(isinstance(value, float) for value in metrics.values())
    assert metrics["mse"] == pytest.approx(metrics["mse_copy_last"]) and metrics["mse"] > 0
    assert metrics["loss"] == pytest.approx(metrics["mse"] / 256, rel=1e-5)  # per pixel vs per 16×16 frame
    assert (tmp_path / "plots" / "horizon_val.png").is_file()
    curves = json.loads((tmp_path / "plots" / "horizon_val.json").read_text())
    assert len(curves["model"]["mse"]) == 4 and curves["zeros"]["ssim"]


def test_the_test_split_reads_a_standard_layout_npy(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (3, 7, 16, 16), dtype=np.uint8)
    np.save(tmp_path / "test.npy", frames)
    task = make_task(tmp_path, test_npy=str(tmp_path / "test.npy"), test_sequences=2)
    assert task.split_size("test") == 2
    clip = next(iter(task.batches("test", train=False)))
    assert torch.allclose(clip.targets[:, :, 0] * 255, torch.from_numpy(frames[:2, 3:7]).float())
    with pytest.raises(UserError, match="sha256"):
        make_task(tmp_path, test_npy=str(tmp_path / "test.npy"), check_test_npy=True).split_size("test")
    with pytest.raises(UserError, match="8 are needed"):
        make_task(tmp_path, test_npy=str(tmp_path / "test.npy"), target_frames=5).split_size("test")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": 8, "digit_size": 4}, "SSIM window"),
        ({"digit_size": 20}, "digit_size"),
        ({"target_frames": 0}, "must be ≥ 1"),
        ({"mnist_path": "a", "hf_name": "b"}, "not both"),
    ],
)
def test_impossible_task_options_are_refused(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        make_task(tmp_path, **changes)


def test_an_offline_hub_name_is_a_clear_error(tmp_path):
    task = make_task(tmp_path, hf_name="no-such-user/no-such-mnist")
    with pytest.raises(UserError, match="Hugging Face hub"):
        next(iter(task.batches("train", train=True)))


# --------------------------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("video") / "run"
    result = runner.invoke(app, ["train", *tiny_run(run_dir)])
    assert result.exit_code == 0, result.output
    return run_dir


def test_train_writes_plots_and_a_preview(trained):
    for part in [
        "checkpoints/best/model.safetensors",
        "plots/curves.png",
        "plots/horizon_val.png",
        "plots/preview.png",
    ]:
        assert (trained / part).is_file(), part
    assert "prediction" in next((trained / "samples").iterdir()).read_text()


def test_eval_json_prints_the_model_beside_the_baselines(trained):
    result = runner.invoke(app, ["eval", str(trained), "--split", "test", "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    for key in ("mse", "mae", "ssim", "psnr", "mse_copy_last", "mse_zeros", "ssim_copy_last", "psnr_zeros"):
        assert isinstance(metrics[key], float), key
    assert (trained / "plots" / "horizon_test.png").is_file()


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_decode_writes_predictions_in_the_input_layout_and_plots(trained, tmp_path, dtype):
    frames = np.random.default_rng(0).random((2, 6, 16, 16))
    frames = (frames * 255).astype(np.uint8) if dtype == "uint8" else frames.astype(np.float32)
    np.save(tmp_path / "seq.npy", frames)
    out, plots = tmp_path / "pred.npy", tmp_path / "plots"
    args = [
        "decode",
        str(trained),
        "--input",
        str(tmp_path / "seq.npy"),
        "--horizon",
        "3",
        "--output",
        str(out),
    ]
    result = runner.invoke(app, [*args, "--plot", str(plots)])
    assert result.exit_code == 0, result.output
    assert "MSE per frame" in result.output  # 6 frames = 3 given + 3 true ones to compare with
    predictions = np.load(out)
    assert predictions.shape == (2, 3, 16, 16) and predictions.dtype == np.dtype(dtype)
    assert {p.name for p in plots.iterdir()} >= {"sequence_000.png", "sequence_000.gif", "sequence_001.gif"}


def test_decode_of_one_sequence_without_truth_and_of_the_val_split(trained, tmp_path):
    np.save(tmp_path / "one.npy", np.zeros((3, 16, 16), dtype=np.uint8))
    out = tmp_path / "one_pred.npy"
    args = ["decode", str(trained), "--input", str(tmp_path / "one.npy"), "--horizon", "5", "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "MSE" not in result.output and np.load(out).shape == (5, 16, 16)
    result = runner.invoke(app, ["decode", str(trained), "--num", "2", "--plot", str(tmp_path / "val")])
    assert result.exit_code == 0 and "for 2 sequence(s); MSE per frame" in result.output
    assert (tmp_path / "val" / "sequence_001.png").is_file()


BAD_INPUTS = {
    "rank": (np.zeros((16, 16), dtype=np.uint8), "expected [T, H, W] or [N, T, H, W]"),
    "dtype": (np.zeros((4, 16, 16), dtype=np.int32), "dtype int32"),
    "range": (np.full((4, 16, 16), 3.0, dtype=np.float32), "must lie in [0, 1]"),
    "nan": (np.full((4, 16, 16), np.nan, dtype=np.float32), "NaN"),
    "too_few": (np.zeros((2, 16, 16), dtype=np.uint8), "2 frames per sequence; 3 are needed"),
    "size": (np.zeros((4, 32, 32), dtype=np.uint8), "32×32 frames but this model works on 16×16"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_decode_input_is_one_line_and_exit_2(trained, tmp_path, case):
    array, fragment = BAD_INPUTS[case]
    np.save(tmp_path / f"{case}.npy", array)
    assert_user_error(seqtool("decode", str(trained), "--input", str(tmp_path / f"{case}.npy")), fragment)


def test_a_missing_or_unreadable_input_is_a_user_error(trained, tmp_path):
    assert_user_error(seqtool("decode", str(trained), "--input", str(tmp_path / "none.npy")), "no such file")
    (tmp_path / "text.npy").write_text("not an array")
    assert_user_error(
        seqtool("decode", str(trained), "--input", str(tmp_path / "text.npy")), "not a readable .npy"
    )


def test_a_patch_size_that_does_not_divide_the_frame_is_a_user_error(tmp_path):
    result = seqtool("train", *tiny_run(tmp_path / "run", "model.patch_size=3"))
    assert_user_error(result, "model.patch_size=3")  # "does not divide" up front, or "not divisible" at build


def test_resume_with_scheduled_sampling_and_a_curriculum_is_exact(tmp_path):
    """2N steps straight == N steps, then --resume for N more: the same loss at every step, although
    scheduled sampling draws from the global RNG and the horizon grows with the curriculum."""
    from seqtool import commands
    from seqtool.config import compose

    common = [
        "model.scheduled_sampling=true",
        "model.reverse_scheduled_sampling=true",
        "trainer.teacher_forcing.kind=linear",
        "trainer.teacher_forcing.steps=6",
        "trainer.curriculum.kind=linear",
        "trainer.curriculum.steps=6",
        "trainer.lr_schedule.kind=constant",
    ]
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    commands.train(compose(tiny_run(straight, *common, model="predrnn", steps=6)))
    commands.train(compose(tiny_run(halves, *common, model="predrnn", steps=3)))
    commands.train(commands.resume_config(halves, ["trainer.max_steps=6"]), resume=halves)

    def losses(run_dir: Path) -> dict[int, float]:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}

    assert sorted(losses(halves)) == list(range(1, 7)) and losses(halves) == losses(straight)


def test_predrnn_trains_through_the_same_task(tmp_path):
    result = runner.invoke(
        app, ["train", *tiny_run(tmp_path / "run", "model.decouple_beta=0.1", model="predrnn")]
    )
    assert result.exit_code == 0, result.output
    assert "mse_copy_last" in (tmp_path / "run" / "metrics.jsonl").read_text()


@pytest.mark.parametrize(
    ("model", "extra"),
    [("predrnn_pp", []), ("e3d_lstm", []), ("convlstm", ["model.reconstruct=true"])],
)
def test_the_newer_video_models_train_evaluate_and_decode_through_the_same_commands(tmp_path, model, extra):
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", *tiny_run(run_dir, *extra, model=model)])
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])["params"] > 0
    result = runner.invoke(app, ["eval", str(run_dir), "--split", "test", "--json"])
    assert result.exit_code == 0 and "mse_copy_last" in json.loads(result.output), result.output
    result = runner.invoke(app, ["decode", str(run_dir), "--num", "2", "--plot", str(tmp_path / "plots")])
    assert result.exit_code == 0 and "for 2 sequence(s); MSE per frame" in result.output, result.output
    assert (tmp_path / "plots" / "sequence_001.gif").is_file()


def test_a_video_model_on_a_text_task_is_refused_naming_the_video_task():
    for model in ("predrnn_pp", "e3d_lstm"):
        result = seqtool("train", f"model={model}", "task=charlm", "trainer=smoke")
        assert_user_error(result, f"tasks that fit model={model}: task=video")


# ----------------------------------------------------------------------------------------- end to end
E2E = [
    "task.image_size=32",
    "task.digit_size=12",
    "task.input_frames=5",
    "task.target_frames=5",
    "task.batch_size=16",
    "task.eval_sequences=32",
    "model.hidden_channels=16",
    "model.patch_size=4",
    "trainer.max_steps=100",
    "trainer.eval_every=100",
    "trainer.log_every=25",
    "trainer.progress=false",
    "trainer.tensorboard=false",
    "device=cpu",
]


@pytest.mark.slow
def test_a_short_cpu_run_on_the_embedded_shapes_beats_copying_the_last_frame(tmp_path):
    from seqtool import commands
    from seqtool.config import compose

    cfg = compose(["model=convlstm", "task=video", f"run_dir={tmp_path / 'run'}", *E2E])
    _, metrics = commands.train(cfg)
    assert metrics["mse"] < 0.8 * metrics["mse_copy_last"], metrics
    assert metrics["mse"] < metrics["mse_zeros"], metrics


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["moving_mnist_convlstm", "moving_mnist_predrnn"])
def test_the_recipes_train_evaluate_and_decode(shared_data, tmp_path, recipe):
    mnist = shared_data / "mnist"
    if not mnist.is_dir():
        pytest.skip("../shared/data/mnist is absent")
    shrink = [
        "trainer=smoke",
        "device=cpu",
        "task.image_size=16",
        "task.digit_size=8",
        "task.input_frames=3",
        "task.target_frames=2",
        "task.batch_size=2",
        "task.eval_sequences=4",
        "task.test_sequences=4",
        "model.hidden_channels=4",
        "model.num_layers=1",
        "model.kernel_size=3",
        "model.patch_size=2",
    ]
    env = os.environ | {"SEQTOOL": f"{sys.executable} -m seqtool"}
    command = ["bash", str(ROOT / "recipes" / f"{recipe}.sh"), str(mnist), *shrink]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"mse_copy_last"' in result.stdout and "MSE per frame" in result.stdout
    run_dir = next((tmp_path / "runs" / recipe).iterdir())
    assert (run_dir / "decoded" / "sequence_000.gif").is_file() and (
        run_dir / "decoded" / "predictions.npy"
    ).is_file()
