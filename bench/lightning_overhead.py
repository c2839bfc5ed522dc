"""Lightning's overhead: epochs per second of `nsr fit` against `nsr.training.self_train`.

    python bench/lightning_overhead.py                       # P = 1 and 10^4, one thread
    python bench/lightning_overhead.py --populations 1 50 10000 --epochs 300 300 20 --json overhead.json

For each population size P it times, on the same weightwise (2, 2) replicators:
- ``self_train``: the pure function, ``epochs`` epochs of batch-size-1 SGD;
- ``fit (config)``: ``nsr fit --config configs/weightwise.yaml`` as shipped (fixpoint scalars every
  epoch, trajectories every 10, ``last.ckpt`` written every epoch, TensorBoard);
- ``fit (bare)``: the same run with no logger, checkpoints or per-epoch callbacks: Lightning's
  loop alone (the data module's snapshot and one training_step per epoch).
Only the epochs are timed (``on_train_start`` to the end of the last epoch); ``total s`` adds
start-up (imports, config parsing) and the figures and robustness probe drawn at the end. The module runs each epoch in one ``training_step``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time

import torch
from lightning.pytorch.callbacks import Callback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "weightwise.yaml")


class LoopTimer(Callback):
    """Wall time of the epochs: from the start of training to the end of the last epoch, so the
    figures and the robustness probe drawn once at the end are left out (kept on the class: the
    CLI builds the instance)."""

    seconds = float("nan")

    def on_train_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        type(self).seconds = time.perf_counter() - self.start


sys.modules.setdefault("lightning_overhead", sys.modules[__name__])  # class_path below finds this module

def time_self_train(P: int, epochs: int) -> float:
    from nsr.replicators import Weightwise
    from nsr.training import self_train

    rep = Weightwise()
    g = torch.Generator().manual_seed(0)
    w = rep.init(P, generator=g)
    self_train(rep, w, epochs=1, generator=g)  # warm-up
    start = time.perf_counter()
    self_train(rep, w, epochs=epochs, generator=g)
    return time.perf_counter() - start


def time_fit(P: int, epochs: int, bare: bool) -> tuple[float, float]:
    """(training-loop seconds, total seconds) of `nsr fit` run in-process in a scratch folder."""
    from nsr import cli

    args = ["fit", "--config", CONFIG, "--model.init_args.population", str(P), "--trainer.max_epochs", str(epochs),
            "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]
    if bare:
        # the fixpoint monitor measures only the last epoch (nsr fit adds one when a config has none)
        args += ["--trainer.callbacks", "[{class_path: nsr.callbacks.FixpointMonitor, init_args: {every_n_epochs: %d}}]"
                 % (epochs + 1), "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
                 "--trainer.check_val_every_n_epoch", str(epochs + 1)]
    args += ["--trainer.callbacks+=lightning_overhead.LoopTimer"]
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                status = cli.main(args)
            total = time.perf_counter() - start
        finally:
            os.chdir(cwd)
    if status:
        raise RuntimeError(f"nsr fit failed with status {status}")
    return LoopTimer.seconds, total


def measure(P: int, epochs: int) -> list[dict]:
    """Rows ``{"case", "P", "epochs", "seconds", "epochs_per_s", "ratio_vs_self_train", "total_s"}``."""
    ref = time_self_train(P, epochs)
    rows = [{"case": "self_train", "P": P, "epochs": epochs, "seconds": ref, "total_s": ref}]
    for name, bare in (("fit (bare)", True), ("fit (config)", False)):
        loop, total = time_fit(P, epochs, bare)
        rows.append({"case": name, "P": P, "epochs": epochs, "seconds": loop, "total_s": total})
    for r in rows:
        r["epochs_per_s"] = epochs / r["seconds"]
        r["ratio_vs_self_train"] = ref / r["seconds"]
        r["particle_steps_per_s"] = P * 14 * epochs / r["seconds"]
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--populations", type=int, nargs="+", default=[1, 10_000])
    parser.add_argument("--epochs", type=int, nargs="+", default=[300, 20], help="one per population")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if len(args.epochs) != len(args.populations):
        parser.error("--epochs needs one value per population")
    torch.set_num_threads(args.threads)
    rows = []
    for P, epochs in zip(args.populations, args.epochs):
        rows += measure(P, epochs)
    print(f"torch {torch.__version__}, {args.threads} thread(s), weightwise(2, 2), batch size 1")
    print(f"{'case':<14}{'P':>8}{'epochs':>8}{'loop s':>9}{'epochs/s':>10}{'vs self_train':>15}{'total s':>9}")
    for r in rows:
        print(f"{r['case']:<14}{r['P']:>8}{r['epochs']:>8}{r['seconds']:>9.2f}{r['epochs_per_s']:>10.1f}"
              f"{r['ratio_vs_self_train']:>15.2f}{r['total_s']:>9.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
