"""Soup experiments: learn_from_soup, mixed_soup, soup_trajectories.

    nsr experiment learn_from_soup       # 10 soups of 10 per severity 0, 10, ..., 100; 100 generations
    nsr experiment mixed_soup            # 10 soups of 10 per train 0, 10, ..., 100; 5 generations
    nsr experiment soup_trajectories     # a soup of 20, attack 0.1, train 30, 100 generations; PCA figures

The soups evolve with :func:`nsr.soup.generation_step`, by default in the published order
(``--update sequential``: slot by slot; ``synchronous``: phase by phase). All soups of a setting are
one population (``soup_size``: partners are drawn within each soup; the sequential order advances
every soup's slot s at once); the settings of a sweep run one after another.
"""
from __future__ import annotations

import torch

from nsr.experiments import figures, published
from nsr.experiments.base import Report, bar, experiment, fmt_share, make_replicator, versus
from nsr.experiments.intervals import mean_ci, mean_interval, mean_verdict, percentile, shares_ci, wilson
from nsr.fixpoints import CLASS_NAMES, FixpointClass, classify, shares
from nsr.soup import ATTACKS, EVENT_COUNTS, LEARN_FROM, RESPAWNED, SoupParams, generation_step, initial_state


def evolve_soups(rep, soups: int, size: int, generations: int, params: SoupParams, tick=None, record=False):
    """``soups`` independent soups of ``size`` particles evolved together as one population (partners
    are drawn within each soup: ``soup_size``), ``generations`` generations of
    :func:`nsr.soup.generation_step` with the parameters ``params`` (seeded by ``params.seed``).

    Returns ``(weights [soups, size, W], events)`` and with ``record=True`` also the trajectories
    ``(weights [soups, generations + 1, size, W], ids [soups, generations + 1, size])``; ``events``
    is one dict of event counts (over all soups) per generation.
    """
    params = params.replace(soup_size=size)
    state = initial_state(rep, soups * size, seed=params.seed)
    tw, ti, events = [state.weights], [state.ids], []
    for _ in range(generations):
        state, ev = generation_step(rep, state, params)
        events.append({k: ev[k] for k in EVENT_COUNTS})
        if record:
            tw.append(state.weights)
            ti.append(state.ids)
        if tick:
            tick(1)
    W = state.weights.shape[1]
    out = (state.weights.view(soups, size, W), events)
    if record:
        traj = torch.stack(tw).view(generations + 1, soups, size, W).transpose(0, 1)  # [soups, G + 1, size, W]
        ids = torch.stack(ti).view(generations + 1, soups, size).transpose(0, 1)
        out += (traj, ids)
    return out


def per_soup_counts(classes: torch.Tensor, cls) -> list:
    """How many particles of class ``cls`` each soup holds, from ``classes`` ``[soups, size]``."""
    return (classes == int(cls)).sum(dim=1).tolist()


def per_soup(classes: torch.Tensor) -> dict:
    """Mean count per soup of every class, from ``classes`` ``[soups, size]``."""
    return {c: float((classes == int(k)).sum(dim=1).double().mean()) for c, k in zip(CLASS_NAMES, FixpointClass)}


def _sweep(args, folder, arch, param, values, step_for, generations, pub_nontrivial, pub_zero, tag, consistency,
           pub_soups):
    """Run ``args.trials`` soups per value of ``param``; rows, table rows and the line series; appends a
    sentence per published number to ``consistency`` (published means of ``pub_soups`` soups)."""
    rep = make_replicator(arch, args)
    rows, table, ys_nt, ys_zero = [], [], [], []
    with bar(args, generations * len(values), f"{tag} {arch}") as pbar:
        for i, v in enumerate(values):
            w, events = evolve_soups(rep, args.trials, args.particles, generations, step_for(v), pbar.update)
            c = classify(rep, w.reshape(-1, w.shape[-1]), args.epsilon, args.second_order).view(args.trials, -1)
            s, ps = shares(c), per_soup(c)
            nt, zero = per_soup_counts(c, FixpointClass.NONTRIVIAL), per_soup_counts(c, FixpointClass.ZERO)
            row = shares_ci({"architecture": arch, param: v, "soups": args.trials, "particles": args.particles,
                             "update": args.update, **s}, CLASS_NAMES, args.trials * args.particles)
            mean_ci(row, "nontrivial_per_soup", nt)
            mean_ci(row, "zero_per_soup", zero)
            row.update({f"events_{k}": sum(e.get(k, 0) for e in events) / args.trials for k in (ATTACKS, LEARN_FROM)})
            rows.append(row)
            folder.log_scalars(f"{tag}/{arch}", row, v)
            t_nt = pub_nontrivial[i] if pub_nontrivial is not None and i < len(pub_nontrivial) else None
            t_z = pub_zero[i] if pub_zero is not None and i < len(pub_zero) else None
            if t_nt is not None:
                consistency.append(mean_verdict(f"{arch} {param} {v}, non-trivial per soup", nt, t_nt, pub_soups))
            if t_z is not None:
                consistency.append(mean_verdict(f"{arch} {param} {v}, zero per soup", zero, t_z, pub_soups))
            table.append([arch, v, f"{args.trials} x {args.particles}", versus(ps["nontrivial"], t_nt),
                          "" if t_nt is None else f"{ps['nontrivial'] - t_nt:+.2f}", versus(ps["zero"], t_z),
                          fmt_share(ps["divergent"]), fmt_share(ps["other"])])
            ys_nt.append(ps["nontrivial"])
            ys_zero.append(ps["zero"])
    return rows, table, ys_nt, ys_zero


