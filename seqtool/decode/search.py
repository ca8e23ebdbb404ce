"""Greedy decoding, sampling and batched beam search, written once against the incremental-decoder contract.

Every autoregressive model decodes through these functions (see ``seqtool.models.base``)::

    state = model.init_state(model.encode(src), batch_size)
    hyps = beam_search(model, state, bos, beam_size=5, max_len=50, eos=eos)

Conventions shared by the three searches:

* ``first`` [B] is the first input token of each sequence: BOS, or the last character of a primed text.
* ``max_len`` counts generated tokens, EOS included; one int, or a LongTensor[B] with one limit per sequence.
* ``tokens`` exclude ``first`` and EOS, so a hypothesis ended at EOS iff ``len(tokens) < its max_len``.
* ``len`` of a hypothesis is the number of generated tokens *including* EOS when emitted; the length
  penalties use it, and its attention has that many rows (the EOS step's row is the last one).
* ``log_probs`` are the model's own log-probs of the emitted tokens, not the tempered, filtered or banned
  scores used to choose them; ``step`` must return normalised log-probs (all <= 0).
* A model reports attention by returning a dict state holding ``"attention"`` (Tensor[B, src_len]): the
  weights it used to predict this step's token. Searches then return them per hypothesis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from seqtool.models.base import State

NEG_INF = float("-inf")
Choose = Callable[[Tensor], Tensor]  # log-probs [B, V] -> chosen tokens [B]


@dataclass
class Hypotheses:
    """The decoded sequences of a batch, best first within each sequence."""

    tokens: list[list[list[int]]]  # [batch][n-best][length], without `first`, without EOS
    scores: list[list[float]]  # [batch][n-best]: ranking score (log-prob, or length-penalised for beam)
    log_probs: list[list[float]]  # [batch][n-best]: sum of token log-probs (EOS included when emitted)
    attention: list[list[Tensor]] | None  # [batch][n-best] -> [len, src_len]; None without attention


def prime(model: Any, state: State, prefix: Tensor) -> tuple[Tensor, State]:
    """Feed ``prefix`` [B, P] (P >= 1) one token at a time; return the log-probs [B, V] after its last token
    and the state."""
    if prefix.size(1) == 0:
        raise ValueError("prime() needs a prefix of at least one token")
    with torch.inference_mode():
        for position in range(prefix.size(1)):
            log_probs, state = model.step(prefix[:, position], state)
    return log_probs, state


def _attention_of(state: State) -> Tensor | None:
    """The attention weights [B, src_len] a step left in its state, when the model reports them."""
    return state.get("attention") if isinstance(state, dict) else None


def _limits(max_len: int | Tensor, batch: int, device: torch.device) -> Tensor:
    """``max_len`` as a LongTensor[B]: one int is shared by the whole batch."""
    return torch.as_tensor(max_len, device=device).long().expand(batch)


def _forbid_early_eos(log_probs: Tensor, eos: int | None, step: int, min_len: int) -> Tensor:
    """Set EOS to -inf while fewer than ``min_len`` tokens have been generated."""
    if eos is None or step >= min_len:
        return log_probs
    return log_probs.index_fill(1, torch.tensor([eos], device=log_probs.device), NEG_INF)


# ----------------------------------------------------------------------------------- greedy and sampling


class _Record:
    """Output buffers of greedy/sampling, one row per original sequence, written through ``rows``."""

    def __init__(self, batch: int, max_len: int, device: torch.device):
        self.tokens = torch.zeros(batch, max_len, dtype=torch.long, device=device)  # shape: [B, L]
        self.log_probs = torch.zeros(batch, device=device)  # shape: [B]
        self.lengths = torch.zeros(batch, dtype=torch.long, device=device)  # shape: [B], EOS included
        self.attention: Tensor | None = None  # shape: [B, L, src_len], allocated at the first report

    def add(self, rows: Tensor, step: int, tokens: Tensor, log_probs: Tensor, attention: Tensor | None):
        """Store what the live rows [A] chose at ``step``: tokens [A], log-probs [A], attention [A, S]."""
        self.tokens[rows, step] = tokens
        self.log_probs[rows] += log_probs
        self.lengths[rows] = step + 1
        if attention is not None:
            if self.attention is None:
                self.attention = attention.new_zeros(self.tokens.shape + attention.shape[-1:])
            self.attention[rows, step] = attention

    def hypotheses(self, eos: int | None) -> Hypotheses:
        tokens, attention = [], []
        for row, length in enumerate(self.lengths.tolist()):
            sequence = self.tokens[row, :length].tolist()
            tokens.append([sequence[:-1] if sequence and sequence[-1] == eos else sequence])
            if self.attention is not None:
                attention.append([self.attention[row, :length]])
        log_probs = [[value] for value in self.log_probs.tolist()]
        return Hypotheses(tokens, log_probs, log_probs, attention if self.attention is not None else None)


def _decode_loop(
    model: Any,
    state: State,
    first: Tensor,
    max_len: int | Tensor,
    eos: int | None,
    min_len: int,
    choose: Choose,
    no_repeat_ngram: int = 0,
) -> Hypotheses:
    """Feed each sequence its own chosen token until it emits EOS or reaches its max_len.

    A finished row is dropped from the batch with ``model.reorder`` rather than fed on and ignored: later
    steps cost only the live rows, and nothing a finished row would emit can leak into its output.
    """
    limits = _limits(max_len, first.size(0), first.device)  # shape: [B]
    with torch.inference_mode():
        record = _Record(first.size(0), int(limits.max()), first.device)
        rows = torch.arange(first.size(0), device=first.device)  # shape: [A], original row of each live row
        tokens = first  # shape: [A]
        for step in range(int(limits.max())):
            log_probs, state = model.step(tokens, state)  # shape: [A, V]
            allowed = _forbid_early_eos(log_probs, eos, step, min_len)
            if no_repeat_ngram > 0:
                inputs = torch.cat([first[rows, None], record.tokens[rows, :step]], dim=1)  # [A, 1 + step]
                banned = _repeated_ngrams(inputs, no_repeat_ngram, allowed.size(1))  # shape: [A, V]
                banned &= ~banned.all(-1, keepdim=True)  # a row with every token banned keeps them all
                allowed = allowed.masked_fill(banned, NEG_INF)
            tokens = choose(allowed)
            picked = log_probs.gather(1, tokens.unsqueeze(1)).squeeze(1)  # shape: [A]
            record.add(rows, step, tokens, picked, _attention_of(state))
            done = limits[rows] <= step + 1  # shape: [A]
            if eos is not None:
                done |= tokens == eos
            if done.all():
                break
            if done.any():
                keep = (~done).nonzero().squeeze(1)
                state, rows, tokens = model.reorder(state, keep), rows[keep], tokens[keep]
    return record.hypotheses(eos)


def greedy(
    model: Any,
    state: State,
    first: Tensor,
    *,
    max_len: int | Tensor,
    eos: int | None = None,
    min_len: int = 0,
    no_repeat_ngram: int = 0,
) -> Hypotheses:
    """Pick the most probable token at every step, for ``first`` [B]; one hypothesis per sequence.
    ``no_repeat_ngram`` = n takes the best token that does not repeat an n-gram of ``first`` + the output."""
    argmax: Choose = lambda log_probs: log_probs.argmax(-1)  # noqa: E731
    return _decode_loop(model, state, first, max_len, eos, min_len, argmax, no_repeat_ngram)


def _filter_logits(logits: Tensor, top_k: int | None, top_p: float | None) -> Tensor:
    """Keep the ``top_k`` best tokens of logits [B, V], then the smallest set of them whose probability is
    >= ``top_p`` (always at least one); the rest become -inf."""
    if top_k is not None:
        kth_best = logits.topk(min(top_k, logits.size(-1)), dim=-1).values[:, -1:]  # shape: [B, 1]
        logits = logits.masked_fill(logits < kth_best, NEG_INF)
    if top_p is not None:
        probs, order = logits.softmax(-1).sort(dim=-1, descending=True)  # shape: [B, V]
        mass_before = probs.cumsum(-1) - probs  # probability of the tokens ranked above each one
        drop_sorted = mass_before >= top_p
        drop_sorted[:, 0] = False
        logits = logits.masked_fill(drop_sorted.scatter(1, order, drop_sorted), NEG_INF)
    return logits


def sample(
    model: Any,
    state: State,
    first: Tensor,
    *,
    max_len: int | Tensor,
    eos: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    min_len: int = 0,
    no_repeat_ngram: int = 0,
) -> Hypotheses:
    """Draw each token from the model's distribution for ``first`` [B]: scaled by 1/temperature, cut to the
    top k, then to the nucleus top p. The same ``generator`` seed gives the same text."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; use greedy() for argmax decoding")

    def choose(log_probs: Tensor) -> Tensor:
        probs = _filter_logits(log_probs / temperature, top_k, top_p).softmax(-1)  # shape: [B, V]
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return _decode_loop(model, state, first, max_len, eos, min_len, choose, no_repeat_ngram)


