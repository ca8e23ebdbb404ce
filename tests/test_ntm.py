"""The Neural Turing Machine (seqtool/models/ntm.py): every step of the addressing (Graves et al. 2014,
eqs. 2-9) against a hand computation on a tiny memory, one whole step against a plain loop over the
locations with the same weights, and the model's contract (shapes, distributions, finite gradients)."""

import math

import pytest
import torch
import torch.nn.functional as F

from seqtool.models import ntm
from seqtool.models.ntm import NTM

pytestmark = pytest.mark.usefixtures("one_thread")


def row(*values: float) -> torch.Tensor:
    return torch.tensor([values], dtype=torch.float64)  # a batch of one


# ------------------------------------------------------------------------ addressing, by hand
MEMORY = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)  # N = 3, M = 2


def test_cosine_similarity_eq6():
    similarity = ntm.cosine_similarity(row(1.0, 0.0), MEMORY)
    torch.testing.assert_close(similarity, row(1.0, 0.0, 1 / math.sqrt(2)))
    # the length of the key does not matter, its direction does
    torch.testing.assert_close(ntm.cosine_similarity(row(3.0, 0.0), MEMORY), similarity)


def test_content_weighting_eq5_is_a_softmax_sharpened_by_beta():
    scores = [2.0 * 1.0, 2.0 * 0.0, 2.0 / math.sqrt(2)]  # β K[k, M(i)] with β = 2
    expected = [math.exp(s) / sum(math.exp(t) for t in scores) for s in scores]
    torch.testing.assert_close(ntm.content_weighting(row(1.0, 0.0), row(2.0), MEMORY), row(*expected))
    flat = ntm.content_weighting(row(1.0, 0.0), row(0.0), MEMORY)  # β = 0: no preference
    torch.testing.assert_close(flat, row(1 / 3, 1 / 3, 1 / 3))


def test_interpolation_eq7():
    mixed = ntm.interpolate(row(0.5, 0.25, 0.25), row(0.0, 1.0, 0.0), row(0.25))
    torch.testing.assert_close(mixed, row(0.125, 0.8125, 0.0625))  # 0.25 w^c + 0.75 w_{t-1}


def test_circular_shift_eq8():
    w = row(0.1, 0.2, 0.3, 0.4)
    s = row(0.2, 0.5, 0.3)  # s(-1), s(0), s(+1)
    # w̃(i) = s(-1) w(i+1) + s(0) w(i) + s(+1) w(i-1), indices mod 4
    expected = row(
        0.2 * 0.2 + 0.5 * 0.1 + 0.3 * 0.4,
        0.2 * 0.3 + 0.5 * 0.2 + 0.3 * 0.1,
        0.2 * 0.4 + 0.5 * 0.3 + 0.3 * 0.2,
        0.2 * 0.1 + 0.5 * 0.4 + 0.3 * 0.3,
    )
    torch.testing.assert_close(ntm.circular_shift(w, s), expected)
    # a shift of +1 moves the focus one location on, and the last location wraps to the first
    torch.testing.assert_close(ntm.circular_shift(row(0, 0, 0, 1.0), row(0, 0, 1.0)), row(1.0, 0, 0, 0))
    torch.testing.assert_close(ntm.circular_shift(row(1.0, 0, 0, 0), row(1.0, 0, 0)), row(0, 0, 0, 1.0))


def test_sharpening_eq9():
    w = [0.21, 0.19, 0.29, 0.31]
    squares = [v**2 for v in w]
    expected = row(*(v / sum(squares) for v in squares))
    torch.testing.assert_close(ntm.sharpen(row(*w), row(2.0)), expected)
    torch.testing.assert_close(ntm.sharpen(row(*w), row(1.0)), row(*w))  # γ = 1 leaves it as it is


def test_read_eq2_and_write_eqs3_4():
    memory = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], dtype=torch.float64)
    torch.testing.assert_close(
        ntm.read(memory, row(0.75, 0.25)), row(0.75 * 1 + 0.25 * 3, 0.75 * 2 + 0.25 * 4)
    )
    written = ntm.write(memory, row(0.75, 0.25), erase=row(1.0, 0.5), add=row(2.0, 0.0))
    # erase: M(i) [1 - w(i) e]; then add w(i) a
    erased = [[1 * (1 - 0.75), 2 * (1 - 0.375)], [3 * (1 - 0.25), 4 * (1 - 0.125)]]
    expected = [[erased[0][0] + 0.75 * 2, erased[0][1]], [erased[1][0] + 0.25 * 2, erased[1][1]]]
    torch.testing.assert_close(written, torch.tensor([expected], dtype=torch.float64))


