"""The training progress display: a rich bar on a terminal, a plain line per evaluation elsewhere."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


class TrainingProgress:
    """step/total, loss, lr, grad norm, tokens/s and ETA while training."""

    def __init__(self, total: int, *, start: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.live = enabled and console.is_terminal
        self.tokens_per_s = 0.0
        self.progress = Progress(  # fits an 80-column terminal
            TextColumn("[bold]train"),
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=not self.live,
        )
        self.bar = self.progress.add_task("train", total=total, completed=start, stats="")

    def __enter__(self) -> TrainingProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def update(self, step: int, stats: dict[str, float]) -> None:
        if stats.get("seconds"):
            rate = stats["count"] / stats["seconds"]
            self.tokens_per_s = rate if not self.tokens_per_s else 0.9 * self.tokens_per_s + 0.1 * rate
        text = (
            f"loss {stats['loss']:.3f} lr {stats['lr']:.1e} |g| {stats['grad_norm']:.2f} "
            f"{self.tokens_per_s:,.0f} tok/s"
        )
        self.progress.update(self.bar, completed=step, stats=text)

    def note(self, step: int, metrics: dict[str, float]) -> None:
        """An evaluation result: printed above the bar (or as a plain line without a terminal)."""
        if not self.enabled:
            return
        shown = format_metrics(metrics)
        line = f"step {step}/{self.total}  val: {shown}  ({self.tokens_per_s:,.0f} tok/s)"
        (self.progress.console if self.live else console).print(line, highlight=False)


def warn(message: str) -> None:
    """A one-line warning on stderr (the run goes on)."""
    console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)


def format_metrics(metrics: dict[str, float | str]) -> str:
    """`loss 1.2345  bleu 27.1000`: the numbers of a metrics dict on one line (text values left out)."""
    return "  ".join(f"{key} {value:.4f}" for key, value in metrics.items() if not isinstance(value, str))