# ------------------------------------------------------------------------------------------- beam search
#
#   the flat batch: A active sentences x K beams, row = a * K + k
#
#   each step:  log-probs [A*K, V] + beam totals  ->  [A, K*V]  ->  best 2K candidates per sentence
#     - candidates among the best K that end at EOS retire to `finished`, scored with the penalty
#     - the first K candidates that do not end at EOS become the next beams
#     - a sentence is done at its max_len (its live beams retire too) or when no live beam can beat its
#       nbest-th finished hypothesis
#   one model.reorder(state, flat_index) then both picks each new beam's parent and drops done sentences.
#
# Only what leaves the search is Python: the tensors stay on the device and a step reads back two small
# results (which candidates retire, which sentences are done), so the loop costs a few tensor ops a step
# whatever the batch, and Python touches a hypothesis only when it is finished.


class _Finished(NamedTuple):
    score: float
    log_prob: float
    tokens: list[int]
    attention: Tensor | None  # shape: [len, src_len]


@dataclass
class _Beams:
    """The live beams of the A sentences still searched, K per sentence; flat row = a * K + k."""

    sentences: Tensor  # shape: [A], the original batch index of each active sentence
    log_probs: Tensor  # shape: [A, K], summed log-prob of each beam; -inf for an empty slot
    inputs: Tensor  # shape: [A*K, 1 + t], `first` then the t tokens generated so far
    attention: Tensor | None  # shape: [A*K, t, src_len], one row per generated token


