"""What soup analytics cost: each metric of LineageRecorder and SpeciesMonitor per generation, next to
the generation itself, at 10^4, 10^5 and 10^6 particles; and the memory of a phylogeny per generation.

    python bench/analytics.py                        # P = 10^4, 10^5, 10^6; soup of configs/soup.yaml
    python bench/analytics.py --sizes 10000 --train 1 --json analytics.json

The soup is configs/soup.yaml's (weightwise 2x2, attack 0.1, learn_from 0.05 x 5 epochs, ``--train``
self-training epochs per generation, respawn of divergent and zero particles). After ``--warmup``
generations, every measurement is the best of ``--repeats``: the generation (``generation_step``),
then each analytic piece on that generation's state and events, and both callbacks together as a
run calls them (``overhead`` = callbacks / generation). One process (``whole`` shard), one thread.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from nsr.callbacks import LineageRecorder, SpeciesMonitor
from nsr.lineage import Phylogeny, lineage_metrics
from nsr.replicators import Weightwise
from nsr.soup import generation_step, initial_state, whole
from nsr.species import (SpeciesRegistry, diversity, function_keys, genome_keys, higher_order_entropy,
                         pairwise_distance, probe_genomes, quantise_bytes, sample_indices, sample_pairs)


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


def bench_size(P, args):
    rep = Weightwise()
    step = dict(attacking_rate=0.1, learn_from_rate=0.05, learn_from_severity=5, train=args.train, remove_zero=True)
    state = initial_state(rep, P, seed=0)
    for _ in range(args.warmup):
        state, events = generation_step(rep, state, seed=0, **step)
    prev = state
    t_gen = best(lambda: generation_step(rep, prev, seed=0, **step), args.repeats)
    state, events = generation_step(rep, prev, seed=0, **step)
    w, src, dead = state.weights, events["attack_source"], events["respawn_mask"]
    rows = {"generation": t_gen}

    ph = Phylogeny(prev.ids)
    dist = torch.full((P,), float("nan"))
    rows["phylogeny: record a generation"] = best(
        lambda: Phylogeny.from_state_dict(ph.state_dict()).record_generation(src, dead, state.ids, events["learn_from_source"], dist),
        args.repeats)
    ph.record_generation(src, dead, state.ids, events["learn_from_source"], dist)
    rows["lineage metrics (MRCA, richness, length)"] = best(lambda: lineage_metrics(ph), args.repeats)
    hit = (src >= 0).nonzero()[:, 0]
    rows["parent distance + survival"] = best(
        lambda: (pairwise_distance(w[hit], prev.weights[src[hit]]).mean(), ((src < 0) & ~dead).double().mean()),
        args.repeats)
    rows["species keys (genome grid)"] = best(lambda: genome_keys(w, 1e-2), args.repeats)
    probes = probe_genomes(rep, 2, 0)
    rows["species keys (function, 2 probes)"] = best(lambda: function_keys(rep, w, probes, 1e-2), args.repeats)
    keys = genome_keys(w, 1e-2)
    reg = SpeciesRegistry()
    reg.assign(genome_keys(prev.weights, 1e-2), 0)

    def registry():
        r = SpeciesRegistry()
        r.load_state_dict({k: (v.clone() if torch.is_tensor(v) else v) for k, v in reg.state_dict().items()})
        return r.assign(keys, 1)

    rows["stable species ids (registry)"] = best(registry, args.repeats)
    sid = registry()
    rows["diversity (richness, Shannon, Simpson)"] = best(
        lambda: diversity(torch.unique(sid[sid >= 0], return_counts=True)[1]), args.repeats)
    pairs = sample_pairs(P, 4096, 0, 1)
    rows["pairwise distance (4096 pairs)"] = best(lambda: pairwise_distance(w[pairs[:, 0]], w[pairs[:, 1]]).mean(),
                                                  args.repeats)
    sample = sample_indices(P, 16384, 0, 1)
    rows["higher-order entropy (<= 16384 particles, zlib)"] = best(
        lambda: higher_order_entropy(quantise_bytes(w[sample])), args.repeats)

    def callbacks(species_by):
        rec, mon = LineageRecorder(phylogeny=True), SpeciesMonitor(by=species_by)
        module, trainer = _Soup(rep, prev, {}), _Trainer()
        rec.on_train_start(trainer, module)
        mon.measure(module)  # generation 0, as on_train_start does
        t0 = time.perf_counter()
        rec.on_train_batch_start(trainer, module, None, 0)
        module.state, module.events = state, events
        rec.on_train_batch_end(trainer, module, None, None, 0)
        mon.on_train_epoch_end(trainer, module)
        return time.perf_counter() - t0, rec.phylogeny

    t_cb = min(callbacks("genome")[0] for _ in range(args.repeats))
    t_cbf = min(callbacks("function")[0] for _ in range(args.repeats))
    births = int((src >= 0).sum() + dead.sum())
    per_node = ph.memory_bytes() / ph._cols["ancestor"].shape[0]
    return rows, {"P": P, "generation_s": t_gen, "callbacks_s": t_cb, "overhead": t_cb / t_gen,
                  "callbacks_function_s": t_cbf, "overhead_function": t_cbf / t_gen, "births": births,
                  "phylogeny_bytes_per_node": per_node, "phylogeny_bytes_per_generation": births * per_node}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--train", type=int, default=20, help="self-training epochs per generation (default 20, configs/soup.yaml)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="write the rows to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = []
    for P in args.sizes:
        rows, summary = bench_size(P, args)
        print(f"\nP = {P:,} (train {args.train}): ms per generation, and share of the generation")
        print("| piece | ms | % of generation |\n|---|---|---|")
        for name, t in rows.items():
            print(f"| {name} | {1e3 * t:.1f} | {100 * t / rows['generation']:.1f} |")
        print(f"| **LineageRecorder + SpeciesMonitor (genome species)** | {1e3 * summary['callbacks_s']:.1f} | "
              f"{100 * summary['overhead']:.1f} |")
        print(f"| LineageRecorder + SpeciesMonitor (function species) | {1e3 * summary['callbacks_function_s']:.1f} | "
              f"{100 * summary['overhead_function']:.1f} |")
        print(f"phylogeny: {summary['births']:,} births this generation, {summary['phylogeny_bytes_per_node']:.0f} bytes "
              f"per node (allocated) -> {summary['phylogeny_bytes_per_generation'] / 2**20:.2f} MiB per generation")
        out.append({**summary, "pieces_s": rows})
        sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"train": args.train, "rows": out, "torch": torch.__version__, "cpu": os.cpu_count()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
