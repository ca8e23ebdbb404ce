"""The command line: train, decode, eval, info. Thin: parse, call one function in seqtool.commands, print.

Exit status: 0 ok; 1 internal error (with traceback); 2 user error (one line on stderr);
3 training diverged (NaN/inf loss); 130 interrupted (after saving a checkpoint).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Train, decode and evaluate classic sequence models through one shared trainer.",
)
OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command(context_settings=OVERRIDES)
def train(
    overrides: list[str] | None = typer.Argument(None, help="Hydra overrides, e.g. model.cell=gru"),
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue this run directory exactly, or finish this sweep directory."
    ),
    print_config: bool = typer.Option(False, "--print-config", help="Print the composed config and exit."),
    multirun: bool = typer.Option(
        False, "--multirun", "-m", help="Sweep: one job per combination (Hydra's multirun)."
    ),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Run this many sweep jobs at once (joblib)."),
) -> None:
    """Train a model, or with -m a sweep of them.

    [bold]Examples[/bold]

      seqtool train                                            [dim]# char-RNN on the embedded corpus[/dim]

      seqtool train model.cell=gru trainer.max_steps=500 task.path=corpus.txt

      seqtool train experiment=shakespeare_char task.path=input.txt

      seqtool train --resume runs/default/20261123-101500 trainer.max_steps=2000

      seqtool train -m model.cell=rnn,lstm,gru seed=1,2,3 --jobs 2   [dim]# 9 jobs, 2 at a time[/dim]

      seqtool train --resume runs/default/20261123-101500        [dim]# a sweep: its unfinished jobs[/dim]
    """
    from omegaconf import OmegaConf

    from seqtool import commands, sweep
    from seqtool.config import compose
    from seqtool.errors import UserError

    overrides = list(overrides or [])
    if multirun or (resume is not None and sweep.is_sweep(resume)):
        if print_config:
            raise UserError("--print-config shows one run's config; leave out -m")
        summary = sweep.run(overrides, jobs=jobs, resume=resume)
        typer.echo(summary.line())
        for job in summary.failed:
            typer.echo(f"failed: {job['name']}: {job['error']}", err=True)
        if summary.exit_code:
            typer.echo(f"fix the cause, then: seqtool train --resume {summary.sweep_dir}", err=True)
            sys.exit(summary.exit_code)
        return
    if jobs != 1:
        raise UserError("--jobs N runs the jobs of a sweep; add -m (--multirun)")
    cfg = commands.resume_config(resume, overrides) if resume else compose(overrides)
    if print_config:
        typer.echo(OmegaConf.to_yaml(cfg, resolve=True))
        return
    run_dir, metrics = commands.train(cfg, resume=resume)
    if not commands.is_main_process():
        return
    from seqtool.progress import format_metrics

    typer.echo(f"run: {run_dir}\nval: {format_metrics(metrics)}")


@app.command()
def decode(
    run_dir: Path = typer.Argument(..., help="A run directory made by `seqtool train`."),
    prime: str = typer.Option("", "--prime", help="Text the model continues (char LM), or one sentence."),
    input: str | None = typer.Option(None, "--input", "-i", help="Input file, or - for stdin."),
    max_len: int | None = typer.Option(None, "--max-len", min=1, help="Tokens to generate at most."),
    min_len: int = typer.Option(0, "--min-len", min=0, help="No end token before this many tokens."),
    num: int = typer.Option(1, "--num", min=1, help="Samples per input (or val inputs to decode)."),
    temperature: float | None = typer.Option(None, "--temperature", min=1e-6, help="Sampling temperature."),
    top_k: int | None = typer.Option(None, "--top-k", min=1, help="Sample from the k likeliest tokens."),
    top_p: float | None = typer.Option(None, "--top-p", min=0.0, max=1.0, help="Nucleus sampling mass."),
    greedy: bool = typer.Option(False, "--greedy", help="Always take the likeliest token."),
    beam: int | None = typer.Option(None, "--beam", min=1, help="Beam search with this many beams."),
    nbest: int = typer.Option(1, "--nbest", min=1, help="Hypotheses per input (beam search)."),
    length_penalty: float = typer.Option(
        0.0, "--length-penalty", "--alpha", min=0.0, help="GNMT length penalty α (beam search)."
    ),
    no_repeat_ngram: int = typer.Option(0, "--no-repeat-ngram", min=0, help="Never repeat an n-gram."),
    seed: int = typer.Option(0, "--seed", help="The same seed gives the same samples."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
    plot_attention: Path | None = typer.Option(None, "--plot-attention", help="Attention maps (PNG) here."),
    plot: Path | None = typer.Option(None, "--plot", help="Plots of the predictions (PNG) here."),
    plot_memory: Path | None = typer.Option(
        None, "--plot-memory", help="NTM: read/write weightings over time (PNG) here."
    ),
    horizon: int | None = typer.Option(None, "--horizon", min=1, help="Frames to predict (video)."),
    plot_activations: Path | None = typer.Option(
        None, "--plot-activations", help="Char LM: the text coloured by its units (PNG) and units.json here."
    ),
    unit: int | None = typer.Option(None, "--unit", min=0, help="--plot-activations: draw this unit."),
    layer: int | None = typer.Option(None, "--layer", min=1, help="... of this layer [default: the top]."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best or last."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
) -> None:
    """Generate from a trained model, or (--plot-activations) draw its hidden units along a text.

    [bold]Examples[/bold]

      seqtool decode runs/default/20261123-101500 --prime "def " --max-len 300 --temperature 0.8 --seed 1

      seqtool decode RUN --input src.txt --beam 5 --nbest 3 --length-penalty 0.6 --no-repeat-ngram 3

      seqtool decode RUN --plot-activations cells/              [dim]# the units that track quotes, ...[/dim]
    """
    from seqtool import commands
    from seqtool.decode.settings import DecodeOptions, SearchSettings, choose_strategy
    from seqtool.errors import UserError

    if plot_attention is not None and plot is not None:
        raise UserError("--plot-attention and --plot name the same folder of plots; give one")
    _check_writable(files={"--output": output}, folders={"--plot-attention": plot_attention, "--plot": plot,
                    "--plot-memory": plot_memory, "--plot-activations": plot_activations})  # fmt: skip
    strategy = choose_strategy(greedy=greedy, beam=beam, nbest=nbest, alpha=length_penalty,
                               temperature=temperature, top_k=top_k, top_p=top_p)  # fmt: skip
    search = SearchSettings(
        strategy, max_len=max_len, min_len=min_len, no_repeat_ngram=no_repeat_ngram, seed=seed
    )
    options = DecodeOptions(search=search, input=input, output=output, prime=prime, num=num,
                            plot_dir=plot_attention or plot, memory_dir=plot_memory, horizon=horizon,
                            activations_dir=plot_activations, unit=unit, layer=layer)  # fmt: skip
    summary = commands.decode(commands.load_run(run_dir, checkpoint=checkpoint, device=device), options)
    if summary:
        typer.echo(summary)


@app.command(name="eval")
def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory made by `seqtool train`."),
    split: str = typer.Option("val", "--split", help="val or test."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    beam: int | None = typer.Option(
        None, "--beam", min=1, help="Decode with beam search (generative tasks)."
    ),
    greedy: bool = typer.Option(False, "--greedy", help="Decode greedily (generative tasks)."),
    length_penalty: float = typer.Option(
        0.0, "--length-penalty", "--alpha", min=0.0, help="GNMT length penalty α (beam search)."
    ),
    max_len: int | None = typer.Option(None, "--max-len", min=1, help="Tokens to generate at most."),
    min_len: int = typer.Option(0, "--min-len", min=0, help="No end token before this many tokens."),
    no_repeat_ngram: int = typer.Option(0, "--no-repeat-ngram", min=0, help="Never repeat an n-gram."),
    src: Path | None = typer.Option(None, "--src", help="Score these inputs instead of a split ..."),
    ref: Path | None = typer.Option(None, "--ref", help="... against these references."),
    by_length: bool = typer.Option(
        False, "--by-length", help="Also score each bucket of source length (translation)."
    ),
    buckets: str | None = typer.Option(
        None, "--buckets", help="--by-length's upper edges, e.g. 10,20,30,40,50 [default: the task's]."
    ),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best or last."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
) -> None:
    """Evaluate a trained model on a split.

    [bold]Examples[/bold]

      seqtool eval runs/default/20261123-101500 --split test --json

      seqtool eval RUN --by-length --buckets 10,20,30,40,50   [dim]# BLEU, chrF, exact match per bucket[/dim]
    """
    from seqtool import by_length as bucketing
    from seqtool import commands
    from seqtool.decode.settings import SearchSettings, choose_strategy
    from seqtool.errors import UserError

    if buckets is not None and not by_length:
        raise UserError("--buckets sets the buckets of --by-length; add --by-length")
    edges = bucketing.parse_edges(buckets) if buckets is not None else None
    lengths = bucketing.ByLength(edges) if by_length else None
    strategy = choose_strategy(greedy=greedy, beam=beam, alpha=length_penalty)
    search = SearchSettings(strategy, max_len=max_len, min_len=min_len, no_repeat_ngram=no_repeat_ngram)
    run = commands.load_run(run_dir, checkpoint=checkpoint, device=device)
    _check_writable(files={}, folders={"seqtool eval records its results in": run_dir})
    metrics = commands.evaluate(run, split, search, src=src, ref=ref, by_length=lengths)
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    rows = metrics.pop("by_length", None)
    title = f"{split} split" if src is None else f"{src} against {ref}"
    _print_table(title, metrics, caption=str(run_dir))
    if rows is not None:
        written = bucketing.path(run_dir, split if src is None else "files")
        tokens = bucketing.read(written)["tokens"]
        _print_buckets(f"{title} by source length ({tokens} tokens)", rows, caption=str(written))


@app.command()
def diagnose(
    run_dir: Path = typer.Argument(..., help="A run directory made by `seqtool train`."),
    grad_through_time: bool = typer.Option(
        False, "--grad-through-time", help="‖∂L_T/∂h_t‖ against T − t, per layer (recurrent models)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="The plot (PNG) [default: RUN/plots/grad_through_time.png]."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as one JSON object."),
    split: str = typer.Option("val", "--split", help="Take the first batch of val or test."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best or last."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
) -> None:
    """Diagnose a trained model: the gradient through time of its recurrent stack.

    [bold]Example[/bold]

      seqtool diagnose runs/default/20261123-101500 --grad-through-time --output gtt.png
    """
    from seqtool import commands
    from seqtool import diagnose as diagnosing
    from seqtool.errors import UserError

    if not grad_through_time:
        raise UserError("name a diagnostic: --grad-through-time")
    if split not in ("val", "test"):
        raise UserError(f"--split {split}: use val or test")
    _check_writable(files={"--output": output}, folders={})
    run = commands.load_run(run_dir, checkpoint=checkpoint, device=device)
    result = diagnosing.grad_through_time(run, split=split)
    path = output or Path(run_dir) / "plots" / "grad_through_time.png"
    diagnosing.plot(result, path, name=str(run_dir))
    if as_json:
        typer.echo(json.dumps(result.as_dict() | {"plot": str(path)}))
        return
    typer.echo(f"{diagnosing.summary(result)}\nplot: {path}")


@app.command()
def info() -> None:
    """List the models, tasks, trainers and experiments, one line each."""
    from seqtool.catalog import catalog

    for group, entries in catalog().items():
        typer.echo(f"{group}:")
        for name, description in entries:
            typer.echo(f"  {name:<24} {description}")


@app.command()
def compare(
    paths: list[Path] = typer.Argument(..., help="A sweep directory (searched) or run directories."),
    metric: str | None = typer.Option(
        None, "--metric", help="Sort by this val_* metric [default: the runs' trainer.eval_metric]."
    ),
    by: str | None = typer.Option(None, "--by", help="Group by these config keys, e.g. cell,clip_norm."),
    output_format: str = typer.Option("table", "--format", help="table, md, csv or json."),
    plot: Path | None = typer.Option(None, "--plot", help="Draw --curve of every configuration here (PNG)."),
    curve: str = typer.Option("loss", "--curve", help="A metrics.jsonl key: loss, grad_norm, val_bleu, ..."),
    x: str | None = typer.Option(None, "--x", help="With --plot: the best --metric against this config key."),
    metrics: str | None = typer.Option(None, "--metrics", help="Show only these metrics, e.g. bpc,loss."),
    by_length: str | None = typer.Option(
        None, "--by-length", help="With --plot: bleu, chrf or exact_match per source-length bucket."
    ),
    split: str = typer.Option(
        "val", "--split", help="The split --by-length, --by-horizon and --evals read: val, test (or files)."
    ),
    wall_time: bool = typer.Option(False, "--wall-time", help="With --curve: against training seconds."),
    by_horizon: str | None = typer.Option(
        None, "--by-horizon", help="With --plot: mse, ssim, mae or psnr per predicted frame (video)."
    ),
    evals: bool = typer.Option(
        False, "--evals", help="Rows from every `seqtool eval` of the runs, its search settings as keys."
    ),
) -> None:
    """Compare runs: one row per configuration (the config keys that differ), seeds as mean ± std.

    [bold]Examples[/bold]

      seqtool compare runs/sweep/20261123-101500          [dim]# every run below a sweep directory[/dim]

      seqtool compare runs/a runs/b --by cell --format md

      seqtool compare SWEEP --plot grad_norm.png --curve grad_norm

      seqtool compare SWEEP --plot lag.png --x lag --metric val_accuracy   [dim]# one line per cell[/dim]

      seqtool compare SWEEP --plot len.png --by-length bleu   [dim]# after seqtool eval RUN --by-length[/dim]

      seqtool compare SWEEP --plot time.png --curve val_bleu --wall-time

      seqtool compare SWEEP --plot horizon.png --by-horizon ssim   [dim]# video: one line per model[/dim]

      seqtool compare RUN --evals --by beam,length_penalty   [dim]# after seqtool eval RUN --beam K ...[/dim]
    """
    from seqtool import compare as comparing
    from seqtool.errors import UserError

    comparing.check_format(output_format, plot)
    runs, warnings = comparing.load_runs(paths)
    if evals:
        runs, skipped = comparing.evaluation_runs(runs, split)
        warnings += skipped
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    only = metrics.split(",") if metrics else None
    result = comparing.compare(runs, metric=metric, by=by.split(",") if by else None, only=only)
    result.evaluations = evals
    drawings = [name for name, given in (("--x", x), ("--by-length", by_length), ("--by-horizon", by_horizon),
                                         ("--wall-time", wall_time)) if given]  # fmt: skip
    if len(drawings) > 1:
        raise UserError(f"{' and '.join(drawings)} draw different plots: give one")
    if drawings and plot is None:
        raise UserError(f"{drawings[0]} draws a plot: give --plot FILE.png")
    if plot is not None and by_horizon is not None:
        from seqtool.plots import plot_compare_against

        lines, baselines, skipped = comparing.by_horizon(result, by_horizon, split)
        for warning in skipped:
            typer.echo(f"warning: {warning}", err=True)
        title = f"{by_horizon} per predicted frame ({split})"
        plot_compare_against(lines, plot, x="predicted frame", metric=by_horizon, ylabel=by_horizon,
                             log_y=False, title=title, dashed=baselines)  # fmt: skip
        typer.echo(f"plot: {plot}", err=True)
    elif plot is not None and by_length is not None:
        from seqtool.plots import plot_compare_against

        lines, tokens, skipped = comparing.by_length(result, by_length, split)
        for warning in skipped:
            typer.echo(f"warning: {warning}", err=True)
        plot_compare_against(lines, plot, x=f"source length ({tokens})", metric=by_length, ylabel=by_length,
                             log_y=False, title=f"{by_length} by source length ({split})")  # fmt: skip
        typer.echo(f"plot: {plot}", err=True)
    elif plot is not None and x is not None:
        from seqtool.plots import plot_compare_against

        key, lines = comparing.against(result, x, runs)
        chance = comparing.chance_line(result, key, runs)
        plot_compare_against(lines, plot, x=key, metric=str(result.metric), chance=chance)
        typer.echo(f"plot: {plot}", err=True)
    elif plot is not None:
        from seqtool.plots import plot_compare_curves

        found = comparing.curves(result, curve, seconds=wall_time)
        plot_compare_curves(found, plot, name=curve, xlabel="training seconds" if wall_time else "step")
        typer.echo(f"plot: {plot}", err=True)
    if output_format == "table":
        comparing.print_table(result)
    else:
        typer.echo(comparing.render(result, output_format), nl=False)


def _check_writable(*, files: dict[str, Path | None], folders: dict[str, Path | None]) -> None:
    """Refuse, before a run is loaded, an output that cannot be written (seqtool.data.io)."""
    from seqtool.data.io import check_writable_file, check_writable_folder

    for option, path in files.items():
        if path is not None:
            check_writable_file(path, option)
    for option, path in folders.items():
        if path is not None:
            check_writable_folder(path, option)


def _print_table(title: str, metrics: dict[str, float], *, caption: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption=caption)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)


def _print_buckets(title: str, rows: list[dict], *, caption: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from seqtool.by_length import METRICS

    table = Table(title=title, caption=caption)
    table.add_column("bucket")
    for name in ("count", *METRICS):
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(row["bucket"], str(row["count"]), *(f"{row[name]:.2f}" for name in METRICS))
    Console().print(table)


def main() -> None:
    """The console script: run the app and turn known failures into their exit statuses."""
    from seqtool.errors import TrainingDiverged, UserError

    try:
        app(standalone_mode=False)
    except UserError as error:
        _fail(f"error: {error}", 2)
    except TrainingDiverged as error:
        _fail(f"diverged: {error}", 3)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as error:  # noqa: BLE001 - Click's usage errors and the trainer's Interrupted
        _exit_for(error)


def _exit_for(error: Exception) -> None:
    from seqtool.data.io import DISK_ERRORS, disk_full
    from seqtool.train import Interrupted

    if isinstance(error, Interrupted):
        _fail(str(error), 130)
    if isinstance(error, typer.Abort):
        if isinstance(error.__cause__, EOFError):  # Click turns an EOFError into Abort: it is a bug
            raise error.__cause__
        _fail("interrupted", 130)
    if isinstance(error, OSError) and error.errno in DISK_ERRORS:  # the machine's state, never a bug
        _fail(f"error: {disk_full(error.filename or 'a file', error)}", 2)
    if isinstance(error, _usage_errors()):  # one line, like every user error, with where to look
        context = getattr(error, "ctx", None)
        where = f"; see {context.command_path} --help" if context is not None else ""
        _fail(f"error: {error.format_message().rstrip('.')}{where}", 2)
    raise error


def _usage_errors() -> tuple[type[Exception], ...]:
    """Click's usage errors: click.ClickException up to typer 0.15, typer.TyperException after it (typer
    now carries its own copy of Click), so either may arrive depending on the installed typer."""
    classes: list[type[Exception]] = []
    if hasattr(typer, "TyperException"):
        classes.append(typer.TyperException)
    try:
        import click

        classes.append(click.ClickException)
    except ImportError:
        pass
    return tuple(classes)


def _fail(message: str, status: int) -> None:
    sys.stderr.write(message.replace("\n", " ") + "\n")
    sys.exit(status)