def test_address_chains_the_equations_in_order():
    previous = row(0.0, 1.0, 0.0)
    key, beta, gate, shift, gamma = row(1.0, 0.0), row(2.0), row(0.25), row(0.2, 0.5, 0.3), row(2.0)
    content = ntm.content_weighting(key, beta, MEMORY)
    by_hand = ntm.sharpen(ntm.circular_shift(ntm.interpolate(content, previous, gate), shift), gamma)
    torch.testing.assert_close(ntm.address(MEMORY, previous, key, beta, gate, shift, gamma), by_hand)


def test_a_weighting_spread_evenly_over_alike_locations_stays_spread_evenly():
    """Why the heads start focused: over a constant memory, (5)-(9) keep a uniform weighting uniform
    whatever the head emits."""
    memory = torch.full((1, 6, 2), 1e-6, dtype=torch.float64)
    even = torch.full((1, 6), 1 / 6, dtype=torch.float64)
    moved = ntm.address(memory, even, row(0.3, -2.0), row(5.0), row(0.5), row(0.1, 0.2, 0.7), row(3.0))
    torch.testing.assert_close(moved, even)


def test_the_heads_start_focused_on_location_0_and_the_write_head_then_moves():
    model = tiny(memory_size=8)
    _, _, _, w_read, w_write, _ = model.init_state(2)
    for weighting in (w_read, w_write):
        assert weighting[:, 0].min() > 0.98  # about 0.99 on location 0
        torch.testing.assert_close(weighting.sum(-1), torch.ones(2, dtype=torch.float64))
    trace = model.memory_trace(torch.rand(2, 5, 3, dtype=torch.float64))
    assert trace["write"].amax(-1).min() > 1 / 8  # never spread evenly


def test_sharpening_a_weighting_with_exact_zeros_has_finite_gradients():
    w = row(0.0, 1.0, 0.0).requires_grad_()
    gamma = row(3.0).requires_grad_()
    ntm.sharpen(w, gamma)[0, 1].backward()
    assert torch.isfinite(gamma.grad).all() and torch.isfinite(w.grad).all()


# ------------------------------------------------------------------------------- the model
def tiny(**changes) -> NTM:
    options = dict(input_size=3, output_size=2, controller_size=4, memory_size=5, memory_width=3,
                   shift_range=1, memory_init=1e-6)  # fmt: skip
    torch.manual_seed(0)
    return NTM(**(options | changes)).double()


def plain_step(model: NTM, x: list[float], state: dict) -> tuple[list[float], dict]:
    """One NTM step written location by location from the paper, reading the model's weights."""
    N, M = model.memory_size, model.memory_width
    as_row = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    h, c = model.controller(as_row(x + state["r"]), (as_row(state["h"]), as_row(state["c"])))
    h = h[0].tolist()

    def head_weighting(head, previous, memory):
        out = (head.emit.weight @ torch.tensor(h, dtype=torch.float64) + head.emit.bias).tolist()
        k, beta, g = out[:M], math.log1p(math.exp(out[M])), 1 / (1 + math.exp(-out[M + 1]))
        shift_logits = out[M + 2 : M + 5]
        s = [math.exp(v) / sum(math.exp(u) for u in shift_logits) for v in shift_logits]  # s(-1), s(0), s(1)
        gamma = 1 + math.log1p(math.exp(out[M + 5]))
        norm = lambda v: math.sqrt(sum(a * a for a in v))  # noqa: E731
        K = [sum(a * b for a, b in zip(k, memory[i])) / (norm(k) * norm(memory[i]) + 1e-8) for i in range(N)]
        wc = [math.exp(beta * K[i]) / sum(math.exp(beta * K[j]) for j in range(N)) for i in range(N)]
        wg = [g * wc[i] + (1 - g) * previous[i] for i in range(N)]
        by_offset = {N - 1: s[0], 0: s[1], 1: s[2]}  # (i - j) mod N -> s(i - j)
        wt = [sum(wg[j] * by_offset.get((i - j) % N, 0.0) for j in range(N)) for i in range(N)]
        powered = [(v + 1e-12) ** gamma for v in wt]
        return [v / sum(powered) for v in powered], out

    w_write, out = head_weighting(model.write_head, state["w_write"], state["memory"])
    e = [1 / (1 + math.exp(-v)) for v in out[M + 6 : 2 * M + 6]]
    a = out[2 * M + 6 :]
    memory = [[state["memory"][i][j] * (1 - w_write[i] * e[j]) + w_write[i] * a[j] for j in range(M)]
              for i in range(N)]  # fmt: skip
    w_read, _ = head_weighting(model.read_head, state["w_read"], memory)
    r = [sum(w_read[i] * memory[i][j] for i in range(N)) for j in range(M)]
    y = (model.output.weight @ torch.tensor(h + r, dtype=torch.float64) + model.output.bias).tolist()
    return y, {"h": h, "c": c[0].tolist(), "r": r, "w_read": w_read, "w_write": w_write, "memory": memory}


