"""ConvLSTM (Shi et al. 2015): an LSTM whose input-to-state and state-to-state maps are convolutions.

    i  = σ(W_xi * x + W_hi * h + W_ci ∘ c + b_i)
    f  = σ(W_xf * x + W_hf * h + W_cf ∘ c + b_f)
    c' = f ∘ c + i ∘ tanh(W_xc * x + W_hc * h + b_c)          (* convolution, ∘ Hadamard product;
    o  = σ(W_xo * x + W_ho * h + W_co ∘ c' + b_o)              the W_c· peepholes are optional)
    h' = o ∘ tanh(c')

Frames are cut into p×p patches first (space-to-depth), so the recurrence runs on a small grid:
frames [B, T, C, H, W] -> pixel_unshuffle -> [B, T, C·p², H/p, W/p].

Encoder–forecaster, one step per frame (frame t in, frame t+1 out); the forecaster starts from the
encoder's states, and each prediction is a 1×1 convolution over the hidden states of all its layers::

    step t:   0 .. T_in-2               | T_in-1 .. T_in+K-2
    input:    x_1 .. x_{T_in-1} (truth) | x_{T_in}, then x̂ (own prediction) or x (truth, scheduled sampling)
    stack:    encoder                   | forecaster
    output:   -                         | x̂_{T_in+1} .. x̂_{T_in+K}

Scheduled sampling (Bengio et al. 2015): in training, each sequence is fed its true frame at a forecast
step with probability ε = ``teacher_forcing_ratio`` (the trainer sets it every step from its schedule).
Reverse scheduled sampling (Wang et al. 2021): the encoder predicts too, and is fed its own prediction
instead of the truth with probability ε/2 (so 0.5 → 1 truth as ε goes 1 → 0); the MSE of those encoder
predictions is the auxiliary loss. Both draw from torch's global RNG, which checkpoints save.

Composite model (Srivastava et al. 2015), ``reconstruct=true``: a second decoder with its own weights and
head starts from the encoder's states too and reconstructs the frames the encoder read, in reverse
(x̂_{T_in-1}, ..., x̂_1), reading nothing (zeros, the paper's unconditioned decoder) while the forecaster
predicts; in training, ``reconstruct_weight`` × its pixel MSE joins the auxiliary loss, so the two losses
are summed. It shapes the encoder's states only: predictions never read it, and evaluation skips it::

    encoder:        x_1 .. x_{T_in-1}  ──► states ──┬──► forecaster:    x̂_{T_in+1} .. x̂_{T_in+K}
                                                    └──► reconstructor: x̂_{T_in-1} .. x̂_1

Forward: ``model(inputs [B, T_in, C, H, W], targets [B, K, C, H, W] | None, horizon=K)`` ->
``(predictions [B, K, C, H, W], aux_loss [])``. Targets only feed scheduled sampling; predictions are
linear (not clipped to [0, 1]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LayerState = tuple[Tensor, Tensor]  # (h, c), each [B, H, h, w]


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer. ``conv.weight`` [4H, I + H, k, k]: gate rows i, f, g (the tanh input), o;
    columns [:I] are W_x·, [I:] are W_h·. Peepholes W_ci, W_cf, W_co are [H, h, w] (the grid size)."""

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int,
        kernel_size: int,
        *,
        grid_size: int | None = None,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.conv = nn.Conv2d(
            input_channels + hidden_channels, 4 * hidden_channels, kernel_size, padding=kernel_size // 2
        )
        with torch.no_grad():
            self.conv.bias[hidden_channels : 2 * hidden_channels] = forget_bias
        peephole = grid_size is not None
        shape = (hidden_channels, grid_size, grid_size) if peephole else None
        self.w_ci = nn.Parameter(torch.zeros(shape)) if peephole else None
        self.w_cf = nn.Parameter(torch.zeros(shape)) if peephole else None
        self.w_co = nn.Parameter(torch.zeros(shape)) if peephole else None

    def forward(self, x: Tensor, state: LayerState) -> LayerState:
        """x [B, I, h, w], (h, c) each [B, H, h, w] -> (h', c') each [B, H, h, w]."""
        h, c = state
        i, f, g, o = self.conv(torch.cat([x, h], dim=1)).chunk(4, dim=1)  # 4 × [B, H, h, w]
        if self.w_ci is not None:
            i, f = i + self.w_ci * c, f + self.w_cf * c
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        if self.w_co is not None:
            o = o + self.w_co * c
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ConvLSTMStack(nn.Module):
    """Layers one above the other at one time step: layer l reads layer l-1's new h."""

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int,
        num_layers: int,
        kernel_size: int,
        grid_size: int | None,
    ) -> None:
        super().__init__()
        sizes = [input_channels] + [hidden_channels] * (num_layers - 1)
        self.cells = nn.ModuleList(
            ConvLSTMCell(size, hidden_channels, kernel_size, grid_size=grid_size) for size in sizes
        )

    def forward(self, x: Tensor, state: list[LayerState]) -> list[LayerState]:
        """x [B, I, h, w], one (h, c) per layer -> the new (h, c) per layer."""
        new_state = []
        for cell, layer_state in zip(self.cells, state):
            h, c = cell(x, layer_state)
            new_state.append((h, c))
            x = h
        return new_state


