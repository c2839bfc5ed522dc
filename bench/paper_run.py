"""The paper's run end to end: `nsr fit --config configs/weightwise.yaml` (50 weightwise
replicators, 1000 epochs, batch size 1) beside `python -c "import torch, lightning"`.

    python bench/paper_run.py                          # this checkout, 3 runs each, the best
    python bench/paper_run.py --trees . /path/to/other/checkout --runs 5

Each run is a fresh process in a scratch folder, one thread. Per run: wall clock and CPU time of
the whole process (user + system, of the child), and of its 1000-epoch loop (``on_train_start``
to the end of the last epoch: wall and the process's CPU time), epochs per second from both. The
machine is shared: the best of several runs and CPU times are steadier than one wall clock.
Several checkouts (``--trees``) are run in turn, round-robin, so that they see the same load.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from lightning.pytorch.callbacks import Callback

HERE = os.path.dirname(os.path.abspath(__file__))


class LoopTimer(Callback):
    """Wall and CPU seconds of the epochs (start of training to the end of the last epoch), and
    of the end of the fit; written as JSON to ``$NSR_LOOP_TIMES``."""

    def on_train_start(self, trainer, pl_module):
        self.start = (time.perf_counter(), time.process_time())
        self.loop = (float("nan"), float("nan"))

    def on_train_epoch_end(self, trainer, pl_module):
        self.loop = (time.perf_counter() - self.start[0], time.process_time() - self.start[1])
        self.loop_end = (time.perf_counter(), time.process_time())

    def on_fit_end(self, trainer, pl_module):
        end = (time.perf_counter() - self.loop_end[0], time.process_time() - self.loop_end[1])
        with open(os.environ["NSR_LOOP_TIMES"], "w") as f:
            json.dump({"epochs": trainer.current_epoch, "loop_wall": self.loop[0], "loop_cpu": self.loop[1],
                       "end_wall": end[0], "end_cpu": end[1]}, f)


def child_run(argv: list[str], env: dict, cwd: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode:
        raise RuntimeError(f"{argv} failed:\n{out.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", nargs="+", default=[os.path.dirname(HERE)], help="checkouts to compare")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="also write every run to this file")
    args = parser.parse_args(argv)
    args.trees = [os.path.abspath(t) for t in args.trees]
    rows = {t: [] for t in ["import"] + args.trees}
    for _ in range(args.runs):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
        with tempfile.TemporaryDirectory() as tmp:
            rows["import"].append(dict(zip(("wall", "cpu"), child_run(
                [sys.executable, "-c", "import torch, lightning"], env, tmp))))
        for tree in args.trees:
            tree = os.path.abspath(tree)
            with tempfile.TemporaryDirectory() as tmp:
                times = os.path.join(tmp, "loop.json")
                env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "NSR_LOOP_TIMES": times,
                       "PYTHONPATH": os.pathsep.join([os.path.join(tree, "src"), HERE])}
                wall, cpu = child_run([sys.executable, "-m", "nsr.cli", "fit", "--config",
                                       os.path.join(tree, "configs", "weightwise.yaml"),
                                       "--trainer.enable_progress_bar", "false",
                                       "--trainer.callbacks+=paper_run.LoopTimer"], env, tmp)
                with open(times) as f:
                    rows[tree].append({"wall": wall, "cpu": cpu, **json.load(f)})
    imp = rows.pop("import")
    best_imp = min(r["wall"] for r in imp), min(r["cpu"] for r in imp)
    print(f"{args.runs} runs each, best; load average {os.getloadavg()[0]:.1f}")
    print(f"| what | wall s | CPU s |\n|---|---|---|\n| `python -c \"import torch, lightning\"` | {best_imp[0]:.2f} | {best_imp[1]:.2f} |")
    for tree, rs in rows.items():
        b = {k: min(r[k] for r in rs) for k in rs[0]}
        name = os.path.relpath(tree)
        print(f"| `nsr fit --config configs/weightwise.yaml` ({name}): whole process | {b['wall']:.2f} | {b['cpu']:.2f} |")
        print(f"| ... beyond the import | {b['wall'] - best_imp[0]:.2f} | {b['cpu'] - best_imp[1]:.2f} |")
        print(f"| ... the 1000-epoch loop | {b['loop_wall']:.2f} ({b['epochs'] / b['loop_wall']:.0f} epochs/s) | "
              f"{b['loop_cpu']:.2f} ({b['epochs'] / b['loop_cpu']:.0f} epochs/s) |")
        print(f"| ... end of fit (probe, figures, summary) | {b['end_wall']:.2f} | {b['end_cpu']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"import": imp, **rows}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
