"""recipes/video_models.sh end to end with debug=smoke and tiny frames, on the embedded bouncing shapes
(no ../shared/data needed): the compare table with one row per model, the per-horizon MSE and SSIM plots,
one predicted strip per model and the measured verdict."""

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
    "model.num_layers=1",
]


def test_video_models(tmp_path):
    report = run_recipe("video_models", tmp_path, "shapes", *TINY)
    assert "Sequences: the embedded bouncing shapes" in report
    rows = re.findall(r"^\| seqtool\.models\.(\w+)\.\w+ \| 1 \|", report, re.MULTILINE)
    assert sorted(rows) == ["convlstm", "predrnn"], report
    assert "val_mse_copy_last final" in report and "params" in report
    for image in ("video_models_mse.png", "video_models_ssim.png", "video_models_convlstm.png",
                  "video_models_predrnn.png"):  # fmt: skip
        assert f"(img/{image})" in report
    verdict = report.split("**Verdict (measured).**", 1)[1].split("\n\n", 1)[0]
    assert "copy-last MSE" in verdict and "ConvLSTM (n=1): MSE" in verdict and "PredRNN (n=1): MSE" in verdict
    assert "(black frames: MSE below at steps" in verdict
    assert re.search(r"PredRNN's MSE is below ConvLSTM's at steps (none|[0-9, -]+),", verdict), verdict
    assert re.search(r"(Mixed verdict|The claim held|The claim did not hold)\.$", verdict.strip()), verdict
    assert "**What differs from the papers.**" in report and "23.97" in report
