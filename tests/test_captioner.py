"""The captioner (Show, Attend and Tell): attention, the doubly stochastic penalty against its formula, the
incremental-decoder contract through the shared search, the no-attention variant and the backbones."""

import sys
import types

import pytest
import torch
from torch import nn

from seqtool.decode.search import beam_search, greedy
from seqtool.errors import UserError
from seqtool.models.captioner import Captioner, doubly_stochastic_penalty

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
