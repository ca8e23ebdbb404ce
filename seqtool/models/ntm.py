"""The Neural Turing Machine (Graves, Wayne & Danihelka 2014): an LSTM controller with one read head and
one write head over an N × M memory.

At each step t the controller reads the input x_t beside the last read vector r_{t-1}; from its output h_t
each head emits its addressing parameters, the write head writes, the read head reads, and the output
y_t is a linear function of [h_t; r_t]::

    x_t, r_{t-1} ──► LSTM ──► h_t ──► write head (k, β, g, s, γ, e, a) ──► M_t     (3), (4)
                               └────► read head  (k, β, g, s, γ)       ──► r_t     (2)
                    y_t = W [h_t; r_t] + b        (logits, one per output bit)

Addressing (§3.3), for a head with previous weighting w_{t-1} over the N locations:

    K[u, v]    = u · v / (‖u‖ ‖v‖)                                   (6) cosine similarity
    w^c_t(i)   = exp(β_t K[k_t, M_t(i)]) / Σ_j exp(β_t K[k_t, M_t(j)])  (5) content, sharpened by β ≥ 0
    w^g_t      = g_t w^c_t + (1 − g_t) w_{t-1}                       (7) interpolation gate g ∈ (0, 1)
    w̃_t(i)     = Σ_j w^g_t(j) s_t(i − j)   (indices mod N)            (8) circular shift by s over −R..R
    w_t(i)     = w̃_t(i)^γ_t / Σ_j w̃_t(j)^γ_t                         (9) sharpening γ ≥ 1

Reading and writing (§3.1, §3.2):

    r_t        = Σ_i w_t(i) M_t(i)                                   (2)
    M̃_t(i)     = M_{t-1}(i) [1 − w_t(i) e_t]                          (3) erase, e ∈ (0, 1)^M
    M_t(i)     = M̃_t(i) + w_t(i) a_t                                 (4) add

The paper leaves the constraints' squashing functions open; as the public implementations do, β and γ go
through softplus (γ = 1 + softplus), g and e through a sigmoid, s through a softmax. The memory starts at a
small constant (1e-6 everywhere): Collier & Beel (2018) found it the initialisation that converges fastest
and most reliably. The first read vector and each head's first weighting are learned; the weightings
start focused on location 0. They must start focused somewhere: with every location alike, each of
(5)-(9) maps a weighting spread evenly to one spread evenly, a write spread evenly keeps the locations
alike, and the gradient cannot break the tie, so heads that start spread evenly stay so for ever.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

State = tuple[Tensor, ...]  # (h [B, H], c [B, H], r [B, M], w_read [B, N], w_write [B, N], memory [B, N, M])


def cosine_similarity(key: Tensor, memory: Tensor, eps: float = 1e-8) -> Tensor:
    """Eq. (6): K[k, M(i)] for every location: key [B, M], memory [B, N, M] -> [B, N]."""
    dot = torch.einsum("bm,bnm->bn", key, memory)
    return dot / (key.norm(dim=-1, keepdim=True) * memory.norm(dim=-1) + eps)


def content_weighting(key: Tensor, beta: Tensor, memory: Tensor) -> Tensor:
    """Eq. (5): softmax over locations of β K[k, M(i)]:
    key [B, M], beta [B, 1], memory [B, N, M] -> [B, N]."""
    return F.softmax(beta * cosine_similarity(key, memory), dim=-1)


def interpolate(content: Tensor, previous: Tensor, gate: Tensor) -> Tensor:
    """Eq. (7): w^g = g w^c + (1 − g) w_{t-1}: content, previous [B, N], gate [B, 1] -> [B, N]."""
    return gate * content + (1 - gate) * previous


def circular_shift(weighting: Tensor, shift: Tensor) -> Tensor:
    """Eq. (8): w̃(i) = Σ_j w^g(j) s(i − j) mod N, the shift over offsets −R..R:
    weighting [B, N], shift [B, 2R + 1] (shift[:, R + k] is s(k)) -> [B, N]."""
    reach = shift.shape[-1] // 2
    # torch.roll(w, k)[i] = w[i − k]: the weight that moves k locations forward
    moved = torch.stack([torch.roll(weighting, k, dims=-1) for k in range(-reach, reach + 1)], dim=-1)
    return (moved * shift[:, None, :]).sum(-1)  # [B, N, 2R + 1] -> [B, N]


def sharpen(weighting: Tensor, gamma: Tensor, eps: float = 1e-12) -> Tensor:
    """Eq. (9): w(i) = w̃(i)^γ / Σ_j w̃(j)^γ: weighting [B, N], gamma [B, 1] -> [B, N].
    eps keeps d(w̃^γ)/dγ = w̃^γ ln w̃ finite where a location's weight is exactly 0."""
    powered = (weighting + eps) ** gamma
    return powered / powered.sum(-1, keepdim=True)