def _soup_notes(args):
    order = ("the published order (update sequential): slot by slot, each particle attacks a partner drawn from "
             "all slots of its soup (itself included; the attack is written at once), learns from one, self-trains "
             "and is checked for removal before the next slot's particle" if args.update == "sequential" else
             "synchronous generations (update synchronous): every phase reads the genomes as they were when it "
             "began, partners are always other particles, and a divergent particle neither attacks nor teaches; "
             "the published code walked through the particles one after another (--update sequential)")
    return [
        "Counts are per soup (mean over the soups, 95% t interval in results.csv), ours / published. The soups of "
        "a setting evolve as one population (partners drawn within each soup); the published code ran them one "
        "after another.",
        f"Order within a generation: {order}.",
        f"Soups per setting: {args.trials} (published 10). With 10 soups the standard error of a per-soup mean is "
        "about a third of the spread between soups, so neighbouring settings of the published curve differ by "
        "noise too. Class shares in results.csv have Wilson intervals over all particles, which understate the "
        "uncertainty (particles of one soup are not independent); the per-soup interval is the honest one.",
    ]


# ---- learn_from_soup --------------------------------------------------------------------------------


@experiment("learn_from_soup")
def run_learn_from_soup(args, folder) -> Report:
    """Soups of particles that, with probability learn_from_rate per generation, train learn_from
    severity epochs on another particle's samples; non-trivial fixpoints per soup at the end."""
    pub = published.LEARN_FROM_SOUP
    sev = list(args.severities)
    pub_nt = [pub["nontrivial_per_soup"][pub["severities"].index(s)] if s in pub["severities"] else None for s in sev]
    pub_z = [0.0 if s in pub["severities"] else None for s in sev]

    def step_for(s):
        return SoupParams(learn_from_rate=args.learn_from_rate, learn_from_severity=s, train=args.train, lr=args.lr,
                          batch_size=args.batch_size, momentum=args.momentum, remove_divergent=args.remove_divergent,
                          remove_zero=args.remove_zero, epsilon=args.epsilon, seed=args.seed, update=args.update)

    consistency = []
    rows, table, ys, yz = _sweep(args, folder, args.architecture, "severity", sev, step_for, args.generations,
                                 pub_nt, pub_z, "learn_from_soup", consistency, pub["soups"])
    notes = _soup_notes(args) + [
        "The published run used sigmoid activations in its code (docs/science.md: linear for every published run; "
        f"ours: {args.activation}), no self-training (train 0) and no respawning."]
    fig = figures.sweep_lines("learn_from severity (epochs)", "non-trivial fixpoints per soup", "learn_from soup",
                              {f"{args.architecture}": (sev, ys)},
                              {f"{args.architecture}": (pub["severities"], pub["nontrivial_per_soup"])})
    return Report(rows, _sweep_columns("severity"),
                  table, notes, {"nontrivial_per_soup": fig},
                  {"soups per severity": (args.trials, pub["soups"]), "particles": (args.particles, pub["particles"]),
                   "generations": (args.generations, pub["generations"]),
                   "learn_from_rate": (args.learn_from_rate, pub["learn_from_rate"]),
                   "severities": (",".join(map(str, sev)), "0,10,...,100"),
                   "order within a generation": (args.update, "sequential")}, consistency=consistency)


def _sweep_columns(setting: str) -> list[str]:
    """The printed table's columns of a soup sweep over ``setting``."""
    return ["architecture", setting, "soups x particles", "non-trivial per soup ours / published",
            "difference", "zero per soup ours / published", "divergent per soup", "other per soup"]


