"""Soup phase diagrams and the emergence of replicators: soup_phases, emergence.

    nsr experiment soup_phases     # 8 attacking rates x 8 self-training epochs per generation, 100 soups of 10 per cell
    nsr experiment emergence       # 1000 soups of 10: generations until non-trivial fixpoints are half of a soup

Both evolve many independent soups as one population (``soup_size``: partners are drawn within each
soup) with :func:`nsr.soup.generation_step`, and classify every particle every generation. The soup's
parameters are scalars of the whole population (``generation_step`` has no per-soup rates), so the
cells of the phase diagram run one after another, each cell's soups as one population.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from nsr.experiments import figures
from nsr.experiments.base import Report, bar, experiment, make_replicator
from nsr.fixpoints import CLASS_NAMES, FixpointClass, classify
from nsr.soup import generation_step, initial_state
from nsr.species import function_keys, genome_keys, probe_genomes


def species_per_soup(rep, w: torch.Tensor, soups: int, by: str, tolerance: float, seed: int = 0) -> torch.Tensor:
    """``LongTensor[soups]``: the number of species in every soup (``w`` ``[soups * size, W]``, soups of
    consecutive particles; species by genome or by function within ``tolerance``, divergent particles none)."""
    keys = function_keys(rep, w, probe_genomes(rep, 2, seed), tolerance) if by == "function" else genome_keys(w, tolerance)
    soup = torch.arange(w.shape[0]) // (w.shape[0] // soups)  # [P]
    valid = keys >= 0
    pairs = torch.unique(torch.stack([soup[valid], keys[valid]], dim=1), dim=0)  # [distinct (soup, species), 2]
    return torch.bincount(pairs[:, 0], minlength=soups)


def evolve_classified(rep, soups: int, size: int, generations: int, seed: int, step: dict, epsilon: float,
                      second_order: str = "orbit", tick=None):
    """Evolve ``soups`` soups of ``size`` as one population; returns ``(nontrivial [generations + 1, soups]``
    (non-trivial fixpoints per soup, every generation from 0), ``classes [soups, size]`` at the end,
    ``weights [soups * size, W]`` at the end)."""
    state = initial_state(rep, soups * size, seed=seed)
    counts = []
    classes = classify(rep, state.weights, epsilon, second_order).view(soups, size)
    counts.append((classes == FixpointClass.NONTRIVIAL).sum(1))
    for _ in range(generations):
        state, _ = generation_step(rep, state, seed=seed, soup_size=size, **step)
        classes = classify(rep, state.weights, epsilon, second_order).view(soups, size)
        counts.append((classes == FixpointClass.NONTRIVIAL).sum(1))
        if tick:
            tick(1)
    return torch.stack(counts), classes, state.weights


def first_generation(reached: torch.Tensor) -> torch.Tensor:
    """``LongTensor[soups]``: the first generation (row) at which ``reached`` ``[G + 1, soups]`` is true, -1 never."""
    any_ = reached.any(0)
    first = reached.long().argmax(0)  # the first True row
    return torch.where(any_, first, torch.full_like(first, -1))


def mean_ci(x: torch.Tensor) -> tuple[float, float]:
    """Mean and the half-width of its 95% normal interval (1.96 standard errors)."""
    x = x.double()
    if x.numel() == 0:
        return math.nan, math.nan
    half = 1.96 * float(x.std()) / math.sqrt(x.numel()) if x.numel() > 1 else math.nan
    return float(x.mean()), half


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a share k / n."""
    if n == 0:
        return math.nan, math.nan
    z, p = 1.96, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def median_ci(x: torch.Tensor) -> tuple[float, float, float]:
    """Median and its distribution-free 95% interval (order statistics n/2 -+ 0.98 sqrt(n))."""
    n = x.numel()
    if n == 0:
        return math.nan, math.nan, math.nan
    s = x.double().sort().values
    lo = max(0, int(math.floor(n / 2 - 0.98 * math.sqrt(n))) - 1)
    hi = min(n - 1, int(math.ceil(n / 2 + 0.98 * math.sqrt(n))))
    return float(s.median()), float(s[lo]), float(s[hi])


def _step(args, attacking_rate, train):
    return dict(attacking_rate=attacking_rate, learn_from_rate=args.learn_from_rate,
                learn_from_severity=args.learn_from_severity, train=train, lr=args.lr, batch_size=args.batch_size,
                momentum=args.momentum, remove_divergent=not args.keep_divergent, remove_zero=not args.keep_zero,
                epsilon=args.epsilon)


