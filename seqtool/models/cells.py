"""RNN, LSTM, GRU, IRNN and the residual RNN written from their equations, stacked, and the factory
that picks the fused kernel.

The cells keep torch's parameter names and layouts (``weight_ih`` [G*H, I], ``weight_hh`` [G*H, H],
``bias_ih``/``bias_hh`` [G*H]; LSTM gates i, f, g, o; GRU gates r, z, n), so weights copy between a
hand-written cell and ``torch.nn.LSTM`` layer by layer. A stack's state has torch's format too:
``h`` [L, B, H] for rnn/gru/irnn/residual and ``(h, c)`` each [L, B, H] for lstm.

irnn runs fused as torch's ReLU RNN (``FusedIRNN``); residual has no fused kernel, so it always runs the
hand-written cell.
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as apply_weight_norm

from seqtool.models.base import State, map_tensors

# The one list of cell names: the model constructors annotate `cell: Cell`, and the config schema reads the
# allowed values of model.cell from it.
Cell = Literal["rnn", "lstm", "gru", "irnn", "residual"]
CELLS: tuple[str, ...] = get_args(Cell)


class _GatedCell(nn.Module):
    """Parameters shared by the cells: G gates of size H, optional layer norm and weight norm."""

    def __init__(
        self, input_size: int, hidden_size: int, num_gates: int, *, layer_norm: bool, weight_norm: bool
    ) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(num_gates * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(num_gates * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(num_gates * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(num_gates * hidden_size))
        # Layer norm (Ba et al. 2016) normalises W_ih x and W_hh h separately, over all G*H pre-activations.
        self.norm_ih = nn.LayerNorm(num_gates * hidden_size) if layer_norm else nn.Identity()
        self.norm_hh = nn.LayerNorm(num_gates * hidden_size) if layer_norm else nn.Identity()
        self.reset_parameters()
        if weight_norm:  # after init: g = ||v|| row-wise, so the weights themselves are unchanged
            apply_weight_norm(self, "weight_ih")
            apply_weight_norm(self, "weight_hh")

    def reset_parameters(self) -> None:
        """torch's init for its RNN modules: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1 / math.sqrt(self.hidden_size)
        for weight in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            nn.init.uniform_(weight, -bound, bound)

    def gates(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-activations of the input and the recurrent path, each [B, G*H]."""
        return (
            self.norm_ih(F.linear(x, self.weight_ih)) + self.bias_ih,
            self.norm_hh(F.linear(h, self.weight_hh)) + self.bias_hh,
        )


class RNNCell(_GatedCell):
    """Elman RNN:  h' = tanh(W_ih x + b_ih + W_hh h + b_hh)."""

    def __init__(
        self, input_size: int, hidden_size: int, *, layer_norm: bool = False, weight_norm: bool = False
    ) -> None:
        super().__init__(input_size, hidden_size, 1, layer_norm=layer_norm, weight_norm=weight_norm)

    def forward(self, x: Tensor, state: Tensor) -> Tensor:
        """x [B, I], h [B, H] -> h' [B, H]."""
        input_part, hidden_part = self.gates(x, state)
        return torch.tanh(input_part + hidden_part)


class LSTMCell(_GatedCell):
    """LSTM (torch's gate order i, f, g, o)::

    i, f, g, o = W_ih x + b_ih + W_hh h + b_hh
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h' = sigmoid(o) * tanh(c')           # tanh(LayerNorm(c')) with layer_norm
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        layer_norm: bool = False,
        weight_norm: bool = False,
        forget_bias: float | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, 4, layer_norm=layer_norm, weight_norm=weight_norm)
        self.norm_c = nn.LayerNorm(hidden_size) if layer_norm else nn.Identity()
        if forget_bias is not None:
            init_forget_bias(self.bias_ih, self.bias_hh, forget_bias)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """x [B, I], (h, c) each [B, H] -> (h', c') each [B, H]."""
        h, c = state
        input_part, hidden_part = self.gates(x, h)
        i, f, g, o = (input_part + hidden_part).chunk(4, dim=1)  # 4 x [B, H]
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(self.norm_c(c))
        return h, c


class GRUCell(_GatedCell):
    """GRU (torch's gate order r, z, n and its reset-after form)::

    r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h
    """

    def __init__(
        self, input_size: int, hidden_size: int, *, layer_norm: bool = False, weight_norm: bool = False
    ) -> None:
        super().__init__(input_size, hidden_size, 3, layer_norm=layer_norm, weight_norm=weight_norm)

    def forward(self, x: Tensor, state: Tensor) -> Tensor:
        """x [B, I], h [B, H] -> h' [B, H]."""
        h = state
        input_part, hidden_part = self.gates(x, h)
        x_r, x_z, x_n = input_part.chunk(3, dim=1)  # 3 x [B, H]
        h_r, h_z, h_n = hidden_part.chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return (1 - z) * n + z * h


class IRNNCell(_GatedCell):
    """IRNN (Le, Jaitly & Hinton 2015, "A simple way to initialize recurrent networks of rectified linear
    units")::

        h' = ReLU(W_ih x + b_ih + W_hh h + b_hh),   W_hh = I,  b = 0,  W_ih ~ N(0, 0.001²) at init

    With U = W_hh = I and b = 0 the untrained cell copies h forward (h' = h + W_ih x while h >= 0), so the
    gradient through time neither vanishes nor explodes at the start of training.
    """

    def __init__(
        self, input_size: int, hidden_size: int, *, layer_norm: bool = False, weight_norm: bool = False
    ) -> None:
        super().__init__(input_size, hidden_size, 1, layer_norm=layer_norm, weight_norm=weight_norm)

    def reset_parameters(self) -> None:
        """The paper's init (before weight norm, so that it keeps these weights)."""
        init_irnn(self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def forward(self, x: Tensor, state: Tensor) -> Tensor:
        """x [B, I], h [B, H] -> h' [B, H]."""
        input_part, hidden_part = self.gates(x, state)
        return torch.relu(input_part + hidden_part)


IRNN_INPUT_STD = 0.001  # Le et al. 2015: the non-recurrent weights ~ N(0, 0.001²); the residual cell's too


def init_irnn(weight_ih: Tensor, weight_hh: Tensor, *biases: Tensor) -> None:
    """U = I (Le et al. use scale 1 on the adding problem), b = 0, W ~ N(0, 0.001²), in place."""
    with torch.no_grad():
        nn.init.normal_(weight_ih, mean=0.0, std=IRNN_INPUT_STD)
        nn.init.eye_(weight_hh)
        for bias in biases:
            bias.zero_()


class ResidualCell(_GatedCell):
    """Residual recurrence::

        h' = h + g(x, h),   g(x, h) = tanh(W_ih x + b_ih + W_hh h + b_hh)
        at init: W_ih, W_hh ~ N(0, 0.001²), b = 0, so g ≈ 0 and h' ≈ h

    the forward-Euler step (step size 1) of dh/dt = tanh(W x + U h + b), as in AntisymmetricRNN (Chang,
    Chen, Haber & Chi 2019, eq. 5, without its antisymmetric constraint on U) and FastRNN (Kusupati et al.
    2018, with α = β = 1): ResNet's identity shortcut (He et al. 2016) taken through time. The Jacobian
    ∂h'/∂h = I + diag(1 - g²) W_hh keeps an identity path, so the gradient is not a product of
    contractions as in the tanh RNN. g is tanh (not ReLU, not a gate) because a bounded update moves each
    unit by less than 1 per step: h can grow only linearly with T, never geometrically.

    The residual branch starts at (almost) zero, as ReZero (Bachlechner et al. 2021) and Fixup (Zhang,
    Dauphin & Ma 2019) start theirs, with the IRNN's N(0, 0.001²) for every weight (not exactly 0: weight
    norm divides by ||v||): the untrained cell is the identity map, like the IRNN. With torch's uniform
    init instead, tanh saturates along U's growing directions, h grows by up to 1 per unit per step, and
    the first Adam steps raised the adding problem's loss 28-fold (0.52 -> 14.8, lag 10, a smoke run).
    """

    def __init__(
        self, input_size: int, hidden_size: int, *, layer_norm: bool = False, weight_norm: bool = False
    ) -> None:
        super().__init__(input_size, hidden_size, 1, layer_norm=layer_norm, weight_norm=weight_norm)

    def reset_parameters(self) -> None:
        """An almost zero residual branch: W_ih, W_hh ~ N(0, 0.001²), b = 0 (before weight norm)."""
        with torch.no_grad():
            for weight in (self.weight_ih, self.weight_hh):
                nn.init.normal_(weight, mean=0.0, std=IRNN_INPUT_STD)
            self.bias_ih.zero_()
            self.bias_hh.zero_()

    def forward(self, x: Tensor, state: Tensor) -> Tensor:
        """x [B, I], h [B, H] -> h' [B, H]."""
        input_part, hidden_part = self.gates(x, state)
        return state + torch.tanh(input_part + hidden_part)


class FusedIRNN(nn.RNN):
    """torch's ReLU RNN (cuDNN on GPU) with the IRNN init in every layer and direction; the same
    arguments as ``torch.nn.RNN`` otherwise, and the same parameter names."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, nonlinearity="relu", **kwargs)

    def reset_parameters(self) -> None:
        """Called by torch's constructor: the IRNN init instead of torch's uniform one."""
        directions = ("", "_reverse") if self.bidirectional else ("",)
        for k in range(self.num_layers):
            for suffix in directions:
                names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if self.bias else ())
                init_irnn(*(getattr(self, f"{name}_l{k}{suffix}") for name in names))


HANDWRITTEN = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell, "irnn": IRNNCell, "residual": ResidualCell}
FUSED = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU, "irnn": FusedIRNN}  # residual: no fused kernel


def init_forget_bias(bias_ih: Tensor, bias_hh: Tensor, value: float) -> None:
    """Set the forget slice (the 2nd of 4) of an LSTM's biases so that b_ih + b_hh = value there."""
    hidden_size = bias_ih.shape[0] // 4
    with torch.no_grad():
        bias_ih[hidden_size : 2 * hidden_size] = value
        bias_hh[hidden_size : 2 * hidden_size] = 0.0


class LockedDropout(nn.Module):
    """Variational dropout (Gal & Ghahramani 2016): one mask per sequence, reused at every time step."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """x [B, T, D] -> x [B, T, D], zeroing the same features of a row at every step."""
        if not self.training or self.p == 0:
            return x
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - self.p) / (1 - self.p)  # [B, 1, D]
        return x * mask


class CellLayer(nn.Module):
    """Runs one cell over a sequence; takes and returns the state of one layer in torch's [1, B, H] format."""

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: Tensor, state: State, mask: Tensor | None = None) -> tuple[Tensor, State]:
        """x [B, T, I], state [1, B, H] (or a pair) -> outputs [B, T, H], state.

        mask [B, T] (False: padding) carries a row's state unchanged over its padded steps, so the final
        state of a right-padded row is the one after its last real step."""
        state = map_tensors(lambda t: t.squeeze(0), state)  # [B, H]
        outputs = []
        with parametrize.cached():  # weight norm: compute g * v / ||v|| once per sequence, not per step
            for t, x_t in enumerate(x.unbind(dim=1)):
                new_state = self.cell(x_t, state)
                if mask is not None:
                    state = keep_where(mask[:, t], new_state, state)
                else:
                    state = new_state
                outputs.append(state[0] if isinstance(state, tuple) else state)
        return torch.stack(outputs, dim=1), map_tensors(lambda t: t.unsqueeze(0), state)  # [B, T, H]


def keep_where(mask: Tensor, new: State, old: State) -> State:
    """The new state in the rows where mask [B] is True, the old one elsewhere (h [B, H], or a pair)."""
    if isinstance(new, tuple):
        return tuple(keep_where(mask, n, o) for n, o in zip(new, old, strict=True))
    return torch.where(mask.unsqueeze(-1), new, old)


class StackedRNN(nn.Module):
    """Layers run one after another over the whole sequence (batch-first), with dropout between them.

    Each layer is a hand-written cell (``layers.k.cell.weight_ih``) or, with ``fused=True``, a one-layer
    torch module (``layers.k.weight_ih_l0``). State: h [L, B, H], or (h, c) each [L, B, H] for lstm.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        *,
        dropout: float = 0.0,
        variational_dropout: bool = False,
        layer_norm: bool = False,
        weight_norm: bool = False,
        forget_bias: float | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__()
        check_cell(cell)
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        if fused and cell not in FUSED:
            raise ValueError(f"cell {cell!r} has no fused torch kernel; it runs the hand-written cell only")
        if fused:
            self.layers = nn.ModuleList(FUSED[cell](size, hidden_size, batch_first=True) for size in sizes)
            if cell == "lstm" and forget_bias is not None:
                for layer in self.layers:
                    set_fused_forget_bias(layer, forget_bias)
        else:
            options = {"layer_norm": layer_norm, "weight_norm": weight_norm}
            if cell == "lstm":
                options["forget_bias"] = forget_bias
            self.layers = nn.ModuleList(
                CellLayer(HANDWRITTEN[cell](size, hidden_size, **options)) for size in sizes
            )
        self.dropout = LockedDropout(dropout) if variational_dropout else nn.Dropout(dropout)

    def zero_state(self, x: Tensor) -> State:
        """Zeros in the format of the state, on x's device and dtype."""
        h = x.new_zeros(self.num_layers, x.shape[0], self.hidden_size)  # [L, B, H]
        return (h, torch.zeros_like(h)) if self.cell == "lstm" else h

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """x [B, T, I], state (zeros when None) -> outputs [B, T, H] of the last layer, final state."""
        state = self.zero_state(x) if state is None else state
        final_states = []
        for k, layer in enumerate(self.layers):
            if k > 0:
                x = self.dropout(x)
            x, layer_state = layer(x, map_tensors(lambda t, k=k: t[k : k + 1], state))  # [1, B, H]
            final_states.append(layer_state)
        if self.cell == "lstm":
            return x, tuple(torch.cat(parts, dim=0) for parts in zip(*final_states, strict=True))
        return x, torch.cat(final_states, dim=0)  # [L, B, H]


def check_cell(cell: str) -> None:
    """Refuse a cell name other than those of `Cell`."""
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")


def set_fused_forget_bias(module: nn.LSTM, value: float) -> None:
    """Forget-bias init for every layer (and direction) of a fused ``torch.nn.LSTM``."""
    for k in range(module.num_layers):
        for suffix in ("", "_reverse") if module.bidirectional else ("",):
            ih, hh = f"bias_ih_l{k}{suffix}", f"bias_hh_l{k}{suffix}"
            init_forget_bias(getattr(module, ih), getattr(module, hh), value)


def make_cell(
    cell: str,
    input_size: int,
    hidden_size: int,
    *,
    layer_norm: bool = False,
    weight_norm: bool = False,
    forget_bias: float | None = None,
) -> nn.Module:
    """One hand-written cell for a model that runs its own steps: ``cell(x [B, I], state) -> state``
    (h [B, H], or (h, c) for lstm). ``forget_bias`` is LSTM-only (ignored by the other cells)."""
    check_cell(cell)
    options = {"layer_norm": layer_norm, "weight_norm": weight_norm}
    if cell == "lstm":
        options["forget_bias"] = forget_bias
    return HANDWRITTEN[cell](input_size, hidden_size, **options)


def step_dropout_mask(p: float, batch_size: int, size: int, like: Tensor) -> Tensor:
    """A variational-dropout mask [B, D] for a sequence that a model runs step by step (a decoder): drawn
    once when the sequence starts and applied at every step, as LockedDropout does over a whole [B, T, D]."""
    return like.new_empty(batch_size, size).bernoulli_(1 - p) / (1 - p)


def make_rnn(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    dropout: float = 0.0,
    variational_dropout: bool = False,
    layer_norm: bool = False,
    weight_norm: bool = False,
    forget_bias: float | None = None,
) -> nn.Module:
    """A batch-first stack: ``forward(x [B, T, I], state | None) -> (outputs [B, T, H], state)``.

    Picks torch's fused module (cuDNN on GPU; FusedIRNN for irnn) unless layer_norm or weight_norm needs
    the hand-written cell or the cell has no fused kernel (residual); variational dropout between layers
    runs fused one-layer modules. ``forget_bias`` is LSTM-only (ignored by the other cells); None keeps
    torch's uniform init.
    """
    check_cell(cell)
    stack_args = (cell, input_size, hidden_size, num_layers)
    options = {"dropout": dropout, "variational_dropout": variational_dropout, "forget_bias": forget_bias}
    if layer_norm or weight_norm or cell not in FUSED:
        return StackedRNN(*stack_args, layer_norm=layer_norm, weight_norm=weight_norm, **options)
    if variational_dropout and num_layers > 1 and dropout > 0:
        return StackedRNN(*stack_args, fused=True, **options)
    module = FUSED[cell](
        input_size,
        hidden_size,
        num_layers,
        batch_first=True,
        dropout=dropout if num_layers > 1 else 0.0,  # torch warns about dropout on a single layer
    )
    if cell == "lstm" and forget_bias is not None:
        set_fused_forget_bias(module, forget_bias)
    return module