class _Candidates(NamedTuple):
    """One-token extensions of the beams, per active sentence, best first."""

    values: Tensor  # shape: [A, N], summed log-prob of beam + token (-inf: banned or empty)
    parents: Tensor  # shape: [A, N], the extended beam k in 0..K-1
    tokens: Tensor  # shape: [A, N], the token

    def take(self, index: Tensor) -> _Candidates:
        return _Candidates(*(field.gather(1, index) for field in self))


@dataclass
class _Search:
    """The options of one beam_search call and its finished hypotheses."""

    beam_size: int
    eos: int
    nbest: int
    alpha: float
    length_norm: bool
    min_len: int
    no_repeat_ngram: int
    limits: Tensor  # shape: [B], the max_len of each sentence
    finished: list[list[_Finished]]  # [B][<= nbest], best first

    def __post_init__(self):
        if not 1 <= self.nbest <= self.beam_size:
            raise ValueError(f"need 1 <= nbest <= beam_size, got nbest={self.nbest}, beam={self.beam_size}")
        if self.alpha < 0 or (self.alpha > 0 and self.length_norm):
            raise ValueError("use either alpha >= 0 (GNMT length penalty) or length_norm, not both")
        if self.no_repeat_ngram < 0 or (self.limits.numel() and int(self.limits.min()) < 1):
            raise ValueError("beam_search needs no_repeat_ngram >= 0 and max_len >= 1")
        # the nbest-th finished score of each sentence (-inf while fewer): the bar a live beam must beat
        self.bar = torch.full(self.limits.shape, NEG_INF, dtype=torch.float64, device=self.limits.device)
        self.final_penalty = self.penalty(self.limits.double())  # shape: [B], the penalty at max_len

    def penalty(self, length):
        """Divisor of the summed log-prob; ``length`` (int or Tensor) counts generated tokens with EOS."""
        return length if self.length_norm else ((5 + length) / 6) ** self.alpha

    def add(self, sentence: int, hypothesis: _Finished) -> None:
        """Keep ``hypothesis`` if it is among the sentence's nbest; on a tie the earlier one stays ahead."""
        kept = self.finished[sentence]
        kept.append(hypothesis)
        kept.sort(key=lambda h: -h.score)
        del kept[self.nbest :]
        if len(kept) == self.nbest:
            self.bar[sentence] = kept[-1].score

    def cannot_improve(self, sentences: Tensor, best_live: Tensor) -> Tensor:
        """Which ``sentences`` [A] no live beam can improve any more, given each one's best live total [A].

        Log-probs only fall as a beam grows and each penalty only grows with length (alpha >= 0), so a live
        beam with summed log-prob L (<= 0) scores at most L / penalty(max_len); with alpha = 0 that is L.
        """
        best_live = best_live.double()
        return (best_live == NEG_INF) | (self.bar[sentences] >= best_live / self.final_penalty[sentences])