# ---- mixed_soup ------------------------------------------------------------------------------------


@experiment("mixed_soup")
def run_mixed_soup(args, folder) -> Report:
    """Soups whose particles attack each other (attacking_rate) and self-train t epochs per generation;
    non-trivial fixpoints per soup after a few generations."""
    pub = published.MIXED_SOUP
    trains = list(args.trains)
    rows, table, series, pub_series, consistency = [], [], {}, {}, []
    for arch in args.architectures:
        theirs = pub["nontrivial_per_soup"].get(arch)
        pub_nt = [theirs[pub["trains"].index(t)] if theirs and t in pub["trains"] else None for t in trains]

        def step_for(t):
            return SoupParams(attacking_rate=args.attacking_rate, train=t, lr=args.lr, batch_size=args.batch_size,
                              momentum=args.momentum, remove_divergent=args.remove_divergent,
                              remove_zero=args.remove_zero, epsilon=args.epsilon, seed=args.seed, update=args.update)

        r, t, ys, _ = _sweep(args, folder, arch, "trains", trains, step_for, args.generations, pub_nt, None,
                             "mixed_soup", consistency, pub["soups"])
        rows += r
        table += t
        series[arch] = (trains, ys)
        if theirs:
            pub_series[arch] = (pub["trains"], theirs)
    notes = _soup_notes(args) + ["Published: weightwise as listed, aggregating 0 throughout (an aggregating "
                                 "network is practically never a fixpoint weight by weight)."]
    fig = figures.sweep_lines("self-training epochs per generation", "non-trivial fixpoints per soup", "mixed soup",
                              series, pub_series)
    return Report(rows, _sweep_columns("trains"),
                  table, notes, {"nontrivial_per_soup": fig},
                  {"soups per setting": (args.trials, pub["soups"]), "particles": (args.particles, pub["particles"]),
                   "generations": (args.generations, pub["generations"]),
                   "attacking_rate": (args.attacking_rate, pub["attacking_rate"]),
                   "trains": (",".join(map(str, trains)), "0,10,...,100"),
                   "order within a generation": (args.update, "sequential")}, consistency=consistency)


# ---- soup_trajectories -----------------------------------------------------------------------------


