"""The captioner (Show, Attend and Tell): attention, the doubly stochastic penalty against its formula, the
incremental-decoder contract through the shared search, the no-attention variant, the backbones and the
LSTM's cell options (layer norm, weight norm, variational dropout, forget bias)."""

import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from seqtool.config import compose
from seqtool.decode.search import beam_search, greedy
from seqtool.errors import UserError
from seqtool.models.captioner import Captioner, doubly_stochastic_penalty
from seqtool.models.cells import LSTMCell

BOS, EOS, PAD, V = 1, 2, 0, 9


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def make(**changes) -> Captioner:
    torch.manual_seed(0)
    options = dict(
        vocab_size=V, pad_index=PAD, bos_index=BOS, eos_index=EOS, encoder="resnet", encoder_channels=[4, 8],
        grid_size=3, backbone=None, backbone_weights=None, freeze_encoder=False, embedding_size=8,
        hidden_size=12, attention_size=6, attention="soft", gate=True, dropout=0.0, doubly_stochastic=0.5,
    )  # fmt: skip
    return Captioner(**(options | changes)).eval()


def images(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_attention_weights_sum_to_one_over_positions():
    model = make()
    tgt_in = torch.tensor([[BOS, 4, 5, 6], [BOS, 7, PAD, PAD], [BOS, 3, 3, PAD]])
    out = model(images(), tgt_in)
    assert out.alpha.shape == (3, 4, 9)  # [B, T, L = 3 × 3]
    assert torch.allclose(out.alpha.sum(-1), torch.ones(3, 4), atol=1e-6)
    assert (out.alpha >= 0).all()
    state = model.init_state(model.encode(images()), 3)
    _, state = model.step(torch.full((3,), BOS), state)
    assert torch.allclose(state["attention"].sum(-1), torch.ones(3), atol=1e-6)


def test_the_penalty_is_lambda_sum_over_positions_of_one_minus_attention_over_steps_squared():
    alpha = torch.rand(2, 4, 5, generator=torch.Generator().manual_seed(2)).softmax(-1)  # [B, T, L]
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    expected = []
    for b in range(2):  # Σ_i (1 - Σ_t α_ti)², t over the caption's real steps only
        steps = [t for t in range(4) if mask[b, t]]
        expected.append(sum((1 - sum(float(alpha[b, t, i]) for t in steps)) ** 2 for i in range(5)))
    assert torch.allclose(doubly_stochastic_penalty(alpha, mask), torch.tensor(expected), atol=1e-6)

    model = make(doubly_stochastic=0.5)  # the model applies it with λ over the non-pad inputs
    tgt_in = torch.tensor([[BOS, 4, 5], [BOS, 6, PAD], [BOS, PAD, PAD]])
    out = model(images(), tgt_in)
    assert torch.allclose(out.penalty, 0.5 * doubly_stochastic_penalty(out.alpha, tgt_in != PAD))
    one_step = 0.5 * ((1 - out.alpha[2, 0]) ** 2).sum()  # the caption of one step (just EOS)
    assert torch.isclose(out.penalty[2], one_step)


def test_stepping_gives_the_teacher_forced_forward():
    model = make()
    tgt_in = torch.tensor([[BOS, 4, 5, 6], [BOS, 7, 8, 3]])
    logits = model(images(2), tgt_in).logits
    state = model.init_state(model.encode(images(2)), 2)
    for t in range(4):
        log_probs, state = model.step(tgt_in[:, t], state)
        assert torch.allclose(log_probs, logits[:, t].log_softmax(-1), atol=1e-5)


def test_beam_of_one_is_greedy_through_the_shared_search():
    model = make()
    with torch.no_grad():
        memory = model.encode(images(3))
        first = torch.full((3,), BOS)
        found = greedy(model, model.init_state(memory, 3), first, max_len=7, eos=EOS)
        beam = beam_search(model, model.init_state(memory, 3), first, beam_size=1, max_len=7, eos=EOS)
    assert beam.tokens == found.tokens
    assert [len(t[0]) for t in found.tokens] != [0, 0, 0]  # the check compares real captions


def test_beam_search_keeps_each_words_attention():
    model = make()
    with torch.no_grad():
        memory = model.encode(images(2))
        found = beam_search(model, model.init_state(memory, 2), torch.full((2,), BOS), beam_size=3,
                            max_len=6, eos=EOS, nbest=3)  # fmt: skip
    for tokens, scores, attention in zip(found.tokens, found.scores, found.attention):
        assert scores == sorted(scores, reverse=True)
        for words, weights in zip(tokens, attention):
            assert weights.shape[0] in (len(words), len(words) + 1)  # + the EOS step's row
            assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[0]), atol=1e-5)


