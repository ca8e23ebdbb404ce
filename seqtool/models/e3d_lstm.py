"""E3D-LSTM (Wang et al. 2019, Eidetic 3D LSTM): 3-D convolutional gates over a short window of frames, a
recall gate that attends over the memories of the last τ steps in place of the forget gate, and the zigzag
spatiotemporal memory M of PredRNN.

Every state is a short clip: X_t, H, C, M are [channels, D, h, w], D = ``window`` frames (X_t holds frames
t-D+1 .. t, zeros before the first), and * is a 3-D convolution (``temporal_kernel_size`` × k × k, causal
in the window: a position sees only itself and earlier frames)::

    R_t  = σ(W_xr * X_t + W_hr * H^k_{t-1} + b_r)                     the recall gate (a query per position)
    I_t  = σ(W_xi * X_t + W_hi * H^k_{t-1} + b_i)
    G_t  = tanh(W_xg * X_t + W_hg * H^k_{t-1} + b_g)
    RECALL(R_t, C^k_{t-τ:t-1}) = softmax(R_t · C^k_{t-τ:t-1}ᵀ) · C^k_{t-τ:t-1}
    C^k_t = I_t ∘ G_t + LayerNorm(C^k_{t-1} + RECALL(R_t, C^k_{t-τ:t-1}))
    I'_t = σ(W'_xi * X_t + W_mi * M^{k-1}_t + b'_i)
    G'_t = tanh(W'_xg * X_t + W_mg * M^{k-1}_t + b'_g)
    F'_t = σ(W'_xf * X_t + W_mf * M^{k-1}_t + b'_f)
    M^k_t = I'_t ∘ G'_t + F'_t ∘ M^{k-1}_t
    O_t  = σ(W_xo * X_t + W_ho * H^k_{t-1} + W_co * C^k_t + W_mo * M^k_t + b_o)
    H^k_t = O_t ∘ tanh(W_1×1×1 * [C^k_t, M^k_t])

The recall: each of the D·h·w positions of R_t is a query of H channels; the keys and values are every
position of the τ stored memories C^k_{t-τ} .. C^k_{t-1} (τ·D·h·w vectors of H channels), so a cell can
bring back what it stored several steps ago instead of only decaying C^k_{t-1} through a forget gate.
LayerNorm normalises over (H, D, h, w) per sequence, with a per-channel gain and bias.
M climbs the stack within a step and passes from the top layer at t to the bottom at t+1, as in PredRNN.
The prediction of frame t+1 is a D×1×1 convolution of the top H, folding the window into one frame.

Forward, patches, scheduled and reverse scheduled sampling as models/predrnn.py:
``model(inputs [B, T_in, C, H, W], targets [B, K, C, H, W] | None, horizon=K)`` ->
``(predictions [B, K, C, H, W], aux_loss [])``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqtool.models.convlstm import (
    check_geometry,
    join_frames,
    model_feed_mask,
    next_input,
    reconstruction_loss,
)


class CausalConv3d(nn.Conv3d):
    """A 3-D convolution that keeps [D, h, w]: padded k//2 in space and t-1 before the window in time."""

    def __init__(self, in_channels: int, out_channels: int, temporal: int, spatial: int, bias: bool = True):
        super().__init__(in_channels, out_channels, (temporal, spatial, spatial), bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, I, D, h, w] -> [B, O, D, h, w]."""
        temporal, spatial = self.kernel_size[0], self.kernel_size[1] // 2
        return super().forward(F.pad(x, (spatial, spatial, spatial, spatial, temporal - 1, 0)))


def recall(r: Tensor, memories: list[Tensor]) -> Tensor:
    """softmax(R · Cᵀ) C: queries r [B, H, D, h, w] attend over every position of the stored memories
    (each [B, H, D, h, w]) -> [B, H, D, h, w]."""
    query = r.flatten(2).transpose(1, 2)  # [B, N, H], N = D h w
    keys = torch.stack(memories, dim=2).flatten(2).transpose(1, 2)  # [B, τ N, H], the values too
    weights = torch.softmax(query @ keys.transpose(1, 2), dim=-1)  # [B, N, τ N]
    return (weights @ keys).transpose(1, 2).reshape(r.shape)


class EideticCell(nn.Module):
    """One E3D-LSTM layer. conv_xh: [X, H] -> 4H (r, i, g, o); conv_xm: [X, M] -> 3H (i', g', f');
    conv_o: [C', M'] -> H (W_co, W_mo); conv_1x1x1: [C', M'] -> H; norm: the LayerNorm of the C update."""

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int,
        kernel_size: int,
        temporal_kernel_size: int,
        forget_bias: float = 1.0,
    ):
        super().__init__()
        hidden, kt, k = hidden_channels, temporal_kernel_size, kernel_size
        self.conv_xh = CausalConv3d(input_channels + hidden, 4 * hidden, kt, k)
        self.conv_xm = CausalConv3d(input_channels + hidden, 3 * hidden, kt, k)
        self.conv_o = CausalConv3d(2 * hidden, hidden, kt, k, bias=False)
        self.conv_1x1x1 = nn.Conv3d(2 * hidden, hidden, kernel_size=1, bias=False)
        self.norm = nn.GroupNorm(1, hidden)  # one group: LayerNorm over (H, D, h, w)
        with torch.no_grad():  # F' (the third block of conv_xm) starts open, as a forget gate does
            self.conv_xm.bias[2 * hidden :] = forget_bias

    def forward(
        self, x: Tensor, h: Tensor, c: Tensor, m: Tensor, memories: list[Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, I, D, h, w]; h, c (C^k_{t-1}), m (M^{k-1}_t) and each of the τ stored memories
        [B, H, D, h, w] -> H^k_t, C^k_t, M^k_t each [B, H, D, h, w]."""
        r, i, g, o_xh = self.conv_xh(torch.cat([x, h], dim=1)).chunk(4, dim=1)  # 4 × [B, H, D, h, w]
        r, i, g = torch.sigmoid(r), torch.sigmoid(i), torch.tanh(g)
        c = i * g + self.norm(c + recall(r, memories))
        i_m, g_m, f_m = self.conv_xm(torch.cat([x, m], dim=1)).chunk(3, dim=1)
        m = torch.sigmoid(i_m) * torch.tanh(g_m) + torch.sigmoid(f_m) * m
        memory = torch.cat([c, m], dim=1)  # [B, 2H, D, h, w]
        o = torch.sigmoid(o_xh + self.conv_o(memory))
        h = o * torch.tanh(self.conv_1x1x1(memory))
        return h, c, m


class E3DLSTM(nn.Module):
    """Stacked E3D-LSTM cells on p×p patches over windows of D frames; the zigzag memory M."""

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
        window: int,
        temporal_kernel_size: int,
        memory_steps: int,
        scheduled_sampling: bool,
        reverse_scheduled_sampling: bool,
    ) -> None:
        super().__init__()
        check_geometry(image_size, patch_size, kernel_size, hidden_channels, num_layers)
        if min(window, temporal_kernel_size, memory_steps) < 1:
            raise ValueError("model.window, model.temporal_kernel_size and model.memory_steps must be ≥ 1")
        self.patch_size, self.image_size = patch_size, image_size
        self.window, self.memory_steps = window, memory_steps
        self.scheduled_sampling = scheduled_sampling
        self.reverse_scheduled_sampling = reverse_scheduled_sampling
        self.teacher_forcing_ratio = 1.0  # ε: the trainer sets it each step; read with scheduled sampling
        self.hidden_channels = hidden_channels
        patch_channels = channels * patch_size**2
        sizes = [patch_channels] + [hidden_channels] * (num_layers - 1)
        self.cells = nn.ModuleList(
            EideticCell(size, hidden_channels, kernel_size, temporal_kernel_size) for size in sizes
        )
        self.head = nn.Conv3d(hidden_channels, patch_channels, kernel_size=(window, 1, 1))

    def forward(
        self, inputs: Tensor, targets: Tensor | None = None, horizon: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """inputs [B, T_in, C, H, W], targets [B, K, C, H, W] or horizon K -> (predictions [B, K, C, H, W],
        aux_loss [])."""
        x, t_in, horizon = join_frames(inputs, targets, horizon, self.patch_size)  # [B, T, C p², h, w]
        use_truth = model_feed_mask(
            self, x.shape[0], t_in, horizon, targets is not None, x.device
        )  # [B, T-1]
        predict_encoder = self.training and self.reverse_scheduled_sampling
        layers = len(self.cells)
        zeros = x.new_zeros(x.shape[0], self.hidden_channels, self.window, *x.shape[-2:])  # [B, H, D, h, w]
        h, c, m = [zeros] * layers, [zeros] * layers, zeros
        stored = [[zeros] for _ in range(layers)]  # C^k of the last τ steps, C^k_0 = 0 to start
        fed = [torch.zeros_like(x[:, 0])] * self.window  # the window before frame 1 is black
        prediction, outputs, encoder_outputs = None, [], []
        for t in range(t_in + horizon - 1):
            fed = fed[1:] + [next_input(x, t, prediction, use_truth)]  # frames t-D+1 .. t
            layer_input = torch.stack(fed, dim=2)  # [B, C p², D, h, w]
            for k, cell in enumerate(self.cells):
                h[k], c[k], m = cell(layer_input, h[k], c[k], m, stored[k])  # m: layer k-1 -> k
                stored[k] = (stored[k] + [c[k]])[-self.memory_steps :]
                layer_input = h[k]
            # m now leaves the top layer; the loop hands it to layer 0 at t+1 (the zigzag)
            if t >= t_in - 1 or predict_encoder:
                prediction = self.head(h[-1]).squeeze(2)  # [B, C p², h, w]
                (outputs if t >= t_in - 1 else encoder_outputs).append(prediction)
        predictions = F.pixel_shuffle(torch.stack(outputs, dim=1), self.patch_size)  # [B, K, C, H, W]
        return predictions, reconstruction_loss(encoder_outputs, x[:, 1:t_in])
