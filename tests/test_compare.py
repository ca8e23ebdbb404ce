"""seqtool compare on run directories the tests write themselves (so every number is checked exactly),
the comparison plot and the training curves' gradient-norm panel, and one end-to-end comparison of two
real tiny runs."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from seqtool import compare, plots
from seqtool.cli import app
from seqtool.errors import UserError
from tests.helpers import assert_user_error, seqtool, tiny_corpus, tiny_run

runner = CliRunner()


# ------------------------------------------------------------------------------------------ builders
def write_run(
    directory: Path,
    *,
    seed: int = 1,
    cell: str = "lstm",
    clip_norm: float = 5.0,
    val_loss: list[float] = (3.0, 2.0, 2.5),
    grad_norm: list[float] = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0),
    times: list[float] = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0),
    trainer: dict | None = None,
    task_seed: int | None = None,
) -> Path:
    """A run directory like `seqtool train` writes: config.yaml, and metrics.jsonl with a train record
    at steps 1..6 and an evaluation at steps 2, 4, 6 (val_loss as given, val_bleu = 10 * step)."""
    config = {
        "name": "test",
        "run_dir": str(directory),
        "seed": seed,
        "device": "cpu",
        "model": {
            "_target_": "seqtool.models.char_rnn.CharRNN",
            "cell": cell,
            "hidden_size": 32,
            "dropout": 0.0,
        },
        "task": {"path": "corpus.txt", "seed": seed if task_seed is None else task_seed, "dropout": 0.0},
        "trainer": {"clip_norm": clip_norm, "eval_metric": "loss", "eval_mode": "min", "max_steps": 6}
        | (trainer or {}),
    }
    records = []
    for step in range(1, 7):
        records.append(
            {
                "step": step,
                "loss": 4.0 - 0.1 * step,
                "grad_norm": grad_norm[step - 1],
                "time": times[step - 1],
            }
        )
        if step % 2 == 0:
            value = val_loss[step // 2 - 1]
            records.append(
                {"step": step, "val_loss": value, "val_bleu": 10.0 * step, "val_bleu_signature": "x"}
            )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return directory


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """lstm with seeds 1 and 2, gru with seed 1, laid out like a `seqtool train -m` sweep directory."""
    root = tmp_path / "sweep"
    (root / "sweep.yaml").parent.mkdir(parents=True)
    (root / "sweep.yaml").write_text("jobs: []\n")
    jobs = root / "runs" / "test" / "20260101-000000"
    write_run(jobs / "0", seed=1, cell="lstm", val_loss=[3.0, 2.0, 2.5])
    write_run(jobs / "1", seed=2, cell="lstm", val_loss=[2.8, 2.2, 1.9], times=[1, 2, 3, 1, 2, 4])
    write_run(jobs / "2", seed=1, cell="gru", val_loss=[3.0, 1.5, 1.6])
    (jobs / "0" / ".hydra").mkdir()
    (jobs / "0" / ".hydra" / "config.yaml").write_text("seed: 1\n")  # Hydra's copy: no run
    (jobs / ".hydra").mkdir()
    (jobs / ".hydra" / "config.yaml").write_text("seed: 1\n")
    return root


def compare_dir(*paths: Path, **options) -> compare.Comparison:
    runs, warnings = compare.load_runs(list(paths))
    assert warnings == []
    return compare.compare(runs, **options)


def invoke(*args: str):
    result = runner.invoke(app, ["compare", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


# ------------------------------------------------------------------------------ finding and grouping
def test_a_sweep_directory_means_every_run_below_it(sweep):
    found, warnings = compare.find_run_dirs([sweep])
    jobs = sweep / "runs" / "test" / "20260101-000000"
    assert found == [jobs / "0", jobs / "1", jobs / "2"] and warnings == []


def test_seeds_form_one_configuration_with_exact_statistics(sweep):
    result = compare_dir(sweep)
    assert result.keys == ["model.cell"]  # seed, run_dir and task.seed (a copy of seed) are not keys
    assert result.metric == "val_loss" and list(result.modes) == ["val_loss", "val_bleu"]
    assert result.modes == {"val_loss": "min", "val_bleu": "max"}
    gru, lstm = result.rows  # sorted by the best val_loss, lowest first
    assert gru.config == {"model.cell": "gru"} and lstm.config == {"model.cell": "lstm"}
    assert (len(gru.runs), len(lstm.runs)) == (1, 2)

    loss = lstm.metrics["val_loss"]
    assert loss.final.values == (2.5, 1.9) and loss.final.mean == pytest.approx(2.2)
    assert loss.final.std == pytest.approx(math.sqrt(0.3**2 + 0.3**2))  # sample std, ddof=1
    assert loss.best.values == (2.0, 1.9) and loss.best.mean == pytest.approx(1.95)
    assert loss.best.std == pytest.approx(math.sqrt(2 * 0.05**2))
    assert loss.best_step.values == (4.0, 6.0) and loss.best_step.std == pytest.approx(math.sqrt(2))
    assert lstm.metrics["val_bleu"].best.values == (60.0, 60.0)  # higher is better for BLEU
    assert lstm.time.values == (6.0, 3.0 + 4.0)  # the second run was resumed: its clock restarted

    single = gru.metrics["val_loss"]
    assert (single.final.mean, single.best.mean, single.best_step.mean) == (1.6, 1.5, 4.0)
    assert single.final.std is None and gru.time.values == (6.0,)


def test_differing_keys_are_found_automatically(tmp_path):
    write_run(tmp_path / "a", cell="gru", clip_norm=1.0, task_seed=7)
    write_run(tmp_path / "b", cell="gru", clip_norm=5.0, task_seed=8, trainer={"patience": 3})
    result = compare_dir(tmp_path)
    # task.seed that is not a copy of the seed is a real difference; a key only one run has, too
    assert result.keys == ["task.seed", "trainer.clip_norm", "trainer.patience"]
    assert [row.config["trainer.patience"] for row in result.rows] == [None, 3]


def test_by_names_full_or_last_component_keys(sweep):
    by_cell = compare_dir(sweep, by=["cell"])
    assert by_cell.keys == ["model.cell"] and [len(r.runs) for r in by_cell.rows] == [1, 2]
    lumped = compare_dir(sweep, by=["trainer.clip_norm"])  # one value: every run in one row
    assert lumped.keys == ["trainer.clip_norm"] and [len(r.runs) for r in lumped.rows] == [3]
    assert lumped.rows[0].metrics["val_loss"].best.values == (2.0, 1.9, 1.5)
    assert compare_dir(sweep, by=["cell", "clip_norm"]).keys == ["model.cell", "trainer.clip_norm"]
    runs, _ = compare.load_runs([sweep])
    with pytest.raises(UserError, match="ambiguous: model.dropout, task.dropout"):
        compare.compare(runs, by=["dropout"])
    assert compare.compare(runs, by=["task.dropout"]).keys == ["task.dropout"]  # the last components
    assert compare.compare(runs, by=["trainer.clip_norm"]).keys == ["trainer.clip_norm"]
    with pytest.raises(UserError, match="no such config key"):
        compare.compare(runs, by=["ell"])  # a suffix of a name is no key
    with pytest.raises(UserError, match="no such config key .*differ: model.cell"):
        compare.compare(runs, by=["nope"])


def test_the_watched_metric_follows_eval_mode_and_others_the_name_rule(tmp_path):
    trainer = {"eval_metric": "bleu", "eval_mode": "max"}
    write_run(tmp_path / "a", cell="gru", val_loss=[1.0, 2.0, 3.0], trainer=trainer)
    write_run(tmp_path / "b", cell="lstm", val_loss=[0.5, 0.6, 0.7], trainer=trainer)
    runs, _ = compare.load_runs([tmp_path])
    result = compare.compare(runs)
    assert result.metric == "val_bleu" and result.modes["val_bleu"] == "max"
    assert result.rows[0].metrics["val_bleu"].best_step.values == (6.0,)
    by_loss = compare.compare(runs, metric="loss")  # the val_ prefix may be left out
    assert by_loss.metric == "val_loss" and by_loss.rows[0].config == {"model.cell": "lstm"}
    expected = {"val_perplexity": "min", "val_mse": "min", "val_psnr": "max", "val_ssim_copy_last": "max"}
    expected |= {"val_exact_match": "max", "val_chrf": "max", "val_scene_agreement": "max"}
    for name, mode in expected.items():
        assert compare.metric_mode(name, runs) == mode
    with pytest.raises(UserError, match="--metric nope: the runs evaluated val_loss, val_bleu"):
        compare.compare(runs, metric="nope")


def test_nonfinite_values_stay_visible_and_sort_last(tmp_path):
    write_run(tmp_path / "a", cell="gru", val_loss=[math.nan, math.inf, math.nan])
    write_run(tmp_path / "b", cell="lstm")
    result = compare_dir(tmp_path)
    assert [row.config["model.cell"] for row in result.rows] == ["lstm", "gru"]
    diverged = result.rows[1].metrics["val_loss"]
    assert math.isnan(diverged.final.mean) and math.isnan(diverged.best.mean)
    assert diverged.best_step.values == ()
    assert json.loads(compare.to_json(result))["rows"][1]["metrics"]["val_loss"]["final"]["mean"] is None
    assert compare.table_rows(result)[1][2:4] == ["nan", "nan"]


# ---------------------------------------------------------------------------------------- rendering
def test_markdown_table(sweep):
    text = invoke(sweep, "--format", "md").stdout
    lines = text.splitlines()
    assert lines[0] == (
        "| model.cell | n | val_loss final | val_loss best | val_bleu final | val_bleu best "
        "| best step | time (s) |"
    )
    assert lines[1] == "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    assert lines[2] == "| gru | 1 | 1.6 | 1.5 | 60 | 60 | 4 | 6 |"
    assert lines[3] == "| lstm | 2 | 2.2 ± 0.42 | 1.95 ± 0.071 | 60 ± 0 | 60 ± 0 | 5 ± 1.4 | 6.5 ± 0.71 |"
    assert "3 runs in 2 configurations; sorted by best val_loss, lowest first" in text


def test_metrics_keeps_only_the_named_columns(sweep):
    comparison = compare_dir(sweep, only=["bleu"])
    assert list(comparison.modes) == ["val_bleu"] and comparison.metric == "val_bleu"
    assert "val_loss best" not in invoke(sweep, "--format", "md", "--metrics", "bleu").stdout
    result = seqtool("compare", str(sweep), "--metrics", "nope")
    assert_user_error(result, "--metrics nope: the runs evaluated")


def test_csv_has_a_mean_and_a_std_column_per_statistic(sweep):
    rows = list(csv.DictReader(io.StringIO(invoke(sweep, "--format", "csv").stdout)))
    assert [row["model.cell"] for row in rows] == ["gru", "lstm"]
    gru, lstm = rows
    assert gru["n"] == "1" and gru["val_loss_best"] == "1.5" and gru["val_loss_best_std"] == ""
    assert float(lstm["val_loss_final"]) == pytest.approx(2.2)
    assert float(lstm["val_loss_final_std"]) == pytest.approx(0.4242640687)
    assert (lstm["best_step"], float(lstm["best_step_std"])) == ("5.0", pytest.approx(1.4142135624))
    assert (lstm["time_s"], float(lstm["time_s_std"])) == ("6.5", pytest.approx(0.7071067812))


def test_json_carries_every_value(sweep):
    data = json.loads(invoke(sweep, "--format", "json").stdout)
    assert data["metric"] == "val_loss" and data["keys"] == ["model.cell"]
    lstm = data["rows"][1]
    assert lstm["config"] == {"model.cell": "lstm"} and lstm["n"] == 2 and len(lstm["runs"]) == 2
    assert lstm["metrics"]["val_loss"]["mode"] == "min"
    assert lstm["metrics"]["val_loss"]["best"]["values"] == [2.0, 1.9]
    assert lstm["metrics"]["val_loss"]["best_step"]["mean"] == 5.0
    assert lstm["time_s"]["values"] == [6.0, 7.0]
    assert data["rows"][0]["metrics"]["val_loss"]["final"] == {"mean": 1.6, "std": None, "values": [1.6]}


def test_terminal_table(sweep):
    text = invoke(sweep, "--by", "cell").stdout
    rows = [line for line in text.splitlines() if line.startswith("│")]  # into a pipe: never squeezed
    assert [row.split("│")[1].strip() for row in rows] == ["gru", "lstm"]
    assert [cell.strip() for cell in rows[1].split("│")[2:-1]] == [
        "2", "2.2 ± 0.42", "1.95 ± 0.071", "60 ± 0", "60 ± 0", "5 ± 1.4", "6.5 ± 0.71",
    ]  # fmt: skip
    assert "model.cell" in text and "sorted by best val_loss" in text


def test_runs_named_one_by_one_and_a_single_run(tmp_path):
    a, b = write_run(tmp_path / "a", cell="gru"), write_run(tmp_path / "b", cell="lstm")
    assert [len(row.runs) for row in compare_dir(a, b).rows] == [1, 1]
    single = compare_dir(a)
    assert single.keys == [] and compare.table_rows(single) == [["1", "2.5", "2", "60", "60", "4", "6"]]


# -------------------------------------------------------------------------------------------- plots
@pytest.fixture
def saved_figures(monkeypatch) -> list:
    """Every matplotlib figure saved while the test runs, to look at its axes."""
    from matplotlib.figure import Figure

    figures, save = [], Figure.savefig

    def keep(figure, *args, **kwargs):
        figures.append(figure)
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def assert_png(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 100


def test_plot_overlays_configurations_on_a_log_scale_for_gradient_norms(sweep, tmp_path, saved_figures):
    write_run(sweep / "big", seed=1, cell="rnn", grad_norm=[0.01, 1.0, 10.0, 100.0, 1000.0, 500.0])
    invoke(sweep, "--plot", tmp_path / "grad.png", "--curve", "grad_norm")
    assert_png(tmp_path / "grad.png")
    (axis,) = saved_figures[-1].axes
    assert axis.get_yscale() == "log" and axis.get_ylabel() == "grad_norm"
    labels = axis.get_legend_handles_labels()[1]
    assert labels == ["model.cell=gru (n=1)", "model.cell=lstm (n=2)", "model.cell=rnn (n=1)"]  # table order
    assert len(axis.collections) == 1  # one min-max band: only lstm has several seeds

    invoke(sweep, "--plot", tmp_path / "loss.png", "--curve", "val_loss")
    assert saved_figures[-1].axes[0].get_yscale() == "linear"  # one decade: linear


def test_plot_marks_nonfinite_values_of_a_diverged_run(tmp_path, saved_figures):
    write_run(tmp_path / "ok", cell="lstm")
    write_run(tmp_path / "nan", cell="gru", grad_norm=[1.0, 3.0, math.inf, math.nan, math.nan, math.nan],
              val_loss=[2.0, math.nan, math.nan])  # fmt: skip
    invoke(tmp_path, "--plot", tmp_path / "g.png", "--curve", "grad_norm")
    assert_png(tmp_path / "g.png")
    axis = saved_figures[-1].axes[0]
    markers = [line for line in axis.lines if line.get_marker() == "x"]
    assert len(markers) == 1 and list(markers[0].get_xdata()) == [3, 4, 5, 6]
    assert "non-finite (diverged)" in axis.get_legend_handles_labels()[1]


def test_a_metric_against_a_config_key_one_line_per_other_configuration(tmp_path, saved_figures):
    """--x clip_norm: the best val_loss at each clip_norm, one line per cell, seeds as mean ± std."""
    write_run(tmp_path / "a", cell="lstm", clip_norm=1.0, val_loss=[3.0, 2.0, 2.5])  # best 2.0
    write_run(tmp_path / "b", cell="lstm", clip_norm=1.0, seed=2, val_loss=[3.0, 1.0, 2.5])  # best 1.0
    write_run(tmp_path / "c", cell="lstm", clip_norm=5.0, val_loss=[3.0, 2.8, 2.5])  # best 2.5
    write_run(tmp_path / "d", cell="gru", clip_norm=5.0, val_loss=[0.5, 2.0, 2.5])  # best 0.5
    runs, _ = compare.load_runs([tmp_path])
    key, lines = compare.against(compare.compare(runs), "clip_norm", runs)
    assert key == "trainer.clip_norm" and sorted(lines) == ["model.cell=gru", "model.cell=lstm"]
    lstm = lines["model.cell=lstm"]
    assert [x for x, _ in lstm] == [1.0, 5.0] and lstm[0][1].mean == 1.5 and lstm[1][1].mean == 2.5
    assert lstm[0][1].std == pytest.approx(math.sqrt(0.5))
    invoke(tmp_path, "--plot", tmp_path / "x.png", "--x", "clip_norm", "--metric", "val_loss")
    assert_png(tmp_path / "x.png")
    axis = saved_figures[-1].axes[0]
    assert axis.get_xlabel() == "trainer.clip_norm" and axis.get_ylabel() == "best val_loss"
    assert sorted(axis.get_legend_handles_labels()[1]) == ["model.cell=gru (n=1)", "model.cell=lstm (n=2)"]
    assert compare.chance_line(compare.compare(runs), key, runs) is None
    for run in "abcd":  # a task that logs its chance level beside the metric (as the memory tasks do)
        with open(tmp_path / run / "metrics.jsonl", "a") as metrics:
            metrics.write(json.dumps({"step": 6, "val_baseline_loss": 3.5}) + "\n")
    runs, _ = compare.load_runs([tmp_path])
    assert compare.chance_line(compare.compare(runs, metric="val_loss"), key, runs) == [
        (1.0, 3.5),
        (5.0, 3.5),
    ]
    invoke(tmp_path, "--plot", tmp_path / "x.png", "--x", "clip_norm", "--metric", "val_loss")
    assert "chance" in saved_figures[-1].axes[0].get_legend_handles_labels()[1]
    assert_user_error(seqtool("compare", str(tmp_path), "--x", "clip_norm"), "--x draws a plot")
    result = seqtool("compare", str(tmp_path), "--plot", str(tmp_path / "y.png"), "--x", "hidden_size")
    assert_user_error(result, "does not vary here")


def test_training_curves_have_a_gradient_norm_panel_on_a_log_scale(tmp_path, saved_figures):
    run = write_run(tmp_path / "run", grad_norm=[0.5, 2.0, 40.0, math.inf, 300.0, 3.0])
    assert plots.plot_training_curves(run / "metrics.jsonl", run / "plots" / "curves.png")
    assert_png(run / "plots" / "curves.png")
    panels = {axis.get_title(): axis for axis in saved_figures[-1].axes if axis.get_visible()}
    assert list(panels) == ["train loss", "grad norm (pre-clip)", "val bleu", "val loss"]
    grad = panels["grad norm (pre-clip)"]
    assert grad.get_yscale() == "log"
    assert list(grad.lines[0].get_ydata()) == [0.5, 2.0, 40.0, 300.0, 3.0]  # the inf is marked instead
    assert list(grad.lines[1].get_xdata()) == [4] and grad.lines[1].get_marker() == "x"


# ------------------------------------------------------------------------------------------ failures
def test_a_broken_run_is_skipped_with_a_one_line_warning(sweep, tmp_path):
    broken = write_run(sweep / "broken", cell="rnn")
    with open(broken / "metrics.jsonl", "a") as file:
        file.write('{"step": 7, "loss": 1.0\n')
    (write_run(sweep / "no_metrics", cell="rnn") / "metrics.jsonl").unlink()
    result = seqtool("compare", str(sweep), "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"warning: skipped {broken / 'metrics.jsonl'}:10: not a JSON object",
        f"warning: skipped {sweep / 'no_metrics'}: no metrics.jsonl",
    ]
    assert [row["model.cell"] for row in csv.DictReader(io.StringIO(result.stdout))] == ["gru", "lstm"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["{tmp}/missing"], "no runs to compare: {tmp}/missing does not exist"),
        (["{tmp}"], "no runs to compare: {tmp} holds no run directory"),
        (["{tmp}/only_config"], "no runs to compare: skipped {tmp}/only_config: no metrics.jsonl"),
        (["{tmp}/bad_yaml"], "skipped {tmp}/bad_yaml/config.yaml: not YAML"),
        (["{tmp}/bad_record"], "{tmp}/bad_record/metrics.jsonl:1: not a metrics record"),
        (["{run}", "--format", "xml"], "--format xml: use one of table, md, csv, json"),
        (["{run}", "--by", "nope"], "--by nope: no such config key"),
        (["{run}", "--metric", "nope"], "--metric nope: the runs evaluated val_loss, val_bleu"),
        (["{run}", "--plot", "{tmp}/p.png", "--curve", "nope"], "--curve nope: no run logs it"),
        (["{run}", "--plot", "{tmp}/p.pdf"], "--plot {tmp}/p.pdf: name a .png file"),
    ],
)
def test_bad_inputs_are_one_line_user_errors(tmp_path, args, fragment):
    (tmp_path / "empty").mkdir()
    (tmp_path / "only_config").mkdir()
    (tmp_path / "only_config" / "config.yaml").write_text("seed: 1\n")
    write_run(tmp_path / "bad_yaml")
    (tmp_path / "bad_yaml" / "config.yaml").write_text("model: [unclosed\n")
    write_run(tmp_path / "bad_record")
    (tmp_path / "bad_record" / "metrics.jsonl").write_text('["not", "a", "record"]\n')
    run = write_run(tmp_path / "runs" / "ok")
    tmp = tmp_path / "empty" if args == ["{tmp}"] else tmp_path
    places = {"{tmp}": str(tmp), "{run}": str(run)}
    result = seqtool("compare", *(fill(arg, places) for arg in args))
    assert_user_error(result, fill(fragment, places))
    assert not (tmp_path / "p.png").exists()


def fill(text: str, places: dict[str, str]) -> str:
    """A parametrized argument or message with its {placeholders} replaced by the test's paths."""
    for key, value in places.items():
        text = text.replace(key, value)
    return text


