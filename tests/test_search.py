"""Greedy, sampling and beam search against tiny toy incremental decoders with fixed random weights."""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from seqtool.decode import Hypotheses, beam_search, greedy, prime, sample, search
from seqtool.models.base import IncrementalDecoder, map_tensors
from seqtool.models.transformer import Transformer

EOS = 0
HIDDEN = 8


class ToyDecoder(nn.Module):
    """A GRU-cell decoder with random weights. Its log-probs depend on the hidden state (so reorder matters)
    and on a position counter kept in the state; state = (h [B, H], position [B])."""

    def __init__(self, vocab: int = 5, seed: int = 0, eos_bias: float = 0.0, repeat_bias: float = 0.0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.cell = nn.GRUCell(HIDDEN, HIDDEN)
        for parameter in self.cell.parameters():
            parameter.data = torch.randn(parameter.shape, generator=generator)
        self.embed = torch.randn(vocab, HIDDEN, generator=generator)
        self.out = torch.randn(HIDDEN, vocab, generator=generator)
        self.position_bias = torch.randn(16, vocab, generator=generator)
        self.eos_bias, self.repeat_bias = eos_bias, repeat_bias
        self.requires_grad_(False)

    def encode(self, src: Tensor) -> Tensor:
        return torch.tanh(src)

    def init_state(self, memory: Tensor | None, batch_size: int):
        h = memory.clone() if memory is not None else torch.zeros(batch_size, HIDDEN)
        return h, torch.zeros(batch_size, dtype=torch.long)

    def core(self, tokens: Tensor, h: Tensor, position: Tensor) -> tuple[Tensor, Tensor]:
        h = self.cell(self.embed[tokens], h)
        logits = h @ self.out + self.position_bias[position.clamp(max=15)]
        logits[:, EOS] += self.eos_bias
        logits[torch.arange(len(tokens)), tokens] += self.repeat_bias
        return logits.log_softmax(-1), h

    def step(self, tokens: Tensor, state):
        h, position = state
        log_probs, h = self.core(tokens, h, position)
        return log_probs, (h, position + 1)

    def reorder(self, state, index: Tensor):
        return map_tensors(lambda tensor: tensor.index_select(0, index), state)


class AttentionToy(ToyDecoder):
    """ToyDecoder whose state is a dict carrying "attention": the row of a fixed table picked by the input
    token, so the attention of each generated token is known from the token fed before it."""

    def __init__(self, vocab: int = 5, src_len: int = 6, seed: int = 0):
        super().__init__(vocab, seed)
        generator = torch.Generator().manual_seed(seed + 100)
        self.table = (3 * torch.randn(vocab, src_len, generator=generator)).softmax(-1)  # [V, src_len]

    def init_state(self, memory, batch_size):
        h, position = super().init_state(memory, batch_size)
        return {"h": h, "position": position, "attention": torch.zeros(batch_size, self.table.size(1))}

    def step(self, tokens, state):
        log_probs, h = self.core(tokens, state["h"], state["position"])
        return log_probs, {"h": h, "position": state["position"] + 1, "attention": self.table[tokens]}


class FixedDistribution:
    """Every step returns the same known distribution; state = steps taken [B]."""

    def __init__(self, probs: list[float]):
        self.log_probs = torch.tensor(probs).log()

    def init_state(self, memory, batch_size):
        return torch.zeros(batch_size, dtype=torch.long)

    def step(self, tokens, state):
        return self.log_probs.expand(len(tokens), -1), state + 1

    def reorder(self, state, index):
        return state[index]


class PositionTable:
    """Log-probs read from a fixed table by position alone, whatever the input; state = positions [B]."""

    def __init__(self, table: list[list[float]]):
        self.log_probs = torch.tensor(table).log()
        self.steps = 0

    def init_state(self, memory, batch_size):
        return torch.zeros(batch_size, dtype=torch.long)

    def step(self, tokens, state):
        self.steps += 1
        return self.log_probs[state.clamp(max=len(self.log_probs) - 1)], state + 1

    def reorder(self, state, index):
        return state[index]


def start(model: ToyDecoder, batch: int, seed: int = 1):
    """A random memory per sentence, its state, and different first tokens."""
    memory = model.encode(torch.randn(batch, HIDDEN, generator=torch.Generator().manual_seed(seed)))
    first = torch.arange(batch) % (model.embed.size(0) - 1) + 1
    return memory, model.init_state(memory, batch), first


def forced_log_prob(model: ToyDecoder, memory: Tensor, first: int, tokens: list[int], ended: bool) -> float:
    """Sum of the model's log-probs of ``tokens`` (+EOS when ``ended``), stepping one sentence by hand."""
    state, total, previous = model.init_state(memory.unsqueeze(0), 1), 0.0, first
    for token in tokens + ([EOS] if ended else []):
        log_probs, state = model.step(torch.tensor([previous]), state)
        total, previous = total + log_probs[0, token].item(), token
    return total


def penalised(log_prob: float, length: int, alpha: float = 0.0, length_norm: bool = False) -> float:
    return log_prob / length if length_norm else log_prob / ((5 + length) / 6) ** alpha


def test_toys_follow_the_contract():
    assert isinstance(ToyDecoder(), IncrementalDecoder)
    assert isinstance(AttentionToy(), IncrementalDecoder)


# ------------------------------------------------------------------------------------------------ beam


def test_beam_of_one_equals_greedy():
    model = ToyDecoder(seed=3)
    memory, state, first = start(model, batch=6)
    by_greedy = greedy(model, state, first, max_len=10, eos=EOS)
    by_beam = beam_search(model, state, first, beam_size=1, max_len=10, eos=EOS)
    assert by_beam.tokens == by_greedy.tokens
    assert any(len(hyps[0]) < 10 for hyps in by_greedy.tokens)  # some end at EOS, so both paths are tried
    assert sum(by_beam.log_probs, []) == pytest.approx(sum(by_greedy.log_probs, []), abs=1e-5)


def test_beam_of_one_retires_only_the_best_candidate():
    """EOS ranked second at step 1 (0.4 < 0.6) would beat greedy's path (0.6 * 0.5 * 0.5); beam 1 must still
    follow greedy, as fairseq does: only EOS candidates among the best K retire."""
    model = PositionTable([[0.4, 0.6, 0.0, 0.0], [0.1, 0.5, 0.2, 0.2]])
    state, first = model.init_state(None, 1), torch.tensor([1])
    assert greedy(model, state, first, max_len=3, eos=EOS).tokens == [[[1, 1, 1]]]
    assert beam_search(model, state, first, beam_size=1, max_len=3, eos=EOS).tokens == [[[1, 1, 1]]]
    assert beam_search(model, state, first, beam_size=2, max_len=3, eos=EOS).tokens == [[[]]]


@pytest.mark.parametrize("scoring", [{}, {"alpha": 0.8}, {"length_norm": True}])
def test_early_stopping_never_changes_the_result(scoring, monkeypatch):
    model = ToyDecoder(seed=10, eos_bias=1.0)
    _, state, first = start(model, batch=6)
    options = {"beam_size": 3, "max_len": 12, "eos": EOS, "nbest": 2, **scoring}
    stopped = beam_search(model, state, first, **options)
    monkeypatch.setattr(search._Search, "cannot_improve", lambda *args: False)
    exhaustive = beam_search(model, state, first, **options)
    assert stopped.tokens == exhaustive.tokens
    assert sum(stopped.scores, []) == pytest.approx(sum(exhaustive.scores, []), abs=1e-6)


def test_early_stopping_stops_before_max_len():
    model = PositionTable([[0.7, 0.1, 0.1, 0.1]])  # EOS first costs log 0.7; every live beam is worse
    beam_search(model, model.init_state(None, 2), torch.tensor([1, 2]), beam_size=3, max_len=20, eos=EOS)
    assert model.steps == 1  # after step 1, no live beam (log 0.1, and falling) can beat EOS at log 0.7


SEARCHES = {
    "greedy": lambda m, s, f: greedy(m, s, f, max_len=7, eos=EOS),
    "sample": lambda m, s, f: sample(m, s, f, max_len=7, eos=EOS, generator=torch.Generator().manual_seed(0)),
    "beam": lambda m, s, f: beam_search(m, s, f, beam_size=3, max_len=7, eos=EOS, nbest=3),
    "beam-gnmt": lambda m, s, f: beam_search(m, s, f, beam_size=3, max_len=7, eos=EOS, nbest=2, alpha=0.8),
    "beam-norm": lambda m, s, f: beam_search(m, s, f, beam_size=4, max_len=7, eos=EOS, length_norm=True),
}
SCORING = {"beam-gnmt": {"alpha": 0.8}, "beam-norm": {"length_norm": True}}


@pytest.mark.parametrize("name", SEARCHES)
def test_log_probs_and_scores_match_forced_decoding(name):
    model = ToyDecoder(seed=5)
    memory, state, first = start(model, batch=4)
    hyps: Hypotheses = SEARCHES[name](model, state, first)
    for sentence, (all_tokens, scores, log_probs) in enumerate(
        zip(hyps.tokens, hyps.scores, hyps.log_probs, strict=True)
    ):
        assert all_tokens and scores == sorted(scores, reverse=True)
        for tokens, score, log_prob in zip(all_tokens, scores, log_probs, strict=True):
            ended = len(tokens) < 7
            expected = forced_log_prob(model, memory[sentence], int(first[sentence]), tokens, ended)
            assert log_prob == pytest.approx(expected, abs=1e-5)
            length = len(tokens) + ended
            assert score == pytest.approx(penalised(expected, length, **SCORING.get(name, {})), abs=1e-5)


def enumerate_all(model, memory, first, vocab, max_len, alpha):
    """Every sequence the search could return, best first: (score, tokens)."""
    ranked = []
    for length in range(max_len + 1):
        for tokens in itertools.product(range(1, vocab), repeat=length):
            ended = length < max_len
            log_prob = forced_log_prob(model, memory, first, list(tokens), ended)
            ranked.append((penalised(log_prob, length + ended, alpha), list(tokens)))
    return sorted(ranked, key=lambda pair: -pair[0])


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("nbest", [1, 5])
def test_wide_beam_finds_the_exhaustive_best(alpha, nbest):
    vocab, max_len = 4, 4
    model = ToyDecoder(vocab=vocab, seed=12, eos_bias=-1.0)
    memory, state, first = start(model, batch=3)
    wide = 1 + 3 + 9 + 27 + 81  # every sequence of at most 4 tokens over 3 non-EOS tokens, + EOS
    hyps = beam_search(
        model, state, first, beam_size=wide, max_len=max_len, eos=EOS, nbest=nbest, alpha=alpha
    )
    for sentence in range(3):
        ranked = enumerate_all(model, memory[sentence], int(first[sentence]), vocab, max_len, alpha)[:nbest]
        assert hyps.tokens[sentence] == [tokens for _, tokens in ranked]
        assert hyps.scores[sentence] == pytest.approx([score for score, _ in ranked], abs=1e-5)


def test_length_penalty_changes_the_winner():
    """Guards the exhaustive test: with these weights alpha=1 prefers a longer hypothesis than alpha=0."""
    model = ToyDecoder(vocab=4, seed=12, eos_bias=-1.0)
    memory, _, first = start(model, batch=3)
    winners = [
        [enumerate_all(model, memory[s], int(first[s]), 4, 4, alpha)[0][1] for s in range(3)]
        for alpha in (0.0, 1.0)
    ]
    assert winners[0] != winners[1]


def test_mixed_batch_decodes_like_each_sentence_alone():
    model = ToyDecoder(seed=7)
    memory, state, first = start(model, batch=4)
    max_len = torch.tensor([3, 9, 5, 7])
    options = {"eos": EOS, "nbest": 2, "beam_size": 3, "alpha": 0.5}
    batched = beam_search(model, state, first, max_len=max_len, **options)
    batched_greedy = greedy(model, state, first, max_len=max_len, eos=EOS)
    for s in range(4):
        alone_state, alone_first = model.init_state(memory[s : s + 1], 1), first[s : s + 1]
        alone = beam_search(model, alone_state, alone_first, max_len=int(max_len[s]), **options)
        assert batched.tokens[s] == alone.tokens[0]
        assert batched.scores[s] == pytest.approx(alone.scores[0], abs=1e-5)
        assert all(len(tokens) <= max_len[s] for tokens in batched.tokens[s])
        alone_greedy = greedy(model, alone_state, alone_first, max_len=int(max_len[s]), eos=EOS)
        assert batched_greedy.tokens[s] == alone_greedy.tokens[0]
        assert batched_greedy.log_probs[s] == pytest.approx(alone_greedy.log_probs[0], abs=1e-5)
    assert max(len(hyps[0]) for hyps in batched.tokens) > 3  # the limits differ per sentence


# ------------------------------------------------------------------------------------------ constraints


@pytest.mark.parametrize("search", ["greedy", "sample", "beam"])
def test_min_len_forbids_early_eos(search):
    model = ToyDecoder(seed=2, eos_bias=4.0)
    _, state, first = start(model, batch=5)

    def run(min_len):
        if search == "beam":
            return beam_search(model, state, first, beam_size=3, max_len=8, eos=EOS, nbest=3, min_len=min_len)
        if search == "sample":
            generator = torch.Generator().manual_seed(0)
            return sample(model, state, first, max_len=8, eos=EOS, min_len=min_len, generator=generator)
        return greedy(model, state, first, max_len=8, eos=EOS, min_len=min_len)

    shortest = lambda hyps: min(len(tokens) for sentence in hyps.tokens for tokens in sentence)  # noqa: E731
    assert shortest(run(0)) < 3
    assert shortest(run(3)) >= 3


def repeated_bigram(sequence: list[int]) -> bool:
    bigrams = list(itertools.pairwise(sequence))
    return len(bigrams) != len(set(bigrams))


def test_no_repeat_ngram_bans_repeated_bigrams():
    model = ToyDecoder(seed=4, repeat_bias=3.0)
    _, state, first = start(model, batch=4)
    options = {"beam_size": 4, "max_len": 10, "eos": EOS, "nbest": 4}
    plain = beam_search(model, state, first, **options)
    banned = beam_search(model, state, first, no_repeat_ngram=2, **options)
    assert any(repeated_bigram([int(first[s])] + t) for s in range(4) for t in plain.tokens[s])
    assert not any(repeated_bigram([int(first[s])] + t) for s in range(4) for t in banned.tokens[s])


def test_eos_none_runs_to_max_len():
    model = ToyDecoder(seed=2, eos_bias=4.0)
    _, state, first = start(model, batch=3)
    assert all(len(h[0]) < 6 for h in greedy(model, state, first, max_len=6, eos=EOS).tokens)
    assert all(len(h[0]) == 6 for h in greedy(model, state, first, max_len=6).tokens)
    generator = torch.Generator().manual_seed(0)
    assert all(len(h[0]) == 6 for h in sample(model, state, first, max_len=6, generator=generator).tokens)


def test_beam_rejects_bad_options():
    model = ToyDecoder()
    _, state, first = start(model, batch=2)
    with pytest.raises(ValueError):
        beam_search(model, state, first, beam_size=2, nbest=3, max_len=4, eos=EOS)
    with pytest.raises(ValueError):
        beam_search(model, state, first, beam_size=2, alpha=1.0, length_norm=True, max_len=4, eos=EOS)


# --------------------------------------------------------------------------------------------- sampling


def draw(model, state, first, seed, **options) -> Hypotheses:
    generator = torch.Generator().manual_seed(seed)
    return sample(model, state, first, max_len=12, eos=EOS, generator=generator, **options)


def test_sampling_is_reproducible_by_seed():
    model = ToyDecoder(seed=6)
    _, state, first = start(model, batch=6)
    assert draw(model, state, first, 0).tokens == draw(model, state, first, 0).tokens
    assert draw(model, state, first, 0).tokens != draw(model, state, first, 1).tokens


@pytest.mark.parametrize("options", [{"top_k": 1}, {"top_p": 1e-6}, {"temperature": 1e-4}])
def test_sampling_collapses_to_greedy(options):
    model = ToyDecoder(seed=6)
    _, state, first = start(model, batch=6)
    by_greedy = greedy(model, state, first, max_len=12, eos=EOS)
    assert draw(model, state, first, 0, **options).tokens == by_greedy.tokens
    assert draw(model, state, first, 0).tokens != by_greedy.tokens  # plain sampling does differ


def test_top_k_and_top_p_stay_inside_the_kept_set():
    probs = [0.05, 0.3, 0.5, 0.15]  # ranks: token 2, 1, 3, 0
    model = FixedDistribution(probs)
    state, first = model.init_state(None, 4000), torch.zeros(4000, dtype=torch.long)

    def counts(**options):
        generator = torch.Generator().manual_seed(0)
        hyps = sample(model, state, first, max_len=1, generator=generator, **options)
        return torch.bincount(torch.tensor([h[0][0] for h in hyps.tokens]), minlength=4).tolist()

    assert all(count > 0 for count in counts())
    top2 = counts(top_k=2)
    assert top2[0] == top2[3] == 0 and top2[1] > 0 and top2[2] > 0
    assert top2[2] / 4000 == pytest.approx(0.5 / 0.8, abs=0.03)
    nucleus = counts(top_p=0.75)  # 0.5 < 0.75 <= 0.5 + 0.3
    assert nucleus[0] == nucleus[3] == 0 and nucleus[1] > 0
    top3_nucleus = counts(top_k=3, top_p=0.9)  # top 3 renormalised: 0.5/0.95, 0.3/0.95 = 0.84 < 0.9
    assert top3_nucleus[0] == 0 and top3_nucleus[3] > 0


# -------------------------------------------------------------------------------------------- attention


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_attention_follows_each_hypothesis(search):
    model = AttentionToy(seed=8)
    memory, state, first = start(model, batch=3)
    if search == "beam":
        hyps = beam_search(model, state, first, beam_size=4, max_len=8, eos=EOS, nbest=4)
    else:
        hyps = greedy(model, state, first, max_len=8, eos=EOS)
    assert hyps.attention is not None
    for s in range(3):
        for tokens, attention in zip(hyps.tokens[s], hyps.attention[s], strict=True):
            ended = len(tokens) < 8
            assert attention.shape == (len(tokens) + ended, 6)
            assert torch.allclose(attention.sum(-1), torch.ones(len(attention)))
            fed = torch.tensor([int(first[s])] + tokens)[: len(attention)]  # the input of each step
            assert torch.equal(attention, model.table[fed])


def test_no_attention_without_attention_state():
    model = ToyDecoder()
    _, state, first = start(model, batch=2)
    assert greedy(model, state, first, max_len=4, eos=EOS).attention is None
    assert beam_search(model, state, first, beam_size=2, max_len=4, eos=EOS).attention is None


# ------------------------------------------------------------------------------------------------ prime


def test_prime_equals_stepping_by_hand():
    model = ToyDecoder(seed=9)
    memory, state, _ = start(model, batch=3)
    prefix = torch.tensor([[1, 2, 3], [4, 4, 1], [2, 0, 3]])
    log_probs, primed = prime(model, state, prefix)
    by_hand = state
    for t in range(3):
        expected, by_hand = model.step(prefix[:, t], by_hand)
    assert torch.allclose(log_probs, expected)
    assert all(torch.equal(a, b) for a, b in zip(primed, by_hand, strict=True))
    assert not math.isclose(float(log_probs[0, 0]), float(model.step(prefix[:, 0], state)[0][0, 0]))


@pytest.mark.parametrize("search", ["greedy", "sample"])
def test_no_repeat_ngram_in_greedy_and_sampling_takes_the_best_allowed_token(search):
    """Every token is allowed (it completes no bigram already seen) and, for greedy, the likeliest allowed
    one: checked by feeding the output back through the model step by step."""
    model = ToyDecoder(seed=4, repeat_bias=3.0)
    _, state, first = start(model, batch=4)
    generator = torch.Generator().manual_seed(0)
    run = {
        "greedy": lambda **kw: greedy(model, state, first, max_len=10, eos=EOS, **kw),
        "sample": lambda **kw: sample(model, state, first, max_len=10, eos=EOS, generator=generator, **kw),
    }
    plain, banned = run[search](), run[search](no_repeat_ngram=2)
    assert any(repeated_bigram([int(first[s])] + plain.tokens[s][0]) for s in range(4))
    for s in range(4):
        sequence = [int(first[s])] + banned.tokens[s][0]
        assert not repeated_bigram(sequence)
        if search == "greedy":
            row_state = model.reorder(state, torch.tensor([s]))
            for t in range(len(sequence) - 1):
                log_probs, row_state = model.step(torch.tensor([sequence[t]]), row_state)
                seen = {b for a, b in itertools.pairwise(sequence[: t + 1]) if a == sequence[t]}
                allowed = [v for v in range(log_probs.size(1)) if v not in seen]
                assert sequence[t + 1] == max(allowed, key=lambda v: float(log_probs[0, v]))


# ------------------------------------------------------------------------- golden: the search before speed-up
#
# tests/golden/search/beam.json holds what the search returned before it was rewritten for speed (retiring
# without per-beam Python loops, the Transformer's encoder memory shared by the K beams of a sentence).
# Regenerate only on purpose: SEQTOOL_WRITE_GOLDEN=1 pytest tests/test_search.py -k golden.

GOLDEN = Path(__file__).parent / "golden" / "search" / "beam.json"


def tiny_transformer(seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    sizes = {"src_vocab_size": 11, "tgt_vocab_size": 13, "pad_index": 0, "bos_index": 1, "eos_index": 2}
    layers = {"d_model": 16, "heads": 2, "encoder_layers": 2, "decoder_layers": 2, "ffn_size": 32}
    options = {"dropout": 0.0, "positions": "sinusoidal", "max_positions": 16, "norm_first": True,
               "tie_embeddings": True, "share_all_embeddings": False, "activation": "relu"}  # fmt: skip
    model = Transformer(**sizes, **layers, **options).eval()
    for parameter in model.parameters():  # wider than the init's weights, so that beams disagree
        parameter.data.normal_(0, 0.2)
    return model


def transformer_case(options: dict) -> Hypotheses:
    """Four sources of lengths 7, 2, 5, 1 (EOS last), right-padded, searched from BOS."""
    model, generator = tiny_transformer(), torch.Generator().manual_seed(3)
    sources = [torch.randint(3, 11, (n,), generator=generator).tolist() + [2] for n in (6, 1, 4, 0)]
    src = torch.tensor([s + [0] * (7 - len(s)) for s in sources])
    state = model.init_state(model.encode(src), 4)
    return beam_search(model, state, torch.full((4,), 1), eos=2, **options)


def toy_case(model: ToyDecoder, options: dict) -> Hypotheses:
    _, state, first = start(model, batch=5, seed=2)
    return beam_search(model, state, first, eos=EOS, **options)


GOLDEN_CASES = {
    "toy-gnmt-limits": lambda: toy_case(
        ToyDecoder(vocab=6, seed=3),
        {"beam_size": 4, "nbest": 3, "alpha": 0.6, "max_len": torch.tensor([3, 5, 7, 9, 4])},
    ),
    "toy-norm-minlen-ngram": lambda: toy_case(
        ToyDecoder(seed=1, eos_bias=1.0),
        {"beam_size": 3, "nbest": 2, "length_norm": True, "min_len": 2, "no_repeat_ngram": 2, "max_len": 8},
    ),
    "toy-attention": lambda: toy_case(AttentionToy(seed=2), {"beam_size": 3, "nbest": 2, "max_len": 6}),
    "transformer-beam4": lambda: transformer_case({"beam_size": 4, "nbest": 2, "max_len": 9}),
    "transformer-gnmt-limits": lambda: transformer_case(
        {"beam_size": 3, "nbest": 3, "alpha": 1.0, "max_len": torch.tensor([9, 3, 6, 2])}
    ),
}


def as_json(hyps: Hypotheses) -> dict:
    attention = hyps.attention and [[a.tolist() for a in row] for row in hyps.attention]
    return {"tokens": hyps.tokens, "scores": hyps.scores, "log_probs": hyps.log_probs, "attention": attention}


def test_golden_hypotheses_and_scores_are_unchanged():
    found = {name: as_json(case()) for name, case in GOLDEN_CASES.items()}
    if os.environ.get("SEQTOOL_WRITE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(found, indent=1) + "\n")
    expected = json.loads(GOLDEN.read_text())
    assert set(found) == set(expected)
    for name, hyps in found.items():
        assert hyps["tokens"] == expected[name]["tokens"], name
        for field in ("scores", "log_probs"):
            assert sum(hyps[field], []) == pytest.approx(sum(expected[name][field], []), abs=1e-5), name
        assert (hyps["attention"] is None) == (expected[name]["attention"] is None), name
        if hyps["attention"] is not None:
            for got, want in zip(
                sum(hyps["attention"], []), sum(expected[name]["attention"], []), strict=True
            ):
                torch.testing.assert_close(torch.tensor(got), torch.tensor(want), atol=1e-5, rtol=0)