@experiment("soup_trajectories")
def run_soup_trajectories(args, folder) -> Report:
    """A soup of particles that attack each other and self-train, dead ones respawned; its weight
    trajectories in a PCA-reduced weight space (2D, and 3D with time) and its classes at the end."""
    pub = published.SOUP
    rep = make_replicator(args.architecture, args)
    params = SoupParams(attacking_rate=args.attacking_rate, learn_from_rate=args.learn_from_rate,
                        learn_from_severity=args.learn_from_severity, train=args.train, lr=args.lr,
                        batch_size=args.batch_size, momentum=args.momentum, remove_divergent=not args.keep_divergent,
                        remove_zero=not args.keep_zero, epsilon=args.epsilon, seed=args.seed, update=args.update)
    with bar(args, args.generations, "soup") as pbar:
        w, events, traj, ids = evolve_soups(rep, args.trials, args.particles, args.generations, params,
                                            pbar.update, record=True)
    S, G1, P, W = traj.shape
    flat = traj.reshape(-1, W)
    cls = classify(rep, flat, args.epsilon, args.second_order).view(S, G1, P)  # every generation of every soup
    for g in range(G1):
        folder.log_scalars("soup_trajectories/classes", shares(cls[:, g]), g)
        if g:
            folder.log_scalars("soup_trajectories/events_per_soup", {k: v / S for k, v in events[g - 1].items()}, g)
    final = cls[:, -1]
    s, ps = shares(final), per_soup(final)
    rows = [{"soup": i, "particles": P, "generations": args.generations, "update": args.update, **shares(final[i])}
            for i in range(S)]
    nt = per_soup_counts(final, FixpointClass.NONTRIVIAL)  # [S] the final non-trivial count of every soup
    k_pub = pub["counts"]["nontrivial"]
    at_most = sum(1 for x in nt if x <= k_pub)
    at_least = sum(1 for x in nt if x >= k_pub)
    lo, hi = wilson(at_most, S)
    summary = shares_ci({"soup": "all", "particles": P, "generations": args.generations, "update": args.update, **s},
                        CLASS_NAMES, S * P)
    mean_ci(summary, "nontrivial_per_soup", nt)
    summary.update({"nontrivial_at_most_published": at_most / S, "nontrivial_at_most_published_ci_low": lo,
                    "nontrivial_at_most_published_ci_high": hi, "published_percentile": percentile(nt, k_pub),
                    **{f"{k}_per_soup": sum(e.get(k, 0) for e in events) / S for k in (ATTACKS, RESPAWNED)}})
    rows.append(summary)
    p_two = min(1.0, 2 * min(at_most, at_least) / S)
    dist = [[k, c, f"{c / S:.3f}", f"{sum(1 for x in nt if x <= k) / S:.3f}"]
            for k, c in enumerate(torch.bincount(torch.tensor(nt, dtype=torch.long), minlength=P + 1).tolist()) if c]
    from nsr.experiments.runfolder import markdown_table

    extra = (f"## The final non-trivial count per soup ({S} soups, update {args.update})\n\n"
             + markdown_table(["non-trivial at the end", "soups", "share", "share with at most this many"], dist)
             + f"\n\nThe published soup ({k_pub} non-trivial of {pub['particles']}) falls at percentile "
             f"{summary['published_percentile']:.1f} of ours (mid-rank); {at_most / S:.3f} [{lo:.3f}, {hi:.3f}] of our "
             f"soups end with at most {k_pub} non-trivial.")
    consistency = [f"non-trivial at the end of one soup: published {k_pub} of {pub['particles']}; ours "
                   f"{summary['nontrivial_per_soup']:.2f} per soup [{summary['nontrivial_per_soup_ci_low']:.2f}, "
                   f"{summary['nontrivial_per_soup_ci_high']:.2f}] over {S} soups, and {at_most} of {S} soups end with at "
                   f"most {k_pub}. One soup as far out as the published one comes up with probability {p_two:.2g} "
                   f"(two-sided): "
                   + ("consistent with ours." if S >= 20 and p_two >= 0.05 else
                      "too few soups to judge." if S < 20 else "unlikely under ours.")]
    n = pub["particles"]
    table = [[c, versus(ps[c], pub["counts"].get(c)), versus(s[c], pub["counts"][c] / n if c in pub["counts"] else None)]
             for c in CLASS_NAMES]
    times0 = torch.arange(G1).repeat_interleave(P)  # [G1 * P] the generation of every recorded genome of soup 0
    ids0, w0 = ids[0].reshape(-1), traj[0].reshape(-1, W)  # a respawned slot holds a new id: a new trajectory
    n0 = len(torch.unique(ids0))
    figs = {"trajectories_pca": figures.pca_trajectories(times0, ids0, w0, f"soup 0: {n0} particle trajectories (PCA)"),
            "trajectories_pca_3d": figures.pca_trajectories(times0, ids0, w0, "soup 0: trajectories (PCA) over "
                                                            "generations", three_d=True),
            "classes_over_generations": figures.sweep_lines(
                "generation", "share of particles", "soup: classes per generation",
                {c: (list(range(G1)), [shares(cls[:, g])[c] for g in range(G1)]) for c in CLASS_NAMES}),
            "nontrivial_per_soup": figures.count_histogram(
                nt, P, "non-trivial particles at the end", f"{S} soups of {P}, update {args.update}: final "
                "non-trivial count", k_pub)}
    notes = [f"Published (one soup of {n}): {pub['counts']['nontrivial']} non-trivial, {pub['counts']['other']} other "
             "at the end. Ours: counts per soup (mean over soups) and shares.",
             "Respawned particles (divergent or zero ones replaced by fresh random genomes) start new trajectories; "
             "the PCA is fitted on all recorded generations of all particles of soup 0.",
             "Order within a generation: " + ("the published one (update sequential): slot by slot, each particle "
                                              "attacks (a partner from all slots, itself included), trains and is "
                                              "checked in turn, so a particle attacked after its own turn ends the "
                                              "generation perturbed." if args.update == "sequential" else
                                              "synchronous (every phase reads the genomes as they were when it began, "
                                              "and every particle self-trains after the attack phase); the published "
                                              "code updated the particles one after another (--update sequential)."),
             "The outcome is bimodal over soups: most calm down to (nearly) all non-trivial, turbulent ones (many late "
             "disruptive attacks) end near half; the published run is one soup, so compare it with the distribution "
             "(the histogram and the table above), not with the mean."]
    return Report(rows, ["class", "per soup ours / published", "share ours / published"], table, notes, figs,
                  {"particles": (P, n), "soups": (S, 1), "generations": (args.generations, pub["generations"]),
                   "attacking_rate": (args.attacking_rate, pub["attacking_rate"]), "train": (args.train, pub["train"]),
                   "respawn divergent / zero": (f"{not args.keep_divergent} / {not args.keep_zero}", "True / True"),
                   "order within a generation": (args.update, "sequential")}, extra, consistency)