# -------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_two_real_runs_compare_end_to_end(tmp_path, saved_figures):
    corpus = tiny_corpus(tmp_path)
    for cell in ("gru", "lstm"):
        run_dir = tmp_path / "sweep" / cell
        result = seqtool("train", *tiny_run(corpus, run_dir, "trainer=smoke", f"model.cell={cell}", steps=4))
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert all(record["time"] >= 0 for record in records)  # the trainer logs wall time
    data = json.loads(invoke(tmp_path / "sweep", "--format", "json", "--plot", tmp_path / "g.png",
                             "--curve", "grad_norm").stdout)  # fmt: skip
    assert data["metric"] == "val_loss" and data["keys"] == ["model.cell"]
    assert sorted(row["config"]["model.cell"] for row in data["rows"]) == ["gru", "lstm"]
    for row in data["rows"]:
        assert row["n"] == 1 and row["time_s"]["mean"] > 0
        assert set(row["metrics"]) == {"val_loss", "val_perplexity", "val_bpc"}
        assert row["metrics"]["val_loss"]["best_step"]["values"] == [4.0]
    assert_png(tmp_path / "g.png")
    assert_png(tmp_path / "sweep" / "gru" / "plots" / "curves.png")


# ------------------------------------------------------------- size, wall time, horizon, evaluations
def add_records(run: Path, *records: dict) -> None:
    with open(run / "metrics.jsonl", "a") as file:
        file.writelines(json.dumps(record) + "\n" for record in records)


