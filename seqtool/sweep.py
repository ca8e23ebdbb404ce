"""Sweeps: `seqtool train -m a=1,2 b=x,y` is Hydra's own multirun.

Hydra's basic sweeper expands the overrides (comma lists, range(), choice(), glob()) and Hydra's launcher
plugins run the jobs: basic (one after another), joblib (`--jobs N` processes), submitit_local and
submitit_slurm. seqtool schedules nothing itself: it names the jobs, keeps the list of them, and runs
each one exactly as `seqtool train` runs a single config::

    runs/<name>/<timestamp>/        the sweep directory (`run_dir=DIR` names it)
      sweep.yaml                    the sweep's overrides; each job's name, overrides and status
      multirun.yaml                 Hydra's own record of the sweep
      cell=gru,seed=2/              one job: an ordinary run directory (config.yaml, checkpoints/, ...)

A job is named by the overrides that vary across the sweep, each key cut to its last component
(`model.cell` -> `cell`) unless that is ambiguous. Its status is pending, running, done, failed or
interrupted; `seqtool train --resume SWEEP_DIR` runs again every job that is not done, continuing from
checkpoints/last where the job has one.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import shlex
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from seqtool.config import CONFIG_MODULE, check_pairing, compose, respell
from seqtool.errors import TrainingDiverged, UserError

SWEEP_FILE = "sweep.yaml"
DONE, FAILED, SKIPPED, INTERRUPTED = "done", "failed", "skipped", "interrupted"
# How Hydra runs a seqtool job: no .hydra/ folder and no log file in the job directory (it stays an
# ordinary run directory), no change of the working directory, and the job's directory named by
# the `seqtool_job` resolver below.
HYDRA_SETTINGS = [
    "hydra/hydra_logging=none",
    "hydra/job_logging=none",
    "hydra.output_subdir=null",
    "hydra.job.chdir=false",
    "hydra.sweep.subdir=${seqtool_job:}",
]
RESERVED = ("hydra.sweep.", "hydra/sweeper", "hydra.sweeper", "hydra.output_subdir", "hydra.job.")


@dataclass
class Job:
    name: str
    overrides: list[str]
    status: str = "pending"
    failure: str | None = None  # user | diverged | internal
    error: str | None = None


@dataclass
class Plan:
    sweep_dir: Path
    overrides: list[str]  # the sweep's own (non-hydra) overrides, as given
    hydra_overrides: list[str]
    jobs: list[Job]
    varying: list[str]  # the override keys that differ between jobs


@dataclass
class Summary:
    sweep_dir: Path
    outcomes: list[dict[str, Any]] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(outcome["status"] == status for outcome in self.outcomes)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [outcome for outcome in self.outcomes if outcome["status"] == FAILED]

    @property
    def exit_code(self) -> int:
        """0 when every job finished, 2 when every failure was a user error, else 1."""
        if not self.failed:
            return 0
        return 2 if all(outcome.get("failure") == "user" for outcome in self.failed) else 1

    def line(self) -> str:
        counts = ", ".join(f"{self.count(status)} {status}" for status in (DONE, FAILED, SKIPPED))
        return f"sweep {self.sweep_dir}: {counts}"


# ------------------------------------------------------------------------------------------ the command
def is_sweep(path: Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def run(overrides: list[str], *, jobs: int = 1, resume: Path | None = None) -> Summary:
    """Run the sweep the overrides describe (or finish the one in `resume`); every job is attempted."""
    overrides = respell(overrides)
    if resume is not None:
        overrides = _resume_overrides(Path(resume), overrides)
    plan = plan_sweep(overrides, sweep_dir=Path(resume) if resume is not None else None)
    previous = read_manifest(plan.sweep_dir) if resume is not None else None
    launch = [*_settings(plan), *_launcher_overrides(plan.hydra_overrides, jobs), *plan.overrides]
    with _hydra_errors(plan.sweep_dir), _main_hydra() as hydra:
        _check_launcher(hydra, launch)
        write_manifest(plan, previous=previous)
        print(f"sweep {plan.sweep_dir}: {len(plan.jobs)} jobs", flush=True)
        returns = hydra.multirun("config", run_job, launch)
    return Summary(plan.sweep_dir, [_outcome(job_return) for batch in returns for job_return in batch])


def _resume_overrides(sweep_dir: Path, given: list[str]) -> list[str]:
    """The sweep's saved overrides, plus any launcher settings given now."""
    manifest = read_manifest(sweep_dir)
    saved = list(manifest["overrides"])
    hydra_given = [item for item in given if _is_hydra(item)]
    task_given = [item for item in given if not _is_hydra(item)]
    if task_given and sorted(task_given) != sorted(saved):
        raise UserError(
            f"{sweep_dir} is the sweep `{' '.join(saved) or '(no overrides)'}`; --resume finishes it with "
            "those overrides, so give them or none (to train one job further: --resume JOB_DIR)"
        )
    return saved + hydra_given


