"""``nsr configs``, ``nsr inspect CKPT`` and ``nsr export CKPT``: shipped configs and checkpoints
without writing Python.

    nsr configs
    nsr inspect lightning_logs/version_0/checkpoints/last.ckpt
    nsr export lightning_logs/version_0/checkpoints/last.ckpt --format csv --out population.csv

``inspect`` prints the architecture, the epoch (generation for a soup), the population size, the
fixpoint class shares, the fixpoint distance and the config the run came from (``config.yaml`` of
its run folder, and the module's hyper-parameters). ``export`` writes the genomes ``[P, W]``, the
particle ids and their fixpoint classes as ``.npz`` (arrays ``genomes``, ``ids``, ``classes``,
``class_names``) or ``.csv`` (one row per particle: ``id,class,w0..w{W-1}``).
"""
from __future__ import annotations

import csv
import io
import math
import os

import argparse

from nsr.shipped_configs import describe, shipped_configs


class ToolParser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ...``, exit status 2)."""

    def error(self, message):
        self.exit(2, f"error: {message}\n")


def _parser(command: str) -> ToolParser:
    p = ToolParser(prog=f"nsr {command}")
    if command == "configs":
        p.description = "List the configs shipped with nsr; `nsr fit --config NAME` runs one."
        return p
    p.add_argument("ckpt", metavar="CKPT", help="a checkpoint written by nsr fit (e.g. .../checkpoints/last.ckpt)")
    if command == "inspect":
        p.description = ("What a checkpoint holds: architecture, epoch or generation, population size, fixpoint "
                         "class shares, fixpoint distance, and the config of the run it came from.")
    else:
        p.description = "Write a checkpoint's genomes, particle ids and fixpoint classes to a file."
        p.add_argument("--format", choices=("npz", "csv"), default="npz", help="file format (default npz)")
        p.add_argument("--out", default=None, help="output file (default: the checkpoint's name with the format's "
                                                   "suffix, in the current folder)")
    return p


def main(command: str, argv: list[str]) -> int:
    args = _parser(command).parse_args(argv)
    if command == "configs":
        for name, path in shipped_configs().items():
            print(f"{name:<20} {describe(path)}")
        print("\nrun one with `nsr fit --config NAME`; `nsr fit --config NAME --print_config` shows it resolved")
        return 0
    summary = describe_checkpoint(args.ckpt)
    if command == "inspect":
        print(format_inspection(summary))
        return 0
    out = args.out or os.path.splitext(os.path.basename(args.ckpt))[0] + "." + args.format
    export(summary, out, args.format)
    print(f"wrote {out}: {summary['population']} particles x {summary['num_weights']} weights")
    return 0


def describe_checkpoint(path) -> dict:
    """What :func:`nsr.checkpoint.read_checkpoint` finds in ``path``, measured: the replicator,
    genomes ``[P, W]``, ids, fixpoint classes and distances, epoch, run folder and config."""
    import torch

    from nsr.checkpoint import load_population, read_checkpoint
    from nsr.fixpoints import CLASS_NAMES, classify, distance

    ckpt = read_checkpoint(path)
    rep, w = load_population(path)
    entry, hparams = ckpt["nsr"], dict(ckpt.get("hyper_parameters") or {})
    ids = entry.get("ids")
    ids = torch.arange(w.shape[0]) if not isinstance(ids, torch.Tensor) else ids.long()
    epsilon = float(entry.get("epsilon", hparams.get("epsilon", 1e-4)))
    classes = classify(rep, w, epsilon, second_order=hparams.get("second_order", "orbit"))  # [P]
    d = distance(rep, w)  # [P]
    finite = torch.isfinite(d)
    run_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    config = os.path.join(run_dir, "config.yaml")
    counts = torch.bincount(classes, minlength=len(CLASS_NAMES)).tolist()
    return {
        "path": os.fspath(path), "kind": entry["kind"], "module": hparams.get("_class_path", ""),
        "replicator": rep, "num_weights": rep.num_weights, "population": int(w.shape[0]),
        "epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step"), "epochs_trained": _epochs_trained(ckpt),
        "generation": entry.get("generation"), "genomes": w, "ids": ids, "classes": classes, "epsilon": epsilon,
        "counts": dict(zip(CLASS_NAMES, counts)),
        "distance_mean": float(d[finite].mean()) if bool(finite.any()) else math.nan,
        "distance_max": float(d[finite].max()) if bool(finite.any()) else math.nan,
        "config": config if os.path.isfile(config) else None,
        "hyper_parameters": {k: v for k, v in hparams.items() if not k.startswith("_") and k != "replicator"},
    }


def _epochs_trained(ckpt: dict):
    """Epochs completed when the checkpoint was written (Lightning's fit-loop progress), or None."""
    try:
        return int(ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return None


def format_inspection(s: dict) -> str:
    """The text ``nsr inspect`` prints for :func:`describe_checkpoint`'s summary."""
    P = s["population"]
    if s["kind"] == "soup":
        when = f"generation {s['generation']}"
    else:
        epochs, steps = s.get("epochs_trained"), s["global_step"]
        if epochs is not None and steps is not None and epochs != steps:  # several training steps per epoch
            when = f"epoch {epochs} (epochs trained; {steps} training steps)"
        else:
            when = f"epoch {steps if steps is not None else '?'} (epochs trained)"
    shares = "  ".join(f"{n} {c / max(P, 1):.2f} ({c})" for n, c in s["counts"].items())
    if math.isnan(s["distance_mean"]):
        dist = "none finite (every particle diverged)"
    else:
        dist = f"mean {s['distance_mean']:.3g}, max {s['distance_max']:.3g} (finite particles; epsilon {s['epsilon']:g})"
    hp = ", ".join(f"{k}={v!r}" for k, v in s["hyper_parameters"].items())
    lines = [f"checkpoint:   {s['path']}",
             f"kind:         {s['kind']}" + (f" ({s['module']})" if s["module"] else ""),
             f"architecture: {s['replicator']!r}, {s['num_weights']} weights per genome",
             f"time:         {when}",
             f"population:   {P} particles",
             f"classes:      {shares}",
             f"distance:     {dist}",
             f"config:       {s['config'] or 'no config.yaml beside the checkpoint (its run folder)'}"]
    if hp:
        lines.append(f"module:       {hp}")
    return "\n".join(lines)


def export(s: dict, out: str, fmt: str) -> None:
    """Write the genomes, ids and classes of :func:`describe_checkpoint`'s summary to ``out``
    (``"npz"`` or ``"csv"``), atomically."""
    import numpy as np

    from nsr.atomic import write_atomically
    from nsr.fixpoints import CLASS_NAMES

    w, ids, classes = s["genomes"].numpy(), s["ids"].numpy(), s["classes"].numpy()
    if fmt == "npz":
        buf = io.BytesIO()
        np.savez(buf, genomes=w, ids=ids, classes=classes, class_names=np.array(CLASS_NAMES))
        write_atomically(out, lambda f: f.write(buf.getvalue()))
        return

    def write_csv(f):
        rows = csv.writer(f, lineterminator="\n")
        rows.writerow(["id", "class"] + [f"w{i}" for i in range(w.shape[1])])
        for pid, c, genome in zip(ids.tolist(), classes.tolist(), w.tolist()):
            rows.writerow([pid, CLASS_NAMES[c]] + [repr(float(x)) for x in genome])

    write_atomically(out, write_csv, "w", newline="")
