"""`torchrun --nproc-per-node 2 -m seqtool train ...` on the CPU with the gloo backend."""

import json
import subprocess
import sys

import pytest

from tests.helpers import tiny_corpus, tiny_run


def torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return subprocess.run(
        [*command, "-m", "seqtool", "train", *args], capture_output=True, text=True, timeout=300
    )


def losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["loss"], r["replica_spread"]) for r in records if "loss" in r}


@pytest.mark.slow
def test_two_processes_stay_in_sync_and_resume_exactly(tmp_path):
    corpus = tiny_corpus(tmp_path)
    common = ["trainer.lr_schedule.kind=constant", "model.dropout=0.2", "task.batch_size=2"]
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    for result in (
        torchrun(*tiny_run(corpus, straight, *common, steps=8)),
        torchrun(*tiny_run(corpus, halves, *common, steps=4)),
        torchrun("--resume", str(halves), "trainer.max_steps=8"),
    ):
        assert result.returncode == 0, result.stderr[-2000:]
    logged = losses(straight)
    assert sorted(logged) == list(range(1, 9))
    assert all(spread == 0.0 for _, spread in logged.values())  # both ranks hold identical weights
    assert losses(halves) == logged  # resumed across both ranks == uninterrupted
    assert result.stdout.count("run:") == 1  # only rank 0 reports
