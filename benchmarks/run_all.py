"""Run every benchmark (benchmarks/*.py and benchmarks/peers/*.py) one after the other and gather their
results: each script's last JSON line, its command and wall time, into one JSON file and one Markdown table.

    cd /work/main && .venv/bin/python benchmarks/run_all.py [--device cuda] [--only NAME ...]
    (or: make bench, make bench DEVICE=cuda)

Writes benchmarks/results/bench-<device>.json and .md (--out to change the folder). A script that fails
(a missing optional dependency such as transformers, an error) is recorded with its last line of output
and the others still run; the exit status is 1 if any failed. QUICK holds each script's shortened
arguments, chosen so that the whole run takes under 10 minutes on the 2-core development CPU; a script
not listed runs with its own defaults. Every script runs with one CPU thread (--threads, OMP_NUM_THREADS):
on a shared machine two OpenMP threads that wait for each other can make a step ten times slower, and
the peer comparisons are quoted at one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"harness.py", "run_all.py"}
QUICK = {
    "char_rnn": ["--steps", "5", "--rounds", "3", "--warmup", "2"],
    "video": ["--steps", "3", "--rounds", "3", "--warmup", "1"],
    "captioner": ["--steps", "3", "--rounds", "3", "--warmup", "1"],
    "ntm": ["--steps", "5", "--rounds", "3", "--warmup", "1"],
    "attention": ["--steps", "2", "--rounds", "3"],
}
MACHINE_KEYS = {"device", "torch", "threads"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--only", nargs="+", default=None, help="names of the scripts to run (default: all)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder of bench-<device>.*")
    parser.add_argument("--timeout", type=float, default=300, help="seconds before a script is stopped")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads of every script (OMP_NUM_THREADS)"
    )
    return parser.parse_args()


def scripts() -> dict[str, Path]:
    """name -> path of every benchmark script: benchmarks/NAME.py, benchmarks/peers/NAME.py as peers/NAME."""
    found = {path.stem: path for path in sorted(HERE.glob("*.py")) if path.name not in NOT_BENCHMARKS}
    return found | {f"peers/{path.stem}": path for path in sorted((HERE / "peers").glob("*.py"))}


def run(name: str, path: Path, device: str, timeout: float, threads: int) -> dict[str, object]:
    """Run one script; its command, wall time and result (its last JSON line) or error (its last line)."""
    command = [sys.executable, str(path.relative_to(HERE.parent)), "--device", device, *QUICK.get(name, [])]
    print(f"--- {name}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    try:
        env = os.environ | {"OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(
            command, cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=timeout
        )
        output, failed = done.stdout, done.returncode != 0
        last_error = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    except subprocess.TimeoutExpired:
        output, failed, last_error = "", True, f"stopped after {timeout:.0f} s"
    wall_s = round(time.perf_counter() - started, 1)
    entry: dict[str, object] = {"command": " ".join(["python", *command[1:]]), "wall_s": wall_s}
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if failed or not lines:
        entry["error"] = last_error
    else:
        entry["result"] = json.loads(lines[-1])
    print(f"    {entry.get('error') or 'ok'} ({entry['wall_s']} s)", flush=True)
    return entry


def markdown(report: dict[str, object]) -> str:
    """One row per script: command, wall time, its figures (the machine's are in the header)."""
    lines = [
        f"# Benchmarks on {report['device']} ({report['machine']})",
        "",
        f"`make bench{' DEVICE=cuda' if report['device'] == 'cuda' else ''}` at commit {report['commit']}, "
        f"{report['date']}; total wall time {report['wall_s']} s.",
        "",
        "| benchmark | command | wall time | figures |",
        "|---|---|---|---|",
    ]
    for name, entry in report["benchmarks"].items():
        result = entry.get("result")
        figures = (
            f"failed: {entry['error']}"
            if result is None
            else "; ".join(f"{key} {value}" for key, value in result.items() if key not in MACHINE_KEYS)
        )
        lines.append(f"| {name} | `{entry['command']}` | {entry['wall_s']} s | {figures} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    chosen = {name: path for name, path in scripts().items() if args.only is None or name in args.only}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
    started = time.perf_counter()
    benchmarks = {
        name: run(name, path, args.device, args.timeout, args.threads) for name, path in chosen.items()
    }
    first = next((e["result"] for e in benchmarks.values() if "result" in e), {})
    report = {
        "device": args.device,
        "machine": ", ".join(f"{key} {first[key]}" for key in ("device", "torch") if key in first),
        "commit": commit.stdout.strip() or "unknown",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_s": round(time.perf_counter() - started, 1),
        "benchmarks": benchmarks,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"bench-{args.device}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {stem}.json and {stem}.md ({report['wall_s']} s)")
    sys.exit(1 if any("error" in entry for entry in benchmarks.values()) else 0)


if __name__ == "__main__":
    main()