def _start_beams(first: Tensor, beam_size: int) -> _Beams:
    """K copies of each sentence's start; only beam 0 is live, else K identical copies would fill the beam."""
    log_probs = torch.full((first.size(0), beam_size), NEG_INF, device=first.device)  # shape: [B, K]
    log_probs[:, 0] = 0.0
    sentences = torch.arange(first.size(0), device=first.device)
    return _Beams(sentences, log_probs, first.repeat_interleave(beam_size).unsqueeze(1), None)


def _repeated_ngrams(inputs: Tensor, n: int, vocab: int) -> Tensor:
    """Tokens [R, V] that would complete an n-gram already present in each row of ``inputs`` [R, T]."""
    banned = torch.zeros(inputs.size(0), vocab, dtype=torch.long, device=inputs.device)
    if inputs.size(1) < n:
        return banned.bool()
    ngrams = inputs.unfold(1, n, 1)  # shape: [R, T-n+1, n]
    context = inputs[:, inputs.size(1) - (n - 1) :]  # shape: [R, n-1], the last n-1 tokens
    matches = (ngrams[:, :, :-1] == context.unsqueeze(1)).all(-1)  # shape: [R, T-n+1]
    return banned.scatter_add_(1, ngrams[:, :, -1], matches.long()) > 0