def address(memory: Tensor, previous: Tensor, key, beta, gate, shift, gamma) -> Tensor:
    """Eqs. (5)-(9) in order: the head's new weighting [B, N] over memory [B, N, M]."""
    content = content_weighting(key, beta, memory)
    return sharpen(circular_shift(interpolate(content, previous, gate), shift), gamma)


def read(memory: Tensor, weighting: Tensor) -> Tensor:
    """Eq. (2): r = Σ_i w(i) M(i): memory [B, N, M], weighting [B, N] -> [B, M]."""
    return torch.einsum("bn,bnm->bm", weighting, memory)


def write(memory: Tensor, weighting: Tensor, erase: Tensor, add: Tensor) -> Tensor:
    """Eqs. (3)-(4): erase, then add: memory [B, N, M], weighting [B, N], erase, add [B, M] -> [B, N, M]."""
    w = weighting[:, :, None]  # [B, N, 1]
    erased = memory * (1 - w * erase[:, None, :])
    return erased + w * add[:, None, :]


class Head(nn.Module):
    """The addressing parameters one head emits from the controller's output: k, β, g, s, γ and, for the
    write head, the erase and add vectors e and a."""

    def __init__(self, controller_size: int, memory_width: int, shift_range: int, writes: bool) -> None:
        super().__init__()
        self.sizes = [memory_width, 1, 1, 2 * shift_range + 1, 1] + [memory_width] * (2 if writes else 0)
        self.emit = nn.Linear(controller_size, sum(self.sizes))

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        """h [B, H] -> key [B, M], beta, gate, gamma [B, 1], shift [B, 2R + 1] (and erase, add [B, M])."""
        key, beta, gate, shift, gamma, *erase_add = self.emit(h).split(self.sizes, dim=-1)
        params = {
            "key": key,
            "beta": F.softplus(beta),  # β ≥ 0
            "gate": torch.sigmoid(gate),  # g ∈ (0, 1)
            "shift": F.softmax(shift, dim=-1),  # a distribution over −R..R
            "gamma": 1 + F.softplus(gamma),  # γ ≥ 1
        }
        if erase_add:
            params["erase"], params["add"] = torch.sigmoid(erase_add[0]), erase_add[1]
        return params


