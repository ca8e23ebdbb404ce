"""PredRNN++ (Wang et al. 2018): stacked causal LSTMs with the zigzag memory M and a gradient highway unit.

The causal LSTM cascades the two memories: the temporal memory C is updated first (eq. 1), and the
spatiotemporal memory M, arriving from the layer below (or from the top layer at t-1), is updated from the
new C (eq. 2), so the cell is deeper in time than the ST-LSTM of PredRNN, where C and M run side by side::

    [g; i; f]    = [tanh; σ; σ](W_1 * [X_t, H^k_{t-1}, C^k_{t-1}])                    (1)
    C^k_t        = f ∘ C^k_{t-1} + i ∘ g
    [g'; i'; f'] = [tanh; σ; σ](W_2 * [X_t, C^k_t, M^{k-1}_t])                        (2)
    M^k_t        = f' ∘ tanh(W_3 * M^{k-1}_t) + i' ∘ g'
    o            = tanh(W_4 * [X_t, H^k_{t-1}, C^k_t, M^k_t])                          (3)
    H^k_t        = o ∘ tanh(W_5 * [C^k_t, M^k_t])                    (* convolution; W_5 is 1×1)

(The paper writes W_4 over [X_t, C^k_t, M^k_t]; the authors' code also reads H^k_{t-1} there, as here.)

The gradient highway unit (GHU) sits between the first and the second layer: a gated shortcut whose state
Z carries the first layer's output across steps, so gradients reach early frames without passing through
every causal LSTM on the way (a switch gate S near 0 copies Z_{t-1})::

    P_t = tanh(W_px * X_t + W_pz * Z_{t-1})        X_t = H^1_t, the first layer's output      (4)
    S_t = σ(W_sx * X_t + W_sz * Z_{t-1})
    Z_t = S_t ∘ P_t + (1 - S_t) ∘ Z_{t-1}          the second layer reads Z_t instead of H^1_t

    time →      t                                t+1
    layer L-1  causal LSTM ─ M ─┐               causal LSTM
      ...          ↑                │
    layer 1    causal LSTM          │
                   ↑ Z_t (GHU ← Z_{t-1}, H^1_t)  │
    layer 0    causal LSTM          └───M─────►  causal LSTM

One stack runs over every step (frame t in, x̂_{t+1} out from the top H through a 1×1 convolution), with the
patches, scheduled and reverse scheduled sampling and forward interface of models/predrnn.py:
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


class CausalLSTMCell(nn.Module):
    """One causal LSTM layer. W_1: [X, H, C] -> 3H (g, i, f); W_2: [X, C', M] -> 3H (g', i', f');
    W_3: M -> H; W_4: [X, H, C', M'] -> H (o); W_5 (1×1): [C', M'] -> H."""

    def __init__(self, input_channels: int, hidden_channels: int, kernel_size: int, forget_bias: float = 1.0):
        super().__init__()
        padding, hidden = kernel_size // 2, hidden_channels
        self.w_1 = nn.Conv2d(input_channels + 2 * hidden, 3 * hidden, kernel_size, padding=padding)
        self.w_2 = nn.Conv2d(input_channels + 2 * hidden, 3 * hidden, kernel_size, padding=padding)
        self.w_3 = nn.Conv2d(hidden, hidden, kernel_size, padding=padding)
        self.w_4 = nn.Conv2d(input_channels + 3 * hidden, hidden, kernel_size, padding=padding)
        self.w_5 = nn.Conv2d(2 * hidden, hidden, kernel_size=1)
        with torch.no_grad():  # forget biases of f and f' (rows g, i, f: f is the third block)
            self.w_1.bias[2 * hidden :] = forget_bias
            self.w_2.bias[2 * hidden :] = forget_bias

    def forward(self, x: Tensor, h: Tensor, c: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, I, h, w]; h, c, m (M^{k-1}_t) each [B, H, h, w] -> H^k_t, C^k_t, M^k_t each [B, H, h, w]."""
        g, i, f = self.w_1(torch.cat([x, h, c], dim=1)).chunk(3, dim=1)  # eq. 1, 3 × [B, H, h, w]
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        g_m, i_m, f_m = self.w_2(torch.cat([x, c, m], dim=1)).chunk(3, dim=1)  # eq. 2
        m = torch.sigmoid(f_m) * torch.tanh(self.w_3(m)) + torch.sigmoid(i_m) * torch.tanh(g_m)
        o = torch.tanh(self.w_4(torch.cat([x, h, c, m], dim=1)))  # eq. 3
        h = o * torch.tanh(self.w_5(torch.cat([c, m], dim=1)))
        return h, c, m


