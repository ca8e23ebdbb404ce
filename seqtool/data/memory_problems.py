"""The synthetic long-dependency and memory problems, generated from a numpy Generator: adding,
copy-memory, and the Neural Turing Machine's copy and repeat-copy of bit vectors.

Adding (Hochreiter & Schmidhuber 1997; the layout of Le et al. 2015 and Arjovsky et al. 2016)::

    step:     0     1     2    ...   T/2   ...   T-1
    value:   0.31  0.87  0.02  ...  0.55   ...  0.14      ~ U[0, 1]
    marker:   0     1     0    ...   0      1    0        exactly two: one in [0, T/2), one in [T/2, T)
    target:  0.87 + (the value under the second marker)  one number per sequence (many-to-one)

Always predicting 1 (the mean of the target) scores MSE = Var(u + v) = 2 · 1/12 = 1/6.

Copy-memory (Arjovsky et al. 2016), length T + 20, tokens 0 = blank, 1..8 = symbols, 9 = delimiter::

    input:   s1 .. s10 | 0 × (T-1) | 9 | 0 × 10
    target:   0 × 10   | 0 × (T-1) | 0 | s1 .. s10          (one target per input step)

The delimiter comes T steps after the last symbol; the model must then recall all ten. Predicting blanks
and then uniform guesses over the 8 symbols scores 10 · ln 8 / (T + 20) nats per step.

NTM copy (Graves et al. 2014, §4.1): L random vectors of W bits, a delimiter on its own input channel,
then L blank steps in which the model must write the vectors back (scored steps: the last L)::

    input  [2L + 1, W + 1]:  v1 .. vL | delimiter (channel W) | 0 × L
    target [2L + 1, W]:       0 × L   |        0              | v1 .. vL

Repeat copy (§4.2): the vectors, then at the delimiter step the number of repeats R as a scalar on a
channel of its own (normalised to mean 0, variance 1 over 1..R_max, as in the paper); the model writes the
sequence R times and then an end marker on an extra output channel. Sequences of a batch share L but
not R, so the shorter ones are padded with blank steps that are not scored::

    input  [L + 2 + L·R_max', W + 2]:  v1 .. vL | delimiter + count | 0 ...
    target [.., W + 1]:                 0 × L   |        0          | (v1 .. vL) × R | end | 0 (padding)

A fair coin per output bit gets half the scored bits wrong: the chance baseline of both.
"""

from __future__ import annotations

import math

import numpy as np

BLANK = 0
COPY_LENGTH = 10  # symbols to remember
COPY_ALPHABET = 8  # tokens 1..8
DELIMITER = COPY_ALPHABET + 1  # 9
COPY_VOCAB = COPY_ALPHABET + 2  # blank, 8 symbols, delimiter
ADDING_TOLERANCE = 0.04  # a prediction "solves" an adding sequence within this absolute error


