"""PNG figures: training curves, compared runs' curves, attention maps, frame strips, a text coloured by
one hidden unit."""

from __future__ import annotations

import json
import math
from pathlib import Path


def plot_training_curves(metrics_file: Path, output: Path) -> Path | None:
    """Train loss per logged step, the pre-clip gradient norm (log scale) and every validation metric,
    one panel each, from metrics.jsonl."""
    if not metrics_file.is_file():
        return None
    records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    grad = [(r["step"], r["grad_norm"]) for r in records if "grad_norm" in r]
    val_keys = sorted({k for r in records for k, v in r.items() if k.startswith("val_") and _is_number(v)})
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 1 + bool(grad) + len(val_keys)
    columns = min(panels, 4)  # a grid, so a task with many metrics stays readable
    rows = -(-panels // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.2 * rows), squeeze=False)
    flat = list(axes.flat)
    for axis in flat[panels:]:
        axis.set_visible(False)
    flat[0].plot(*zip(*train), label="train loss")
    flat[0].set(xlabel="step", title="train loss")
    if grad:
        _plot_grad_norm(flat[1], grad)
    for axis, key in zip(flat[1 + bool(grad) :], val_keys):
        points = [(r["step"], r[key]) for r in records if key in r]
        axis.plot(*zip(*points), marker="o")
        axis.set(xlabel="step", title=key.replace("_", " "))
    _save(figure, output)
    return output


def _save(figure, path: Path) -> None:
    """Lay the figure out, write it as a PNG (its folder made) and free it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plot_grad_norm(axis, points: list[tuple[int, float]]) -> None:
    """The global gradient norm before clipping, on a log scale (it spans decades when training
    struggles); a non-finite norm (a skipped step) is a red x on the top edge."""
    shown = [(step, norm) for step, norm in points if math.isfinite(norm) and norm > 0]
    if shown:
        axis.plot(*zip(*shown), linewidth=1)
        axis.set_yscale("log")
    _mark_nonfinite(axis, [step for step, norm in points if not math.isfinite(norm)], color="red")
    axis.set(xlabel="step", title="grad norm (pre-clip)")


def _mark_nonfinite(axis, steps: list[int], *, color: str, label: str | None = None) -> None:
    """x markers on the top edge of the axis at these steps (y in axes coordinates, x in data)."""
    if steps:
        transform = axis.get_xaxis_transform()
        axis.plot(
            steps, [1.0] * len(steps), "x", color=color, transform=transform, clip_on=False, label=label
        )


def plot_compare_curves(
    curves: dict[str, list[tuple[list[int], list[float]]]],
    path: Path,
    *,
    name: str,
    title: str = "",
    xlabel: str = "step",
) -> Path:
    """One metrics.jsonl curve of several configurations: curves[label] -> one (steps, values) series
    per seed, drawn as the seeds' mean with a min-max band. Log y when the finite values span more than
    two decades; non-finite values (diverged runs) are x markers on the top edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    finite: list[float] = []
    marked = False
    for label, series in curves.items():
        steps, mean, low, high, nonfinite = _seed_band(series)
        (line,) = axis.plot(steps, mean, linewidth=1.5, label=f"{label} (n={len(series)})")
        if len(series) > 1:
            axis.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        note = None if marked or not nonfinite else "non-finite (diverged)"
        _mark_nonfinite(axis, nonfinite, color=line.get_color(), label=note)
        marked = marked or bool(nonfinite)
        finite += [v for v in low + high if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 100:
        axis.set_yscale("log")
    axis.set(xlabel=xlabel, ylabel=name, title=title or name)
    axis.legend(fontsize="small")
    _save(figure, path)
    return path


def plot_compare_against(
    lines: dict[str, list[tuple[object, object]]],
    path: Path,
    *,
    x: str,
    metric: str,
    title: str = "",
    chance: list[tuple[object, float]] | None = None,
    ylabel: str | None = None,
    log_y: bool = True,
    dashed: dict[str, list[tuple[object, float]]] | None = None,
) -> Path:
    """A metric against a config key: lines[label] -> [(x value, Stat of the seeds)], drawn as the mean
    with ±1 std error bars; numeric x on a linear axis (log when it spans more than two decades),
    other values as categories; `chance` [(x value, level)] dashed grey, each of `dashed` (a baseline:
    {label: [(x value, level)]}) dashed in a colour of its own. Log y when the finite means span
    more than two decades, unless log_y is False. ylabel: default "best METRIC"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = all(_is_number(value) for points in lines.values() for value, _ in points)
    categories = list(dict.fromkeys(str(value) for points in lines.values() for value, _ in points))
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    means: list[float] = []
    for label, points in lines.items():
        xs = [value if numeric else categories.index(str(value)) for value, _ in points]
        ys = [math.nan if stat.mean is None else stat.mean for _, stat in points]
        errors = [stat.std or 0.0 for _, stat in points]
        count = max((len(stat.values) for _, stat in points), default=0)
        axis.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=f"{label} (n={count})")
        means += [y for y in ys if math.isfinite(y)]
    for label, points in (({"chance": chance} if chance else {}) | (dashed or {})).items():
        xs = [value if numeric else categories.index(str(value)) for value, _ in points]
        grey = {"color": "grey"} if label == "chance" else {}
        axis.plot(xs, [level for _, level in points], "--", label=label, **grey)
    if numeric:
        values = [float(v) for points in lines.values() for v, _ in points if float(v) > 0]
        if values and max(values) / min(values) > 100:
            axis.set_xscale("log")
    else:
        axis.set_xticks(range(len(categories)), categories, rotation=30)
    if log_y and means and min(means) > 0 and max(means) / min(means) > 100:
        axis.set_yscale("log")
    ylabel = ylabel or f"best {metric}"
    axis.set(xlabel=x, ylabel=ylabel, title=title or f"{ylabel} against {x}")
    axis.legend(fontsize="small")
    _save(figure, path)
    return path


def _seed_band(series: list[tuple[list[int], list[float]]]):
    """Steps (the union over seeds), the mean, min and max of the finite values at each step (NaN
    where none is finite, which breaks the line), and the steps where some seed was not finite."""
    at: dict[int, list[float]] = {}
    nonfinite = set()
    for steps, values in series:
        for step, value in zip(steps, values):
            at.setdefault(step, [])
            if math.isfinite(value):
                at[step].append(value)
            else:
                nonfinite.add(step)
    steps = sorted(at)
    mean = [sum(at[s]) / len(at[s]) if at[s] else math.nan for s in steps]
    low = [min(at[s], default=math.nan) for s in steps]
    high = [max(at[s], default=math.nan) for s in steps]
    return steps, mean, low, high, sorted(nonfinite)


def plot_attention(source: list[str], output: list[str], weights, path: Path, *, title: str = "") -> Path:
    """An attention heatmap: source tokens on x, output tokens on y, weights [len(output), len(source)]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = weights.detach().float().cpu().numpy() if hasattr(weights, "detach") else weights
    width, height = max(4.0, 0.35 * len(source) + 1.5), max(3.0, 0.35 * len(output) + 1.2)
    figure, axis = plt.subplots(figsize=(min(width, 30.0), min(height, 30.0)))
    image = axis.imshow(values, cmap="viridis", aspect="auto", vmin=0.0, vmax=1.0)
    axis.set_xticks(range(len(source)), source, rotation=90)
    axis.set_yticks(range(len(output)), output)
    axis.set(xlabel="source", ylabel="output", title=title)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    _save(figure, path)
    return path


def plot_horizon_curves(curves: dict[str, dict[str, list[float]]], path: Path, *, title: str = "") -> Path:
    """Video metrics per horizon step, one panel per metric: curves[metric][predictor] -> values [K]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.2), squeeze=False)
    for axis, (metric, lines) in zip(axes[0], curves.items()):
        for name, values in lines.items():
            axis.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=name)
        axis.set(xlabel="horizon step", title=metric)
        axis.legend(fontsize="small")
    figure.suptitle(title)
    _save(figure, path)
    return path


def plot_frame_strip(rows: list[tuple[str, object]], path: Path, *, title: str = "") -> Path:
    """Rows of grey frames, one column per time step (e.g. input | truth | prediction): each row is
    (label, frames [T, H, W] with values in [0, 1])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(frames) for _, frames in rows)
    size = (0.9 * columns + 0.8, 0.95 * len(rows) + 0.5)
    figure, axes = plt.subplots(len(rows), columns, figsize=size, squeeze=False)
    for row, (label, frames) in enumerate(rows):
        for column, axis in enumerate(axes[row]):
            axis.set_xticks([])
            axis.set_yticks([])
            if column < len(frames):
                axis.imshow(frames[column], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                axis.set_frame_on(False)
        axes[row][0].set_ylabel(label, fontsize="small")
    figure.suptitle(title, fontsize="small")
    figure.tight_layout(pad=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def save_frames_gif(panes: list[object], path: Path, *, scale: int = 2, duration_ms: int = 200) -> Path:
    """An animated GIF of panes side by side (e.g. truth | prediction), each frames [T, H, W] in [0, 1];
    a shorter pane holds its last frame."""
    import numpy as np
    from PIL import Image

    steps = max(len(pane) for pane in panes)
    images = []
    for t in range(steps):
        frames = [np.asarray(pane[min(t, len(pane) - 1)], dtype=np.float32) for pane in panes]
        gap = np.full((frames[0].shape[0], 2), 0.5, dtype=np.float32)  # a grey bar between panes
        row = np.concatenate([part for frame in frames for part in (frame, gap)][:-1], axis=1)
        image = Image.fromarray((np.clip(row, 0, 1) * 255).round().astype(np.uint8))
        images.append(image.resize((image.width * scale, image.height * scale), Image.NEAREST))
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return path


def plot_attention_overlay(image, words: list[str], weights, path: Path, *, columns: int = 5) -> Path:
    """Show, Attend and Tell's figure: the image, then one panel per word with its attention map
    (weights [len(words), G, G]) upsampled bilinearly to the image and laid over it; a grid, PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    import torch.nn.functional as F

    pixels = np.asarray(image)  # [H, W, 3] uint8 or floats in [0, 1]
    maps = torch.as_tensor(weights, dtype=torch.float32)[:, None]  # [T, 1, G, G]
    upsampled = F.interpolate(maps, size=pixels.shape[:2], mode="bilinear", align_corners=False)[:, 0]
    panels = 1 + len(words)
    columns = min(columns, panels)
    rows = -(-panels // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.1 * rows), squeeze=False)
    for axis in axes.flat:
        axis.set_axis_off()
    axes[0][0].imshow(pixels)
    axes[0][0].set_title("image", fontsize="small")
    for t, word in enumerate(words, start=1):
        axis = axes[t // columns][t % columns]
        axis.imshow(pixels)
        heat = upsampled[t - 1].numpy()
        axis.imshow(heat / max(float(heat.max()), 1e-8), cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
        axis.set_title(word, fontsize="small")
    figure.tight_layout(pad=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def plot_grad_through_time(norms: list[list[float]], path: Path, *, title: str = "") -> Path:
    """‖∂L_T/∂h_t‖ against the distance T - t, one line per layer, log y (seqtool.diagnose);
    norms[k][d] is layer k at distance d. Zeros (nothing flows back) are left out of the log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for k, layer in enumerate(norms):
        shown = [(d, norm) for d, norm in enumerate(layer) if math.isfinite(norm) and norm > 0]
        if shown:
            axis.plot(*zip(*shown), linewidth=1.5, label=f"layer {k + 1}")
    axis.set_yscale("log")
    axis.set(xlabel="distance T − t (steps back from the last)", ylabel="‖∂L_T / ∂h_t‖")
    axis.set_title(title or "gradient through time")
    if norms:
        axis.legend(fontsize="small")
    _save(figure, path)
    return path


def plot_text_activations(text: str, values, path: Path, *, title: str = "", width: int = 100) -> Path:
    """Karpathy et al. 2015's figure: the text as a grid of characters, each cell coloured by one unit's
    activation after reading it (values [T] in [-1, 1]: blue -1, white 0, red +1). A line break starts a
    new row (the newline drawn as ↵) and a line longer than `width` wraps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cells, row, col = [], 0, 0  # (row, column) of each character
    for char in text:
        if col == width:
            row, col = row + 1, 0
        cells.append((row, col))
        row, col = (row + 1, 0) if char == "\n" else (row, col + 1)
    rows = cells[-1][0] + 1 if cells else 1
    grid = np.full((rows, width), np.nan)  # empty cells stay blank
    for (r, c), value in zip(cells, values):
        grid[r, c] = value
    figure, axis = plt.subplots(figsize=(0.11 * width + 0.4, 0.2 * rows + 0.6))
    axis.imshow(grid, cmap="bwr", vmin=-1.0, vmax=1.0, aspect="auto", interpolation="nearest")
    for (r, c), char in zip(cells, text):
        if not char.isspace() or char == "\n":
            axis.text(c, r, "↵" if char == "\n" else char, ha="center", va="center",
                      family="monospace", fontsize=7.5)  # fmt: skip
    axis.set_axis_off()
    axis.set_title(title + "   (blue −1 · white 0 · red +1)", fontsize=9, loc="left")
    figure.tight_layout(pad=0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_memory_weightings(*, inputs, outputs, write, read, path: Path, title: str = "") -> Path:
    """Graves et al. 2014, Fig. 6: the inputs and the outputs over time (top), and under them the write
    and the read weighting over the N memory locations at every step, white 0, black 1. The weightings
    are drawn on a square-root scale, so a head spread evenly over 128 locations (1/128 each) is a light
    grey band rather than nothing, and one focused on a location is black.
    inputs [T, I], outputs [T, O] (probabilities), write and read [T, N]: arrays or CPU tensors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import Normalize, PowerNorm

    panels = [
        ("inputs", inputs),
        ("outputs", outputs),
        ("write weightings", write),
        ("read weightings", read),
    ]
    figure, axes = plt.subplots(
        4, 1, figsize=(9, 8), sharex=True, gridspec_kw={"height_ratios": [1, 1, 2.5, 2.5]}
    )
    for axis, (name, values) in zip(axes, panels):
        grid = np.asarray(values, dtype=float).T  # [rows, T]: time runs left to right
        weighting = "weighting" in name
        scale = PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0) if weighting else Normalize(vmin=0.0, vmax=1.0)
        axis.imshow(grid, cmap="Greys", norm=scale, aspect="auto", interpolation="nearest")
        axis.set_ylabel("location" if weighting else "bit", fontsize=8)
        axis.set_title(f"{name} (square-root scale)" if weighting else name, fontsize=9, loc="left")
    axes[-1].set_xlabel("time step")
    figure.suptitle(title or "memory weightings", fontsize=10)
    _save(figure, path)
    return path


def plot_bits_wrong_by_length(
    curves: dict[str, dict[int, tuple[float, float]]], path: Path, *, chance: dict[int, float], trained: int
) -> Path:
    """Bits wrong per sequence against the sequence length, one line per model (mean ± std over seeds),
    the fair coin dashed and the longest trained length marked: curves[label][length] = (mean, std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for label, points in curves.items():
        lengths = sorted(points)
        means = [points[n][0] for n in lengths]
        spread = [points[n][1] for n in lengths]
        line = axis.plot(lengths, means, marker="o", label=label)[0]
        low, high = [m - s for m, s in zip(means, spread)], [m + s for m, s in zip(means, spread)]
        axis.fill_between(lengths, low, high, color=line.get_color(), alpha=0.2)
    if chance:
        axis.plot(
            sorted(chance),
            [chance[n] for n in sorted(chance)],
            "k--",
            linewidth=1,
            label="chance (a coin per bit)",
        )
    axis.axvline(trained, color="grey", linewidth=0.8, linestyle=":")
    axis.text(trained, axis.get_ylim()[1], " trained up to here", fontsize=8, va="top", color="grey")
    axis.set_yscale("symlog", linthresh=1.0)
    axis.set(xlabel="sequence length (vectors to copy)", ylabel="bits wrong per sequence")
    axis.legend(fontsize="small")
    _save(figure, path)
    return path


# ------------------------------------------------------- sentence classification (task=classify)
def plot_confusion_matrix(matrix, labels: list[str], path: Path, *, title: str = "") -> Path:
    """matrix [C, C]: row = true label, column = predicted; each cell shows its count and its share of
    the row (the recall of the true label when on the diagonal)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(matrix.cpu() if hasattr(matrix, "cpu") else matrix, dtype=float)  # [C, C]
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(3.5, 0.6 * len(labels) + 2)
    figure, axis = plt.subplots(figsize=(min(size + 1, 30.0), min(size, 30.0)))
    image = axis.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for row in range(len(labels)):
        for column in range(len(labels)):
            colour = "white" if shares[row, column] > 0.5 else "black"
            axis.text(column, row, f"{int(counts[row, column])}\n{shares[row, column]:.0%}", ha="center",
                      va="center", fontsize=8, color=colour)  # fmt: skip
    axis.set_xticks(range(len(labels)), labels, rotation=90 if len(labels) > 4 else 0)
    axis.set_yticks(range(len(labels)), labels)
    axis.set(xlabel="predicted", ylabel="true", title=title)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the true label's sentences")
    _save(figure, path)
    return path


def plot_word_weights(words: list[str], weights, path: Path, *, title: str = "", width: int = 12) -> Path:
    """The words of a sentence on coloured boxes, darker for a larger weight (attention pooling's a_t),
    `width` words a row, each weight printed under its word."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [float(w) for w in (weights.detach().float().cpu() if hasattr(weights, "detach") else weights)]
    rows = max(1, math.ceil(len(words) / width))
    figure, axis = plt.subplots(figsize=(min(1.1 * min(width, len(words)) + 1, 30.0), 0.9 * rows + 0.8))
    colours = plt.get_cmap("Reds")
    top = max(values, default=1.0) or 1.0
    for k, (word, value) in enumerate(zip(words, values)):
        row, column = divmod(k, width)
        axis.text(column + 0.5, -row, word, ha="center", va="center", fontsize=10,
                  bbox={"facecolor": colours(0.85 * value / top), "edgecolor": "none", "pad": 3})  # fmt: skip
        axis.text(column + 0.5, -row - 0.35, f"{value:.2f}", ha="center", va="center", fontsize=6)
    axis.set_xlim(0, min(width, max(1, len(words))))
    axis.set_ylim(-rows + 0.4, 0.6)
    axis.axis("off")
    axis.set_title(title or "attention pooling weights", fontsize=10)
    _save(figure, path)
    return path
