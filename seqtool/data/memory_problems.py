"""The synthetic long-dependency problems, generated from a numpy Generator: adding and copy-memory.

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
