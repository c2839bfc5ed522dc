"""Seconds per epoch of an organism network on the digits task (one CPU thread).

    OMP_NUM_THREADS=1 python bench/organism.py                   # hosts 64 -> {160, 1024} -> 10
    OMP_NUM_THREADS=1 python bench/organism.py --hidden 160 --exact

One epoch = every batch of 64 of the digits train split (1,258 images): the host's forward through
every particle, cross entropy + the summed replication loss of all particles, backward, SGD step.
The same loop the OrganismModule runs, without Lightning's per-step overhead (about 0.5 ms a step).
"""
from __future__ import annotations

import argparse
import time

import torch

from nsr.organism import Organism
from nsr.tasks import Digits


def epoch_seconds(hidden: int, exact: bool, epochs: int = 3) -> tuple[int, list[float]]:
    torch.set_num_threads(1)
    task = Digits()
    x, y = task.data("train")
    org = Organism([64, hidden, 10], exact=exact)
    w = torch.nn.Parameter(org.init(generator=torch.Generator().manual_seed(0)))
    opt = torch.optim.SGD([w], lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(len(y), generator=g)
        for b in range(0, len(y), 64):
            idx = perm[b:b + 64]
            loss = task.loss(org.forward(w, x[idx])[None], y[idx])[0] + org.replication_loss(w).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return org.num_particles, times


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, nargs="+", default=[160, 1024])
    p.add_argument("--exact", action="store_true", help="evaluate every particle network (no gain shortcut)")
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    print("| host | particles | path | seconds per epoch (each of %d) |" % args.epochs)
    print("|---|---|---|---|")
    for h in args.hidden:
        for exact in ([args.exact] if args.exact else [False, True]):
            P, t = epoch_seconds(h, exact, args.epochs)
            print(f"| 64 -> {h} -> 10 | {P} | {'every particle evaluated' if exact else 'linear gains'} | "
                  + ", ".join(f"{s:.2f}" for s in t) + " |", flush=True)
