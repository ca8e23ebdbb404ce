"""Diagnostics that need the trained model: the gradient through time of a recurrent stack.

For one batch of T steps, L_T is the loss at the last step (for a many-to-one task, the task's loss),
and for every layer k and step t::

    g_t^k = mean over the batch's sequences of ‖∂L_T / ∂h_t^k‖        plotted against the distance T - t

A vanishing gradient is a line that falls by decades as the distance grows; an exploding one rises.
∂L_T/∂h_t^k is the total derivative: through h_{t+1}^k (the same layer, one step on) and through
h_t^{k+1} (the layer above, the same step). To hold each h_t^k as a tensor of its own, the stack is
replayed layer by layer and step by step with the run's own weights: the hand-written cells of
seqtool.models.cells as they are, or, for a fused torch module (nn.LSTM, ...), cells with its weights
copied in (same names and layouts, so the copy is exact).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from seqtool.errors import UserError
from seqtool.models.cells import HANDWRITTEN, CellLayer, FusedIRNN, StackedRNN

CELL_CLASSES = HANDWRITTEN  # cell name -> hand-written cell class
FUSED_KINDS = {nn.RNN: "rnn", nn.LSTM: "lstm", nn.GRU: "gru", FusedIRNN: "irnn"}
SHOWN_DISTANCES = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


@dataclass
class GradThroughTime:
    norms: list[list[float]]  # [layer][distance T - t]: mean over the batch of ‖∂L_T/∂h_t‖
    cell: str  # a name of seqtool.models.cells.Cell
    steps: int  # T
    loss: float  # L_T, per sequence
    sequences: int  # the batch's size

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"distance": list(range(self.steps))}


def layer_cells(rnn: nn.Module) -> tuple[str, list[nn.Module]]:
    """The stack of `make_rnn` as one hand-written cell per layer with its weights: (cell kind, cells)."""
    if isinstance(rnn, StackedRNN):
        cells = [
            layer.cell if isinstance(layer, CellLayer) else fused_layer_cell(layer, 0, rnn.cell)
            for layer in rnn.layers
        ]
        return rnn.cell, cells
    kind = FUSED_KINDS.get(type(rnn))
    if kind is None:
        raise UserError(f"cannot replay a {type(rnn).__name__} step by step (the stacks of make_rnn only)")
    return kind, [fused_layer_cell(rnn, k, kind) for k in range(rnn.num_layers)]


def fused_layer_cell(module: nn.RNNBase, k: int, kind: str) -> nn.Module:
    """Layer k of a fused torch module as a hand-written cell holding a copy of its weights."""
    nonlinearity = getattr(module, "nonlinearity", "tanh")
    expected = "relu" if kind == "irnn" else "tanh"  # irnn: FusedIRNN, torch's ReLU RNN
    if module.bidirectional or getattr(module, "proj_size", 0) or nonlinearity != expected:
        raise UserError("only unidirectional stacks without projections can be replayed step by step")
    weight_ih = getattr(module, f"weight_ih_l{k}")  # [G*H, I]
    cell = CELL_CLASSES[kind](weight_ih.shape[1], module.hidden_size).to(weight_ih)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            source = getattr(module, f"{name}_l{k}", None)
            getattr(cell, name).copy_(source if source is not None else torch.zeros_like(getattr(cell, name)))
    return cell.requires_grad_(False)


def replay(cells: list[nn.Module], kind: str, x: Tensor) -> list[list[Tensor]]:
    """Run the stack one layer and one step at a time from zero state: x [B, T, I] -> h[k][t], each
    [B, H] and retaining its gradient. h[-1] stacked along time is the stack's output [B, T, H]."""
    hidden: list[list[Tensor]] = [[] for _ in cells]
    for states in replay_states(cells, kind, x):
        for k, state in enumerate(states):
            hidden[k].append(state[0] if kind == "lstm" else state)
    return hidden


