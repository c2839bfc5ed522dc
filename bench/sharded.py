"""A population of single replicators sharded over CPU processes: epoch time and communication.

    python bench/sharded.py                                   # P = 10^6 weightwise, 1 and 2 processes
    python bench/sharded.py --population 100000 --epochs 4 --devices 1 2 3 --json sharded.json

For each device count R it runs ``ReplicatorModule`` under Lightning with ``PopulationStrategy``
(what ``nsr fit --config configs/weightwise.yaml --trainer.devices R`` uses; gloo on CPU, one thread
per process), batch size 1, shuffled, and ``FixpointMonitor`` measuring the population every epoch
(class shares and loss, reduced over the ranks). Per rank it counts the bytes of every tensor handed
to a ``torch.distributed`` collective (all_reduce, all_gather, broadcast, ...; objects as their
pickled size), per epoch and for one checkpoint written at the end (the whole population gathered).

Columns: ``epoch s`` the median wall time of an epoch after the first (self-training of this
process's slice plus the fixpoint measurement), ``train s`` the median time of ``training_step``
alone on the slowest rank, ``speed-up`` against one process, ``bytes/epoch`` sent per rank and
epoch, ``checkpoint bytes`` sent per rank to write one checkpoint. The run is bit-identical on any
R (tests/test_replicator_distributed.py), so only the time and the bytes differ.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time

DDP_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "GLOBAL_RANK", "RANK", "MASTER_ADDR", "MASTER_PORT")
COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "reduce_scatter", "broadcast", "reduce",
               "gather", "scatter", "all_gather_object", "broadcast_object_list", "gather_object")


def _size(x) -> int:
    import torch

    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if isinstance(x, (list, tuple)):
        return sum(_size(v) for v in x)
    return 0


class ByteCounter:
    """Counts the bytes this process hands to ``torch.distributed`` collectives (the tensor it
    contributes; an object as its pickled size)."""

    def __init__(self):
        import torch.distributed as dist

        self.bytes = 0
        for name in COLLECTIVES:
            fn = getattr(dist, name, None)
            if fn is None:
                continue
            setattr(dist, name, self._wrap(name, fn))

    def _wrap(self, name, fn):
        def counted(*args, **kwargs):
            if name.endswith("_object") or name == "broadcast_object_list":
                obj = args[0] if name != "all_gather_object" else args[1]
                self.bytes += len(pickle.dumps(obj))
            elif name in ("all_gather", "gather"):
                self.bytes += _size(args[1] if len(args) > 1 else kwargs.get("tensor"))
            elif name == "all_gather_into_tensor":
                self.bytes += _size(args[1])
            else:
                self.bytes += _size(args[0] if args else kwargs.get("tensor"))
            return fn(*args, **kwargs)

        return counted


def worker(args) -> None:
    """One run on ``args.devices`` processes (Lightning's launcher starts this script again for the
    other ranks); rank 0 writes the measurements to ``args.out``."""
    import warnings

    import lightning as L
    import torch
    from lightning.pytorch.callbacks import Callback

    from nsr.callbacks import FixpointMonitor
    from nsr.data import SelfReplicationDataModule
    from nsr.modules import ReplicatorModule
    from nsr.modules.strategy import PopulationStrategy
    from nsr.replicators import Weightwise

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    counter = ByteCounter()

    class Timer(Callback):
        def __init__(self):
            self.epochs, self.train, self.bytes = [], [], []

        def on_train_epoch_start(self, trainer, pl_module):
            self.t, self.b = time.perf_counter(), counter.bytes

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.s = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.train.append(time.perf_counter() - self.s)

    class EpochEnd(Callback):  # after FixpointMonitor: the epoch includes the measurement
        def on_train_epoch_end(self, trainer, pl_module):
            timer.epochs.append(time.perf_counter() - timer.t)
            timer.bytes.append(counter.bytes - timer.b)

    timer = Timer()
    module = ReplicatorModule(Weightwise(), population=args.population, seed=0)
    trainer = L.Trainer(accelerator="cpu", devices=args.devices, strategy=PopulationStrategy(), max_epochs=args.epochs,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0,
                        callbacks=[timer, FixpointMonitor(every_n_epochs=1, summary=False), EpochEnd()])
    trainer.fit(module, datamodule=SelfReplicationDataModule())
    before = counter.bytes
    with tempfile.TemporaryDirectory() as tmp:
        trainer.save_checkpoint(os.path.join(tmp, "last.ckpt"))  # every rank gathers; rank 0 writes
    checkpoint_bytes = counter.bytes - before
    train = torch.tensor(timer.train[1:] or timer.train, dtype=torch.float64)
    train = trainer.strategy.reduce(train, reduce_op="max")  # the slowest rank sets the pace
    if trainer.is_global_zero:
        rest = timer.epochs[1:] or timer.epochs
        with open(args.out, "w") as f:
            json.dump({"devices": args.devices, "population": args.population, "epochs": args.epochs,
                       "epoch_s": statistics.median(rest), "train_s": float(train.median()),
                       "bytes_per_epoch": int(statistics.median(timer.bytes[1:] or timer.bytes)),
                       "checkpoint_bytes": checkpoint_bytes, "epoch_times": timer.epochs}, f)


def run(devices: int, population: int, epochs: int, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "row.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--devices", str(devices), "--population",
               str(population), "--epochs", str(epochs), "--out", out]
        env = {k: v for k, v in os.environ.items() if k not in DDP_VARIABLES}
        env["OMP_NUM_THREADS"] = "1"
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{devices} processes failed:\n{proc.stderr[-3000:]}")
        with open(out) as f:
            return json.load(f)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--population", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(argparse.Namespace(**{**vars(args), "devices": args.devices[0]}))
    rows = [run(R, args.population, args.epochs, args.timeout) for R in args.devices]
    base = rows[0]["epoch_s"] * rows[0]["devices"]
    print(f"weightwise (2, 2), P = {args.population:,}, batch size 1, gloo, one thread per process, "
          f"{os.cpu_count()} CPUs on this machine")
    print(f"{'processes':>9}{'epoch s':>10}{'train s':>10}{'speed-up':>10}{'bytes/epoch':>13}{'checkpoint bytes':>18}")
    for r in rows:
        r["speedup"] = base / rows[0]["devices"] / r["epoch_s"]
        print(f"{r['devices']:>9}{r['epoch_s']:>10.3f}{r['train_s']:>10.3f}{r['speedup']:>10.2f}"
              f"{r['bytes_per_epoch']:>13,}{r['checkpoint_bytes']:>18,}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