def _settings(args, **more):
    s = {"soups per setting": (args.trials, "-"), "particles per soup": (args.particles, "-"),
         "generations": (args.generations, "-"), "learn_from_rate": (args.learn_from_rate, "-"),
         "respawn divergent / zero": (f"{not args.keep_divergent} / {not args.keep_zero}", "-")}
    s.update({k: (v, "-") for k, v in more.items()})
    return s


# ---- soup_phases -----------------------------------------------------------------------------------


def heatmaps(rates, trains, panels: dict):
    """One annotated heatmap per ``{title: matrix [len(trains), len(rates)]}``."""
    plt = figures._plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4))
    for ax, (title, m) in zip(np.atleast_1d(axes), panels.items()):
        m = np.asarray(m, dtype=float)
        im = ax.imshow(np.ma.masked_invalid(m), origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(rates)), [f"{r:g}" for r in rates], rotation=45)
        ax.set_yticks(range(len(trains)), [str(t) for t in trains])
        ax.set_xlabel("attacking rate")
        ax.set_ylabel("self-training epochs per generation")
        ax.set_title(title, fontsize=10)
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, "-" if math.isnan(v) else f"{v:.2g}", ha="center", va="center", fontsize=6, color="w")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def _matrix(title, rates, trains, values, fmt):
    head = [f"train \\ attack"] + [f"{r:g}" for r in rates]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, t in enumerate(trains):
        lines.append("| " + " | ".join([str(t)] + [fmt(values[i][j]) for j in range(len(rates))]) + " |")
    return "\n".join(lines)


@experiment("soup_phases")
def run_soup_phases(args, folder) -> Report:
    """Soups of particles that attack each other and self-train, on a grid of attacking rates and
    self-training epochs per generation: the final non-trivial share, the species per soup and the
    generation at which the first non-trivial fixpoint appears, per cell."""
    rep = make_replicator("weightwise", args)
    rates, trains = list(args.rates), list(args.trains)
    S, n = args.trials, args.particles
    rows, share, rich, first_med = [], [], [], []
    with bar(args, len(rates) * len(trains) * args.generations, "soup_phases") as pbar:
        for t in trains:
            share.append([]), rich.append([]), first_med.append([])
            for r in rates:
                nt, classes, w = evolve_classified(rep, S, n, args.generations, args.seed, _step(args, r, t),
                                                   args.epsilon, args.second_order, pbar.update)
                final = nt[-1].double() / n  # [S]
                first = first_generation(nt > 0)
                happened = first[first >= 0]
                richness = species_per_soup(rep, w, S, args.species_by, args.tolerance, args.seed)
                s, s_ci = mean_ci(final)
                k, k_ci = mean_ci(richness)
                med, med_lo, med_hi = median_ci(happened)
                counts = torch.bincount(classes.reshape(-1), minlength=len(FixpointClass)).double() / classes.numel()
                row = {"attacking_rate": r, "train": t, "soups": S, "particles": n, "nontrivial_share": s,
                       "nontrivial_share_ci95": s_ci, "species_per_soup": k, "species_per_soup_ci95": k_ci,
                       "first_nontrivial_median": med, "first_nontrivial_median_lo95": med_lo,
                       "first_nontrivial_median_hi95": med_hi, "never_nontrivial": float((first < 0).double().mean()),
                       **{f"final_{c}": float(v) for c, v in zip(CLASS_NAMES, counts)}}
                rows.append(row)
                folder.log_scalars(f"soup_phases/train_{t}", row, int(round(r * 1000)))
                share[-1].append(s), rich[-1].append(k), first_med[-1].append(med)
    table = [[str(t)] + [f"{share[i][j]:.2f}" for j in range(len(rates))] for i, t in enumerate(trains)]
    extra = "\n\n".join([_matrix("Species per soup (mean)", rates, trains, rich, lambda v: f"{v:.1f}"),
                         _matrix("Generation of the first non-trivial fixpoint (median over soups where one appeared; "
                                 "- none)", rates, trains, first_med, lambda v: "-" if math.isnan(v) else f"{v:g}")])
    fig = heatmaps(rates, trains, {"final non-trivial share": share, "species per soup": rich,
                                   "generation of first non-trivial fixpoint (median)": first_med})
    ci = max((r["nontrivial_share_ci95"] for r in rows if not math.isnan(r["nontrivial_share_ci95"])), default=math.nan)
    notes = [
        "No published numbers: the paper ran single soups; this grid is new. Each cell is "
        f"{S} independent soups of {n} particles evolved as one population; the 95% intervals of the shares "
        f"(1.96 standard errors over soups) are at most +-{ci:.2f}, results.csv has every interval.",
        "The soup's rates are scalars of a population (generation_step has no per-soup parameters), so the "
        f"{len(rates) * len(trains)} cells run one after another.",
        f"Species: {args.species_by} species within {args.tolerance:g} (docs/soup_analytics.md), counted among "
        "the finite particles of each soup at the end.",
        "Zero and divergent particles are respawned as fresh random ones unless --keep-zero / --keep-divergent, "
        "so a soup without self-training stays random and its non-trivial share near 0."]
    return Report(rows, ["train \\ attacking rate"] + [f"{r:g}" for r in rates], table, notes, {"phases": fig},
                  _settings(args, rates=",".join(f"{r:g}" for r in rates), trains=",".join(map(str, trains)),
                            species=f"{args.species_by} within {args.tolerance:g}"), extra)