class NTM(nn.Module):
    """An LSTM-controlled NTM over real-valued input vectors, emitting one logit vector per step."""

    task_shapes = ("many-to-many synchronous",)  # read by seqtool.shapes: one output vector per input step

    def __init__(
        self,
        *,
        input_size: int,
        output_size: int,
        controller_size: int,
        memory_size: int,
        memory_width: int,
        shift_range: int,
        memory_init: float,
    ) -> None:
        """input_size, output_size: from the task; memory_size N locations of memory_width M; shifts −R..R."""
        super().__init__()
        if min(controller_size, memory_size, memory_width) < 1 or shift_range < 0:
            raise ValueError(
                "model.controller_size, memory_size and memory_width must be ≥ 1, shift_range ≥ 0"
            )
        if 2 * shift_range + 1 > memory_size:
            raise ValueError("model.shift_range: 2R + 1 shifts must fit in the memory_size locations")
        self.memory_size, self.memory_width, self.memory_init = memory_size, memory_width, memory_init
        self.controller = nn.LSTMCell(input_size + memory_width, controller_size)
        self.read_head = Head(controller_size, memory_width, shift_range, writes=False)
        self.write_head = Head(controller_size, memory_width, shift_range, writes=True)
        self.output = nn.Linear(controller_size + memory_width, output_size)
        self.initial_read = nn.Parameter(torch.randn(memory_width) * 0.01)  # r_0
        # w_0 = softmax of these: about 0.99 on location 0 to start with (why: the module's docstring)
        focused = torch.zeros(memory_size)
        focused[0] = math.log(99 * (memory_size - 1))
        self.initial_read_weighting = nn.Parameter(focused.clone())
        self.initial_write_weighting = nn.Parameter(focused.clone())

    def init_state(self, batch_size: int) -> State:
        """h = c = 0, the learned r_0 and w_0, and the memory at its constant initial value."""
        h = self.initial_read.new_zeros(batch_size, self.controller.hidden_size)
        expand = lambda v: v[None].expand(batch_size, -1)  # noqa: E731
        memory = self.initial_read.new_full(
            (batch_size, self.memory_size, self.memory_width), self.memory_init
        )
        return (
            h,
            torch.zeros_like(h),
            expand(self.initial_read),
            expand(F.softmax(self.initial_read_weighting, dim=-1)),
            expand(F.softmax(self.initial_write_weighting, dim=-1)),
            memory,
        )

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One time step: x [B, I], state -> logits y_t [B, O], the new state."""
        h, c, r, w_read, w_write, memory = state
        h, c = self.controller(torch.cat([x, r], dim=-1), (h, c))
        writing = self.write_head(h)
        w_write = address(memory, w_write, **_addressing(writing))
        memory = write(memory, w_write, writing["erase"], writing["add"])
        w_read = address(memory, w_read, **_addressing(self.read_head(h)))
        r = read(memory, w_read)
        return self.output(torch.cat([h, r], dim=-1)), (h, c, r, w_read, w_write, memory)

    def forward(self, inputs: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """inputs [B, T, I], state (the initial one when None) -> logits [B, T, O], the final state."""
        outputs, state, _ = self.unroll(inputs, state)
        return outputs, state

    def memory_trace(self, inputs: Tensor) -> dict[str, Tensor]:
        """The heads' weightings at every step, for plots (the paper's Fig. 6): inputs [B, T, I] ->
        {"read": [B, T, N], "write": [B, T, N], "outputs": logits [B, T, O]}."""
        outputs, _, trace = self.unroll(inputs, None, keep_weightings=True)
        return {"outputs": outputs, **trace}

    def unroll(
        self, inputs: Tensor, state: State | None, keep_weightings: bool = False
    ) -> tuple[Tensor, State, dict[str, Tensor]]:
        state = state if state is not None else self.init_state(inputs.shape[0])
        outputs, reads, writes = [], [], []
        for x in inputs.unbind(1):  # [B, I] per step
            y, state = self.step(x, state)
            outputs.append(y)
            if keep_weightings:
                reads.append(state[3])
                writes.append(state[4])
        trace = {"read": torch.stack(reads, 1), "write": torch.stack(writes, 1)} if keep_weightings else {}
        return torch.stack(outputs, 1), state, trace  # [B, T, O]


def _addressing(params: dict[str, Tensor]) -> dict[str, Tensor]:
    """The five addressing parameters of a head's output (without a write head's e and a)."""
    return {name: params[name] for name in ("key", "beta", "gate", "shift", "gamma")}
