"""Show, Attend and Tell (Xu et al. 2015): a CNN encoder and an LSTM decoder with soft spatial attention.

::

    image [B, 3, H, W] -> CNN -> adaptive pool to G×G -> a = (a_1 … a_L) [B, L, D]      L = G²
    h_0 = tanh(W_init_h ā)   c_0 = tanh(W_init_c ā)                                    ā = mean_i a_i
    step t (predicting y_t from y_{t-1}):
        e_ti = w_aᵀ tanh(W_a a_i + U_a h_{t-1})        α_t = softmax_i(e_t)               [B, L]
        β_t  = σ(f_β(h_{t-1}))                         z_t = β_t Σ_i α_ti a_i             the gate: a scalar
        h_t, c_t = LSTM([E y_{t-1}; z_t], (h_{t-1}, c_{t-1}))
        p(y_t) = softmax(L_o dropout(E y_{t-1} + L_h h_t + L_z z_t))                     the deep output
    loss of a caption: -log p(y | a) + λ Σ_i (1 - Σ_t α_ti)²                             doubly stochastic

With ``attention: none`` the context is the mean feature at every step (z_t = ā, no α, no penalty): the
same network without attention, for comparison.

The LSTM takes the char-RNN's cell options: ``layer_norm`` and ``weight_norm`` run the hand-written
``LSTMCell`` of ``models/cells.py`` (torch's ``nn.LSTMCell`` otherwise), ``forget_bias`` initialises
either, and ``variational_dropout`` keeps one dropout mask per caption before the output layer.

The decoder state is a dict, batch first in every tensor (``reorder`` is one ``index_select``)::

    features  [B, L, D]  a           keys  [B, L, A]  W_a a, computed once per image
    h, c      [B, H]                 attention [B, L]  α_t of the last step (absent with attention: none)
    dropout_mask [B, E]              variational dropout in training only
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from seqtool.errors import UserError
from seqtool.models.base import State, map_tensors
from seqtool.models.cells import init_forget_bias, make_cell, step_dropout_mask


def doubly_stochastic_penalty(alpha: Tensor, mask: Tensor) -> Tensor:
    """Σ_i (1 - Σ_t α_ti)² per caption, over its real steps: alpha [B, T, L], mask [B, T] -> [B]."""
    attended = (alpha * mask.unsqueeze(-1).to(alpha.dtype)).sum(dim=1)  # [B, L]: Σ_t α_ti
    return (1.0 - attended).pow(2).sum(dim=-1)


# --------------------------------------------------------------------------------------------- encoder


def norm(channels: int) -> nn.GroupNorm:
    """Group norm, not batch norm: a caption batch holds the same image several times (one row per
    reference), which skews batch statistics, and the running averages then disagree with training
    (measured: val loss 1.65 in eval mode, 0.27 in train mode at step 500 on shapes)."""
    return nn.GroupNorm(min(8, channels), channels)


class ResidualBlock(nn.Module):
    """Two 3×3 convolutions with group norm and a shortcut (He et al. 2016); stride 2 halves the grid."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.norm1 = norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm2 = norm(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), norm(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A stem convolution, then one residual block per entry of `channels`, each halving the grid."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, 1, 1, bias=False), norm(channels[0]))
        widths = [channels[0], *channels]
        self.blocks = nn.Sequential(*(ResidualBlock(a, b, 2) for a, b in zip(widths, widths[1:])))
        self.out_channels = channels[-1]

    def forward(self, images: Tensor) -> Tensor:
        return self.blocks(F.relu(self.stem(images)))  # [B, D, H / 2^n, W / 2^n]


def pretrained_backbone(library: str, name: str, weights: str | None) -> tuple[nn.Module, int]:
    """A torchvision or timm network cut before its pooling and classifier, with weights from a local file
    (never downloaded); returns it and its feature channels."""
    try:
        module = __import__(library)
    except ImportError:
        raise UserError(
            f"model.encoder={library} needs the {library} package, which is not importable here; "
            f"install a build that matches torch {torch.__version__}, or use model.encoder=resnet"
        ) from None
    if weights is not None and not Path(weights).is_file():
        raise UserError(f"model.backbone_weights={weights}: no such file (weights are never downloaded)")
    if library == "timm":
        network = module.create_model(name, pretrained=False, num_classes=0, global_pool="")
    else:
        network = module.models.get_model(name, weights=None)
    if weights is not None:
        network.load_state_dict(_read_weights(weights), strict=False)
    if library == "torchvision":  # resnet-like: drop the average pool and the classifier
        network = nn.Sequential(*list(network.children())[:-2])
    forward = network.forward_features if library == "timm" else network
    with torch.no_grad():
        channels = forward(torch.zeros(1, 3, 64, 64)).shape[1]
    return network, channels