def test_without_attention_only_the_mean_feature_counts():
    plain, attentive = make(attention="none"), make()
    for model in (plain, attentive):
        features = model.encode(images(2))  # [B, L, D]
        noise = torch.randn_like(features)
        moved = features + noise - noise.mean(dim=1, keepdim=True)  # another grid with the same mean
        tokens = torch.full((2,), BOS)
        same, state = model.step(tokens, model.init_state(features, 2))
        other, _ = model.step(tokens, model.init_state(moved, 2))
        assert torch.allclose(same, other, atol=1e-5) == (model is plain)
        assert ("attention" in state) == (model is attentive)
    out = plain(images(2), torch.tensor([[BOS, 4], [BOS, 5]]))
    assert out.alpha is None and not out.penalty.any()


def test_reorder_picks_rows_of_every_state_tensor():
    model = make()
    state = model.init_state(model.encode(images(3)), 3)
    _, state = model.step(torch.tensor([BOS, 4, 5]), state)
    picked = model.reorder(state, torch.tensor([2, 0]))
    for key, value in state.items():
        assert torch.equal(picked[key], value[[2, 0]]), key


def test_a_missing_backbone_library_is_a_clear_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as on a machine without it
    with pytest.raises(UserError, match="needs the torchvision package"):
        make(encoder="torchvision", backbone="resnet18")
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(UserError, match="needs the timm package"):
        make(encoder="timm", backbone="resnet18")