def test_the_model_is_the_paper_step_by_step_against_a_plain_loop():
    model = tiny()
    inputs = torch.rand(1, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    outputs, _ = model(inputs)
    h, c, r, w_read, w_write, memory = (t[0].tolist() for t in model.init_state(1))
    state = {"h": h, "c": c, "r": r, "w_read": w_read, "w_write": w_write, "memory": memory}
    with torch.no_grad():
        for t in range(4):
            y, state = plain_step(model, inputs[0, t].tolist(), state)
            torch.testing.assert_close(outputs[0, t], torch.tensor(y, dtype=torch.float64))


def test_weightings_are_distributions_and_the_trace_is_the_forward():
    model = tiny(memory_size=7, shift_range=2)
    inputs = torch.rand(3, 6, 3, dtype=torch.float64)
    trace = model.memory_trace(inputs)
    outputs, state = model(inputs)
    assert trace["read"].shape == trace["write"].shape == (3, 6, 7) and outputs.shape == (3, 6, 2)
    for weighting in (trace["read"], trace["write"]):
        assert (weighting >= 0).all()
        torch.testing.assert_close(weighting.sum(-1), torch.ones(3, 6, dtype=torch.float64))
    torch.testing.assert_close(trace["outputs"], outputs)
    torch.testing.assert_close(trace["read"][:, -1], state[3])


def test_the_heads_parameters_keep_their_constraints():
    head = ntm.Head(controller_size=4, memory_width=3, shift_range=1, writes=True)
    params = head(torch.randn(50, 4) * 10)
    assert (params["beta"] >= 0).all() and (params["gamma"] >= 1).all()
    assert ((params["gate"] > 0) & (params["gate"] < 1)).all() and (
        (params["erase"] >= 0) & (params["erase"] <= 1)
    ).all()
    torch.testing.assert_close(params["shift"].sum(-1), torch.ones(50))
    assert "erase" not in ntm.Head(4, 3, 1, writes=False)(torch.randn(2, 4))


def test_a_state_carried_over_continues_the_sequence():
    model = tiny()
    inputs = torch.rand(2, 6, 3, dtype=torch.float64)
    whole, _ = model(inputs)
    first, state = model(inputs[:, :2])
    second, _ = model(inputs[:, 2:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)


def test_it_fits_one_copy_batch():
    """Gradients reach every part and training works: 150 Adam steps take one batch of 3-vector copies
    from ln 2 per bit (chance) to below 0.1 (measured: 0.019)."""
    torch.manual_seed(0)
    model = NTM(input_size=5, output_size=4, controller_size=32, memory_size=16, memory_width=8,
                shift_range=1, memory_init=1e-6)  # fmt: skip
    x = torch.zeros(8, 7, 5)
    bits = torch.randint(0, 2, (8, 3, 4)).float()
    x[:, :3, :4], x[:, 3, 4] = bits, 1.0
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x)[0][:, 4:], bits)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="shift_range"):
        tiny(memory_size=2, shift_range=1)
    with pytest.raises(ValueError, match="memory_width"):
        tiny(memory_width=0)
