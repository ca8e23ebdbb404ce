"""recipes/video_models.sh end to end with debug=smoke and tiny frames, on the embedded bouncing shapes
(no ../shared/data needed): the compare table with one row per model, the per-horizon MSE and SSIM plots,
one predicted strip per model (the five of them: ConvLSTM, its composite, PredRNN, PredRNN++, E3D-LSTM),
the per-horizon table with parameters and frames/s, and the measured verdict."""

from __future__ import annotations

import re

import pytest

from tests.test_rnn_recipes import run_recipe

pytestmark = pytest.mark.slow

TINY = [
    "task.image_size=16",
    "task.digit_size=6",
    "task.input_frames=3",
    "task.target_frames=3",
    "task.eval_sequences=4",
    "task.eval_batch_size=4",
    "task.batch_size=2",
    "model.hidden_channels=4",
    "model.num_layers=2",  # PredRNN++ puts its highway between layers 0 and 1
]


def test_video_models(tmp_path):
    report = run_recipe("video_models", tmp_path, "shapes", *TINY)
    assert "Sequences: the embedded bouncing shapes" in report
    rows = re.findall(r"^\| seqtool\.models\.(\w+)\.\w+ \| (\w+) \| 1 \|", report, re.MULTILINE)
    assert sorted(rows) == [("convlstm", "false"), ("convlstm", "true"), ("e3d_lstm", "null"),
                            ("predrnn", "null"), ("predrnn_pp", "null")], report  # fmt: skip
    assert "val_mse_copy_last final" in report and "params" in report
    for model in ("mse", "ssim", "convlstm", "composite", "predrnn", "predrnn_pp", "e3d_lstm"):
        assert f"(img/video_models_{model}.png)" in report
    table = report.split("| model | n | params | train frames/s |", 1)[1].split("\n\n", 1)[0]
    for name in ("ConvLSTM", "ConvLSTM composite", "PredRNN", "PredRNN++", "E3D-LSTM", "copy-last"):
        assert f"\n| {name} |" in table, table
    assert "MSE t+1 | MSE t+2 | MSE t+3 | SSIM t+1" in report
    verdict = report.split("**Verdict (measured).**", 1)[1].split("\n\n", 1)[0]
    assert "copy-last MSE" in verdict
    for name in ("ConvLSTM", "ConvLSTM composite", "PredRNN", "PredRNN++", "E3D-LSTM"):
        assert f"{name} (n=1): MSE" in verdict, verdict
    for newer, older in (
        ("PredRNN", "ConvLSTM"),
        ("PredRNN++", "PredRNN"),
        ("E3D-LSTM", "PredRNN"),
        ("ConvLSTM composite", "ConvLSTM"),
    ):
        assert re.search(rf"{re.escape(newer)}'s MSE is below {older}'s at steps (none|[0-9, -]+),", verdict)
        assert f"{newer} beats {older} in MSE" in verdict and f"{newer} beats {older} in SSIM" in verdict
    assert re.search(r"(Mixed verdict|The claim held|The claim did not hold)\.$", verdict.strip()), verdict
    assert "**What differs from the papers.**" in report and "23.97" in report and "36.19" in report
