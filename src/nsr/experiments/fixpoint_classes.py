"""Fixpoint classes of single replicators: density, applying, training, mixed.

    nsr experiment density              # 10^5 random nets per architecture, classified
    nsr experiment applying             # 50 random nets, 100 self-applications each
    nsr experiment training             # 50 nets, 1000 self-training epochs each
    nsr experiment mixed                # up to 4 rounds of (self-application, k epochs), k swept

Every architecture's trials are one population ``[P, W]``; the mixed sweep runs all k at once.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from nsr.experiments import figures, published
from nsr.experiments.base import Report, bar, experiment, fmt_share, make_replicator, stream, versus
from nsr.experiments.intervals import share_verdict, shares_ci
from nsr.fixpoints import (CLASS_NAMES, FixpointClass, aggregate_distance, classify, distance, is_aggregate_fixpoint,
                           is_divergent, is_fixpoint, shares)
from nsr.training import self_train

ARCHS = ["weightwise", "aggregating", "recurrent"]


def _shares_cells(ours: dict, theirs: dict | None, n_theirs: int | None) -> list[str]:
    """Table cells ``ours / published`` for every class (published counts turned into shares)."""
    cells = []
    for c in CLASS_NAMES:
        t = None if theirs is None else (theirs.get(c, 0) / n_theirs if c in theirs else None)
        cells.append(versus(ours[c], t))
    return cells


def _binomial_note(arch: str, cls: str, ours: float, n: int, theirs: float, m: int) -> str | None:
    """A note when ``ours`` and ``theirs`` differ by more than two standard errors of a difference of
    two shares (n and m trials)."""
    p = (ours * n + theirs * m) / (n + m)
    se = math.sqrt(max(p * (1 - p), 1e-12) * (1 / n + 1 / m))
    z = (ours - theirs) / se
    if abs(z) <= 2:
        return None
    return (f"{arch}: {cls} share {ours:.2f} vs published {theirs:.2f} differs by {abs(z):.1f} standard errors "
            f"(n = {n} ours, {m} theirs).")


# ---- the science: pure functions over populations -------------------------------------------------
def _compare_shares(arch: str, s: dict, pub: dict, trials: int, table: list, bars: list, notes: list,
                    consistency: list) -> None:
    """Append one architecture's class shares beside the published counts: a table row, the bars of
    the stacked figure, a note where the difference is more than sampling noise, and for every
    published count a sentence on its consistency with our share."""
    theirs = pub["counts"].get(arch)
    table.append([arch, f"{trials} / {pub['trials']}"] + _shares_cells(s, theirs, pub["trials"]))
    bars.append((f"{arch} ours", s))
    if theirs:
        bars.append((f"{arch} published", {k: v / pub["trials"] for k, v in theirs.items()}))
        for c, v in theirs.items():
            n = _binomial_note(arch, c, s[c], trials, v / pub["trials"], pub["trials"])
            if n:
                notes.append(n)
            consistency.append(share_verdict(f"{arch} {c}", s[c], trials, v, pub["trials"]))


def self_apply(rep, w: torch.Tensor, applications: int, tick=None) -> torch.Tensor:
    """``applications`` self-applications w <- F(w) of every genome ``w`` ``[P, W]``."""
    for _ in range(applications):
        w = rep.apply(w, w)
        if tick:
            tick(1)
    return w


def train_epochs(rep, w, epochs, lr, batch_size, momentum, generator, on_epoch=None):
    """``epochs`` self-training epochs of every genome ``w`` ``[P, W]``, one epoch per call of the
    training function so that ``on_epoch(epoch, state)`` can watch (loss, classes)."""
    velocity = None
    for e in range(epochs):
        state = self_train(rep, w, 1, lr, batch_size, momentum, generator=generator, velocity=velocity,
                           return_state=True)
        w, velocity = state.weights, state.velocity
        if on_epoch:
            on_epoch(e + 1, state)
    return w


# ---- density ----------------------------------------------------------------------------------------


@experiment("density")
def run_density(args, folder) -> Report:
    """Classify random (untrained, never applied) networks; report each class's share and the fixpoint
    density, the share of random networks that already are (zero or non-trivial) fixpoints."""
    rows, table, figs_hist, bars = [], [], {}, []
    for arch in args.architectures:
        rep = make_replicator(arch, args)
        classes, dists = [], []
        with bar(args, args.trials, f"density {arch}") as pbar:
            for start in range(0, args.trials, args.chunk):
                ids = torch.arange(start, min(start + args.chunk, args.trials))
                w = rep.init(len(ids), generator=stream(args, f"{arch}/init", ids))  # [chunk, W]
                classes.append(classify(rep, w, args.epsilon, args.second_order))
                dists.append(distance(rep, w))
                pbar.update(len(ids))
        c, d = torch.cat(classes), torch.cat(dists).double()
        s = shares(c)
        fin = d[torch.isfinite(d)]
        row = {"architecture": arch, "networks": args.trials, **s,
               "fixpoint_density": s["zero"] + s["nontrivial"],
               "fixpoints": int(((c == FixpointClass.ZERO) | (c == FixpointClass.NONTRIVIAL)).sum()),
               "distance_min": float(fin.min()) if len(fin) else math.nan,
               "distance_median": float(fin.median()) if len(fin) else math.nan,
               "distance_max": float(fin.max()) if len(fin) else math.nan}
        shares_ci(row, list(CLASS_NAMES) + ["fixpoint_density"], args.trials)
        rows.append(row)
        folder.log_scalars(f"density/{arch}", row)
        table.append([arch, f"{args.trials} / 100000", f"{row['fixpoints']}", f"{row['fixpoint_density']:.2g}",
                      "practically never (count not published)", f"{row['distance_min']:.3g}",
                      f"{row['distance_median']:.3g}"])
        figs_hist[arch] = np.log10(fin.clamp_min(1e-30).numpy())
        bars.append((arch, s))
    consistency = [f"{r['architecture']}: fixpoint density {r['fixpoint_density']:.2g}, 95% interval "
                   f"[{r['fixpoint_density_ci_low']:.2g}, {r['fixpoint_density_ci_high']:.2g}] of {r['networks']} networks; "
                   "published: 'practically never' (no count), consistent." for r in rows]
    notes = ["The published experiment classified 100,000 random networks per architecture but did not publish "
             "the count; its text says a random network is practically never a fixpoint. A fixpoint here needs "
             f"every |F(w)_i - w_i| < {args.epsilon:g}; distance_min is the closest any random network came.",
             f"Second-order test: {args.second_order}."]
    return Report(rows, ["architecture", "networks ours / published", "fixpoints", "density",
                         "published", "closest distance", "median distance"], table, notes,
                  {"classes": figures.class_bars(bars, "random networks: classes"),
                   "distance": figures.histograms(figs_hist, "log10 fixpoint distance max|F(w)-w|",
                                                  "random networks: distance from being a fixpoint")},
                  {"networks per architecture": (args.trials, 100_000), "epsilon": (args.epsilon, 1e-4)},
                  consistency=consistency)


# ---- applying -----------------------------------------------------------------------------------------


@experiment("applying")
def run_applying(args, folder) -> Report:
    """Self-apply random networks --applications times (w <- F(w)) and classify the result."""
    pub = published.APPLYING
    rows, table, bars, notes, consistency = [], [], [], [], []
    with bar(args, args.applications * len(args.architectures), "applying") as pbar:
        for arch in args.architectures:
            rep = make_replicator(arch, args)
            ids = torch.arange(args.trials)
            w = rep.init(args.trials, generator=stream(args, f"{arch}/init", ids))  # [trials, W]
            w = self_apply(rep, w, args.applications, pbar.update)
            s = shares(classify(rep, w, args.epsilon, args.second_order))
            row = shares_ci({"architecture": arch, "trials": args.trials, "applications": args.applications, **s},
                            CLASS_NAMES, args.trials)
            rows.append(row)
            folder.log_scalars(f"applying/{arch}", row)
            _compare_shares(arch, s, pub, args.trials, table, bars, notes, consistency)
    notes += [
        "Shares are ours / published (published counts of 50 divided by 50). A share near 0.5 measured on 50 "
        "networks has a standard error of about 0.07, so differences up to ~0.14 are sampling noise.",
        "Random initial networks are drawn as Keras 2 drew them (glorot-uniform kernels; recurrent kernels by "
        f"its SVD-based orthogonal initialiser, here '{args.orthogonal}'), but from our own random streams; the "
        "published code ran Keras in float32 like us.",
        f"Second-order test: {args.second_order} (the published code applied the same network twice: "
        "'same_network').",
    ]
    if args.applications >= 20 and all(r["second_order"] == 0 and r["other"] == 0 for r in rows):
        notes.append("After this many self-applications every network has settled: zero or divergent, none "
                     "non-trivial, second order or other, with either second-order test.")
    return Report(rows, ["architecture", "trials ours / published"] + [f"{c} ours / published" for c in CLASS_NAMES],
                  table, notes, {"classes": figures.class_bars(bars, f"after {args.applications} self-applications")},
                  {"networks per architecture": (args.trials, pub["trials"]),
                   "self-applications": (args.applications, pub["applications"]), "epsilon": (args.epsilon, 1e-4),
                   "orthogonal initialiser": (args.orthogonal, "keras2")}, consistency=consistency)


# ---- training -----------------------------------------------------------------------------------------


@experiment("training")
def run_training(args, folder) -> Report:
    """Self-train random networks (SGD on the MSE between their outputs and their own weights, one epoch
    per step, samples fixed at the start of each epoch) and classify the result."""
    pub = published.TRAINING
    rows, table, bars, notes, curves, consistency = [], [], [], [], {}, []
    with bar(args, args.epochs * len(args.architectures), "training") as pbar:
        for arch in args.architectures:
            rep = make_replicator(arch, args)
            ids = torch.arange(args.trials)
            w = rep.init(args.trials, generator=stream(args, f"{arch}/init", ids))
            xs, ys = [], []

            def watch(epoch, state, arch=arch, rep=rep, xs=xs, ys=ys):
                pbar.update(1)
                if epoch % args.log_every == 0 or epoch == args.epochs:
                    loss = state.loss[torch.isfinite(state.loss)]
                    if len(loss):
                        folder.writer.add_scalar(f"training/{arch}/loss_median", float(loss.median()), epoch)
                    s = shares(classify(rep, state.weights, args.epsilon, args.second_order))
                    folder.log_scalars(f"training/{arch}/epochs", s, epoch)
                    xs.append(epoch)
                    ys.append(s["nontrivial"])

            w = train_epochs(rep, w, args.epochs, args.lr, args.batch_size, args.momentum,
                             stream(args, f"{arch}/train", ids), watch)
            s = shares(classify(rep, w, args.epsilon, args.second_order))
            row = shares_ci({"architecture": arch, "trials": args.trials, "epochs": args.epochs, **s}, CLASS_NAMES,
                            args.trials)
            if arch == "aggregating":
                row["aggregate_fixpoint"] = float(is_aggregate_fixpoint(rep, w, args.epsilon).double().mean())
                shares_ci(row, ["aggregate_fixpoint"], args.trials)
                d = aggregate_distance(rep, w).double()
                row["aggregate_distance_median"] = float(d.median())
            rows.append(row)
            folder.log_scalars(f"training/{arch}", row)
            curves[arch] = (xs, ys)
            _compare_shares(arch, s, pub, args.trials, table, bars, notes, consistency)
    if any("aggregate_fixpoint" in r for r in rows):
        r = next(r for r in rows if "aggregate_fixpoint" in r)
        notes.append(f"aggregating: weight by weight no trained network is a fixpoint (each new aggregate is written "
                     f"to every weight of its chunk, and a chunk's weights differ). Of their aggregates, "
                     f"{r['aggregate_fixpoint']:.2f} are reproduced within epsilon; the median aggregate distance "
                     f"is {r['aggregate_distance_median']:.2g}: with one sample (one SGD step) per epoch the "
                     "aggregates are still converging after 1000 epochs (they reach ~1e-5 after ~10^4 epochs).")
    if "recurrent" in args.architectures:
        notes.append("recurrent: the divergent share depends on the initial recurrent kernels. The published runs used "
                     "Keras 2's orthogonal initialiser (the SVD factor of a Gaussian matrix: every 2x2 recurrent "
                     "kernel a reflection); a QR-based one, uniform over orthogonal matrices, draws rotations half "
                     "the time, and rotations diverge far less often (about 0.5 divergent instead of 0.76). "
                     f"Ours: --orthogonal {args.orthogonal}. The divergence happens in the first ~100 epochs; the "
                     "networks that do not diverge approach a fixpoint slowly (they are 'other' after 1000 epochs).")
    notes += [f"Training: SGD lr {args.lr}, batch size {args.batch_size or 'full'}, momentum {args.momentum}, "
              f"shuffled, {args.epochs} epochs (published: lr 0.01, batch size 1, no momentum, 1000 epochs).",
              f"Second-order test: {args.second_order}."]
    return Report(rows, ["architecture", "trials ours / published"] + [f"{c} ours / published" for c in CLASS_NAMES],
                  table, notes,
                  {"classes": figures.class_bars(bars, f"after {args.epochs} self-training epochs"),
                   "nontrivial_over_epochs": figures.sweep_lines("epoch", "non-trivial share",
                                                                 "self-training: non-trivial fixpoints", curves)},
                  {"networks per architecture": (args.trials, pub["trials"]), "epochs": (args.epochs, pub["epochs"]),
                   "lr": (args.lr, 0.01), "batch size": (args.batch_size or "full", 1),
                   "orthogonal initialiser": (args.orthogonal, "keras2")}, consistency=consistency)


# ---- mixed -----------------------------------------------------------------------------------------------


def mixed(rep, w, ks, rounds, lr, batch_size, momentum, epsilon, make_stream, tick=None):
    """Up to ``rounds`` rounds of one self-application then ``ks[i]`` self-training epochs for genome
    i of ``w`` ``[P, W]``, a genome stopping early once it is a fixpoint or divergent. Particles with
    different k run in one population: each epoch trains the particles that still need it.
    ``make_stream(generation, index)`` gives the random stream of the particles ``index`` ``[n]``.
    Returns ``(w, rounds_used [P])``."""
    P = w.shape[0]
    ks = torch.as_tensor(ks, dtype=torch.long)
    active = torch.ones(P, dtype=torch.bool)
    used = torch.zeros(P, dtype=torch.long)
    velocity = torch.zeros_like(w) if momentum else None
    kmax = int(ks.max()) if P else 0
    for r in range(rounds):
        idx = active.nonzero().squeeze(1)
        if not len(idx):
            break
        w[idx] = rep.apply(w[idx], w[idx])
        used[idx] += 1
        for e in range(kmax):
            idx = (active & (ks > e)).nonzero().squeeze(1)
            if len(idx):
                st = self_train(rep, w[idx], 1, lr, batch_size, momentum, generator=make_stream(r * 2 ** 20 + e + 1, idx),
                                velocity=None if velocity is None else velocity[idx], return_state=True)
                w[idx] = st.weights
                if velocity is not None:
                    velocity[idx] = st.velocity
            if tick:
                tick(1)
        active &= ~(is_divergent(w) | is_fixpoint(rep, w, epsilon))
    return w, used


@experiment("mixed")
def run_mixed(args, folder) -> Report:
    """For each k: up to --rounds rounds of (one self-application, then k self-training epochs),
    stopping early at a fixpoint or divergence; report the share ending as a (zero or non-trivial)
    fixpoint."""
    pub = published.MIXED
    rows, table, series, pub_series, notes, consistency = [], [], {}, {}, [], []
    ks_list = sorted(set(args.trains))
    with bar(args, args.rounds * max(ks_list) * len(args.architectures), "mixed") as pbar:
        for arch in args.architectures:
            rep = make_replicator(arch, args)
            ks = torch.tensor(ks_list).repeat_interleave(args.trials)  # [K * trials]
            trial = torch.arange(args.trials).repeat(len(ks_list))
            ids = ks * 2 ** 32 + trial  # a trial's key does not depend on the other k of the sweep
            w = rep.init(len(ids), generator=stream(args, f"{arch}/init", ids))
            w, used = mixed(rep, w, ks, args.rounds, args.lr, args.batch_size, args.momentum, args.epsilon,
                            lambda g, idx: stream(args, f"{arch}/train", ids[idx], g), pbar.update)
            c = classify(rep, w, args.epsilon, args.second_order)
            ys = []
            for k in ks_list:
                sel = ks == k
                s = shares(c[sel])
                row = {"architecture": arch, "k": k, "trials": args.trials, **s,
                       "fixpoint": s["zero"] + s["nontrivial"], "rounds_mean": float(used[sel].double().mean())}
                shares_ci(row, list(CLASS_NAMES) + ["fixpoint"], args.trials)
                rows.append(row)
                folder.log_scalars(f"mixed/{arch}", row, k)
                ys.append(row["fixpoint"])
                theirs = pub["fixpoint"].get(arch)
                if isinstance(theirs, list) and k in pub["trains"]:
                    t = theirs[pub["trains"].index(k)]
                    cell, diff = fmt_share(t), f"{row['fixpoint'] - t:+.2f}"
                    n = _binomial_note(f"{arch} k={k}", "fixpoint", row["fixpoint"], args.trials, t, pub["trials"])
                    if n:
                        notes.append(n)
                    consistency.append(share_verdict(f"{arch} k={k} fixpoint", row["fixpoint"], args.trials,
                                                     round(t * pub["trials"]), pub["trials"]))
                elif isinstance(theirs, tuple):
                    cell = f"{theirs[0]:.1f}-{theirs[1]:.1f}"
                    inside = theirs[0] - 1e-9 <= row["fixpoint"] <= theirs[1] + 1e-9
                    diff = "inside" if inside else "outside"
                    lo, hi = row["fixpoint_ci_low"], row["fixpoint_ci_high"]
                    overlap = lo <= theirs[1] + 1e-9 and hi >= theirs[0] - 1e-9
                    consistency.append(f"{arch} k={k} fixpoint: published range {cell}; ours {row['fixpoint']:.3f} "
                                       f"[{lo:.3f}, {hi:.3f}] of {args.trials}: "
                                       f"{'consistent with ours (the interval meets the range)' if overlap else 'not consistent with ours (the interval misses the range)'}.")
                else:
                    cell, diff = "-", ""
                table.append([arch, k, f"{args.trials} / {pub['trials']}", fmt_share(row["fixpoint"]), cell, diff,
                              fmt_share(s["zero"]), fmt_share(s["nontrivial"]), fmt_share(s["divergent"])])
            series[arch] = (ks_list, ys)
            theirs = pub["fixpoint"].get(arch)
            pub_series[arch] = (pub["trains"], theirs) if isinstance(theirs, list) else theirs
    notes += [
        "fixpoint = zero + non-trivial share at the end (the published measure). Published: weightwise as listed; "
        "aggregating '0.8-1.0 throughout'; recurrent '<= 0.1'.",
        f"With {args.trials} networks per k a share near 0.5 has a standard error of about "
        f"{math.sqrt(0.25 / args.trials):.2f}; the published curve (20 networks per k) is as noisy: it is not "
        "monotone (0.30 at k = 50, 0.15 at k = 100, 0.55 at k = 150), so compare the trend, not single points.",
        "The published code checks 'fixpoint or divergent' after each round's training, as we do; its last "
        "version swept k = 0, 100, ..., 1000, the published figure k = 0, 50, ..., 500 (ours by default).",
    ]
    return Report(rows, ["architecture", "k", "trials ours / published", "fixpoint ours", "published", "difference",
                         "zero", "nontrivial", "divergent"], table, notes,
                  {"fixpoint_share": figures.sweep_lines("k (self-training epochs per round)", "share ending as fixpoint",
                                                         f"mixed: {args.rounds} rounds", series, pub_series)},
                  {"networks per k": (args.trials, pub["trials"]), "rounds": (args.rounds, pub["rounds"]),
                   "k": (",".join(map(str, ks_list)), "0,50,...,500"), "lr": (args.lr, 0.01),
                   "batch size": (args.batch_size or "full", 1)}, consistency=consistency)
