"""Every recipe runs end to end with the smoke trainer (the recipes pass extra overrides to train)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TINY_TEXT

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SHRINK = ["trainer=smoke", "device=cpu", "task.batch_size=4", "task.seq_len=16", "model.hidden_size=32"]


@pytest.mark.slow
def test_the_shakespeare_recipe_trains_evaluates_and_samples(tmp_path):
    env = os.environ | {"SEQTOOL": f"{sys.executable} -m seqtool"}
    corpus = tmp_path / "play.txt"
    corpus.write_text("ROMEO:\n" + TINY_TEXT)  # the recipe primes with "ROMEO:"
    command = ["bash", str(RECIPES / "shakespeare_char.sh"), str(corpus), *SHRINK]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "bpc" in result.stdout and "ROMEO:" in result.stdout
    assert list((tmp_path / "runs" / "shakespeare_char").glob("*/plots/curves.png"))
