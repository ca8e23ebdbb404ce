"""The experiment recipes (recipes/<name>.sh) run end to end with debug=smoke, one seed and one job at a
time (Hydra's basic launcher, in one process), and write their report: a Markdown page with a compare
table and the PNGs it names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TINY_TEXT

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run_recipe(name: str, tmp_path: Path, *arguments: str, env: dict[str, str] | None = None) -> str:
    """Run recipes/NAME.sh into tmp_path; return its report (the Markdown page), checked for a table
    and for every image it names."""
    variables = (
        os.environ
        | {
            "SEQTOOL": f"{sys.executable} -m seqtool",
            "PYTHON": sys.executable,
            "EXPERIMENTS_DIR": str(tmp_path / "docs"),
            "RUNS_DIR": str(tmp_path / "runs"),
            "JOBS": "1",
            "SEEDS": "1",
            "OMP_NUM_THREADS": "1",
        }
        | (env or {})
    )
    command = ["bash", str(ROOT / "recipes" / f"{name}.sh"), *arguments, "debug=smoke", "device=cpu"]
    result = subprocess.run(command, cwd=ROOT, env=variables, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = (tmp_path / "docs" / f"{name}.md").read_text(encoding="utf-8")
    assert report.startswith(f"# {name}") and "**Claim.**" in report and "| commit |" in report
    assert re.search(r"^\| --- \|", report, re.MULTILINE), report  # a compare table
    images = re.findall(r"\]\((img/[^)]+\.png)\)", report)
    assert images and all((tmp_path / "docs" / image).is_file() for image in images), images
    return report


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TINY_TEXT * 3, encoding="utf-8")
    return path


def test_exploding_gradients(tmp_path):
    report = run_recipe("exploding_gradients", tmp_path)
    assert "clip_value" in report and "**Verdict (measured).**" in report


def test_long_dependencies(tmp_path):
    report = run_recipe("long_dependencies", tmp_path, env={"LAGS": "10,20"})
    assert "Copy-memory" in report and "gtt_lstm.png" in report and "**Verdict (measured).**" in report


def test_cell_options(tmp_path, corpus):
    report = run_recipe("cell_options", tmp_path, str(corpus), "task.eval_max_chars=2000")
    assert "layer_norm" in report and "**Verdict (measured).**" in report


def test_curriculum(tmp_path, corpus):
    """Its overrides reach both of its tasks (translation and the char LM), so none is task-specific."""
    report = run_recipe("curriculum", tmp_path, str(corpus))
    assert "Scheduled sampling" in report and "**Verdict (measured).**" in report


def test_interpretable_cells(tmp_path):
    play = tmp_path / "play.txt"  # stands in for tiny Shakespeare: lines, apostrophes, brackets
    play.write_text("ROMEO:\nBut soft, what light (through) yonder window breaks?\nIt's the east.\n\n" * 60)
    report = run_recipe("interpretable_cells", tmp_path, str(play), "task.max_chars=30000",
                        "task.eval_max_chars=2000")  # fmt: skip
    assert "| signal | Python source: unit | r | untrained r | tiny Shakespeare: unit |" in report
    for row in ("| inside a string |", "| column |", "| indentation |", "| bracket depth |"):
        assert row in report
    assert "**Verdict (measured).** The claim" in report and "The signals move together" in report
    assert "| *train minutes* |" in report
    images = sorted(path.name for path in (tmp_path / "docs" / "img").glob("interpretable_cells_*.png"))
    assert "interpretable_cells_python_column.png" in images
    assert "interpretable_cells_shakespeare_column.png" in images
    assert "interpretable_cells_shakespeare_indent.png" not in images  # the play has no indentation