# ---- emergence -------------------------------------------------------------------------------------


def emergence_figure(times: torch.Tensor, generations: int, never: float):
    plt = figures._plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    done = times[times >= 0].numpy()
    a.hist(done, bins=min(50, max(5, generations // 2)), color="#2ca02c")
    a.set_xlabel("generations until non-trivial fixpoints make up the threshold share")
    a.set_ylabel("soups")
    a.set_title(f"time to takeover ({never:.0%} of soups: never within {generations})", fontsize=10)
    g = np.arange(generations + 1)
    b.plot(g, [(done <= x).sum() / max(times.numel(), 1) for x in g], color="#2ca02c")
    b.set_xlabel("generation")
    b.set_ylabel("share of soups taken over")
    b.set_ylim(0, 1)
    b.set_title("cumulative share of soups taken over", fontsize=10)
    fig.tight_layout()
    return fig


@experiment("emergence")
def run_emergence(args, folder) -> Report:
    """The time until non-trivial fixpoints (replicators) make up half of a soup (``--threshold``),
    over ``--trials`` soups, and the share of soups where that never happens within ``--generations``:
    the analogue of the time-to-replicator statistic of "Computational Life"."""
    rep = make_replicator("weightwise", args)
    S, n = args.trials, args.particles
    with bar(args, args.generations, "emergence") as pbar:
        nt, classes, _ = evolve_classified(rep, S, n, args.generations, args.seed,
                                           _step(args, args.attacking_rate, args.train), args.epsilon,
                                           args.second_order, pbar.update)
    times = first_generation(nt.double() >= args.threshold * n)  # [S]
    done = times[times >= 0]
    never = int((times < 0).sum())
    lo, hi = wilson(never, S)
    med, mlo, mhi = median_ci(done)
    mean, mci = mean_ci(done)
    q = done.double().quantile(torch.tensor([0.25, 0.75], dtype=torch.float64)).tolist() if done.numel() else [math.nan] * 2
    rows = [{"soup": i, "takeover_generation": int(t) if t >= 0 else None,
             "final_nontrivial_share": float(nt[-1, i]) / n} for i, t in enumerate(times.tolist())]
    for g in range(nt.shape[0]):
        folder.writer.add_scalar("emergence/taken_over", float((done <= g).double().sum()) / S, g)
    table = [[S, n, args.generations, f"{never / S:.3f} [{lo:.3f}, {hi:.3f}]",
              f"{med:g} [{mlo:g}, {mhi:g}]" if done.numel() else "-",
              f"{mean:.1f} +- {mci:.1f}" if done.numel() > 1 else "-",
              f"{q[0]:g} - {q[1]:g}" if done.numel() else "-",
              f"{int(done.min())} - {int(done.max())}" if done.numel() else "-"]]
    notes = [
        f"A soup is taken over at the first generation where at least {args.threshold:g} of its {n} particles are "
        "non-trivial fixpoints (classified every generation). Intervals: Wilson 95% for the share that never "
        "gets there, distribution-free 95% for the median, 1.96 standard errors for the mean.",
        "\"Computational Life\" (Aguera y Arcas et al., 2024) measures the analogous time for self-modifying "
        "programs without any training (100 runs of 2^17 programs); the numbers are not comparable in units. "
        "Here replicators are also shaped by self-training, so --train 0 shows whether attacks alone make them.",
        "The soups evolve as one population (partners drawn within each soup); results.csv has one row per soup."]
    return Report(rows, ["soups", "particles", "generations", "never (share, 95% CI)", "median [95% CI]",
                         "mean +- 95%", "quartiles", "min - max"], table, notes,
                  {"emergence": emergence_figure(times, args.generations, never / S)},
                  _settings(args, attacking_rate=args.attacking_rate, train=args.train, threshold=args.threshold))