class ConvLSTM(nn.Module):
    """Encoder–forecaster of stacked ConvLSTM layers on p×p patches, with a 1×1 output convolution."""

    task_shapes = ("many-to-many asynchronous",)  # read by seqtool.shapes

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        hidden_channels: int,
        num_layers: int,
        kernel_size: int,
        patch_size: int,
        peephole: bool,
        scheduled_sampling: bool,
        reverse_scheduled_sampling: bool,
        # defaults only for runs saved before the composite option; conf/model/convlstm.yaml sets both
        reconstruct: bool = False,
        reconstruct_weight: float = 1.0,
    ) -> None:
        super().__init__()
        check_geometry(image_size, patch_size, kernel_size, hidden_channels, num_layers)
        if reconstruct_weight < 0:
            raise ValueError(f"model.reconstruct_weight={reconstruct_weight} must be ≥ 0")
        self.patch_size, self.image_size = patch_size, image_size
        self.scheduled_sampling = scheduled_sampling
        self.reverse_scheduled_sampling = reverse_scheduled_sampling
        self.teacher_forcing_ratio = 1.0  # ε: the trainer sets it each step; read with scheduled sampling
        self.hidden_channels, self.num_layers = hidden_channels, num_layers
        patch_channels, grid = channels * patch_size**2, image_size // patch_size
        peephole_grid = grid if peephole else None
        self.encoder = ConvLSTMStack(patch_channels, hidden_channels, num_layers, kernel_size, peephole_grid)
        self.forecaster = ConvLSTMStack(
            patch_channels, hidden_channels, num_layers, kernel_size, peephole_grid
        )
        self.head = nn.Conv2d(num_layers * hidden_channels, patch_channels, kernel_size=1)
        self.reconstruct_weight = reconstruct_weight
        self.reconstructor, self.reconstruction_head = None, None
        if reconstruct:  # built last, so a model without it draws the same initial weights as before
            self.reconstructor = ConvLSTMStack(
                patch_channels, hidden_channels, num_layers, kernel_size, peephole_grid
            )
            self.reconstruction_head = nn.Conv2d(num_layers * hidden_channels, patch_channels, kernel_size=1)

    def zero_state(self, x: Tensor) -> list[LayerState]:
        """Zeros (h, c) for every layer, for x [B, C p², h, w]."""
        zeros = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[-2:])  # [B, H, h, w]
        return [(zeros, zeros) for _ in range(self.num_layers)]

    def forward(
        self, inputs: Tensor, targets: Tensor | None = None, horizon: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """inputs [B, T_in, C, H, W], targets [B, K, C, H, W] or horizon K -> (predictions [B, K, C, H, W],
        aux_loss [])."""
        x, t_in, horizon = join_frames(inputs, targets, horizon, self.patch_size)  # [B, T, C p², h, w]
        use_truth = self.feed_mask(x.shape[0], t_in, horizon, targets is not None, x.device)  # [B, T-1]
        predict_encoder = self.training and self.reverse_scheduled_sampling
        state, prediction, outputs, encoder_outputs = self.zero_state(x), None, [], []
        encoder_state = state  # replaced after the last encoder step
        for t in range(t_in + horizon - 1):
            frame = next_input(x, t, prediction, use_truth)  # [B, C p², h, w]
            stack = self.encoder if t < t_in - 1 else self.forecaster
            state = stack(frame, state)
            if t == t_in - 2:
                encoder_state = state  # after x_1 .. x_{T_in-1}: where both decoders start
            if t >= t_in - 1 or predict_encoder:
                prediction = self.head(torch.cat([h for h, _ in state], dim=1))  # [B, C p², h, w]
                (outputs if t >= t_in - 1 else encoder_outputs).append(prediction)
        predictions = F.pixel_shuffle(torch.stack(outputs, dim=1), self.patch_size)  # [B, K, C, H, W]
        aux_loss = reconstruction_loss(encoder_outputs, x[:, 1:t_in])
        if self.training and self.reconstructor is not None and t_in > 1:
            reversed_inputs = x[:, : t_in - 1].flip(1)  # x_{T_in-1} .. x_1, [B, T_in-1, C p², h, w]
            reconstructed = self.reconstruct_inputs(encoder_state, t_in - 1)
            aux_loss = aux_loss + self.reconstruct_weight * reconstruction_loss(
                reconstructed, reversed_inputs
            )
        return predictions, aux_loss

    def reconstruct_inputs(self, state: list[LayerState], count: int) -> list[Tensor]:
        """The composite model's second decoder: from the encoder's states, `count` frames in reverse
        order (each [B, C p², h, w]), reading zeros (unconditioned)."""
        blank = state[0][0].new_zeros(state[0][0].shape[0], self.head.out_channels, *state[0][0].shape[-2:])
        frames = []
        for _ in range(count):
            state = self.reconstructor(blank, state)
            frames.append(self.reconstruction_head(torch.cat([h for h, _ in state], dim=1)))
        return frames

    def feed_mask(
        self, batch: int, t_in: int, horizon: int, has_targets: bool, device: torch.device
    ) -> Tensor:
        return model_feed_mask(self, batch, t_in, horizon, has_targets, device)


# ------------------------------------------------------------------- shared with models/predrnn.py
def check_geometry(
    image_size: int, patch_size: int, kernel_size: int, hidden_channels: int, layers: int
) -> None:
    """Refuse sizes the model cannot be built with (a ValueError is a one-line user error)."""
    if patch_size < 1 or image_size % patch_size:
        raise ValueError(f"the image size {image_size} is not divisible by model.patch_size={patch_size}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"model.kernel_size={kernel_size} must be odd (same-size convolutions)")
    if hidden_channels < 1 or layers < 1:
        raise ValueError("model.hidden_channels and model.num_layers must be at least 1")


def join_frames(
    inputs: Tensor, targets: Tensor | None, horizon: int | None, patch_size: int
) -> tuple[Tensor, int, int]:
    """inputs [B, T_in, C, H, W] (+ targets [B, K, C, H, W]) as patches [B, T, C p², H/p, W/p], T_in, K."""
    if targets is None and horizon is None:
        raise ValueError("give the targets or the horizon")
    horizon = targets.shape[1] if targets is not None else horizon
    frames = inputs if targets is None else torch.cat([inputs, targets.to(inputs.dtype)], dim=1)
    patches = F.pixel_unshuffle(frames.flatten(0, 1), patch_size)  # [B T, C p², H/p, W/p]
    return patches.view(*frames.shape[:2], *patches.shape[1:]), inputs.shape[1], horizon


def feed_mask(
    batch: int, t_in: int, horizon: int, ratio: float, *, scheduled: bool, reverse: bool, device: torch.device
) -> Tensor:
    """Per sequence and step t (frame t+1 is fed), True: the true frame, False: the model's prediction.

    shape: [B, T_in + K - 1]. Given frames are truth (reverse: truth with probability 1 - ratio/2);
    forecast steps are predictions (scheduled: truth with probability ratio). One draw per sequence and
    step from torch's global RNG, so a resumed run draws exactly what an uninterrupted one would.
    """
    mask = torch.zeros(batch, t_in + horizon - 1, dtype=torch.bool, device=device)
    mask[:, :t_in] = True
    if scheduled or reverse:
        draws = torch.rand(batch, t_in + horizon - 1, device=device)
        if scheduled:
            mask[:, t_in:] = draws[:, t_in:] < ratio
        if reverse:
            mask[:, 1:t_in] = draws[:, 1:t_in] < 1.0 - ratio / 2
    return mask


def model_feed_mask(
    model: nn.Module, batch: int, t_in: int, horizon: int, has_targets: bool, device: torch.device
) -> Tensor:
    """feed_mask with a video model's own settings: its teacher-forcing ratio ε (set by the trainer), and
    (reverse) scheduled sampling only while it trains (scheduled only when the targets are given)."""
    return feed_mask(
        batch,
        t_in,
        horizon,
        model.teacher_forcing_ratio,
        scheduled=model.training and model.scheduled_sampling and has_targets,
        reverse=model.training and model.reverse_scheduled_sampling,
        device=device,
    )


def next_input(frames: Tensor, t: int, prediction: Tensor | None, use_truth: Tensor) -> Tensor:
    """The frame fed at step t [B, C', h, w]: true frame t of frames [B, T, C', h, w] where use_truth[:, t]
    and it is known (else the prediction of it)."""
    if t >= frames.shape[1]:
        return prediction
    if prediction is None:
        return frames[:, t]
    return torch.where(use_truth[:, t, None, None, None], frames[:, t], prediction)


def reconstruction_loss(predictions: list[Tensor], truth: Tensor) -> Tensor:
    """Mean squared error of the encoder's predictions (each [B, C', h, w]) vs truth [B, n, C', h, w]."""
    if not predictions:
        return truth.new_zeros(())
    return F.mse_loss(torch.stack(predictions, dim=1).float(), truth.float())
