"""Where a soup generation's time goes: the phases of ``nsr.soup.generation_step`` timed separately.

    python bench/soup_phases.py                          # weightwise, P = 10^4, 10^5, 10^6, one thread
    python bench/soup_phases.py --sizes 10000000 --device cuda

A generation of the bench's soup (attack 0.1, learn_from 0.1 x 1 epoch, train 1, respawn) runs
through the real ``generation_step``, with the phase functions wrapped by timers:

- ``attack``: ``soup._attack_phase`` (who attacks whom, the attackers' self-applications);
- ``learn_from``: ``soup._learn_from_phase`` (who learns from whom, one epoch on the teachers' samples);
- ``train``: ``soup.self_train`` (one batch-size-1 epoch of every particle);
- ``respawn``: the rest of the generation (divergence test, fresh genomes, ids, statistics);
- ``randomness``: the keyed random numbers (``KeyedStream`` and the epochs' visiting orders),
  *inside* the phases above (a share of them, not a fifth phase).

Each phase's time is the best over ``--repeats`` generations, in CPU seconds (the time the
scheduler gave to this process: steadier than wall-clock time on a shared machine; on a GPU, wall
seconds after a synchronisation). ``torch_hash`` repeats the generation with the keyed streams
computed in torch alone (``nsr.random.use_native_hash(None)``), side by side: the same bits, the
speed before the hash moved to C.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

import torch

from nsr import soup
from nsr import random as keyed_random
from nsr.kernels import driver
from nsr.replicators import Weightwise

SOUP = dict(attacking_rate=0.1, learn_from_rate=0.1, learn_from_severity=1, train=1)
PHASES = ("attack", "learn_from", "train", "respawn", "randomness")


class PhaseClock:
    """Accumulated seconds per phase while installed (CPU time on CPU, synchronised wall time on GPUs)."""

    def __init__(self, device):
        self.device = device
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._depth = 0  # randomness nested in randomness (rand -> bits) counts once

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return time.perf_counter()
        return time.process_time()

    def wrap(self, phase: str, fn, nested: bool = False):
        def timed(*args, **kwargs):
            if nested and self._depth:
                return fn(*args, **kwargs)
            self._depth += nested
            start = self.now()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] += self.now() - start
                self._depth -= nested
        return timed

    @contextlib.contextmanager
    def installed(self):
        """Wrap the phase functions (and the keyed streams) while inside the block."""
        KS = keyed_random.KeyedStream
        patches = [(soup, "_attack_phase", "attack", False), (soup, "_learn_from_phase", "learn_from", False),
                   (soup, "self_train", "train", False), (driver, "epoch_order", "randomness", True),
                   (KS, "__init__", "randomness", True), (KS, "bits", "randomness", True),
                   (KS, "rand", "randomness", True)]
        saved = [(obj, name, getattr(obj, name)) for obj, name, _, _ in patches]
        try:
            for obj, name, phase, nested in patches:
                setattr(obj, name, self.wrap(phase, getattr(obj, name), nested))
            yield self
        finally:
            for obj, name, fn in saved:
                setattr(obj, name, fn)


def generation(rep, state, device) -> dict:
    """Seconds of one generation, per phase and in total."""
    clock = PhaseClock(device)
    with clock.installed():
        start = clock.now()
        soup.generation_step(rep, state, seed=0, **SOUP)
        total = clock.now() - start
    s = clock.seconds
    s["respawn"] = total - s["attack"] - s["learn_from"] - s["train"]
    return {**s, "total": total}


def measure(P: int, repeats: int = 3, device=torch.device("cpu"), torch_hash: bool = True) -> dict:
    """``{"P", "seconds": {phase: s, "total": s}, "torch_hash": {...}}``: the best of ``repeats``
    generations of a weightwise soup of P particles (past its first generation's respawns)."""
    rep = Weightwise()
    state = soup.initial_state(rep, P, seed=0, device=device)
    state = soup.generation_step(rep, state, seed=0, **SOUP)[0]

    def best() -> dict:
        runs = [generation(rep, state, device) for _ in range(repeats)]
        return {k: min(r[k] for r in runs) for k in runs[0]}

    row = {"P": P, "device": str(device), "seconds": best()}
    if torch_hash:
        impl = keyed_random.native_hash()
        keyed_random.use_native_hash(None)
        try:
            row["torch_hash"] = best()
        finally:
            keyed_random.use_native_hash(impl)
    return row


def text(row: dict) -> str:
    s = row["seconds"]
    out = (f"soup generation P={row['P']:<9} total {s['total']:.3f} s: "
           + ", ".join(f"{p} {s[p]:.3f}" for p in PHASES))
    if "torch_hash" in row:
        out += f"  (torch hash: total {row['torch_hash']['total']:.3f}, randomness {row['torch_hash']['randomness']:.3f})"
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-torch-hash", action="store_true", help="skip the generation with the torch hash")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for P in args.sizes:
        rows.append(measure(P, args.repeats, torch.device(args.device), not args.no_torch_hash))
        print(text(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
