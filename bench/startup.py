"""Start-up of the ``nsr`` command: wall clock of the commands that should answer at once, beside
the cost of importing torch and Lightning on the same machine.

    python bench/startup.py            # 3 runs each, the median
    python bench/startup.py --runs 5

Each command runs in a fresh interpreter (``python -m nsr.cli ...``) from this checkout's sources.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ROWS = [
    ("python -c 'import torch'", [sys.executable, "-c", "import torch"]),
    ("python -c 'import torch, lightning'", [sys.executable, "-c", "import torch, lightning"]),
    ("nsr --help", ["--help"]),
    ("nsr configs", ["configs"]),
    ("nsr fit (no config: the one-line hint)", ["fit"]),
    ("nsr experiment --help", ["experiment", "--help"]),
    ("nsr experiment training --help", ["experiment", "training", "--help"]),
    ("nsr experiment training --trials 0 (one-line error)", ["experiment", "training", "--trials", "0"]),
    ("nsr fit --config weightwise --model.init_args.lr nan (one-line error)",
     ["fit", "--config", "weightwise", "--model.init_args.lr", "nan"]),
]


def timed(argv: list[str], runs: int) -> tuple[float, float]:
    """(median, min) wall seconds of ``argv`` over ``runs`` fresh processes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = argv if argv[0] == sys.executable else [sys.executable, "-m", "nsr.cli", *argv]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True, timeout=300)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"| command | median s | min s |  ({args.runs} runs each, {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f})")
    print("|---|---|---|")
    for label, argv in ROWS:
        median, best = timed(argv, args.runs)
        print(f"| `{label}` | {median:.2f} | {best:.2f} |", flush=True)


if __name__ == "__main__":
    main()
