"""What the seq2seq and Transformer tests check the same way: one mixed-length batch, teacher-forced
stepping through the incremental-decoder contract, padding and batch invariance, causality, and a
search started from BOS."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from seqtool.data.batching import pad

V_SRC, V_TGT, PAD, BOS, EOS = 11, 13, 0, 1, 2


def batch(seed: int = 1) -> tuple[Tensor, Tensor]:
    """Three sources of lengths 6, 3, 1 (EOS last) and targets of lengths 5, 2, 4 (BOS first)."""
    generator = torch.Generator().manual_seed(seed)
    sources = [torch.randint(3, V_SRC, (n,), generator=generator).tolist() + [EOS] for n in (5, 2, 0)]
    targets = [[BOS] + torch.randint(3, V_TGT, (n,), generator=generator).tolist() for n in (4, 1, 3)]
    return pad(sources, PAD), pad(targets, PAD)


def stepped(model: nn.Module, src: Tensor, tgt_in: Tensor) -> tuple[Tensor, list]:
    """Teacher-forced step-by-step decoding: log-probs [B, T, V] and the state after each step."""
    state = model.init_state(model.encode(src), src.size(0))
    log_probs, states = [], []
    for t in range(tgt_in.size(1)):
        step_log_probs, state = model.step(tgt_in[:, t], state)
        log_probs.append(step_log_probs)
        states.append(state)
    return torch.stack(log_probs, dim=1), states


def assert_padding_and_companions_change_nothing(
    model: nn.Module, src: Tensor, tgt_in: Tensor, pad_embedding: Tensor
) -> None:
    """Scrambling the source PAD embedding (`pad_embedding`, its weight row) changes no logit, and each
    sentence decoded alone, without padding, gets the logits it got in the batch."""
    expected = model(src, tgt_in)
    with torch.no_grad():
        pad_embedding.normal_(0, 10)
    torch.testing.assert_close(model(src, tgt_in), expected, atol=1e-5, rtol=0)
    for row in range(src.size(0)):
        src_len, tgt_len = int((src[row] != PAD).sum()), int((tgt_in[row] != PAD).sum())
        alone = model(src[row : row + 1, :src_len], tgt_in[row : row + 1, :tgt_len])
        torch.testing.assert_close(alone[0], expected[row, :tgt_len], atol=1e-5, rtol=0)


def assert_later_tokens_change_no_earlier_logit(model: nn.Module, src: Tensor, tgt_in: Tensor) -> None:
    changed = tgt_in.clone()
    changed[:, 2:] = (changed[:, 2:] + 1) % V_TGT
    before, after = model(src, tgt_in), model(src, changed)
    torch.testing.assert_close(after[:, :2], before[:, :2])  # logits at t read tgt_in[:, :t+1] only
    assert not torch.allclose(after[:, 2:], before[:, 2:])


def search_from_bos(model: nn.Module, src: Tensor, search: Callable, **options):
    """Run a search of seqtool.decode.search on src, up to 8 tokens."""
    state = model.init_state(model.encode(src), src.size(0))
    return search(model, state, torch.full((src.size(0),), BOS), max_len=8, eos=EOS, **options)
