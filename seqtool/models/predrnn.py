"""PredRNN (Wang et al. 2017): stacked spatiotemporal LSTM (ST-LSTM) cells with a zigzag memory M.

Each layer l at time t keeps the ConvLSTM memory C (along time) and updates the spatiotemporal memory M,
which climbs the stack within a step and then passes from the top layer at t to the bottom layer at t+1::

    g  = tanh(W_xg * x + W_hg * h + b_g)        g' = tanh(W'_xg * x + W_mg * m + b'_g)
    i  = σ(W_xi * x + W_hi * h + b_i)           i' = σ(W'_xi * x + W_mi * m + b'_i)
    f  = σ(W_xf * x + W_hf * h + b_f)           f' = σ(W'_xf * x + W_mf * m + b'_f)
    c' = f ∘ c + i ∘ g                          m' = f' ∘ m + i' ∘ g'
    o  = σ(W_xo * x + W_ho * h + W_co * c' + W_mo * m' + b_o)
    h' = o ∘ tanh(W_1×1 * [c', m'])

    time →      t                    t+1
    layer L-1  ST-LSTM ─ m ─┐       ST-LSTM
      ...         ↑ m       │          ↑ m
    layer 0    ST-LSTM      └──m──► ST-LSTM         (x: the frame; h, c: along time per layer)

Decoupling loss (PredRNN-V2, Wang et al. 2021), optional: the increments Δc = i ∘ g and Δm = i' ∘ g', each
through a shared 1×1 convolution and flattened over space, should not point the same way:
L_decouple = mean over t, l, channels of |cos(Δc, Δm)|; aux_loss = decouple_beta · L_decouple.

One stack runs over every step (frame t in, x̂_{t+1} out from the top h through a 1×1 convolution), with
the same patches, scheduled and reverse scheduled sampling and forward interface as models/convlstm.py:
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


class STLSTMCell(nn.Module):
    """One ST-LSTM layer. conv_x: x -> 7H (i, f, g, i', f', g', o); conv_h: h -> 4H (i, f, g, o);
    conv_m: m -> 3H (i', f', g'); conv_o: [c', m'] -> H (W_co, W_mo); conv_1x1: [c', m'] -> H."""

    def __init__(self, input_channels: int, hidden_channels: int, kernel_size: int, forget_bias: float = 1.0):
        super().__init__()
        padding, hidden = kernel_size // 2, hidden_channels
        self.conv_x = nn.Conv2d(input_channels, 7 * hidden, kernel_size, padding=padding)
        self.conv_h = nn.Conv2d(hidden, 4 * hidden, kernel_size, padding=padding, bias=False)
        self.conv_m = nn.Conv2d(hidden, 3 * hidden, kernel_size, padding=padding, bias=False)
        self.conv_o = nn.Conv2d(2 * hidden, hidden, kernel_size, padding=padding, bias=False)
        self.conv_1x1 = nn.Conv2d(2 * hidden, hidden, kernel_size=1, bias=False)
        with torch.no_grad():  # forget biases of f and f'
            self.conv_x.bias[hidden : 2 * hidden] = forget_bias
            self.conv_x.bias[4 * hidden : 5 * hidden] = forget_bias

    def forward(
        self, x: Tensor, h: Tensor, c: Tensor, m: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """x [B, I, h, w]; h, c, m each [B, H, h, w] -> h', c', m', Δc, Δm each [B, H, h, w]."""
        x_i, x_f, x_g, x_i_m, x_f_m, x_g_m, x_o = self.conv_x(x).chunk(7, dim=1)  # 7 × [B, H, h, w]
        h_i, h_f, h_g, h_o = self.conv_h(h).chunk(4, dim=1)
        m_i, m_f, m_g = self.conv_m(m).chunk(3, dim=1)
        i, f, g = torch.sigmoid(x_i + h_i), torch.sigmoid(x_f + h_f), torch.tanh(x_g + h_g)
        delta_c = i * g
        c = f * c + delta_c
        i_m, f_m, g_m = torch.sigmoid(x_i_m + m_i), torch.sigmoid(x_f_m + m_f), torch.tanh(x_g_m + m_g)
        delta_m = i_m * g_m
        m = f_m * m + delta_m
        memory = torch.cat([c, m], dim=1)  # [B, 2H, h, w]
        o = torch.sigmoid(x_o + h_o + self.conv_o(memory))
        h = o * torch.tanh(self.conv_1x1(memory))
        return h, c, m, delta_c, delta_m


class PredRNN(nn.Module):
    """Stacked ST-LSTM on p×p patches; the zigzag memory M; optional PredRNN-V2 decoupling loss."""

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
        decouple_beta: float,
        scheduled_sampling: bool,
        reverse_scheduled_sampling: bool,
    ) -> None:
        super().__init__()
        check_geometry(image_size, patch_size, kernel_size, hidden_channels, num_layers)
        if decouple_beta < 0:
            raise ValueError(f"model.decouple_beta={decouple_beta} must be ≥ 0 (0: no decoupling loss)")
        self.patch_size, self.image_size, self.decouple_beta = patch_size, image_size, decouple_beta
        self.scheduled_sampling = scheduled_sampling
        self.reverse_scheduled_sampling = reverse_scheduled_sampling
        self.teacher_forcing_ratio = 1.0  # ε: the trainer sets it each step; read with scheduled sampling
        self.hidden_channels = hidden_channels
        patch_channels = channels * patch_size**2
        sizes = [patch_channels] + [hidden_channels] * (num_layers - 1)
        self.cells = nn.ModuleList(STLSTMCell(size, hidden_channels, kernel_size) for size in sizes)
        self.head = nn.Conv2d(hidden_channels, patch_channels, kernel_size=1)
        self.adapter = nn.Conv2d(hidden_channels, hidden_channels, kernel_size=1, bias=False)  # V2 decoupling

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
        decouple = self.training and self.decouple_beta > 0
        zeros = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[-2:])  # [B, H, h, w]
        h, c, m = [zeros] * len(self.cells), [zeros] * len(self.cells), zeros
        prediction, outputs, encoder_outputs, similarities = None, [], [], []
        for t in range(t_in + horizon - 1):
            layer_input = next_input(x, t, prediction, use_truth)  # [B, C p², h, w]
            for k, cell in enumerate(self.cells):
                h[k], c[k], m, delta_c, delta_m = cell(layer_input, h[k], c[k], m)  # m: layer k-1 -> k
                layer_input = h[k]
                if decouple:
                    similarities.append(self.increment_similarity(delta_c, delta_m))
            # m now leaves the top layer; the loop hands it to layer 0 at t+1 (the zigzag)
            if t >= t_in - 1 or predict_encoder:
                prediction = self.head(h[-1])  # [B, C p², h, w]
                (outputs if t >= t_in - 1 else encoder_outputs).append(prediction)
        predictions = F.pixel_shuffle(torch.stack(outputs, dim=1), self.patch_size)  # [B, K, C, H, W]
        aux_loss = reconstruction_loss(encoder_outputs, x[:, 1:t_in])
        if similarities:
            aux_loss = aux_loss + self.decouple_beta * torch.stack(similarities).mean()
        return predictions, aux_loss

    def increment_similarity(self, delta_c: Tensor, delta_m: Tensor) -> Tensor:
        """Mean |cos| between Δc and Δm [B, H, h, w], each flattened over space per channel."""
        delta_c = self.adapter(delta_c).flatten(2)  # [B, H, h w]
        delta_m = self.adapter(delta_m).flatten(2)
        return F.cosine_similarity(delta_c, delta_m, dim=2).abs().mean()