def _read_weights(path: str) -> dict[str, Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


class Encoder(nn.Module):
    """images [B, 3, H, W] -> the feature grid a [B, L, D], L = grid_size² (adaptive average pooling)."""

    def __init__(
        self, kind: str, channels: list[int], grid_size: int, backbone: str | None,
        backbone_weights: str | None, freeze: bool,
    ) -> None:  # fmt: skip
        super().__init__()
        self.kind, self.grid_size, self.freeze = kind, grid_size, freeze
        if kind == "resnet":
            self.network: nn.Module = SmallResNet(channels)
            self.out_channels = self.network.out_channels
        else:
            if not backbone:
                raise UserError(f"model.encoder={kind} needs model.backbone (e.g. resnet50)")
            self.network, self.out_channels = pretrained_backbone(kind, backbone, backbone_weights)
        if freeze:
            self.network.requires_grad_(False)

    def train(self, mode: bool = True) -> Encoder:
        super().train(mode)
        if self.freeze:  # a frozen backbone keeps its batch-norm statistics
            self.network.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        grid = self.network.forward_features(images) if self.kind == "timm" else self.network(images)
        grid = F.adaptive_avg_pool2d(grid, self.grid_size)  # [B, D, G, G]
        return grid.flatten(2).transpose(1, 2)  # [B, L, D]


# ---------------------------------------------------------------------------------------------- model


class CaptionOutput(NamedTuple):
    logits: Tensor  # [B, T, V]
    penalty: Tensor  # [B]: λ Σ_i (1 - Σ_t α_ti)² (zeros without attention)
    alpha: Tensor | None  # [B, T, L]; None without attention


class Captioner(nn.Module):
    """CNN encoder + soft-attention LSTM decoder; an incremental decoder (see seqtool.models.base)."""

    task_shapes = ("one-to-many",)  # read by seqtool.shapes

    def __init__(
        self,
        *,
        vocab_size: int,
        pad_index: int,
        bos_index: int,
        eos_index: int,
        encoder: Literal["resnet", "torchvision", "timm"],
        encoder_channels: list[int],
        grid_size: int,
        backbone: str | None,
        backbone_weights: str | None,
        freeze_encoder: bool,
        embedding_size: int,
        hidden_size: int,
        attention_size: int,
        attention: Literal["soft", "none"],
        gate: bool,
        dropout: float,
        doubly_stochastic: float,
        # Off unless set (conf/model/captioner.yaml): a run saved before these options still loads.
        variational_dropout: bool = False,
        layer_norm: bool = False,
        weight_norm: bool = False,
        forget_bias: float | None = None,
    ) -> None:
        super().__init__()
        if attention not in ("soft", "none"):
            raise ValueError(f"model.attention must be soft or none, got {attention!r}")
        if grid_size < 1 or not encoder_channels or min(encoder_channels) < 1:
            raise ValueError("model.grid_size must be ≥ 1 and model.encoder_channels a non-empty list")
        self.pad_index, self.bos_index, self.eos_index = pad_index, bos_index, eos_index
        self.use_attention, self.use_gate = attention == "soft", gate and attention == "soft"
        self.doubly_stochastic, self.grid_size = doubly_stochastic, grid_size
        self.variational_dropout = variational_dropout
        self.encoder = Encoder(
            encoder, encoder_channels, grid_size, backbone, backbone_weights, freeze_encoder
        )
        D, H, E, A = self.encoder.out_channels, hidden_size, embedding_size, attention_size
        self.init_h, self.init_c = nn.Linear(D, H), nn.Linear(D, H)
        if self.use_attention:
            self.W_a, self.U_a, self.w_a = nn.Linear(D, A), nn.Linear(H, A, bias=False), nn.Linear(A, 1)
            self.f_beta = nn.Linear(H, 1)
        self.embedding = nn.Embedding(vocab_size, E, padding_idx=pad_index)
        if layer_norm or weight_norm:
            self.lstm = make_cell("lstm", E + D, H, layer_norm=layer_norm, weight_norm=weight_norm,
                                  forget_bias=forget_bias)  # fmt: skip
        else:
            self.lstm = nn.LSTMCell(E + D, H)
            if forget_bias is not None:
                init_forget_bias(self.lstm.bias_ih, self.lstm.bias_hh, forget_bias)
        self.L_h, self.L_z = nn.Linear(H, E, bias=False), nn.Linear(D, E, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.L_o = nn.Linear(E, vocab_size)

    # ------------------------------------------------------------------------------------- training
    def forward(self, images: Tensor, tgt_in: Tensor) -> CaptionOutput:
        """images [B, 3, H, W], tgt_in [B, T] (BOS + caption, right-padded) -> logits, penalty, α."""
        state = self.init_state(self.encode(images), images.size(0))
        logits, alphas = [], []
        with parametrize.cached():  # weight norm: g * v / ||v|| once per batch, not per step
            for t in range(tgt_in.size(1)):
                step_logits, state = self._decode(tgt_in[:, t], state)  # [B, V]
                logits.append(step_logits)
                if self.use_attention:
                    alphas.append(state["attention"])
        alpha = torch.stack(alphas, dim=1) if alphas else None  # [B, T, L]
        penalty = tgt_in.new_zeros(tgt_in.size(0), dtype=torch.float)
        if alpha is not None and self.doubly_stochastic:
            penalty = self.doubly_stochastic * doubly_stochastic_penalty(alpha, tgt_in != self.pad_index)
        return CaptionOutput(torch.stack(logits, dim=1), penalty, alpha)

    # ------------------------------------------------------------------- the incremental decoder
    def encode(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] -> the annotation vectors a [B, L, D]."""
        return self.encoder(images)

    def init_state(self, memory: Tensor, batch_size: int) -> State:
        """h_0, c_0 from the mean feature ā; W_a a precomputed for every step's score."""
        mean = memory.mean(dim=1)  # [B, D]
        state = {"features": memory, "h": torch.tanh(self.init_h(mean)), "c": torch.tanh(self.init_c(mean))}
        if self.use_attention:
            state["keys"] = self.W_a(memory)  # [B, L, A]
        else:
            state["mean"] = mean
        if self.variational_dropout and self.training and self.dropout.p > 0:  # one mask per caption
            size = self.embedding.embedding_dim
            state["dropout_mask"] = step_dropout_mask(self.dropout.p, batch_size, size, memory)
        return state

    def attend(self, state: State) -> tuple[Tensor, Tensor | None]:
        """The context z_t [B, D] and the weights α_t [B, L] (None without attention) from h_{t-1}."""
        if not self.use_attention:
            return state["mean"], None
        scores = self.w_a(torch.tanh(state["keys"] + self.U_a(state["h"]).unsqueeze(1))).squeeze(-1)  # [B, L]
        alpha = scores.softmax(dim=-1)
        z = (alpha.unsqueeze(-1) * state["features"]).sum(dim=1)  # [B, D]
        if self.use_gate:
            z = torch.sigmoid(self.f_beta(state["h"])) * z  # β_t: how much the image matters now
        return z, alpha

    def _decode(self, y_prev: Tensor, state: State) -> tuple[Tensor, State]:
        """One step: y_{t-1} [B] -> logits of y_t [B, V], the next state."""
        embedded = self.embedding(y_prev)  # [B, E]
        z, alpha = self.attend(state)
        h, c = self.lstm(torch.cat([embedded, z], dim=-1), (state["h"], state["c"]))
        deep = embedded + self.L_h(h) + self.L_z(z)  # [B, E]
        state = dict(state, h=h, c=c)
        if alpha is not None:
            state["attention"] = alpha
        mask = state.get("dropout_mask")
        return self.L_o(self.dropout(deep) if mask is None else deep * mask), state

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """tokens [B] (y_{t-1}) -> log-probs of y_t [B, V], the next state."""
        logits, state = self._decode(tokens, state)
        return F.log_softmax(logits, dim=-1), state

    def reorder(self, state: State, index: Tensor) -> State:
        """Pick batch rows index [B'] of every state tensor (all are batch-first)."""
        return map_tensors(lambda t: t.index_select(0, index), state)
