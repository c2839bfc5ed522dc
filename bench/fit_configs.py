"""``nsr fit`` end to end on every shipped config: wall clock, epochs per second, share in nsr's kernels.

    python bench/fit_configs.py                      # every configs/*.yaml as shipped (a few minutes)
    python bench/fit_configs.py --epochs 20          # each shrunk to 20 epochs (generations)
    python bench/fit_configs.py --configs weightwise soup --json fit.json

Each config runs in a fresh process (``python bench/fit_configs.py --child NAME``) exactly as
``nsr fit --config configs/NAME.yaml`` would, one thread, in a scratch folder, so the wall clock
includes the start-up (imports, config parsing) and the end of the run (figures, robustness
probe). In that process:

- ``loop_s``: the training loop, from ``on_train_start`` to the end of the last epoch (a callback);
  ``epochs_per_s`` = epochs / ``loop_s``;
- ``kernel_s``: the time inside nsr's kernels, i.e. the drivers ``nsr.kernels.train``, ``apply``
  and ``loss_and_grad`` (native or eager: every epoch, self-application and classification goes
  through them), wrapped by a timer; ``kernel_share`` = ``kernel_s`` / ``loop_s`` (classification
  and training inside the loop; the end-of-run probes are outside it).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time

START = time.perf_counter()
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SOUPS = ("soup", "mixed_soup", "learn_from_soup", "soup_trajectories")


def shipped() -> list[str]:
    return sorted(f[:-5] for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".yaml"))


class Clock:
    kernel_s = 0.0
    loop_start = loop_end = None
    epochs = 0
    kernel_at_end = 0.0


def _install_kernel_timer() -> None:
    """Wrap nsr's kernel drivers (module attributes, looked up at every call) with a timer."""
    from nsr import kernels

    def wrap(fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                Clock.kernel_s += time.perf_counter() - start
        return timed

    for name in ("train", "apply", "loss_and_grad"):
        setattr(kernels, name, wrap(getattr(kernels, name)))


def _loop_timer():
    from lightning.pytorch.callbacks import Callback

    class LoopTimer(Callback):
        def on_train_start(self, trainer, pl_module):
            Clock.loop_start, Clock.kernel_s = time.perf_counter(), 0.0

        def on_train_epoch_end(self, trainer, pl_module):
            Clock.loop_end, Clock.epochs = time.perf_counter(), trainer.current_epoch + 1
            Clock.kernel_at_end = Clock.kernel_s

    return LoopTimer


def child(name: str, epochs: int | None) -> dict:
    """Run ``nsr fit`` on config ``name`` in this process; the measurements."""
    import torch

    torch.set_num_threads(1)
    from nsr.kernels import build

    build.available()  # the native kernels built (or loaded from the cache) before anything is timed
    _install_kernel_timer()
    sys.modules.setdefault("fit_configs", sys.modules[__name__])
    globals()["LoopTimer"] = _loop_timer()
    from nsr import cli

    args = ["fit", "--config", os.path.join(ROOT, "configs", f"{name}.yaml"), "--trainer.enable_progress_bar", "false",
            "--trainer.callbacks+=fit_configs.LoopTimer"]
    if epochs:
        args += ["--trainer.max_epochs", str(epochs)]
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            status = cli.main(args)
    if status:
        raise SystemExit(f"nsr fit --config {name} failed with status {status}")
    loop = Clock.loop_end - Clock.loop_start
    return {"config": name, "epochs": Clock.epochs, "loop_s": loop, "epochs_per_s": Clock.epochs / loop,
            "kernel_s": Clock.kernel_at_end, "kernel_share": Clock.kernel_at_end / loop,
            "in_process_s": time.perf_counter() - START}


def measure(name: str, epochs: int | None = None, timeout: float = 1200) -> dict:
    """One config in a fresh process: its measurements plus ``wall_s``, the whole command's wall clock."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name] + (["--epochs", str(epochs)] if epochs else [])
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    wall = time.perf_counter() - start
    if res.returncode:
        raise RuntimeError(f"{name}: {res.stderr.strip()[-400:]}")
    row = json.loads(res.stdout.strip().splitlines()[-1])
    row["wall_s"] = wall
    return row


def text(r: dict) -> str:
    return (f"nsr fit {r['config']:<18} {r['epochs']:>5} epochs  wall {r['wall_s']:6.1f} s  loop {r['loop_s']:6.2f} s  "
            f"{r['epochs_per_s']:8.1f} epochs/s  in kernels {100 * r['kernel_share']:4.1f}% of the loop")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", help="names in configs/ (default: all)")
    parser.add_argument("--epochs", type=int, help="override max_epochs (default: as shipped)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.epochs)))
        return 0
    rows = []
    for name in args.configs or shipped():
        rows.append(measure(name, args.epochs))
        print(text(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