def replay_states(cells: list[nn.Module], kind: str, x: Tensor) -> Iterator[list[Any]]:
    """The replay, step by step: for each t, every layer's state after reading x_t: h_t^k [B, H], or
    (h_t^k, c_t^k) for lstm (seqtool.activations reads the cell c). Each h_t^k retains its gradient."""
    batch = x.shape[0]
    states = []
    for cell in cells:
        h = x.new_zeros(batch, cell.hidden_size)  # [B, H]
        states.append((h, torch.zeros_like(h)) if kind == "lstm" else h)
    with parametrize.cached():  # weight norm: g * v / ||v|| once, not once per step
        for x_t in x.unbind(dim=1):  # [B, I]
            below = x_t
            for k, cell in enumerate(cells):
                states[k] = cell(below, states[k])
                below = states[k][0] if kind == "lstm" else states[k]  # h_t^k: [B, H]
                if below.requires_grad:
                    below.retain_grad()
            yield list(states)


def last_step_loss(model: nn.Module, h_last: Tensor, target: Tensor) -> Tensor:
    """L_T summed over the batch: the model's head on the top layer's h_T [B, H] against the target of
    the last step: cross-entropy for tokens (target [B, T] or [B]), squared error for real values [B]."""
    prediction = model.output(h_last)  # [B, O]
    if target.is_floating_point():
        return (prediction.float().squeeze(-1) - target).pow(2).sum()  # many-to-one: the task's loss
    last = target[:, -1] if target.dim() == 2 else target  # [B]
    return F.cross_entropy(prediction.float(), last, reduction="sum")


def measure(model: nn.Module, inputs: Tensor, target: Tensor) -> GradThroughTime:
    """‖∂L_T/∂h_t^k‖ for every layer k and step t of one batch (model in eval mode: no dropout)."""
    kind, cells = layer_cells(model.rnn)
    with torch.enable_grad():
        x = model.embedding(inputs).detach().requires_grad_(True)  # [B, T, E]: the h_t depend on it
        hidden = replay(cells, kind, x)
        loss = last_step_loss(model, hidden[-1][-1], target)
        loss.backward()
    norms = [
        [float(h.grad.norm(dim=-1).mean()) if h.grad is not None else 0.0 for h in reversed(layer)]
        for layer in hidden
    ]
    model.zero_grad(set_to_none=True)  # the head's weights took gradients too
    return GradThroughTime(norms, kind, x.shape[1], float(loss.detach()) / x.shape[0], x.shape[0])


def grad_through_time(run: Any, *, split: str = "val") -> GradThroughTime:
    """The diagnostic on the first batch of a split of a loaded run (seqtool.commands.load_run)."""
    model = run.model
    if not all(hasattr(model, part) for part in ("embedding", "rnn", "output")):
        raise UserError(
            f"--grad-through-time needs a recurrent model (model=recurrent or model=char_rnn); this run's "
            f"model is {type(model).__name__}"
        )
    batch = next(iter(run.task.batches(split, train=False)))
    return measure(model, batch.x, batch.y)


def summary(result: GradThroughTime) -> str:
    """A small table: the norm at a few distances, one column per layer."""
    header = "distance" + "".join(f"  {'layer ' + str(k + 1):>12}" for k in range(len(result.norms)))
    lines = [
        f"{result.cell}, T = {result.steps}, {result.sequences} sequences, L_T = {result.loss:.4f}",
        header,
    ]
    for distance in (d for d in SHOWN_DISTANCES if d < result.steps):
        lines.append(f"{distance:>8}" + "".join(f"  {layer[distance]:>12.4e}" for layer in result.norms))
    return "\n".join(lines)


def plot(result: GradThroughTime, path: Path, *, name: str) -> Path:
    """The norms against the distance (PNG), titled with the cell, T and `name` (the run)."""
    from seqtool.plots import plot_grad_through_time

    title = f"gradient through time ({result.cell}, T = {result.steps}): {name}"
    return plot_grad_through_time(result.norms, path, title=title)
