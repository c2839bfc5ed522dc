"""Basins of attraction (the journal extension): do noisy clones of a trained fixpoint, trained on,
return to their parent?

    nsr experiment basins                    # 10 parents x 10 clones x noise 1e-1..1e-9
    nsr experiment basins --dtype float64    # noise below float32 resolution made visible

Self-train random weightwise networks; the non-trivial fixpoints among them are the parents. Each
parent gets clones with noise +-U(0,1)*10^-k per weight; the clones (and the parents, for their own
drift) self-train on. Distances to the parent as it was when cloned, before and after: mean absolute,
mean squared, and the permutation-invariant mean Manhattan distance over sorted weights.
"""
from __future__ import annotations


import numpy as np
import torch

from nsr.experiments import figures, published
from nsr.experiments.base import Report, bar, experiment, fmt_share, make_replicator, stream
from nsr.experiments.fixpoint_classes import train_epochs
from nsr.experiments.intervals import mean_interval, shares_ci, wilson
from nsr.experiments.robustness import exponent
from nsr.fixpoints import FixpointClass, classify, noise_label, noisy_clones

BASIN_CLASSES = ("approaching", "distancing", "stationary")


# ---- distances: [N, W] x [N, W] -> [N] ------------------------------------------------------------------
def mean_absolute(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().mean(dim=1)


def mean_squared(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).mean(dim=1)


def sorted_manhattan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Permutation-invariant mean Manhattan distance: mean |a_(i) - b_(i)| over the sorted weights, 0 for
    genomes holding the same values in different positions.

    >>> sorted_manhattan(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[3.0, 1.0, 2.5]]))
    tensor([0.1667])
    """
    return (a.sort(dim=1).values - b.sort(dim=1).values).abs().mean(dim=1)


METRICS = {"mae": mean_absolute, "mse": mean_squared, "mim": sorted_manhattan}


def basin_classes(before: torch.Tensor, after: torch.Tensor, rtol: float, atol: float) -> torch.Tensor:
    """``LongTensor[N]``: 0 approaching (after < before - tol), 1 distancing (after > before + tol),
    2 stationary (within tol = rtol * before + atol). Non-finite distances count as distancing."""
    tol = rtol * before + atol
    c = torch.full(before.shape, 2, dtype=torch.long)
    c[after < before - tol] = 0
    c[(after > before + tol) | ~torch.isfinite(after)] = 1
    return c


def basins(rep, parents, scales, clones, epochs, lr, batch_size, momentum, make_stream, tick=None):
    """Clone every parent of ``parents`` ``[F, W]`` ``clones`` times per scale (noise +-U(0,1)*scale),
    self-train clones and parents ``epochs`` epochs in one population. Returns ``(before, after,
    parents_after)``: clones before ``[S, clones, F, W]`` and after training, parents after ``[F, W]``."""
    F, W = parents.shape
    S = len(scales)
    noisy = noisy_clones(parents, scales, clones, make_stream("noise", S * clones * F))  # [S * clones * F, W]
    pop = torch.cat([noisy, parents])  # the parents train on beside their clones
    pop = train_epochs(rep, pop, epochs, lr, batch_size, momentum, make_stream("train", len(pop)),
                       (lambda e, st: tick(1)) if tick else None)
    return noisy.view(S, clones, F, W), pop[:-F].view(S, clones, F, W), pop[-F:]


@experiment("basins")
def run_basins(args, folder) -> Report:
    """Noisy clones of trained fixpoints, trained on: distances to the parent before and after; each
    clone classified approaching / distancing / stationary."""
    dtype = getattr(torch, args.dtype)
    rep = make_replicator("weightwise", args)
    ids = torch.arange(args.parents)
    w = rep.init(args.parents, generator=stream(args, "parents/init", ids)).to(dtype)
    with bar(args, args.epochs + args.clone_epochs, "basins") as pbar:
        w = train_epochs(rep, w, args.epochs, args.lr, args.batch_size, args.momentum,
                         stream(args, "parents/train", ids), lambda e, st: pbar.update(1))
        fix = classify(rep, w, args.epsilon, args.second_order) == FixpointClass.NONTRIVIAL
        if not fix.any():
            raise ValueError(f"parents: none of the {args.parents} self-trained networks became a non-trivial "
                             "fixpoint; raise --epochs or --parents")
        parents = w[fix]  # [F, W]
        F = len(parents)
        before, after, parents_after = basins(
            rep, parents, args.noise, args.trials, args.clone_epochs, args.lr, args.batch_size, args.momentum,
            lambda tag, n: stream(args, f"clones/{tag}", torch.arange(n)), pbar.update)
    ref = parents[None, None].expand_as(before)
    S, C = before.shape[:2]
    flat = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731
    d_before = {m: f(flat(before), flat(ref)).view(S, C * F) for m, f in METRICS.items()}
    d_after = {m: f(flat(after), flat(ref)).view(S, C * F) for m, f in METRICS.items()}
    drift = {m: f(parents_after, parents) for m, f in METRICS.items()}  # the parents' own movement [F]
    cls_after = classify(rep, flat(after), args.epsilon, args.second_order).view(S, C * F)
    rows, table, groups_before, groups_after = [], [], [], []
    for i, sc in enumerate(args.noise):
        bc = basin_classes(d_before[args.metric][i], d_after[args.metric][i], args.rtol, args.atol)
        row = {"noise": sc, "parents": F, "clones": C * F}
        for m in METRICS:
            for when, d in (("before", d_before), ("after", d_after)):
                mean, lo, hi, _ = mean_interval(d[m][i].double().tolist())
                row[f"{m}_{when}"], row[f"{m}_{when}_ci_low"], row[f"{m}_{when}_ci_high"] = mean, lo, hi
        for j, name in enumerate(BASIN_CLASSES):
            row[name] = float((bc == j).double().mean())
        moved = d_before["mae"][i] > 0  # clones whose noise survived float rounding
        row["unperturbed"] = float((~moved).double().mean())
        row["returned"] = float(((d_after["mae"][i] == 0) & moved).double().mean())
        row["nontrivial_after"] = float((cls_after[i] == FixpointClass.NONTRIVIAL).double().mean())
        shares_ci(row, list(BASIN_CLASSES) + ["unperturbed", "returned", "nontrivial_after"], C * F)
        row[f"parent_drift_{args.metric}"] = float(drift[args.metric].double().mean())
        rows.append(row)
        folder.log_scalars("basins", row, exponent(sc))
        k = exponent(sc)
        finding = ("nearly all approach" if k in (1, 2, 3) else "most drift or stay put" if k in (7, 8, 9) else "-")
        table.append([noise_label(sc), f"{C * F}", fmt_share(row["approaching"]), fmt_share(row["distancing"]),
                      fmt_share(row["stationary"]), f"{row[args.metric + '_before']:.3g} -> {row[args.metric + '_after']:.3g}",
                      fmt_share(row["returned"]), fmt_share(row["unperturbed"]), finding])
        groups_before.append((noise_label(sc), np.log10(d_before[args.metric][i].double().clamp_min(1e-30).numpy())))
        groups_after.append((noise_label(sc), np.log10(d_after[args.metric][i].double().clamp_min(1e-30).numpy())))
    near = [r for r in rows if exponent(r["noise"]) in (1, 2, 3)]
    far = [r for r in rows if exponent(r["noise"]) in (7, 8, 9)]
    notes = [f"Published finding: {published.BASINS}.",
             f"Ours: at 1e-1..1e-3 {np.mean([r['approaching'] for r in near]):.2f} of the clones approach the parent; "
             f"at 1e-7..1e-9 {np.mean([r['distancing'] + r['stationary'] for r in far]):.2f} drift away or stay put; "
             f"{np.mean([r['returned'] for r in rows]):.2f} return exactly to the parent." if near and far else
             "Ours: see the table (the published finding concerns noise 1e-1..1e-3 and 1e-7..1e-9).",
             f"A clone is approaching when its {args.metric} distance to the parent (as cloned) shrinks by more "
             f"than rtol {args.rtol:g} * before + atol {args.atol:g}, distancing when it grows by more, stationary "
             f"otherwise. The parents trained on beside their clones moved {float(drift[args.metric].double().mean()):.3g} "
             f"({args.metric}) from where they were: a trained fixpoint keeps drifting slowly along a set of "
             "fixpoints, which is why clones of tiny noise drift too.",
             f"{F} of {args.parents} self-trained networks ({args.epochs} epochs) were non-trivial fixpoints (parents). "
             f"Training: SGD lr {args.lr}, batch size {args.batch_size or 'full'}, momentum {args.momentum} (the "
             "journal's code: full batch, lr 0.04, a fresh SGD optimizer per step, so no momentum in effect; "
             "2500 + 2500 steps, a handful of clones of two parents).",
             f"Precision: {args.dtype}. In float32, noise below ~1e-7 of a weight's size is rounded away: "
             "'unperturbed' clones start exactly at the parent (distance 0 before) and then train exactly like "
             "it; 'returned exactly' counts only clones that started away from the parent and came back to it "
             "bit for bit. With --dtype float64 every clone is perturbed."]
    figs = {f"distance_before": figures.box_plots(groups_before, f"clones before training: log10 {args.metric} to parent",
                                                  f"log10 {args.metric}"),
            f"distance_after": figures.box_plots(groups_after, f"clones after {args.clone_epochs} epochs: log10 "
                                                 f"{args.metric} to parent", f"log10 {args.metric}"),
            "basin_classes": figures.sweep_lines("noise exponent k (10^-k)", "share of clones", "basins",
                                                 {n: ([exponent(r["noise"]) for r in rows], [r[n] for r in rows])
                                                  for n in BASIN_CLASSES})}
    consistency = []
    for group, keys, claim, test in ((near, ("approaching",), "nearly all approach (read: at least 0.9)",
                                      lambda lo, hi: hi >= 0.9),
                                     (far, ("distancing", "stationary"), "most drift or stay put (read: more than 0.5)",
                                      lambda lo, hi: hi > 0.5)):
        if not group:
            continue
        n = sum(r["clones"] for r in group)
        k = sum(sum(r[key] for key in keys) * r["clones"] for r in group)
        lo, hi = wilson(round(k), n)
        noise = ", ".join(noise_label(r["noise"]) for r in group)
        consistency.append(f"noise {noise}: published '{claim}'; ours {k / n:.3f} [{lo:.3f}, {hi:.3f}] of {n} clones "
                           f"({' + '.join(keys)}): {'consistent' if test(lo, hi) else 'not consistent'} with ours.")
    return Report(rows, ["noise", "clones", "approaching", "distancing", "stationary",
                         f"{args.metric} before -> after (mean)", "returned exactly", "unperturbed", "published finding"],
                  table, notes, figs,
                  {"parents": (f"{F} (of {args.parents} trained)", "2 (journal code)"),
                   "clones per parent and noise": (args.trials, "5 (journal code)"),
                   "epochs parent / clones": (f"{args.epochs} / {args.clone_epochs}", "2500 / 2500"),
                   "noise": (",".join(noise_label(s) for s in args.noise), "1e-1..1e-9")}, consistency=consistency)
