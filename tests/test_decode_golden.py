"""`seqtool decode` and `seqtool eval` give, for a fixed seed, exactly the outputs they gave before decoding
became one path (decode/ owns the search and the output, tasks name inputs and render results).

The golden files in tests/golden/decode/ were written by the code before that change, from tiny runs
trained here with fixed seeds. Regenerate them only on purpose: SEQTOOL_WRITE_GOLDEN=1 pytest this file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from seqtool import commands
from seqtool.cli import app
from seqtool.config import compose
from tests.helpers import quick_trainer, tiny_corpus, tiny_run
from tests.test_captioning_task import tiny_run as captioning_run
from tests.test_video_task import tiny_run as video_run

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

GOLDEN = Path(__file__).parent / "golden" / "decode"
WRITE = os.environ.get("SEQTOOL_WRITE_GOLDEN") == "1"

TRANSLATION = ["task=translation", "task.synthetic.train_size=300", "task.synthetic.val_size=12",
               "task.synthetic.test_size=10", "task.synthetic.max_length=8", "task.max_tokens=300",
               "task.bucket_size=64"]  # fmt: skip
RUNS = {
    "charlm": lambda tmp: tiny_run(tiny_corpus(tmp), tmp / "run", steps=40),
    "seq2seq": lambda tmp: [
        *TRANSLATION,
        "model=seq2seq_attn",
        "model.embedding_size=16",
        "model.hidden_size=16",
        "model.dropout=0.0",
        f"run_dir={tmp / 'run'}",
        "trainer.optimizer.lr=0.01",
        *quick_trainer(80),
    ],  # fmt: skip
    "transformer": lambda tmp: [
        *TRANSLATION,
        "model=transformer",
        "model.d_model=16",
        "model.heads=2",
        "model.ffn_size=32",
        "model.encoder_layers=1",
        "model.decoder_layers=1",
        "model.dropout=0.0",
        "model.max_positions=24",
        f"run_dir={tmp / 'run'}",
        "trainer.optimizer.lr=0.01",
        *quick_trainer(80),
    ],  # fmt: skip
    "captioner": lambda tmp: captioning_run(tmp / "run", "trainer.optimizer.lr=0.01", steps=40),
    "video": lambda tmp: video_run(tmp / "run", steps=4),
}

SOURCES = "abc\ncbad\nddca\nb\n"
# case name -> (run, decode arguments); {tmp} is a fresh folder of the case
CASES = {
    "charlm_sample": ("charlm", ["--prime", "the ", "--max-len", "40", "--seed", "3"]),
    "charlm_greedy": ("charlm", ["--prime", "the ", "--max-len", "40", "--greedy"]),
    "charlm_topk_num": (
        "charlm",
        [
            "--prime",
            "qu",
            "--max-len",
            "30",
            "--num",
            "3",
            "--temperature",
            "0.8",
            "--top-k",
            "5",
            "--seed",
            "1",
        ],
    ),  # fmt: skip
    "charlm_topp_empty_prime": ("charlm", ["--max-len", "30", "--top-p", "0.9", "--seed", "2"]),
    "seq2seq_default": ("seq2seq", ["--input", "{tmp}/src.txt"]),
    "seq2seq_greedy": ("seq2seq", ["--input", "{tmp}/src.txt", "--greedy"]),
    "seq2seq_nbest": (
        "seq2seq",
        ["--input", "{tmp}/src.txt", "--beam", "4", "--nbest", "3", "--alpha", "0.6"],
    ),
    "seq2seq_sample": (
        "seq2seq",
        ["--input", "{tmp}/src.txt", "--temperature", "0.9", "--num", "2", "--seed", "2"],
    ),  # fmt: skip
    "seq2seq_plots": (
        "seq2seq",
        ["--input", "{tmp}/src.txt", "--beam", "2", "--plot-attention", "{tmp}/att"],
    ),
    "seq2seq_prime": ("seq2seq", ["--prime", "dcba", "--max-len", "3"]),
    "transformer_default": ("transformer", ["--input", "{tmp}/src.txt"]),
    "transformer_nbest": (
        "transformer",
        ["--input", "{tmp}/src.txt", "--beam", "3", "--nbest", "2", "-o", "{tmp}/out.txt"],
    ),  # fmt: skip
    "captioner_default": ("captioner", ["--num", "3"]),
    "captioner_greedy": ("captioner", ["--num", "2", "--greedy"]),
    "captioner_nbest": ("captioner", ["--num", "2", "--beam", "3", "--nbest", "2"]),
    "captioner_sample": ("captioner", ["--num", "2", "--temperature", "1.0", "--seed", "4"]),
    "captioner_plots": ("captioner", ["--num", "2", "--plot-attention", "{tmp}/att"]),
    "video_default": ("video", ["--num", "2", "-o", "{tmp}/pred.npy", "--plot", "{tmp}/plots"]),
    "video_horizon": ("video", ["--num", "1", "--horizon", "3", "-o", "{tmp}/pred.npy"]),
}
EVALS = {
    "seq2seq_eval_beam": ("seq2seq", ["--split", "test", "--beam", "3", "--json"]),
    "transformer_eval": ("transformer", ["--json"]),
    "captioner_eval": ("captioner", ["--split", "test", "--json"]),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    made = {}
    for name, overrides in RUNS.items():
        folder = tmp_path_factory.mktemp(name)
        made[name] = commands.train(compose(overrides(folder)))[0]
    return made


def _outputs(tmp: Path, result) -> dict[str, object]:
    """What a command produced: its stdout and every file it wrote under `tmp` (text as text, .npy as
    a nested list rounded to 6 places, PNG by name only)."""
    stdout = result.stdout.replace(str(tmp), "{tmp}")
    produced: dict[str, object] = {"exit": result.exit_code, "stdout": stdout}
    for path in sorted(tmp.rglob("*")):
        if not path.is_file() or path.name == "src.txt":
            continue
        key = str(path.relative_to(tmp))
        if path.suffix == ".npy":
            produced[key] = np.round(np.load(path).astype(np.float64), 6).tolist()
        elif path.suffix in (".txt", ".tsv"):
            produced[key] = path.read_text(encoding="utf-8")
        else:
            produced[key] = "file"
    return produced


def _check(name: str, produced: dict[str, object]) -> None:
    golden = GOLDEN / f"{name}.json"
    if WRITE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(json.dumps(produced, indent=1) + "\n", encoding="utf-8")
        return
    assert golden.is_file(), f"no golden output for {name}; write it with SEQTOOL_WRITE_GOLDEN=1"
    assert produced == json.loads(golden.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_decode_outputs_are_unchanged(case, runs, tmp_path):
    run, arguments = CASES[case]
    (tmp_path / "src.txt").write_text(SOURCES, encoding="utf-8")
    arguments = [argument.replace("{tmp}", str(tmp_path)) for argument in arguments]
    result = CliRunner().invoke(app, ["decode", str(runs[run]), "--device", "cpu", *arguments])
    assert result.exit_code == 0, result.output
    _check(case, _outputs(tmp_path, result))


@pytest.mark.parametrize("case", sorted(EVALS))
def test_eval_metrics_are_unchanged(case, runs, tmp_path):
    run, arguments = EVALS[case]
    result = CliRunner().invoke(app, ["eval", str(runs[run]), "--device", "cpu", *arguments])
    assert result.exit_code == 0, result.output
    _check(case, {"metrics": json.loads(result.stdout)})