def _launcher_overrides(hydra_overrides: list[str], jobs: int) -> list[str]:
    if jobs == 1:
        return hydra_overrides
    if any(item.startswith("hydra/launcher") for item in hydra_overrides):
        raise UserError("give either --jobs N (joblib) or hydra/launcher=..., not both")
    return [*hydra_overrides, "hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]


# -------------------------------------------------------------------------------------------- planning
def plan_sweep(overrides: list[str], *, sweep_dir: Path | None = None) -> Plan:
    """Expand the overrides with Hydra's sweeper, name the jobs, and check every job's config."""
    hydra_overrides, task_overrides, job_lists = expand(overrides)
    if reserved := [item for item in hydra_overrides if item.lstrip("+~").startswith(RESERVED)]:
        raise UserError(f"{reserved[0]}: seqtool sets this itself (run_dir=DIR names the sweep directory)")
    varying = varying_keys(job_lists)
    jobs = [Job(job_name(job, varying), list(job)) for job in job_lists]
    _check_unique(jobs)
    configs = [_compose_job(job, first=index == 0) for index, job in enumerate(jobs)]
    if sweep_dir is None:
        sweep_dir = _new_sweep_dir(configs)
    return Plan(Path(sweep_dir), task_overrides, hydra_overrides, jobs, varying)


def expand(overrides: list[str]) -> tuple[list[str], list[str], list[list[str]]]:
    """Hydra's own parsing and cartesian product: (hydra overrides, task overrides, one list per job)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create(config_loader=_config_loader()).parse_overrides(list(overrides))
        hydra_overrides = [item for item, o in zip(overrides, parsed) if o.is_hydra_override()]
        task = [(item, o) for item, o in zip(overrides, parsed) if not o.is_hydra_override()]
        job_lists = BasicSweeper.split_arguments([o for _, o in task], None)[0]
    except HydraException as error:
        raise UserError(f"bad override: {_one_line(error)}") from None
    return hydra_overrides, [item for item, _ in task], [list(job) for job in job_lists]


def _config_loader() -> Any:
    """A Hydra config loader over seqtool's configs, for glob() over a config group."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path

    return ConfigLoaderImpl(config_search_path=create_config_search_path(f"pkg://{CONFIG_MODULE}"))


def varying_keys(job_lists: list[list[str]]) -> list[str]:
    """The override keys that take more than one value across the jobs, in command-line order."""
    values: dict[str, set[str]] = {}
    for job in job_lists:
        for item in job:
            key, value = _split(item)
            values.setdefault(key, set()).add(value)
    return [key for key, seen in values.items() if len(seen) > 1]


def job_name(overrides: list[str], varying: list[str]) -> str:
    """`cell=gru,seed=2`: the varying overrides of one job, keys cut short; `run` when nothing varies."""
    labels = short_labels(varying)
    parts = [f"{labels[key]}={value}" for key, value in map(_split, overrides) if key in labels]
    name = ",".join(parts) or "run"
    return re.sub(r"[/\\\0]", "_", name)


def short_labels(keys: list[str]) -> dict[str, str]:
    """Each key by its shortest dotted tail that no other key shares: model.cell -> cell, but
    trainer.lr_schedule.kind and trainer.curriculum.kind -> lr_schedule.kind and curriculum.kind."""
    words = {key: re.split(r"[./]", key.lstrip("+~")) for key in keys}
    labels = {}
    for key, parts in words.items():
        for size in range(1, len(parts) + 1):
            if sum(other[-size:] == parts[-size:] for other in words.values()) == 1:
                break
        labels[key] = ".".join(parts[-size:])
    return labels


def _split(item: str) -> tuple[str, str]:
    key, _, value = item.partition("=")
    return key, value


def _is_hydra(item: str) -> bool:
    return item.lstrip("+~").startswith(("hydra.", "hydra/"))


def _check_unique(jobs: list[Job]) -> None:
    seen: dict[str, Job] = {}
    for job in jobs:
        if job.name in seen:
            raise UserError(
                f"two jobs would share the directory {job.name!r}: {' '.join(seen[job.name].overrides)} "
                f"and {' '.join(job.overrides)}"
            )
        seen[job.name] = job


def _compose_job(job: Job, *, first: bool) -> DictConfig:
    """The job's config, composed and checked before anything runs, so a bad value or a model that
    does not fit its task stops the sweep. (An error in the first job is most likely everybody's, so
    only the others name their job.)"""
    try:
        cfg = compose(job.overrides)
        check_pairing(cfg)
        return cfg
    except UserError as error:
        if first:
            raise
        raise UserError(f"job {job.name}: {error}") from None


def _new_sweep_dir(configs: list[DictConfig]) -> Path:
    """run_dir when given (the same for every job), else runs/<name>/<timestamp>."""
    run_dirs = {cfg.run_dir for cfg in configs}
    if len(run_dirs) > 1:
        raise UserError("run_dir names the sweep directory, so it cannot take several values")
    run_dir = run_dirs.pop()
    names = {str(cfg.name) for cfg in configs}
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = names.pop() if len(names) == 1 else "sweep"
    sweep_dir = Path(run_dir) if run_dir else Path("runs") / name / stamp
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        hint = f"finish it with --resume {sweep_dir}" if is_sweep(sweep_dir) else "pick another run_dir"
        raise UserError(f"{sweep_dir} is not empty; {hint}")
    return sweep_dir


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ------------------------------------------------------------------------------------------- sweep.yaml
def read_manifest(sweep_dir: Path) -> dict[str, Any]:
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.is_file():
        raise UserError(f"{sweep_dir} is not a sweep directory (no {SWEEP_FILE})")
    try:
        manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise UserError(f"cannot read {path}: {_one_line(error)}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("jobs"), list):
        raise UserError(f"{path} is not a seqtool sweep file (needs overrides and jobs)")
    return manifest


def write_manifest(plan: Plan, *, previous: dict[str, Any] | None = None) -> None:
    """sweep.yaml for the plan; a job that finished in `previous` (the same sweep) stays done."""
    finished = {job["name"] for job in (previous or {}).get("jobs", []) if job.get("status") == DONE}
    for job in plan.jobs:
        if job.name in finished:
            job.status = DONE
    manifest = {
        "command": shlex.join(["seqtool", "train", "-m", *plan.overrides]),
        "overrides": plan.overrides,
        "varying": plan.varying,
        "jobs": [_plain(job.__dict__) for job in plan.jobs],
    }
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    with _locked(plan.sweep_dir):
        _write(plan.sweep_dir, manifest)


def update_job(sweep_dir: Path, name: str, **fields: Any) -> None:
    """Set fields of one job in sweep.yaml (None removes one); safe while other jobs do the same."""
    with _locked(sweep_dir):
        manifest = read_manifest(sweep_dir)
        for job in manifest["jobs"]:
            if job["name"] == name:
                job.update(fields)
                for key in [key for key, value in job.items() if value is None]:
                    del job[key]
        _write(sweep_dir, manifest)


def _plain(job: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in job.items() if value is not None}


def _write(sweep_dir: Path, manifest: dict[str, Any]) -> None:
    header = "# seqtool sweep: `seqtool train --resume <this directory>` runs every job that is not done\n"
    tmp = Path(sweep_dir) / f".{SWEEP_FILE}.tmp{os.getpid()}"
    tmp.write_text(header + yaml.safe_dump(manifest, sort_keys=False, width=1000), encoding="utf-8")
    os.replace(tmp, Path(sweep_dir) / SWEEP_FILE)


@contextlib.contextmanager
def _locked(sweep_dir: Path):
    """An exclusive lock on the sweep (a lock file), so parallel jobs update sweep.yaml one at a time."""
    try:
        import fcntl
    except ImportError:  # Windows: jobs run one at a time there anyway (no joblib fork, no SLURM)
        yield
        return
    with open(Path(sweep_dir) / ".sweep.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------- launching
def _settings(plan: Plan) -> list[str]:
    """seqtool's Hydra settings for this sweep: where it goes, and how its jobs are named."""
    return [*HYDRA_SETTINGS, _quoted("hydra.sweep.dir", str(plan.sweep_dir.resolve())), _excluded_keys(plan)]


@contextlib.contextmanager
def _main_hydra():
    """Hydra's own application object over seqtool's configs, as @hydra.main would make it."""
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra

    version.setbase("1.3")
    search_path = create_config_search_path(f"pkg://{CONFIG_MODULE}")
    try:
        yield Hydra.create_main_hydra2(task_name="seqtool", config_search_path=search_path)
    finally:
        GlobalHydra.instance().clear()


def _check_launcher(hydra: Any, overrides: list[str]) -> None:
    """Compose the sweep's Hydra config once, so a bad hydra/launcher setting stops it before sweep.yaml."""
    from hydra.types import RunMode

    hydra.compose_config("config", overrides, run_mode=RunMode.MULTIRUN, with_log_configuration=False)


@contextlib.contextmanager
def _hydra_errors(sweep_dir: Path):
    """Hydra's composition errors are the user's (exit 2); Ctrl-C ends the sweep with a hint (exit 130)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from seqtool.train import Interrupted

    try:
        yield
    except (HydraException, OmegaConfBaseException) as error:
        raise UserError(f"bad override: {_one_line(error)}") from None
    except KeyboardInterrupt:
        hint = f"finish the sweep with: seqtool train --resume {sweep_dir}"
        raise Interrupted(f"interrupted; {hint}") from None


def _quoted(key: str, value: str) -> str:
    """key='value' in Hydra's override grammar, so commas or spaces in a path do not start a sweep."""
    return f"{key}={_quote(value)}"


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _excluded_keys(plan: Plan) -> str:
    """The keys that do not vary, handed to every job so the `seqtool_job` resolver names it alone."""
    keys = {_split(item)[0] for job in plan.jobs for item in job.overrides} - set(plan.varying)
    quoted = ",".join(_quote(key) for key in sorted(keys))
    return f"hydra.job.config.override_dirname.exclude_keys=[{quoted}]"


def _outcome(job_return: Any) -> dict[str, Any]:
    from hydra.core.utils import JobStatus

    if job_return.status == JobStatus.COMPLETED:
        return job_return.return_value
    error = job_return._return_value  # an exception that escaped run_job: Hydra's own failure
    name = Path(str(job_return.working_dir or "?")).name
    message = f"{type(error).__name__}: {error}"
    return {"name": name, "status": FAILED, "failure": "internal", "error": message}


def _job_directory_name(*, _root_: DictConfig) -> str:
    """hydra.sweep.subdir of a job: job_name of its overrides, the non-varying keys excluded."""
    overrides = [str(item) for item in _root_.hydra.overrides.task]
    excluded = {str(key) for key in _root_.hydra.job.config.override_dirname.exclude_keys}
    return job_name(overrides, [key for key, _ in map(_split, overrides) if key not in excluded])


OmegaConf.register_new_resolver("seqtool_job", _job_directory_name, replace=True)


# ------------------------------------------------------------------------------------------- one job
def run_job(cfg: DictConfig) -> dict[str, Any]:
    """Hydra's task function: train one job in its own run directory. A failure is recorded and
    returned, never raised, so the other jobs go on; only Ctrl-C stops the sweep."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    sweep_dir, name = job_dir.parent, job_dir.name
    manifest = read_manifest(sweep_dir)
    label = f"[{hydra_cfg.job.num + 1}/{len(manifest['jobs'])}] {name}"
    if any(job["name"] == name and job.get("status") == DONE for job in manifest["jobs"]):
        print(f"{label}: done before, skipped", flush=True)
        return {"name": name, "status": SKIPPED}
    print(f"{label}: training in {job_dir}", flush=True)
    update_job(sweep_dir, name, status="running", failure=None, error=None)
    overrides = [str(item) for item in hydra_cfg.overrides.task]
    outcome = {"name": name, **_train_job(cfg, overrides, job_dir, sweep_dir, label)}
    update_job(sweep_dir, name, **{key: outcome.get(key) for key in ("status", "failure", "error")})
    return outcome


def _train_job(
    cfg: DictConfig, overrides: list[str], job_dir: Path, sweep_dir: Path, label: str
) -> dict[str, Any]:
    """seqtool.commands.train on the job's config (or continue its checkpoints/last); the outcome."""
    from seqtool import commands
    from seqtool.progress import format_metrics
    from seqtool.train import Interrupted

    try:
        if (job_dir / "checkpoints" / "last" / "meta.json").is_file():
            _, metrics = commands.train(commands.resume_config(job_dir, []), resume=job_dir)
        else:
            _, metrics = commands.train(_job_config(cfg, overrides, job_dir))
    except (Interrupted, KeyboardInterrupt):
        update_job(sweep_dir, job_dir.name, status=INTERRUPTED)
        print(f"{label}: interrupted", file=sys.stderr, flush=True)
        raise KeyboardInterrupt from None  # not an Exception: Hydra's launchers let it through
    except Exception as error:  # noqa: BLE001 - any failure of one job is reported, the sweep goes on
        failure, message = _failure(error)
        print(f"{label}: failed: {message}", file=sys.stderr, flush=True)
        return {"status": FAILED, "failure": failure, "error": message}
    print(f"{label}: done, val {format_metrics(metrics)}", flush=True)
    return {"status": DONE}


def _job_config(cfg: DictConfig, overrides: list[str], job_dir: Path) -> DictConfig:
    """The job's seqtool config (Hydra already removed its `hydra` node) with run_dir set to the job,
    settled as `seqtool train` settles one (a data source on the command line replaces the default)."""
    from seqtool.config import settle

    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    cfg.run_dir = str(job_dir)
    settle(cfg, overrides)
    return cfg


def _failure(error: Exception) -> tuple[str, str]:
    """(kind, one line) for a failed job; an internal error also prints its traceback."""
    if isinstance(error, UserError):
        return "user", str(error).replace("\n", " ")
    if isinstance(error, TrainingDiverged):
        return "diverged", f"diverged: {error}".replace("\n", " ")
    traceback.print_exc()
    return "internal", f"{type(error).__name__}: {error}".replace("\n", " ")
