"""PNG figures: training curves now; attention maps and frame strips join as their models do."""

from __future__ import annotations

import json
from pathlib import Path


def plot_training_curves(metrics_file: Path, output: Path) -> Path | None:
    """Train loss per logged step and every validation metric, one panel each, from metrics.jsonl."""
    if not metrics_file.is_file():
        return None
    records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val_keys = sorted({key for r in records for key in r if key.startswith("val_")})
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 1 + len(val_keys)
    figure, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.2), squeeze=False)
    axes[0][0].plot(*zip(*train), label="train loss")
    axes[0][0].set(xlabel="step", title="train loss")
    for axis, key in zip(axes[0][1:], val_keys):
        points = [(r["step"], r[key]) for r in records if key in r]
        axis.plot(*zip(*points), marker="o")
        axis.set(xlabel="step", title=key.replace("_", " "))
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output
