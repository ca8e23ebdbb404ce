"""Sweeps through Hydra's multirun: the product and the job names, sweep.yaml, a job directory that is an
ordinary run, a failed job that leaves the others alone, --resume of what is unfinished (after a failure
and after Ctrl-C), the joblib and submitit_local launchers, and bad overrides as one-line errors."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from seqtool import sweep
from seqtool.cli import app
from seqtool.errors import UserError
from tests.helpers import ROOT, TINY_TEXT, assert_user_error, seqtool, tiny_corpus

pytestmark = pytest.mark.usefixtures("one_thread")

# A char-RNN of a second or so: the smoke trainer (6 steps), a tiny model, a small slice of the corpus.
TINY = [
    "debug=smoke",
    "model.hidden_size=16",
    "model.embedding_size=8",
    "task.max_chars=20000",
    "device=cpu",
]
HAS_SUBMITIT = importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None


def statuses(sweep_dir: Path) -> dict[str, str]:
    return {job["name"]: job["status"] for job in sweep.read_manifest(sweep_dir)["jobs"]}


def train(*args: str):
    return CliRunner().invoke(app, ["train", *args])


# ------------------------------------------------------------------------------- the product and names
def test_the_cartesian_product_is_hydras_and_jobs_are_named_by_what_varies():
    command = ["model.cell=rnn,lstm,gru", "seed=1,2,3", "trainer.clip_norm=null,1.0", "debug=smoke"]
    hydra_overrides, task_overrides, jobs = sweep.expand([*command, "hydra/launcher=joblib"])
    assert hydra_overrides == ["hydra/launcher=joblib"] and task_overrides == command
    varying = sweep.varying_keys(jobs)
    assert varying == ["model.cell", "seed", "trainer.clip_norm"]
    names = [sweep.job_name(job, varying) for job in jobs]
    assert len(jobs) == 18 and len(set(names)) == 18
    assert names[0] == "cell=rnn,seed=1,clip_norm=null" and names[-1] == "cell=gru,seed=3,clip_norm=1.0"
    assert ["model.cell=gru", "seed=2", "trainer.clip_norm=null", "debug=smoke"] in jobs


def test_range_choice_and_glob_expand_and_a_shared_last_component_stays_unambiguous():
    _, _, jobs = sweep.expand(["seed=range(1,3)", "model.cell=choice(rnn,gru)", "experiment=glob(moving_*)"])
    assert len(jobs) == 2 * 2 * 2
    assert {item for job in jobs for item in job if item.startswith("experiment=")} == {
        "experiment=moving_mnist_convlstm",
        "experiment=moving_mnist_predrnn",
    }
    labels = sweep.short_labels(["trainer.lr_schedule.kind", "trainer.curriculum.kind", "seed", "model/x"])
    assert labels == {
        "trainer.lr_schedule.kind": "lr_schedule.kind",
        "trainer.curriculum.kind": "curriculum.kind",
        "seed": "seed",
        "model/x": "x",
    }
    assert sweep.job_name(["task.path=/data/a.txt", "seed=1"], ["task.path"]) == "path=_data_a.txt"
    assert sweep.job_name(["seed=1"], []) == "run"


# ---------------------------------------------------------------------------------------- bad overrides
def test_a_bad_override_in_a_sweep_is_one_line_and_exit_2(tmp_path):
    result = seqtool("train", "-m", "model.celll=rnn,gru", f"run_dir={tmp_path / 'sweep'}")
    assert_user_error(result, "model.celll")
    assert not (tmp_path / "sweep").exists()


def test_a_bad_value_stops_the_sweep_before_anything_runs(tmp_path):
    with pytest.raises(UserError, match="job cell=lstn: model.cell='lstn' should be one of"):
        sweep.run(["model.cell=rnn,lstn", f"run_dir={tmp_path / 'sweep'}"])
    with pytest.raises(UserError, match="hydra/launcher/nope"):
        sweep.run(["seed=1,2", "hydra/launcher=nope", f"run_dir={tmp_path / 'sweep'}"])
    assert not (tmp_path / "sweep").exists()
    assert isinstance(train("--jobs", "2", "seed=1").exception, UserError)  # --jobs without -m


# ------------------------------------------------------ one sweep with a failing job, run by joblib
@pytest.fixture(scope="module")
def failed_sweep(tmp_path_factory):
    """`-m --jobs 2 task.path=A,B` where B does not exist: A trains, B fails as a user error."""
    root = tmp_path_factory.mktemp("sweep")
    present, missing = tiny_corpus(root), root / "missing.txt"
    sweep_dir = root / "runs"
    result = train("-m", "--jobs", "2", f"task.path={present},{missing}", *TINY, f"run_dir={sweep_dir}")
    names = {"present": f"path={present}".replace("/", "_"), "missing": f"path={missing}".replace("/", "_")}
    manifest = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    return result, sweep_dir, names, manifest, missing


def test_a_failed_job_is_reported_and_the_other_finishes(failed_sweep):
    result, sweep_dir, names, manifest, _ = failed_sweep
    assert result.exit_code == 2, result.output  # every failure was a user error
    assert "1 done, 1 failed, 0 skipped" in result.output
    assert f"failed: {names['missing']}: task.path=" in result.output
    jobs = {job["name"]: job for job in manifest["jobs"]}
    assert jobs[names["present"]]["status"] == "done"
    assert jobs[names["missing"]]["status"] == "failed" and jobs[names["missing"]]["failure"] == "user"
    assert "no such file" in jobs[names["missing"]]["error"]
    assert manifest["varying"] == ["task.path"]
    assert manifest["overrides"][1:] == [*TINY, f"run_dir={sweep_dir}"]
    assert jobs[names["present"]]["overrides"][0].startswith("task.path=")


def test_a_job_directory_is_an_ordinary_run(failed_sweep):
    _, sweep_dir, names, _, _ = failed_sweep
    job_dir = sweep_dir / names["present"]
    assert {"config.yaml", "metrics.jsonl", "checkpoints", "vocab"} <= {p.name for p in job_dir.iterdir()}
    assert not (job_dir / ".hydra").exists()
    config = yaml.safe_load((job_dir / "config.yaml").read_text())
    assert "hydra" not in config and config["model"]["hidden_size"] == 16
    assert config["run_dir"] == str(job_dir)
    result = CliRunner().invoke(app, ["eval", str(job_dir), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["loss"] > 0


def test_resume_runs_only_the_jobs_that_are_not_done(failed_sweep):
    _, sweep_dir, names, manifest, missing = failed_sweep
    finished = sweep_dir / names["present"] / "metrics.jsonl"
    before = finished.stat().st_mtime_ns
    with pytest.raises(UserError, match="give them or none"):
        sweep.run(["seed=7"], resume=sweep_dir)
    missing.write_text(TINY_TEXT, encoding="utf-8")  # the user fixes the cause
    launcher = ["hydra/launcher=submitit_local"] if HAS_SUBMITIT else []  # the SLURM path, run here
    result = train("--resume", str(sweep_dir), *launcher)
    assert result.exit_code == 0, result.output
    assert "1 done, 0 failed, 1 skipped" in result.output
    assert finished.stat().st_mtime_ns == before
    assert statuses(sweep_dir) == {names["present"]: "done", names["missing"]: "done"}
    assert (sweep_dir / names["missing"] / "checkpoints" / "last" / "meta.json").is_file()


# ------------------------------------------------------------------------------------- Ctrl-C, resume
def test_ctrl_c_stops_the_sweep_and_resume_continues_from_the_checkpoint(tmp_path):
    sweep_dir = tmp_path / "sweep"
    slow = ["trainer.eval_every=1", "task.batch_size=2", "task.seq_len=16"]
    command = ["train", "-m", "seed=1,2", *TINY, *slow, "task.min_seq_len=4", f"run_dir={sweep_dir}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "seqtool", *command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    first_checkpoint = sweep_dir / "seed=1" / "checkpoints" / "last" / "meta.json"
    deadline = time.monotonic() + 60
    while not first_checkpoint.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"seqtool train --resume {sweep_dir}" in stderr.strip().splitlines()[-1]
    assert set(statuses(sweep_dir).values()) - {"done"}  # something is left to do

    result = train("--resume", str(sweep_dir))
    assert result.exit_code == 0, result.output
    assert set(statuses(sweep_dir).values()) == {"done"}
    lines = (sweep_dir / "seed=1" / "metrics.jsonl").read_text().splitlines()
    steps = [record["step"] for record in map(json.loads, lines) if "loss" in record]
    assert steps == list(range(1, 7))  # continued from checkpoints/last, not started over
