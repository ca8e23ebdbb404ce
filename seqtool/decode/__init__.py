"""Decoding: greedy, sampling and beam search over the incremental-decoder contract."""

from seqtool.decode.search import Hypotheses, beam_search, greedy, prime, sample

__all__ = ["Hypotheses", "beam_search", "greedy", "prime", "sample"]
