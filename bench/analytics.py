"""What soup analytics cost: each metric of LineageRecorder and SpeciesMonitor per generation, next to
the generation itself, at 10^4, 10^5 and 10^6 particles; and the memory of a phylogeny per generation.

    python bench/analytics.py                          # P = 10^4, 10^5, 10^6; the cheap soup (train 1)
    python bench/analytics.py --soup paper --sizes 100000   # configs/soup.yaml's soup (train 20)
    python bench/analytics.py --sizes 10000 --json analytics.json

Soups (weightwise 2x2, attack 0.1, respawn of divergent and zero particles): ``cheap`` (learn_from
0.1 x 1 epoch, 1 self-training epoch per generation: the soup of bench/RESULTS.md's generation
rows) and ``paper`` (configs/soup.yaml: learn_from 0.05 x 5 epochs, 20 self-training epochs);
``--train`` overrides the self-training epochs. After ``--warmup`` generations, ``--generations``
generations are made once; the generation time is the best of ``--repeats`` remakes of the first
of them; then both callbacks (phylogeny on, genome species; again with function species) run
through those generations as a run calls them, ``--repeats`` times, and every piece is timed inside
that pipeline (per generation, the best mean over the repeats). One process (``whole`` shard), one
thread.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections import defaultdict

import torch

import nsr.callbacks.analytics as analytics
from nsr.callbacks import LineageRecorder, SpeciesMonitor
from nsr.lineage import Phylogeny
from nsr.replicators import Weightwise
from nsr.soup import generation_step, initial_state, whole
from nsr.species import SpeciesRegistry

SOUPS = {"cheap": dict(attacking_rate=0.1, learn_from_rate=0.1, learn_from_severity=1, train=1, remove_zero=True),
         "paper": dict(attacking_rate=0.1, learn_from_rate=0.05, learn_from_severity=5, train=20, remove_zero=True)}

# the pieces timed inside the callbacks: (owner, attribute, row name)
PIECES = ((Phylogeny, "record_events", "phylogeny: record a generation"),
          (Phylogeny, "metrics", "lineage metrics (MRCA, richness, length)"),
          (SpeciesMonitor, "species_keys", "species keys (sample)"),
          (SpeciesRegistry, "assign", "stable species ids (registry)"),
          (analytics, "sampled_diversity", "diversity + standard errors"),
          (analytics, "higher_order_entropy", "higher-order entropy (zlib)"))


class _Trainer:
    def __init__(self):
        self.current_epoch, self.max_epochs, self.loggers = 0, None, []
        self.callback_metrics, self.progress_bar_metrics, self.is_global_zero, self.log_dir = {}, {}, True, None


class _Soup:
    time_unit = "generation"

    def __init__(self, rep, state, events):
        self.replicator, self.state, self.events, self.shard = rep, state, events, whole(state.weights.shape[0])

    population = property(lambda self: self.state.weights)
    generation = property(lambda self: self.state.generation)

    def gather_particle_ids(self):
        return self.state.ids

    def gather_population(self):
        return self.state.weights


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run_callbacks(rep, states, events, species_by, clock):
    """Both callbacks through the generations ``states[1:]`` (``states[0]`` is where they start), as
    a run calls them; returns seconds per generation of (both, LineageRecorder, SpeciesMonitor)."""
    rec, mon = LineageRecorder(phylogeny=True), SpeciesMonitor(by=species_by)
    module, trainer = _Soup(rep, states[0], {}), _Trainer()
    rec.on_train_start(trainer, module)
    mon.measure(module)  # generation 0, as on_train_start does
    clock.clear()
    t_rec = t_mon = 0.0
    for state, ev in zip(states[1:], events):
        t0 = time.perf_counter()
        rec.on_train_batch_start(trainer, module, None, 0)
        module.state, module.events = state, ev
        rec.on_train_batch_end(trainer, module, None, None, 0)
        t1 = time.perf_counter()
        mon.on_train_epoch_end(trainer, module)
        t2 = time.perf_counter()
        t_rec, t_mon = t_rec + t1 - t0, t_mon + t2 - t1
        trainer.current_epoch += 1
    n = len(events)
    return (t_rec + t_mon) / n, t_rec / n, t_mon / n, rec.phylogeny, {k: v / n for k, v in clock.items()}


def bench_size(P, args):
    rep = Weightwise()
    step = dict(SOUPS[args.soup], **({} if args.train is None else {"train": args.train}))
    state = initial_state(rep, P, seed=0)
    for _ in range(args.warmup):
        state, _ = generation_step(rep, state, seed=0, **step)
    states, events = [state], []
    for _ in range(args.generations):
        s, ev = generation_step(rep, states[-1], seed=0, **step)
        states.append(s)
        events.append(ev)
    t_gen = best(lambda: generation_step(rep, states[0], seed=0, **step), args.repeats)

    clock = defaultdict(float)
    # (an older nsr without some piece, e.g. PYTHONPATH=<old checkout>/src for a before/after, times the rest)
    present = [p for p in PIECES if hasattr(p[0], p[1])]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in present]
    for (owner, name, fn), (_, _, row) in zip(originals, present):
        def timed(*a, _fn=fn, _row=row, **k):
            t0 = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                clock[_row] += time.perf_counter() - t0
        setattr(owner, name, functools.wraps(fn)(timed))
    try:
        out = {}
        for by in ("genome", "function"):
            runs = [run_callbacks(rep, states, events, by, clock) for _ in range(args.repeats)]
            out[by] = min(runs, key=lambda r: r[0])
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)
    t_cb, t_rec, t_mon, ph, pieces = out["genome"]
    pieces = {r: pieces.get(r, 0.0) for _, _, r in PIECES}
    rows = {"generation": t_gen, **pieces}
    rows["survival, births, parent distance (rest of LineageRecorder)"] = (
        t_rec - pieces["phylogeny: record a generation"] - pieces["lineage metrics (MRCA, richness, length)"])
    rows["pairwise distance, sampling, species survival (rest of SpeciesMonitor)"] = t_mon - sum(
        pieces[r] for _, _, r in PIECES[2:])
    rows["LineageRecorder"], rows["SpeciesMonitor (genome species)"] = t_rec, t_mon
    rows["species keys (sample, function, 2 probes)"] = out["function"][4].get("species keys (sample)", 0.0)
    births = sum(int((ev["attack_source"] >= 0).sum() + ev["respawn_mask"].sum()) for ev in events) / len(events)
    per_node = ph.memory_bytes() / ph._cols["ancestor"].shape[0]
    return rows, {"P": P, "generation_s": t_gen, "callbacks_s": t_cb, "overhead": t_cb / t_gen,
                  "callbacks_function_s": out["function"][0], "overhead_function": out["function"][0] / t_gen,
                  "births": births, "phylogeny_bytes_per_node": per_node,
                  "phylogeny_bytes_per_generation": births * per_node}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--soup", choices=sorted(SOUPS), default="cheap",
                   help="cheap: learn_from 0.1 x 1, train 1 (default); paper: configs/soup.yaml (train 20)")
    p.add_argument("--train", type=int, help="self-training epochs per generation (overrides the soup's)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--generations", type=int, default=3, help="generations the callbacks run through")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="write the rows to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = []
    for P in args.sizes:
        rows, summary = bench_size(P, args)
        print(f"\nP = {P:,} ({args.soup} soup): ms per generation, and share of the generation")
        print("| piece | ms | % of generation |\n|---|---|---|")
        for name, t in rows.items():
            print(f"| {name} | {1e3 * t:.1f} | {100 * t / rows['generation']:.1f} |")
        print(f"| **LineageRecorder + SpeciesMonitor (genome species)** | {1e3 * summary['callbacks_s']:.1f} | "
              f"{100 * summary['overhead']:.1f} |")
        print(f"| LineageRecorder + SpeciesMonitor (function species) | {1e3 * summary['callbacks_function_s']:.1f} | "
              f"{100 * summary['overhead_function']:.1f} |")
        print(f"phylogeny: {summary['births']:,.0f} births per generation, {summary['phylogeny_bytes_per_node']:.0f} bytes "
              f"per node (allocated) -> {summary['phylogeny_bytes_per_generation'] / 2**20:.2f} MiB per generation")
        out.append({**summary, "pieces_s": rows})
        sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"soup": args.soup, "train": args.train, "rows": out, "torch": torch.__version__, "cpu": os.cpu_count()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