def _top_candidates(log_probs: Tensor, beams: _Beams, search: _Search) -> _Candidates:
    """The best 2K extensions [A, 2K] of each sentence's beams by summed log-prob: 2K so that K live ones
    remain even when K of them end at EOS. Banned: EOS before min_len, a token repeating an n-gram."""
    vocab = log_probs.size(-1)
    totals = beams.log_probs.reshape(-1, 1) + log_probs  # shape: [A*K, V], a new tensor: ban in place
    if beams.inputs.size(1) - 1 < search.min_len:
        totals[:, search.eos] = NEG_INF
    if search.no_repeat_ngram > 0:
        totals.masked_fill_(_repeated_ngrams(beams.inputs, search.no_repeat_ngram, vocab), NEG_INF)
    totals = totals.reshape(beams.log_probs.size(0), -1)  # shape: [A, K*V]
    values, flat = totals.topk(min(2 * search.beam_size, totals.size(1)), dim=1)  # shape: [A, 2K]
    return _Candidates(values, flat // vocab, flat % vocab)


def _first_non_eos(tokens: Tensor, search: _Search) -> Tensor:
    """Indices [A, K] of the first K candidates, in rank order, that do not end at EOS."""
    return (tokens == search.eos).int().sort(dim=1, stable=True).indices[:, : search.beam_size]


def _extend(history: Tensor | None, attention: Tensor | None, index: Tensor) -> Tensor | None:
    """Attention rows of the rows ``index`` with this step's row appended: [len(index), t + 1, src_len]."""
    if attention is None:
        return None
    new = attention[index].unsqueeze(1)  # shape: [R, 1, src_len]
    return new if history is None else torch.cat([history[index], new], dim=1)


def _retire(search: _Search, beams: _Beams, top: _Candidates, live: _Candidates, at_limit: Tensor, attention):
    """Move complete hypotheses to ``search.finished``.

    Complete: each of the best K candidates ``top`` [A, K] that ends at EOS (as in fairseq, so beam 1 is
    greedy), and every live beam ``live`` [A, K] of a sentence ``at_limit`` [A] (its max_len).
    """
    ends_at_eos = (top.tokens == search.eos) & (top.values > NEG_INF)  # shape: [A, K]
    cut = at_limit.unsqueeze(1) & (live.values > NEG_INF)  # shape: [A, K]
    # (a, k, 0) the EOS candidate k of sentence a, (a, k, 1) its live beam k: the order they are added in
    found = torch.stack([ends_at_eos, cut], dim=2).nonzero()  # shape: [F, 3]
    if found.size(0) == 0:
        return
    a, k, is_cut = found.unbind(1)
    chosen = _Candidates(
        *(torch.where(is_cut.bool(), b[a, k], c[a, k]) for b, c in zip(live, top, strict=True))
    )
    rows = a * search.beam_size + chosen.parents  # shape: [F], the flat row each hypothesis extends
    histories = _extend(beams.attention, attention, rows)  # shape: [F, t + 1, src_len] or None
    length = beams.inputs.size(1)  # generated tokens, this step's included
    prefixes = beams.inputs[rows, 1:].tolist()
    sentences, values, tokens = beams.sentences[a].tolist(), chosen.values.tolist(), chosen.tokens.tolist()
    for i, (sentence, value, token) in enumerate(zip(sentences, values, tokens, strict=True)):
        hypothesis = prefixes[i] + ([] if token == search.eos else [token])
        attention_rows = None if histories is None else histories[i]
        search.add(sentence, _Finished(value / search.penalty(length), value, hypothesis, attention_rows))


def _advance(beams: _Beams, live: _Candidates, keep: Tensor, flat_index: Tensor, attention: Tensor | None):
    """The next beams: the live extensions [A', K] of the sentences ``keep`` [A'] still searched."""
    inputs = torch.cat([beams.inputs[flat_index], live.tokens[keep].reshape(-1, 1)], dim=1)  # [A'*K, t+2]
    history = _extend(beams.attention, attention, flat_index)  # shape: [A'*K, t+1, src_len]
    return _Beams(beams.sentences[keep], live.values[keep], inputs, history)


def _collect(finished: list[list[_Finished]]) -> Hypotheses:
    with_attention = any(h.attention is not None for hyps in finished for h in hyps)
    return Hypotheses(
        tokens=[[h.tokens for h in hyps] for hyps in finished],
        scores=[[h.score for h in hyps] for hyps in finished],
        log_probs=[[h.log_prob for h in hyps] for hyps in finished],
        attention=[[h.attention for h in hyps] for hyps in finished] if with_attention else None,
    )


def beam_search(
    model: Any,
    state: State,
    first: Tensor,
    *,
    beam_size: int,
    max_len: int | Tensor,
    eos: int,
    nbest: int = 1,
    alpha: float = 0.0,
    length_norm: bool = False,
    min_len: int = 0,
    no_repeat_ngram: int = 0,
) -> Hypotheses:
    """Beam search over sentences x beams for ``first`` [B]; up to ``nbest`` hypotheses per sentence.

    Ranking score: the summed log-prob, divided by ((5 + len) / 6) ** alpha (GNMT) or by len (length_norm),
    len counting generated tokens with EOS. ``no_repeat_ngram`` = n bans any token that would repeat an
    n-gram of ``first`` + the hypothesis. ``state`` is for batch B; ``model.reorder`` expands it to B*K
    rows, sentence-major (a model may keep what is per sentence, like an encoder's memory, at B rows).
    """
    limits = _limits(max_len, first.size(0), first.device)  # shape: [B]
    finished: list[list[_Finished]] = [[] for _ in range(first.size(0))]
    search = _Search(beam_size, eos, nbest, alpha, length_norm, min_len, no_repeat_ngram, limits, finished)
    with torch.inference_mode():
        expand = torch.arange(first.size(0), device=first.device).repeat_interleave(beam_size)  # [B*K]
        state, beams = model.reorder(state, expand), _start_beams(first, beam_size)
        for step in range(int(limits.max()) if limits.numel() else 0):
            log_probs, state = model.step(beams.inputs[:, -1], state)  # shape: [A*K, V]
            attention = _attention_of(state)  # shape: [A*K, src_len] or None
            candidates = _top_candidates(log_probs, beams, search)  # shape: [A, 2K] each
            live = candidates.take(_first_non_eos(candidates.tokens, search))  # shape: [A, K] each
            top = _Candidates(*(field[:, :beam_size] for field in candidates))  # shape: [A, K] each
            at_limit = limits[beams.sentences] <= step + 1  # shape: [A]
            _retire(search, beams, top, live, at_limit, attention)
            done = at_limit | search.cannot_improve(beams.sentences, live.values[:, 0])  # shape: [A]
            keep = (~done).nonzero().squeeze(1)  # shape: [A']
            if keep.numel() == 0:
                break
            flat_index = (keep.unsqueeze(1) * beam_size + live.parents[keep]).flatten()  # shape: [A'*K]
            state = model.reorder(state, flat_index)
            beams = _advance(beams, live, keep, flat_index, attention)
    return _collect(finished)