class TinyNet(nn.Module):
    """Stands in for a torchvision ResNet: features, then an average pool and a classifier (cut off)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 5, 3, 2, 1), nn.BatchNorm2d(5), nn.ReLU())
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(5, 10)


def fake_torchvision(monkeypatch) -> None:
    module = types.ModuleType("torchvision")
    module.models = types.SimpleNamespace(get_model=lambda name, weights: TinyNet())
    monkeypatch.setitem(sys.modules, "torchvision", module)


def test_a_local_backbone_loads_its_weights_and_can_be_frozen(monkeypatch, tmp_path):
    from safetensors.torch import save_file

    fake_torchvision(monkeypatch)
    with pytest.raises(UserError, match="no such file"):
        make(encoder="torchvision", backbone="tiny", backbone_weights=str(tmp_path / "nope.safetensors"))
    with pytest.raises(UserError, match="needs model.backbone"):
        make(encoder="torchvision")
    saved = {key: torch.full_like(value, 0.25) for key, value in TinyNet().state_dict().items()}
    save_file(saved, tmp_path / "tiny.safetensors")
    model = make(encoder="torchvision", backbone="tiny", backbone_weights=str(tmp_path / "tiny.safetensors"),
                 freeze_encoder=True)  # fmt: skip
    conv = model.encoder.network[0][0]
    assert torch.equal(conv.weight, torch.full_like(conv.weight, 0.25))
    assert model.encode(images(2)).shape == (2, 9, 5)  # grid 3 × 3 of the 5 feature channels
    model.train()
    assert not model.encoder.network.training and not any(p.requires_grad for p in model.encoder.parameters())
    assert model.lstm.training


# ------------------------------------------------------------------------------------ cell options
CELL_OPTIONS = [
    {"layer_norm": True},
    {"weight_norm": True},
    {"variational_dropout": True},
    {"forget_bias": 1.0},
    {"layer_norm": True, "weight_norm": True, "variational_dropout": True, "forget_bias": 1.0},
]
CAPTIONS = torch.tensor([[BOS, 4, 5, 6], [BOS, 7, PAD, PAD], [BOS, 3, 3, PAD]])


@pytest.mark.parametrize("options", CELL_OPTIONS, ids=str)
def test_every_cell_option_keeps_the_contract(options):
    model = make(**options)
    assert isinstance(model.lstm, LSTMCell if options.get("layer_norm") or options.get("weight_norm")
                      else nn.LSTMCell)  # fmt: skip
    out = model(images(), CAPTIONS)
    assert out.logits.shape == (3, 4, V) and out.alpha.shape == (3, 4, 9)
    state = model.init_state(model.encode(images()), 3)
    assert "dropout_mask" not in state  # evaluation draws none
    for t in range(4):  # the step is the teacher-forced forward
        log_probs, state = model.step(CAPTIONS[:, t], state)
        torch.testing.assert_close(log_probs, out.logits[:, t].log_softmax(-1), atol=1e-5, rtol=0)
    for row in range(3):  # each caption alone, without padding, gets the logits it got in the batch
        length = int((CAPTIONS[row] != PAD).sum())
        alone = model(images()[row : row + 1], CAPTIONS[row : row + 1, :length])
        torch.testing.assert_close(alone.logits[0], out.logits[row, :length], atol=1e-5, rtol=0)
        torch.testing.assert_close(alone.alpha[0], out.alpha[row, :length], atol=1e-5, rtol=0)


@pytest.mark.parametrize("options", CELL_OPTIONS, ids=str)
def test_every_cell_option_trains(options):
    model = make(dropout=0.1, **options).train()
    targets = torch.cat([CAPTIONS[:, 1:], torch.full((3, 1), EOS)], dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        out = model(images(), CAPTIONS)
        loss = F.cross_entropy(out.logits.flatten(0, 1), targets.flatten()) + out.penalty.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def layer_norm_by_hand(v: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    mean, var = v.mean(-1, keepdim=True), v.var(-1, unbiased=False, keepdim=True)
    return (v - mean) / torch.sqrt(var + 1e-5) * norm.weight + norm.bias


def test_layer_norm_normalises_the_lstm_as_written_out():
    model, plain = make(layer_norm=True), make()
    assert torch.equal(model.lstm.weight_ih, plain.lstm.weight_ih)  # the same seed, the same weights
    with torch.no_grad():  # gains and biases away from 1 and 0, so that the check sees them
        for norm in (model.lstm.norm_ih, model.lstm.norm_hh, model.lstm.norm_c):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    state = model.init_state(model.encode(images()), 3)
    _, after = model.step(CAPTIONS[:, 0], state)
    z, _ = model.attend(state)
    x = torch.cat([model.embedding(CAPTIONS[:, 0]), z], dim=-1)  # [B, E + D]
    cell = model.lstm
    gates = (layer_norm_by_hand(x @ cell.weight_ih.T, cell.norm_ih) + cell.bias_ih
             + layer_norm_by_hand(state["h"] @ cell.weight_hh.T, cell.norm_hh) + cell.bias_hh)  # fmt: skip
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * state["c"] + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(layer_norm_by_hand(c, cell.norm_c))
    torch.testing.assert_close(after["c"], c)
    torch.testing.assert_close(after["h"], h)
    _, unnormed = plain.step(CAPTIONS[:, 0], plain.init_state(plain.encode(images()), 3))
    assert not torch.allclose(unnormed["h"], h)


def test_weight_norm_starts_as_torchs_lstm_and_scales_with_g():
    normed, plain = make(weight_norm=True), make()  # the same seed: nn.LSTMCell with the same weights
    assert all(parametrize.is_parametrized(normed.lstm, name) for name in ("weight_ih", "weight_hh"))
    before = normed(images(), CAPTIONS).logits
    torch.testing.assert_close(before, plain(images(), CAPTIONS).logits, atol=1e-5, rtol=0)
    with torch.no_grad():  # W = g v / ||v||: doubling g doubles W
        normed.lstm.parametrizations.weight_hh.original0.mul_(2)
        plain.lstm.weight_hh.mul_(2)
    after = normed(images(), CAPTIONS).logits
    torch.testing.assert_close(after, plain(images(), CAPTIONS).logits, atol=1e-5, rtol=0)
    assert not torch.allclose(after, before)


def output_dropout_zeros(model: Captioner) -> list[torch.Tensor]:
    """Where the deep output was zeroed before L_o at each step of a training forward: [B, E] each."""
    seen = []
    hook = model.L_o.register_forward_pre_hook(lambda _, args: seen.append(args[0] == 0))
    model.train()(images(), CAPTIONS)
    hook.remove()
    return seen


def test_variational_dropout_keeps_one_mask_per_caption():
    zeros = output_dropout_zeros(make(variational_dropout=True, dropout=0.5))
    assert all(torch.equal(step, zeros[0]) for step in zeros)
    assert zeros[0].any() and not zeros[0].all() and not torch.equal(zeros[0][0], zeros[0][1])
    model = make(variational_dropout=True, dropout=0.5).train()
    state = model.init_state(model.encode(images()), 3)
    assert state["dropout_mask"].shape == (3, 8)  # [B, E]
    picked = model.reorder(state, torch.tensor([2, 0]))["dropout_mask"]
    assert torch.equal(picked, state["dropout_mask"][[2, 0]])
    zeros = output_dropout_zeros(make(dropout=0.5))  # ordinary dropout: a new mask at every step
    assert not all(torch.equal(step, zeros[0]) for step in zeros)


@pytest.mark.parametrize("options", [{}, {"layer_norm": True}], ids=["torch", "cells"])
def test_forget_bias_sets_the_forget_gate(options):
    def forget_gate(model: Captioner) -> torch.Tensor:
        summed = model.lstm.bias_ih + model.lstm.bias_hh
        return summed[12:24]  # gates i, f, g, o of H = 12

    gate = forget_gate(make(forget_bias=1.5, **options))
    assert torch.equal(gate, torch.full_like(gate, 1.5))
    assert not torch.equal(forget_gate(make(**options)), gate)  # null: torch's uniform init


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.layer_norm=maybe", "model.layer_norm='maybe' should be bool"),
        ("model.forget_bias=high", "model.forget_bias='high' should be float or null"),
        ("model.variational_dropout=1", "model.variational_dropout=1 should be bool"),
    ],
)
def test_a_bad_cell_option_is_one_clear_error(override, message):
    with pytest.raises(UserError, match=message):
        compose(["model=captioner", "task=captioning", override])