def adding(rng: np.random.Generator, count: int, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` adding sequences of `lag` steps: inputs [N, T, 2] (value, marker) and targets [N], float32."""
    if lag < 2:
        raise ValueError(f"the adding problem needs task.lag ≥ 2, got {lag}")
    values = rng.random((count, lag), dtype=np.float32)  # [N, T]
    half = lag // 2
    first = rng.integers(0, half, size=count)  # a marker in each half
    second = rng.integers(half, lag, size=count)
    markers = np.zeros((count, lag), dtype=np.float32)
    rows = np.arange(count)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]  # [N]
    return np.stack([values, markers], axis=2), targets.astype(np.float32)


def copy_memory(rng: np.random.Generator, count: int, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` copy-memory sequences of lag T: inputs and targets [N, T + 20], int64 tokens."""
    if lag < 1:
        raise ValueError(f"the copy problem needs task.lag ≥ 1, got {lag}")
    length = lag + 2 * COPY_LENGTH
    symbols = rng.integers(1, COPY_ALPHABET + 1, size=(count, COPY_LENGTH))  # [N, 10]
    inputs = np.full((count, length), BLANK, dtype=np.int64)
    targets = np.full((count, length), BLANK, dtype=np.int64)
    inputs[:, :COPY_LENGTH] = symbols
    inputs[:, lag + COPY_LENGTH - 1] = DELIMITER
    targets[:, -COPY_LENGTH:] = symbols
    return inputs, targets


def ntm_copy(rng: np.random.Generator, count: int, length: int, width: int) -> tuple[np.ndarray, ...]:
    """`count` copy sequences of `length` vectors of `width` bits: inputs [N, 2L + 1, W + 1],
    targets [N, 2L + 1, W] and the scored steps [N, 2L + 1] (bool), all float32 but the mask."""
    if length < 1 or width < 1:
        raise ValueError(f"the copy of bit vectors needs a length and a width ≥ 1, got {length}, {width}")
    vectors = rng.integers(0, 2, size=(count, length, width)).astype(np.float32)  # [N, L, W]
    steps = 2 * length + 1
    inputs = np.zeros((count, steps, width + 1), dtype=np.float32)
    targets = np.zeros((count, steps, width), dtype=np.float32)
    inputs[:, :length, :width] = vectors
    inputs[:, length, width] = 1.0  # the delimiter
    targets[:, length + 1 :] = vectors
    scored = np.zeros((count, steps), dtype=bool)
    scored[:, length + 1 :] = True
    return inputs, targets, scored


def repeat_copy(
    rng: np.random.Generator, count: int, length: int, width: int, max_repeats: int
) -> tuple[np.ndarray, ...]:
    """`count` repeat-copy sequences of `length` vectors, each repeated R ~ U{1..max_repeats} times:
    inputs [N, S, W + 2], targets [N, S, W + 1], scored steps [N, S] with S = L + 2 + L · (largest R)."""
    if min(length, width, max_repeats) < 1:
        raise ValueError("repeat copy needs a length, a width and task.max_repeats ≥ 1")
    vectors = rng.integers(0, 2, size=(count, length, width)).astype(np.float32)  # [N, L, W]
    repeats = rng.integers(1, max_repeats + 1, size=count)  # [N]
    steps = length + 2 + length * int(repeats.max())
    inputs = np.zeros((count, steps, width + 2), dtype=np.float32)
    targets = np.zeros((count, steps, width + 1), dtype=np.float32)
    scored = np.zeros((count, steps), dtype=bool)
    inputs[:, :length, :width] = vectors
    inputs[:, length, width] = 1.0  # the delimiter
    inputs[:, length, width + 1] = normalised_repeats(repeats, max_repeats)
    for row, times in enumerate(repeats):
        end = length + 1 + length * times  # the end marker's step
        targets[row, length + 1 : end, :width] = np.tile(vectors[row], (times, 1))
        targets[row, end, width] = 1.0
        scored[row, length + 1 : end + 1] = True
    return inputs, targets, scored


def normalised_repeats(repeats: np.ndarray, max_repeats: int) -> np.ndarray:
    """R as the paper feeds it: mean 0 and variance 1 over the uniform training range 1..R_max."""
    mean, variance = (max_repeats + 1) / 2, (max_repeats**2 - 1) / 12
    return ((repeats - mean) / math.sqrt(variance or 1.0)).astype(np.float32)


def adding_baseline_mse() -> float:
    """MSE of always predicting 1: Var(u + v) for independent u, v ~ U[0, 1]."""
    return 1.0 / 6.0


def copy_baseline_loss(lag: int) -> float:
    """Cross-entropy (nats per step) of predicting blanks, then uniform guesses for the 10 symbols."""
    return COPY_LENGTH * math.log(COPY_ALPHABET) / (lag + 2 * COPY_LENGTH)


def seeded(seed: int, stream: int, index: int) -> np.random.Generator:
    """An independent generator for batch `index` of stream `stream` (0 train, 1 val, 2 test): any batch
    can be regenerated from its index alone, which is what makes the train stream resumable."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream, index]))
