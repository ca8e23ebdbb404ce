"""Built-in transduction tasks that need no data: copy, reverse, sort, addition, date normalisation.

Each generator maps a seeded ``random.Random`` to one (source, target) pair of plain strings, so the
same seed always gives the same data and a character tokenizer reads them as they are::

    copy       "cabd"                ->  "cabd"
    reverse    "cabd"                ->  "dbac"
    sort       "cabd"                ->  "abcd"
    addition   "123+45"              ->  "168"          (min/max length = digits per operand)
    dates      "3rd of March 1999"   ->  "1999-03-03"   (several surface forms; lengths do not apply)
"""

from __future__ import annotations

import datetime
import random
import string
from collections.abc import Callable

Pair = tuple[str, str]
KINDS = ("copy", "reverse", "sort", "addition", "dates")

MONTHS = [datetime.date(2000, month, 1).strftime("%B") for month in range(1, 13)]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
FIRST_DAY, LAST_DAY = datetime.date(1900, 1, 1).toordinal(), datetime.date(2099, 12, 31).toordinal()


def ordinal(day: int) -> str:
    """1st, 2nd, 3rd, 4th, ... 11th, 12th, 13th, ... 21st."""
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


# Each form writes one date the way people do; the target is always ISO 8601 (YYYY-MM-DD).
DATE_FORMS: list[Callable[[datetime.date], str]] = [
    lambda d: f"{ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",  # 3rd of March 1999
    lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",  # March 3, 1999
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",  # 3 March 1999
    lambda d: f"{MONTHS[d.month - 1][:3]} {d.day} {d.year}",  # Mar 3 1999
    lambda d: f"{d.day}.{d.month}.{d.year}",  # 3.3.1999 (day first, as in most of Europe)
    lambda d: f"{WEEKDAYS[d.weekday()]}, {d.day} {MONTHS[d.month - 1]} {d.year}",  # Wednesday, 3 March 1999
    lambda d: f"{MONTHS[d.month - 1].lower()} {ordinal(d.day)}, {d.year}",  # march 3rd, 1999
]


def date_pair(rng: random.Random) -> Pair:
    """A uniformly drawn date in 1900..2099 in a random surface form, and its ISO form."""
    date = datetime.date.fromordinal(rng.randint(FIRST_DAY, LAST_DAY))
    return rng.choice(DATE_FORMS)(date), date.isoformat()


def symbols_pair(kind: str, rng: random.Random, min_length: int, max_length: int, alphabet: int) -> Pair:
    """A random string over the first `alphabet` lowercase letters, and its copy / reversal / sort."""
    letters = string.ascii_lowercase[:alphabet]
    source = "".join(rng.choice(letters) for _ in range(rng.randint(min_length, max_length)))
    target = {"copy": source, "reverse": source[::-1], "sort": "".join(sorted(source))}[kind]
    return source, target


def addition_pair(rng: random.Random, min_digits: int, max_digits: int) -> Pair:
    """Two non-negative integers of min..max digits each (no leading zeros), and their sum."""

    def number() -> int:
        digits = rng.randint(min_digits, max_digits)
        return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)

    a, b = number(), number()
    return f"{a}+{b}", str(a + b)


def generate(
    kind: str, size: int, *, seed: int | str, min_length: int, max_length: int, alphabet: int = 10
) -> list[Pair]:
    """`size` pairs of the task `kind`; the same arguments always give the same pairs."""
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic task {kind!r}; choose one of {', '.join(KINDS)}")
    if not 1 <= min_length <= max_length:
        raise ValueError(
            f"synthetic lengths need 1 <= min_length <= max_length, got {min_length}..{max_length}"
        )
    if not 1 <= alphabet <= 26:
        raise ValueError(f"the synthetic alphabet has 1 to 26 letters, got {alphabet}")
    rng = random.Random(f"{kind}:{seed}")  # a string seed is hashed the same on every platform
    if kind == "dates":
        return [date_pair(rng) for _ in range(size)]
    if kind == "addition":
        return [addition_pair(rng, min_length, max_length) for _ in range(size)]
    return [symbols_pair(kind, rng, min_length, max_length, alphabet) for _ in range(size)]


def synthetic_splits(
    kind: str, sizes: dict[str, int], *, seed: int, min_length: int, max_length: int, alphabet: int
) -> dict[str, list[Pair]]:
    """Train/val/test pairs drawn with different seeds; val and test sources never occur in train."""
    splits, seen = {}, set()
    for name in ["test", "val", "train"]:  # the held-out splits first, so train can leave them out
        lengths = {"min_length": min_length, "max_length": max_length, "alphabet": alphabet}
        pairs = generate(kind, sizes[name], seed=f"{seed}:{name}", **lengths)
        splits[name] = [pair for pair in pairs if name != "train" or pair[0] not in seen]
        seen.update(source for source, _ in pairs)
    return {name: splits[name] for name in ("train", "val", "test")}
