"""Count how the cases of tests/test_bad_inputs.py end, without asserting: exit 2 / 1 / 0 / other, and how
many pass every check of a refusal. `python -m tests.count_refusals [--verbose]` from the repository root
(about a minute); the issue's before/after figures are this script's output on the two commits."""

from __future__ import annotations

import collections
import os
import sys
import tempfile
from pathlib import Path

from tests.bad_inputs import check_refusal, outcome, outcome_subprocess, snapshot, train_runs
from tests.test_bad_inputs import CASES, Bench


def main() -> None:
    import torch

    torch.set_num_threads(1)
    verbose = "--verbose" in sys.argv
    root = Path(tempfile.mkdtemp(prefix="seqtool-refusals-"))
    runs = train_runs(root / "runs")
    codes: collections.Counter = collections.Counter()
    passed = skipped = 0
    for number, case in enumerate(CASES):
        if case.needs_non_root and os.geteuid() == 0:
            skipped += 1
            continue
        bench = Bench(runs, root / f"case-{number}")
        bench.tmp.mkdir()
        argv = case.argv(bench)
        protect = bench.protected()
        before = snapshot(protect)
        if case.subprocess:
            result = outcome_subprocess(argv, stdin=case.stdin, close_stdin=case.close_stdin,
                                        file_size_limit=case.file_size_limit)  # fmt: skip
        else:
            result = outcome(argv, stdin=case.stdin)
        codes[result.code] += 1
        try:
            check_refusal(result, case.match, before, protect)
            passed += 1
            verdict = "ok"
        except AssertionError as error:
            verdict = "FAIL " + str(error).splitlines()[0][:150]
        if verbose:
            last = result.lines()[-1][:150] if result.lines() else ""
            print(f"{case.id:<45} exit {result.code:<3} {verdict}\n    {last}", flush=True)
    shown = ", ".join(f"exit {code}: {count}" for code, count in sorted(codes.items()))
    print(f"{sum(codes.values())} cases run ({skipped} skipped: root), {shown}; "
          f"{passed} pass every check of a refusal")  # fmt: skip


if __name__ == "__main__":
    main()
