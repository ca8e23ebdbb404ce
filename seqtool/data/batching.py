"""Token-budget batches of variable-length pairs: length bucketing, a curriculum, padding.

One training epoch, fully determined by (seed, epoch)::

    shuffle all pairs   ->  cut into buckets of `bucket_size` pairs  ->  sort each bucket by length
    ->  pack consecutive pairs while  (pairs in batch) x (longest side in batch) <= max_tokens
    ->  shuffle the order of the batches

Pairs of similar length share a batch (little padding), yet every epoch mixes them differently.
Under a curriculum (competence c < 1) a batch is instead one run of neighbours, from a random start,
among the easiest c-fraction of the pairs sorted by difficulty (Platanios et al. 2019).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def generator(*numbers: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of ints (e.g. seed, epoch): the same tuple, the same draws."""
    seed = 0
    for number in numbers:
        seed = (seed * 1_000_003 + int(number)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


def pack(order: list[int], sizes: list[int], max_tokens: int) -> list[list[int]]:
    """Cut `order` (pair indices) into consecutive batches of at most max_tokens padded tokens.

    sizes[i] is the longer side of pair i; a single pair over the budget still gets a batch of its own.
    """
    batches: list[list[int]] = []
    batch: list[int] = []
    longest = 0
    for index in order:
        longest_with = max(longest, sizes[index])
        if batch and longest_with * (len(batch) + 1) > max_tokens:
            batches.append(batch)
            batch, longest_with = [], sizes[index]
        batch.append(index)
        longest = longest_with
    if batch:
        batches.append(batch)
    return batches


def epoch_batches(
    sizes: list[int], max_tokens: int, bucket_size: int, draw: torch.Generator
) -> list[list[int]]:
    """The batches (lists of pair indices) of one epoch, in the order they are served; `draw` seeded
    from (seed, epoch) makes the epoch reproducible."""
    shuffled = torch.randperm(len(sizes), generator=draw).tolist()
    batches = []
    for start in range(0, len(shuffled), bucket_size):
        bucket = sorted(shuffled[start : start + bucket_size], key=lambda i: sizes[i])
        batches += pack(bucket, sizes, max_tokens)
    return [batches[i] for i in torch.randperm(len(batches), generator=draw).tolist()]


def curriculum_batch(
    easiest_first: list[int], sizes: list[int], *, competence: float, max_tokens: int, draw: torch.Generator
) -> list[int]:
    """One batch from the easiest ceil(competence x N) pairs: the neighbours of a random start, in
    difficulty order, up to max_tokens (so similar lengths still share a batch)."""
    pool = max(1, math.ceil(competence * len(easiest_first)))
    start = int(torch.randint(pool, (1,), generator=draw))
    # Upwards from the start to the end of the pool, then on downwards from just below the start.
    run = easiest_first[start:pool] + easiest_first[:start][::-1]
    return pack(run, sizes, max_tokens)[0]


def sorted_batches(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Evaluation batches: all pairs in length order (little padding), no shuffling."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return pack(order, lengths, max_tokens)


def pad(sequences: list[list[int]], pad_index: int) -> Tensor:
    """Right-pad token lists to one LongTensor. shape: [B, longest]"""
    longest = max(len(sequence) for sequence in sequences)
    batch = torch.full((len(sequences), longest), pad_index, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        batch[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return batch


class TrainStream:
    """The endless train stream of index batches, resumable from (epoch, cursor, drawn).

    With competence c < 1 a batch is a curriculum batch (the `drawn`-th one); at c = 1 it is this rank's
    next batch of the epoch plan. Under DDP rank r serves batches r, r + W, r + 2W, ... of each epoch,
    the same number on every rank so the ranks stay in step.
    """

    def __init__(
        self, sizes: list[int], easiest_first: list[int], *, max_tokens: int, bucket_size: int, seed: int,
        rank: int = 0, world_size: int = 1,
    ) -> None:  # fmt: skip
        self.sizes, self.easiest_first = sizes, easiest_first
        self.max_tokens, self.bucket_size, self.seed = max_tokens, bucket_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.cursor, self.drawn = 0, 0, 0
        self._plan: tuple[int, list[list[int]]] | None = None  # (epoch, this rank's batches)

    def next(self, competence: float) -> list[int]:
        """The next batch of pair indices at this curriculum competence."""
        if competence < 1.0:
            draw = generator(self.seed, 1, self.drawn, self.rank)
            self.drawn += 1
            return curriculum_batch(
                self.easiest_first, self.sizes, competence=competence, max_tokens=self.max_tokens, draw=draw
            )
        if self.cursor >= len(self.plan()):
            self.epoch, self.cursor = self.epoch + 1, 0
        self.cursor += 1
        return self.plan()[self.cursor - 1]

    def plan(self) -> list[list[int]]:
        """This rank's batches of the current epoch."""
        if self._plan is None or self._plan[0] != self.epoch:
            batches = epoch_batches(
                self.sizes, self.max_tokens, self.bucket_size, generator(self.seed, 0, self.epoch)
            )
            per_rank = max(1, len(batches) // self.world_size)
            mine = batches[self.rank :: self.world_size] or batches[:1]  # fewer batches than ranks: share one
            self._plan = (self.epoch, mine[:per_rank])
        return self._plan[1]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor, "drawn": self.drawn}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.cursor, self.drawn = int(state["epoch"]), int(state["cursor"]), int(state["drawn"])