def test_params_column_appears_when_the_runs_logged_their_size(tmp_path):
    old = write_run(tmp_path / "old")
    assert not compare_dir(old).sized and "params" not in compare.columns(compare_dir(old))
    for seed, cell, size in ((1, "lstm", 1200), (2, "lstm", 1200), (1, "gru", 900)):
        run = write_run(tmp_path / "new" / f"{cell}{seed}", seed=seed, cell=cell)
        lines = (run / "metrics.jsonl").read_text().splitlines()
        first = json.loads(lines[0]) | {"params": size}  # the trainer logs it on its first line
        (run / "metrics.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    result = compare_dir(tmp_path / "new", by=["cell"])
    assert compare.columns(result)[-1] == "params"
    assert {row.config["model.cell"]: row.params.mean for row in result.rows} == {"gru": 900, "lstm": 1200}
    assert compare.to_markdown(result).splitlines()[2].endswith("| 900 |")  # gru sorts first


def test_curves_against_training_seconds_add_resumed_segments(tmp_path):
    """The x of each evaluation is the seeds' mean elapsed time at its step; a resumed run's clock
    restarts at 0 and its segments add up."""
    write_run(tmp_path / "a", seed=1, times=[1, 2, 3, 4, 5, 6])
    write_run(tmp_path / "b", seed=2, times=[1, 2, 3, 1, 2, 4])  # resumed after step 3: 3 + 1, 3 + 2, 3 + 4
    result = compare_dir(tmp_path)
    ((label, series),) = compare.curves(result, "val_loss", seconds=True).items()
    assert label == "all runs"
    # these val_* records carry no time of their own: the train record's before them is theirs
    assert [xs for xs, _ in series] == [[2.0, 4.0, 6.5], [2.0, 4.0, 6.5]]
    assert [xs for xs, _ in compare.curves(result, "val_loss")[label]] == [[2, 4, 6], [2, 4, 6]]


def write_horizon(run: Path, model: list[float], copy_last: list[float], split: str = "val") -> None:
    (run / "plots").mkdir(parents=True, exist_ok=True)
    curves = {"model": {"mse": model, "ssim": [0.9] * len(model)}, "copy_last": {"mse": copy_last},
              "zeros": {"mse": [1.0] * len(model)}}  # fmt: skip
    (run / "plots" / f"horizon_{split}.json").write_text(json.dumps(curves))


def test_by_horizon_one_line_per_configuration_and_the_copy_last_baseline(tmp_path, saved_figures):
    runs = (
        (1, "lstm", [1.0, 3.0], [2.0, 4.0]),
        (2, "lstm", [3.0, 5.0], [2.0, 6.0]),
        (1, "gru", [0.5, 0.5], [2.0, 4.0]),
    )
    for seed, cell, model, copy_last in runs:
        write_horizon(write_run(tmp_path / "sweep" / f"{cell}{seed}", seed=seed, cell=cell), model, copy_last)
    write_run(tmp_path / "sweep" / "never_evaluated", cell="rnn")
    lines, baselines, warnings = compare.by_horizon(compare_dir(tmp_path / "sweep"), "mse")
    assert {label: [(k, s.values) for k, s in points] for label, points in lines.items()} == {
        "model.cell=gru": [(1, (0.5,)), (2, (0.5,))],
        "model.cell=lstm": [(1, (1.0, 3.0)), (2, (3.0, 5.0))],
    }
    assert baselines == {"copy_last": [(1, 2.0), (2, 14.0 / 3)]}  # the mean over every run
    assert len(warnings) == 1 and "never_evaluated: no plots/horizon_val.json" in warnings[0]

    result = runner.invoke(app, ["compare", str(tmp_path / "sweep"), "--plot", str(tmp_path / "h.png"),
                                 "--by-horizon", "mse"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert_png(tmp_path / "h.png")
    axis = saved_figures[-1].axes[0]
    assert "copy_last" in axis.get_legend_handles_labels()[1] and axis.get_xlabel() == "predicted frame"
    with pytest.raises(UserError, match="--by-horizon bleu: use one of mse, mae, ssim, psnr"):
        compare.by_horizon(compare_dir(tmp_path / "sweep"), "bleu")


def write_evaluation(run: Path, beam: int, bleu: float, *, split: str = "val", alpha: float = 0.0) -> None:
    """One line of RUN/eval/evals.jsonl as `seqtool eval RUN --beam BEAM` appends it."""
    search = {"strategy": "beam", "beam": beam, "length_penalty": alpha, "max_len": None, "min_len": 0,
              "no_repeat_ngram": 0}  # fmt: skip
    metrics = {"bleu": bleu, "length_ratio": 1.0, "signature": "x"}
    record = {"split": split, "checkpoint": "best", "step": 6, "search": search, "metrics": metrics,
              "seconds": beam / 10}  # fmt: skip
    (run / "eval").mkdir(exist_ok=True)
    with open(run / "eval" / "evals.jsonl", "a") as file:
        file.write(json.dumps(record) + "\n")


def test_evals_are_rows_of_the_search_settings_over_the_seeds(tmp_path, saved_figures):
    for seed, bleus in ((1, {1: 20.0, 5: 24.0}), (2, {1: 22.0, 5: 26.0})):
        run = write_run(tmp_path / f"seed{seed}", seed=seed)
        write_evaluation(run, 5, 0.0)  # an older evaluation with the same settings: the latest counts
        for beam, bleu in bleus.items():
            write_evaluation(run, beam, bleu)
        write_evaluation(run, 5, 99.0, split="test")  # another split: not in a val comparison
    runs, warnings = compare.load_runs([tmp_path])
    evaluations, warnings = compare.evaluation_runs(runs)
    assert warnings == [] and len(evaluations) == 4
    result = compare.compare(evaluations, metric="bleu")
    result.evaluations = True
    assert result.keys == ["eval.beam"] and result.metric == "val_bleu"
    assert [(row.config["eval.beam"], row.metrics["val_bleu"].best.values) for row in result.rows] == [
        (5, (24.0, 26.0)),
        (1, (20.0, 22.0)),
    ]
    assert [row.time.mean for row in result.rows] == [0.5, 0.1]  # the evaluations' seconds
    assert "4 evaluations in 2 configurations; time: seconds of the evaluation" in compare.caption(result)

    test, _ = compare.evaluation_runs(runs, "test")
    assert compare.compare(test).metric == "test_bleu"
    invoke(tmp_path, "--evals", "--plot", tmp_path / "beam.png", "--x", "beam", "--metric", "bleu")
    assert_png(tmp_path / "beam.png")
    assert [list(line.get_xdata()) for line in saved_figures[-1].axes[0].lines[:1]] == [[1, 5]]


def test_each_evaluation_is_recorded_for_compare(tmp_path):
    """`seqtool eval` appends its settings and numbers to RUN/eval/evals.jsonl (an untrained model)."""
    from seqtool import commands
    from seqtool.decode.settings import Beam, SearchSettings
    from tests.test_translation_task import make_model, make_task

    task = make_task(tmp_path)
    run = commands.LoadedRun(cfg=None, task=task, model=make_model(task), device=task.device,
                             run_dir=tmp_path / "run", checkpoint="best", step=40)  # fmt: skip
    metrics = commands.evaluate(run, "val", SearchSettings(Beam(size=3, alpha=0.6), max_len=20))
    (line,) = (tmp_path / "run" / "eval" / "evals.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["split"] == "val" and record["checkpoint"] == "best" and record["step"] == 40
    assert record["search"] == {"strategy": "beam", "beam": 3, "length_penalty": 0.6, "max_len": 20,
                                "min_len": 0, "no_repeat_ngram": 0}  # fmt: skip
    assert record["metrics"]["bleu"] == metrics["bleu"] and "signature" not in record["metrics"]
    assert record["seconds"] > 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["{run}", "--evals"], "--evals: nothing to compare: skipped {run}: no eval/evals.jsonl"),
        (["{evaluated}", "--evals"], "{evaluated}/eval/evals.jsonl:1: not an evaluation record"),
        (
            ["{run}", "--plot", "{tmp}/p.png", "--by-horizon", "mse"],
            "--by-horizon: nothing to draw: skipped {run}",
        ),
        (["{run}", "--by-horizon", "mse"], "--by-horizon draws a plot: give --plot FILE.png"),
        (["{run}", "--wall-time"], "--wall-time draws a plot: give --plot FILE.png"),
        (
            ["{run}", "--plot", "{tmp}/p.png", "--x", "cell", "--by-horizon", "mse"],
            "--x and --by-horizon draw different",
        ),
    ],
)
def test_bad_uses_of_the_new_views_are_one_line_user_errors(tmp_path, args, fragment):
    run = write_run(tmp_path / "run")
    evaluated = write_run(tmp_path / "evaluated")  # an evals.jsonl line with a step that is no step
    write_evaluation(evaluated, 5, 20.0)
    line = json.loads((evaluated / "eval" / "evals.jsonl").read_text()) | {"step": "six"}
    (evaluated / "eval" / "evals.jsonl").write_text(json.dumps(line) + "\n")
    places = {"{tmp}": str(tmp_path), "{run}": str(run), "{evaluated}": str(evaluated)}
    assert_user_error(seqtool("compare", *(fill(arg, places) for arg in args)), fill(fragment, places))
    assert not (tmp_path / "p.png").exists()


def test_a_model_class_is_labelled_by_its_name(tmp_path):
    for name in ("convlstm.ConvLSTM", "predrnn.PredRNN"):
        run = write_run(tmp_path / name)
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["model"]["_target_"] = f"seqtool.models.{name}"
        (run / "config.yaml").write_text(yaml.safe_dump(config))
    result = compare_dir(tmp_path)
    assert result.keys == ["model._target_"]
    assert sorted(compare.label(row, result.keys) for row in result.rows) == [
        "model=ConvLSTM",
        "model=PredRNN",
    ]