class GradientHighwayUnit(nn.Module):
    """Eq. 4. conv_x: X -> 2H (P, S), conv_z: Z -> 2H (P, S); Z_t = S ∘ P + (1 - S) ∘ Z_{t-1}."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.conv_x = nn.Conv2d(channels, 2 * channels, kernel_size, padding=kernel_size // 2)
        self.conv_z = nn.Conv2d(channels, 2 * channels, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        """x (H^1_t), z (Z_{t-1}) each [B, H, h, w] -> Z_t [B, H, h, w]."""
        p_x, s_x = self.conv_x(x).chunk(2, dim=1)
        p_z, s_z = self.conv_z(z).chunk(2, dim=1)
        p, s = torch.tanh(p_x + p_z), torch.sigmoid(s_x + s_z)
        return s * p + (1 - s) * z


class PredRNNpp(nn.Module):
    """Stacked causal LSTMs on p×p patches, the zigzag memory M, a GHU between layers 0 and 1."""

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
        highway: bool,
        scheduled_sampling: bool,
        reverse_scheduled_sampling: bool,
    ) -> None:
        super().__init__()
        check_geometry(image_size, patch_size, kernel_size, hidden_channels, num_layers)
        if highway and num_layers < 2:
            raise ValueError(
                "model.highway=true needs model.num_layers ≥ 2 (the GHU sits between layers 0 and 1)"
            )
        self.patch_size, self.image_size = patch_size, image_size
        self.scheduled_sampling = scheduled_sampling
        self.reverse_scheduled_sampling = reverse_scheduled_sampling
        self.teacher_forcing_ratio = 1.0  # ε: the trainer sets it each step; read with scheduled sampling
        self.hidden_channels = hidden_channels
        patch_channels = channels * patch_size**2
        sizes = [patch_channels] + [hidden_channels] * (num_layers - 1)
        self.cells = nn.ModuleList(CausalLSTMCell(size, hidden_channels, kernel_size) for size in sizes)
        self.highway = GradientHighwayUnit(hidden_channels, kernel_size) if highway else None
        self.head = nn.Conv2d(hidden_channels, patch_channels, kernel_size=1)

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
        zeros = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[-2:])  # [B, H, h, w]
        h, c, m, z = [zeros] * len(self.cells), [zeros] * len(self.cells), zeros, zeros
        prediction, outputs, encoder_outputs = None, [], []
        for t in range(t_in + horizon - 1):
            layer_input = next_input(x, t, prediction, use_truth)  # [B, C p², h, w]
            for k, cell in enumerate(self.cells):
                h[k], c[k], m = cell(layer_input, h[k], c[k], m)  # m: layer k-1 -> k
                layer_input = h[k]
                if k == 0 and self.highway is not None:
                    z = self.highway(h[0], z)  # Z_t: what layer 1 reads
                    layer_input = z
            # m now leaves the top layer; the loop hands it to layer 0 at t+1 (the zigzag)
            if t >= t_in - 1 or predict_encoder:
                prediction = self.head(h[-1])  # [B, C p², h, w]
                (outputs if t >= t_in - 1 else encoder_outputs).append(prediction)
        predictions = F.pixel_shuffle(torch.stack(outputs, dim=1), self.patch_size)  # [B, K, C, H, W]
        return predictions, reconstruction_loss(encoder_outputs, x[:, 1:t_in])
