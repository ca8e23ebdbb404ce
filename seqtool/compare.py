"""Compare run directories: find them, load them, group seeds, aggregate, render.

It reads files only (config.yaml and metrics.jsonl), never builds a model, so it works on runs made by
any version of seqtool::

    paths ──► run dirs ──► Run(flat config, records) ──► configurations ──► rows ──► table / md / csv / json
                           (a folder with config.yaml       (the config keys that     (final, best and best
                            and metrics.jsonl, found         differ; runs that differ  step of each val_*
                            recursively below a sweep)       only in seed are one)     metric; wall time)

A metric is better when smaller (loss, perplexity, bpc, mse, ...) unless its name contains one of
HIGHER_IS_BETTER; the metric the runs were trained to watch (trainer.eval_metric) follows the runs'
trainer.eval_mode instead.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from seqtool.errors import UserError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
FORMATS = ("table", "md", "csv", "json")
HIGHER_IS_BETTER = (
    "bleu", "chrf", "accuracy", "exact_match", "ssim", "psnr", "cider", "agreement", "f1", "rouge", "meteor",
)  # fmt: skip
# a metric is SPLIT_NAME: val_* from training, test_* and files_* from `seqtool eval` (compare --evals)
SPLITS = ("val", "test", "files")
NOT_CURVES = ("step", "time", "params")  # logged numbers that are no curve of their own

Mode = Literal["min", "max"]


@dataclass(frozen=True)
class Run:
    """One run directory: its config flattened to dotted keys, and its metrics.jsonl records."""

    path: Path
    config: dict[str, Any]
    records: list[dict[str, Any]]


@dataclass(frozen=True)
class Stat:
    """One number over the runs of a configuration: mean, sample std (ddof=1; None for one run)."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float | None:
        return sum(self.values) / len(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        if len(self.values) < 2:
            return None
        mean = self.mean
        return math.sqrt(sum((v - mean) ** 2 for v in self.values) / (len(self.values) - 1))


@dataclass(frozen=True)
class MetricStats:
    final: Stat
    best: Stat
    best_step: Stat


@dataclass
class Row:
    """One configuration: its values of the compared keys, its runs (seeds) and their aggregates."""

    config: dict[str, Any]
    runs: list[Run]
    metrics: dict[str, MetricStats] = field(default_factory=dict)
    time: Stat = Stat(())
    params: Stat = Stat(())


@dataclass
class Comparison:
    keys: list[str]  # the configuration keys, the table's first columns
    metric: str | None  # the metric that sorts the rows; None while no run has evaluated
    modes: dict[str, Mode]  # every evaluated metric -> min or max, in column order
    rows: list[Row]
    evaluations: bool = False  # rows of `seqtool eval` records (--evals): time is the evaluation's

    @property
    def sized(self) -> bool:
        """Whether the runs logged their parameter count (runs older than that column did not)."""
        return any(row.params.values for row in self.rows)


# ------------------------------------------------------------------------------------- finding runs
def find_run_dirs(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Run directories named by `paths` or found below them (hidden folders such as .hydra skipped);
    returns them and a warning for each path that holds none."""
    found: list[Path] = []
    warnings: list[str] = []
    for path in map(Path, paths):
        if not path.exists():
            warnings.append(f"{path} does not exist")
        elif _looks_like_run(path):
            found.append(path)
        else:
            below = _runs_below(path) if path.is_dir() else []
            found.extend(below)
            if not below:
                warnings.append(
                    f"{path} holds no run directory (a folder with {CONFIG_FILE} and {METRICS_FILE})"
                )
    return found, warnings


def _looks_like_run(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() or (path / METRICS_FILE).is_file()


def _runs_below(root: Path) -> list[Path]:
    runs = []
    for directory, subdirectories, _ in os.walk(root):
        if _looks_like_run(Path(directory)):
            runs.append(Path(directory))
            subdirectories.clear()  # checkpoints/, plots/ ... of a run are no runs
        else:
            subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
    return sorted(runs)


def load_run(path: Path) -> Run:
    """Read one run directory; a missing file or a malformed line is a UserError naming it."""
    import yaml

    config_file, metrics_file = path / CONFIG_FILE, path / METRICS_FILE
    for file in (config_file, metrics_file):
        if not file.is_file():
            raise UserError(f"{path}: no {file.name}")
    try:
        config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise UserError(f"{config_file}: not YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise UserError(f"{config_file}: not a mapping of config keys")
    records = []
    for number, line in enumerate(metrics_file.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            records.append(_record(line, f"{metrics_file}:{number}"))
    return Run(path=path, config=flatten(config), records=records)


def _record(line: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        raise UserError(f"{where}: not a JSON object") from None
    if not isinstance(record, dict) or not isinstance(record.get("step"), int):
        raise UserError(f"{where}: not a metrics record (a JSON object with an integer step)")
    return record


def first_of(warnings: list[str]) -> str:
    """The first warning, and how many more there were: the one line of an error that has several."""
    more = f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""
    return f"{warnings[0]}{more}"


def load_runs(paths: list[Path]) -> tuple[list[Run], list[str]]:
    """Every readable run under `paths`, and one warning per skipped path or run; none at all is a
    UserError (one line, with the first reason)."""
    directories, warnings = find_run_dirs(paths)
    runs = []
    for directory in directories:
        try:
            runs.append(load_run(directory))
        except UserError as error:
            warnings.append(f"skipped {error}")
    if not runs:
        raise UserError(f"no runs to compare{': ' + first_of(warnings) if warnings else ''}")
    return runs, warnings


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"cell": "gru"}} -> {"model.cell": "gru"}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


# ------------------------------------------------------------------------------------ configurations
def differing_keys(runs: list[Run]) -> list[str]:
    """Config keys whose values differ between runs, in config order; run_dir, hydra.* and the seed
    (with any *.seed that copies it, such as task.seed: ${seed}) are never among them."""
    keys = list(dict.fromkeys(key for run in runs for key in run.config))
    return [
        key for key in keys if not _ignored(key, runs) and len({_value_key(run, key) for run in runs}) > 1
    ]


def _ignored(key: str, runs: list[Run]) -> bool:
    if key in ("run_dir", "seed") or key.startswith("hydra."):
        return True
    copies_seed = all(run.config.get(key) == run.config.get("seed") for run in runs)
    return key.rsplit(".", 1)[-1] == "seed" and copies_seed


def _value_key(run: Run, key: str) -> str:
    return json.dumps(run.config.get(key, "<absent>"), sort_keys=True)


def resolve_keys(names: list[str], runs: list[Run]) -> list[str]:
    """--by names -> config keys: a full dotted key, or its last components (`kind`, `curriculum.kind`)
    when they name one key."""
    keys = list(dict.fromkeys(key for run in runs for key in run.config))
    resolved = []
    for name in (name.strip() for name in names if name.strip()):
        matches = [name] if name in keys else [key for key in keys if key.endswith("." + name)]
        if not matches:
            raise UserError(
                f"--by {name}: no such config key (keys that differ: {_listing(differing_keys(runs))})"
            )
        if len(matches) > 1:
            raise UserError(f"--by {name} is ambiguous: {', '.join(matches)}; name the full key")
        resolved.append(matches[0])
    return list(dict.fromkeys(resolved))


def _listing(keys: list[str]) -> str:
    return ", ".join(keys) if keys else "none"


def group(runs: list[Run], keys: list[str]) -> list[Row]:
    """One row per distinct combination of `keys` (first-seen order); the other differences, such as
    the seed, are what a row averages over."""
    rows: dict[tuple[str, ...], Row] = {}
    for run in runs:
        signature = tuple(_value_key(run, key) for key in keys)
        if signature not in rows:
            rows[signature] = Row(config={key: run.config.get(key) for key in keys}, runs=[])
        rows[signature].runs.append(run)
    return list(rows.values())


# --------------------------------------------------------------------------------------- aggregates
def metric_mode(name: str, runs: list[Run]) -> Mode:
    """min or max: the runs' trainer.eval_mode for their eval_metric, else the name rule above."""
    for run in runs:
        watched = {f"{split}_{run.config.get('trainer.eval_metric')}" for split in SPLITS}
        if name in watched and run.config.get("trainer.eval_mode"):
            return run.config["trainer.eval_mode"]
    return "max" if any(word in name.lower() for word in HIGHER_IS_BETTER) else "min"


def evaluated_metrics(runs: list[Run]) -> list[str]:
    """The numeric val_* (and test_*) keys of the runs, in the order they were first logged."""
    return list(
        dict.fromkeys(
            key for run in runs for record in run.records for key, value in record.items()
            if key.startswith(tuple(f"{split}_" for split in SPLITS)) and _is_number(value)
        )
    )  # fmt: skip


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def run_metric(run: Run, name: str, mode: Mode) -> tuple[float, float, int | None] | None:
    """(final, best, step of the best) of one metric in one run; the best is over finite values (NaN
    when there are none); None when the run never logged it."""
    points = [(r["step"], float(r[name])) for r in run.records if _is_number(r.get(name))]
    if not points:
        return None
    finite = [(step, value) for step, value in points if math.isfinite(value)]
    if not finite:
        return points[-1][1], math.nan, None
    pick = min if mode == "min" else max
    best = pick(value for _, value in finite)
    best_step = next(step for step, value in finite if value == best)  # the first to reach it
    return points[-1][1], best, best_step


def wall_time(run: Run) -> float | None:
    """Seconds of training from the logged "time" (which restarts at 0 when a run is resumed, so the
    segments add up); None for runs logged before "time" existed."""
    return _elapsed(run)[-1] if run.records else None


def aggregate(row: Row, modes: dict[str, Mode]) -> Row:
    """Fill a row's metric and time statistics from its runs."""
    for name, mode in modes.items():
        per_run = [found for run in row.runs if (found := run_metric(run, name, mode)) is not None]
        finals = tuple(final for final, _, _ in per_run)
        bests = tuple(best for _, best, _ in per_run)
        steps = tuple(float(step) for _, _, step in per_run if step is not None)
        row.metrics[name] = MetricStats(final=Stat(finals), best=Stat(bests), best_step=Stat(steps))
    row.time = Stat(tuple(t for run in row.runs if (t := wall_time(run)) is not None))
    row.params = Stat(tuple(n for run in row.runs if (n := parameters(run)) is not None))
    return row


def parameters(run: Run) -> float | None:
    """The trainable parameters the trainer logged on the run's first line (None before it did)."""
    return next((float(r["params"]) for r in run.records if _is_number(r.get("params"))), None)


def compare(
    runs: list[Run], *, metric: str | None = None, by: list[str] | None = None, only: list[str] | None = None
) -> Comparison:
    """Group the runs into configurations (the differing keys, or the --by keys), aggregate each and
    sort by the best value of `metric` (default: the runs' trainer.eval_metric, as val_NAME); `only`
    keeps just these metric columns (NAME or val_NAME)."""
    keys = resolve_keys(by, runs) if by else differing_keys(runs)
    names = evaluated_metrics(runs)
    if only:
        names = _only(only, names)
    metric = _sort_metric(metric, names, runs)
    ordered = [metric, *(name for name in names if name != metric)] if metric else []
    modes = {name: metric_mode(name, runs) for name in ordered}
    rows = [aggregate(row, modes) for row in group(runs, keys)]
    if metric:
        rows.sort(key=lambda row: _sort_key(row, metric, modes[metric]))
    return Comparison(keys=keys, metric=metric, modes=modes, rows=rows)


def _only(wanted: list[str], names: list[str]) -> list[str]:
    """--metrics: the named metric columns, in the order given."""
    kept = []
    for name in wanted:
        found = _named(name, names)
        if found not in names:
            raise UserError(f"--metrics {name}: the runs evaluated {', '.join(names) or 'nothing yet'}")
        kept.append(found)
    return kept


def _sort_metric(metric: str | None, names: list[str], runs: list[Run]) -> str | None:
    """--metric (NAME or val_NAME), else the eval_metric most runs watched, else the first evaluated."""
    if metric is None:
        watched = [_named(str(run.config.get("trainer.eval_metric")), names) for run in runs]
        metric = max(dict.fromkeys(watched), key=watched.count)
        return metric if metric in names else next(iter(names), None)
    metric = _named(metric, names)
    if metric not in names:
        evaluated = ", ".join(names) if names else "nothing yet (no val_* keys in metrics.jsonl)"
        raise UserError(f"--metric {metric}: the runs evaluated {evaluated}")
    return metric


def _named(name: str, names: list[str]) -> str:
    """NAME -> the evaluated column it means: itself, val_NAME or test_NAME (the first present)."""
    return next((found for found in (name, *(f"{split}_{name}" for split in SPLITS)) if found in names), name)


def _sort_key(row: Row, metric: str, mode: Mode) -> tuple[bool, float]:
    best = row.metrics[metric].best.mean
    if best is None or not math.isfinite(best):
        return True, 0.0  # no evaluation, or a diverged one: last
    return False, best if mode == "min" else -best


# ----------------------------------------------------------------------------------------- rendering
def columns(comparison: Comparison) -> list[str]:
    """The table's headers: the configuration keys, n, final and best of each metric, best step, time."""
    metrics = [f"{name} {which}" for name in comparison.modes for which in ("final", "best")]
    size = ["params"] if comparison.sized else []
    return [*comparison.keys, "n", *metrics, "best step", "time (s)", *size]


def _stats(row: Row, comparison: Comparison) -> list[Stat]:
    """The statistic behind each numeric column, in column order."""
    stats = [s for name in comparison.modes for s in (row.metrics[name].final, row.metrics[name].best)]
    best_step = row.metrics[comparison.metric].best_step if comparison.metric else Stat(())
    return [*stats, best_step, row.time, *([row.params] if comparison.sized else [])]


def show_value(value: Any) -> str:
    """A config value as an override writes it: gru, 0.5, true, null, [1, 2]."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def show_number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)  # nan, inf, -inf: a diverged run stays visible
    if float(value).is_integer() and abs(value) < 1e10:  # counts such as params print whole
        return str(int(value))
    return f"{value:.{digits}g}"


def show_stat(stat: Stat) -> str:
    """mean ± std over seeds; the mean alone for one run; — for none."""
    if stat.std is None:
        return show_number(stat.mean)
    return f"{show_number(stat.mean)} ± {show_number(stat.std, 2)}"


def table_rows(comparison: Comparison) -> list[list[str]]:
    """Every row as display strings, in column order."""
    return [
        [*(show_value(row.config[key]) for key in comparison.keys), str(len(row.runs)),
         *(show_stat(stat) for stat in _stats(row, comparison))]
        for row in comparison.rows
    ]  # fmt: skip


def caption(comparison: Comparison) -> str:
    things = "evaluations" if comparison.evaluations else "runs"
    runs = (
        f"{sum(len(row.runs) for row in comparison.rows)} {things} in {len(comparison.rows)} configurations"
    )
    if comparison.evaluations:
        runs += "; time: seconds of the evaluation"
    if comparison.metric is None:
        return f"{runs}; no evaluation yet"
    direction = "lowest" if comparison.modes[comparison.metric] == "min" else "highest"
    return (
        f"{runs}; sorted by best {comparison.metric}, {direction} first (best step: where it was "
        "reached); mean ± std over seeds"
    )


def rich_table(comparison: Comparison):
    """The comparison as a rich Table for the terminal; a statistic's header on two lines."""
    from rich.table import Table

    table = Table(caption=caption(comparison))
    for index, header in enumerate(columns(comparison)):
        if index < len(comparison.keys):
            table.add_column(header, overflow="fold")  # a configuration is read whole, never cut short
        else:
            table.add_column(header.replace(" ", "\n", 1), justify="right")
    for row in table_rows(comparison):
        table.add_row(*row)
    return table


def print_table(comparison: Comparison) -> None:
    """Print the rich table: fitted to a terminal's width; at its natural width into a pipe or file."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=100_000)
    console.print(rich_table(comparison))


def to_markdown(comparison: Comparison) -> str:
    headers = columns(comparison)
    align = ["---" if i < len(comparison.keys) else "---:" for i in range(len(headers))]
    lines = [_markdown_line(headers), _markdown_line(align)]
    lines += [_markdown_line(cells) for cells in table_rows(comparison)]
    return "\n".join(lines) + f"\n\n{caption(comparison)}.\n"


def _markdown_line(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def to_csv(comparison: Comparison) -> str:
    """One line per configuration; each statistic as a mean column and a _std column (empty for n=1)."""
    stats = [f"{name}_{which}" for name in comparison.modes for which in ("final", "best")]
    numeric = [*stats, "best_step", "time_s", *(["params"] if comparison.sized else [])]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*comparison.keys, "n", *(c for name in numeric for c in (name, f"{name}_std"))])
    for row in comparison.rows:
        values = [v for stat in _stats(row, comparison) for v in (stat.mean, stat.std)]
        config = [show_value(row.config[key]) for key in comparison.keys]
        writer.writerow([*config, len(row.runs), *("" if v is None else repr(v) for v in values)])
    return buffer.getvalue()


def to_json(comparison: Comparison) -> str:
    """The whole comparison, every per-run value included; non-finite numbers become null."""
    return json.dumps(_json_ready(_as_dict(comparison)), indent=1, allow_nan=False)


def _as_dict(comparison: Comparison) -> dict[str, Any]:
    def stat(s: Stat) -> dict[str, Any]:
        return {"mean": s.mean, "std": s.std, "values": list(s.values)}

    def metric(name: str, row: Row) -> dict[str, Any]:
        found = row.metrics[name]
        parts = {"final": found.final, "best": found.best, "best_step": found.best_step}
        return {"mode": comparison.modes[name]} | {key: stat(value) for key, value in parts.items()}

    rows = [
        {"config": row.config, "n": len(row.runs), "runs": [str(run.path) for run in row.runs],
         "metrics": {name: metric(name, row) for name in comparison.modes}, "time_s": stat(row.time),
         "params": stat(row.params)}
        for row in comparison.rows
    ]  # fmt: skip
    return {"metric": comparison.metric, "keys": comparison.keys, "rows": rows}


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    return value


def render(comparison: Comparison, output_format: str) -> str:
    """md, csv or json text ("table" is rich_table's)."""
    renderers = {"md": to_markdown, "csv": to_csv, "json": to_json}
    if output_format not in renderers:
        raise UserError(f"--format {output_format}: use one of {', '.join(FORMATS)}")
    return renderers[output_format](comparison)


# ------------------------------------------------------------------------------------ against a key
Point = tuple[Any, Stat]  # (the x key's value, the best metric over the configuration's seeds)


def against(comparison: Comparison, x: str, runs: list[Run]) -> tuple[str, dict[str, list[Point]]]:
    """The best value of the comparison's metric against config key `x` (full or last component), one
    line per combination of the other keys: (x key, {label: [(x value, Stat)] in x order})."""
    if comparison.metric is None:
        raise UserError("--x needs an evaluated metric (no val_* keys in the runs' metrics.jsonl)")
    key = resolve_keys([x], runs)[0]
    if key not in comparison.keys:
        raise UserError(
            f"--x {x}: {key} does not vary here; group by it with --by ({_listing(comparison.keys)})"
        )
    others = [other for other in comparison.keys if other != key]
    lines: dict[str, list[Point]] = {}
    for row in comparison.rows:
        name = " ".join(_override(other, row.config[other]) for other in others) or comparison.metric
        lines.setdefault(name, []).append((row.config[key], row.metrics[comparison.metric].best))
    for points in lines.values():
        points.sort(
            key=lambda point: (not _is_number(point[0]), point[0] if _is_number(point[0]) else str(point[0]))
        )
    return key, lines


def chance_line(comparison: Comparison, key: str, runs: list[Run]) -> list[tuple[Any, float]] | None:
    """The task's chance level against `key`, when the runs log one beside the metric (val_NAME and
    val_baseline_NAME, as the memory tasks do): [(x value, mean baseline)] in x order; else None."""
    name = f"val_baseline_{str(comparison.metric).removeprefix('val_')}"
    if name not in evaluated_metrics(runs):
        return None
    by_x = compare(runs, metric=name, by=[key])
    points = [(row.config[key], row.metrics[name].final.mean) for row in by_x.rows]
    return sorted((p for p in points if p[1] is not None), key=lambda p: (str(type(p[0])), p[0]))


# --------------------------------------------------------------------------------- by source length
def by_length(
    comparison: Comparison, metric: str, split: str = "val"
) -> tuple[dict[str, list[Point]], str, list[str]]:
    """`metric` (bleu, chrf, exact_match) per source-length bucket from each run's
    eval/by_length_<split>.json (written by `seqtool eval RUN --by-length`), one line per configuration:
    ({label: [(bucket, Stat over its seeds)] in bucket order}, the source tokens, one warning per run
    without the file, which is skipped)."""
    from seqtool import by_length as bucketing

    if metric not in bucketing.METRICS:
        raise UserError(f"--by-length {metric}: use one of {', '.join(bucketing.METRICS)}")
    if split not in ("val", "test", "files"):
        raise UserError(f"--split {split}: use val, test or files (seqtool eval --src/--ref)")
    found, warnings, tokens = {}, [], set()  # found: {label: [{bucket name: value} per run]}
    buckets: dict[str, tuple[int, float]] = {}  # name -> (low, high; inf when open): the x order
    for row in comparison.rows:
        for run in row.runs:
            if (record := _read_buckets(run, split, warnings)) is None:
                continue
            tokens.add(str(record.get("tokens", "tokens")))
            for bucket in record["buckets"]:
                high = math.inf if bucket.get("high") is None else bucket["high"]
                buckets[bucket["bucket"]] = (bucket["low"], high)
            values = {bucket["bucket"]: float(bucket[metric]) for bucket in record["buckets"]}
            found.setdefault(label(row, comparison.keys), []).append(values)
    if not found:
        raise UserError(f"--by-length: nothing to draw: {first_of(warnings)}")
    order = sorted(buckets, key=buckets.get)
    _check_disjoint([(name, *buckets[name]) for name in order])
    lines = {
        name: [(bucket, Stat(tuple(v[bucket] for v in per_run if bucket in v))) for bucket in order]
        for name, per_run in found.items()
    }
    return lines, " or ".join(f"{kind} tokens" for kind in sorted(tokens)), warnings


def _read_buckets(run: Run, split: str, warnings: list[str]) -> dict[str, Any] | None:
    """A run's eval/by_length_<split>.json; None (and a warning that says how to write it) without one."""
    from seqtool import by_length as bucketing

    file = bucketing.path(run.path, split)
    if not file.is_file():
        flags = {"val": "", "test": " --split test", "files": " --src SRC --ref REF"}[split]
        command = f"seqtool eval {run.path}{flags} --by-length"
        warnings.append(f"skipped {run.path}: no eval/{file.name}; run `{command}`")
        return None
    try:
        return bucketing.read(file)
    except UserError as error:
        warnings.append(f"skipped {run.path}: {error}")
        return None


def _check_disjoint(buckets: list[tuple[str, int, float]]) -> None:
    """Runs bucketed with different edges would draw overlapping ranges as if they were one axis."""
    for (first, _, high), (second, low, _) in zip(buckets, buckets[1:]):
        if low <= high:
            raise UserError(
                f"--by-length: the runs were bucketed differently ({first} and {second} overlap); "
                "score them with the same seqtool eval --buckets"
            )


# ---------------------------------------------------------------------------------- by horizon step
HORIZON_METRICS = ("mse", "mae", "ssim", "psnr")
HORIZON_BASELINES = ("copy_last",)  # drawn dashed beside the models; zeros is too weak to show


def by_horizon(
    comparison: Comparison, metric: str, split: str = "val"
) -> tuple[dict[str, list[Point]], dict[str, list[tuple[int, float]]], list[str]]:
    """A video metric per predicted frame from each run's plots/horizon_<split>.json (written at every
    evaluation in training and by `seqtool eval RUN`): ({label: [(step 1..K, Stat over its seeds)]},
    {baseline: [(step, mean over every run)]}, one warning per run without the file)."""
    if metric not in HORIZON_METRICS:
        raise UserError(f"--by-horizon {metric}: use one of {', '.join(HORIZON_METRICS)}")
    if split not in ("val", "test"):
        raise UserError(f"--split {split}: use val or test")
    found: dict[str, list[list[float]]] = {}
    baselines: dict[str, list[list[float]]] = {}
    warnings: list[str] = []
    for row in comparison.rows:
        for run in row.runs:
            if (curves := _read_horizon(run, split, metric, warnings)) is None:
                continue
            found.setdefault(label(row, comparison.keys), []).append(curves["model"][metric])
            for name in HORIZON_BASELINES:
                if metric in curves.get(name, {}):
                    baselines.setdefault(name, []).append(curves[name][metric])
    if not found:
        raise UserError(f"--by-horizon: nothing to draw: {first_of(warnings)}")
    lines = {
        name: [
            (k + 1, Stat(tuple(run[k] for run in per_run if k < len(run))))
            for k in range(max(map(len, per_run)))
        ]
        for name, per_run in found.items()
    }
    dashed = {
        name: [(k + 1, sum(run[k] for run in per_run) / len(per_run)) for k in range(min(map(len, per_run)))]
        for name, per_run in baselines.items()
    }
    return lines, dashed, warnings


def _read_horizon(run: Run, split: str, metric: str, warnings: list[str]) -> dict[str, Any] | None:
    file = run.path / "plots" / f"horizon_{split}.json"
    if not file.is_file():
        warnings.append(f"skipped {run.path}: no plots/{file.name} (a video run writes it when it evaluates)")
        return None
    try:
        curves = json.loads(file.read_text(encoding="utf-8"))
        values = curves["model"][metric]
        if not (isinstance(values, list) and values and all(map(_is_number, values))):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        warnings.append(f"skipped {run.path}: {file} holds no {metric} per horizon step")
        return None
    return curves


# ------------------------------------------------------------------------------- evaluations (eval)
EVALS_FILE = "evals.jsonl"  # RUN/eval/evals.jsonl: one line per `seqtool eval`


def evaluation_runs(runs: list[Run], split: str = "val") -> tuple[list[Run], list[str]]:
    """`--evals`: every `seqtool eval` of `split` made on the runs, each as a run of its own whose config
    is its run's plus the search settings (eval.beam, eval.length_penalty, ...) and whose one record
    holds the metrics as {split}_NAME and the evaluation's seconds as its time. A repeated evaluation
    (same checkpoint, same settings) counts once, the latest; a run never evaluated is a warning."""
    found, warnings = [], []
    for run in runs:
        file = run.path / "eval" / EVALS_FILE
        if not file.is_file():
            warnings.append(f"skipped {run.path}: no eval/{EVALS_FILE}; run `seqtool eval {run.path}`")
            continue
        latest: dict[str, dict[str, Any]] = {}
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                record = _evaluation(line, f"{file}:{number}")
                if record["split"] == split:
                    settings = {"checkpoint": record.get("checkpoint"), **record["search"]}
                    latest[json.dumps(settings, sort_keys=True)] = record | {"settings": settings}
        for record in latest.values():
            config = run.config | {f"eval.{key}": value for key, value in record["settings"].items()}
            metrics = {f"{split}_{k}": v for k, v in record["metrics"].items() if _is_number(v)}
            entry = {"step": record.get("step") or 0, **metrics, "time": record.get("seconds", 0.0)}
            found.append(Run(path=run.path, config=config, records=[entry]))
    if not found:
        reason = first_of(warnings) if warnings else f"no evaluation of the {split} split"
        raise UserError(f"--evals: nothing to compare: {reason}")
    return found, warnings


def _evaluation(line: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        raise UserError(f"{where}: not a JSON object") from None
    valid = (
        isinstance(record, dict) and isinstance(record.get("split"), str)
        and isinstance(record.get("search"), dict) and isinstance(record.get("metrics"), dict)
        and (record.get("step") is None or type(record["step"]) is int)
    )  # fmt: skip
    if not valid:
        raise UserError(f"{where}: not an evaluation record (split, search, metrics)")
    return record


# -------------------------------------------------------------------------------------------- curves
def label(row: Row, keys: list[str]) -> str:
    """A configuration as its overrides: model.cell=gru trainer.clip_norm=1.0; a model class by its
    name alone (model=PredRNN, not model._target_=seqtool.models.predrnn.PredRNN)."""
    if not keys:
        return "all runs" if len(row.runs) > 1 else row.runs[0].path.name
    return " ".join(_override(key, row.config[key]) for key in keys)


def _override(key: str, value: Any) -> str:
    if key.endswith("._target_") and isinstance(value, str):
        return f"{key.removesuffix('._target_')}={value.rsplit('.', 1)[-1]}"
    return f"{key}={show_value(value)}"


def curves(
    comparison: Comparison, name: str, *, seconds: bool = False
) -> dict[str, list[tuple[list[float], list[float]]]]:
    """For each configuration, one (steps, values) series of the metrics.jsonl key `name` per run;
    seconds: against the run's training wall time instead of its steps."""
    available = list(dict.fromkeys(
        key for row in comparison.rows for run in row.runs for record in run.records
        for key, value in record.items() if _is_number(value) and key not in NOT_CURVES
    ))  # fmt: skip
    if name not in available:
        raise UserError(f"--curve {name}: no run logs it (logged: {', '.join(available)})")
    found = {}
    for row in comparison.rows:
        series = [_series(run, name) for run in row.runs]
        if seconds:  # every seed's point of a step at the seeds' mean time of it: one band, as for steps
            series = _at_mean_seconds(row.runs, name, series)
        if series := [s for s in series if s[0]]:
            found[label(row, comparison.keys)] = series
    return found


def _series(run: Run, name: str) -> tuple[list[float], list[float]]:
    points = [(record["step"], float(record[name])) for record in run.records if _is_number(record.get(name))]
    return [step for step, _ in points], [value for _, value in points]


def _at_mean_seconds(runs: list[Run], name: str, series: list[tuple[list[float], list[float]]]):
    """Step series of `name` -> the same values against the mean over the runs of the seconds each step's
    value was logged at."""
    times: dict[float, list[float]] = {}
    for run in runs:
        for record, seconds in zip(run.records, _elapsed(run)):
            if _is_number(record.get(name)) and seconds is not None:
                times.setdefault(record["step"], []).append(seconds)
    mean = {step: sum(found) / len(found) for step, found in times.items()}
    timed = []
    for steps, values in series:
        points = [(mean[step], value) for step, value in zip(steps, values) if step in mean]
        timed.append(([x for x, _ in points], [value for _, value in points]))
    return timed


def _elapsed(run: Run) -> list[float | None]:
    """Each record's seconds since the run began, the segments of a resumed run added up (its "time"
    restarts at 0); a record without "time" takes the one before it (None before any)."""
    elapsed, offset, last = [], 0.0, None
    for record in run.records:
        if _is_number(record.get("time")):
            if last is not None and record["time"] < last:
                offset += last
            last = float(record["time"])
        elapsed.append(None if last is None else offset + last)
    return elapsed


def check_format(output_format: str, plot: Path | None) -> None:
    """Refuse an unknown --format, or a --plot that is no .png, before any work is done."""
    if output_format not in FORMATS:
        raise UserError(f"--format {output_format}: use one of {', '.join(FORMATS)}")
    if plot is not None and plot.suffix.lower() != ".png":
        raise UserError(f"--plot {plot}: name a .png file")
