"""A soup that spreads a task: guided soups against soups without a guide.

    nsr experiment task_soup --soups 100 --generations 100 --out runs/task_soup

``--soups`` guided soups (the first ``--guides`` particles of each know the task's labels) and as
many soups without a guide evolve as ONE population (``soup_size``; :mod:`nsr.task_soup`).
Recorded every ``--record-every`` generations, per soup, over the non-guide slots (the same slots
in the unguided soups): the share of particles that solve the task (the task's threshold, e.g.
MSE <= 0.01 for gaussian_addition, accuracy >= 0.8 for digits) and the non-trivial fixpoint
share; means over soups with 95% intervals. Gabor et al. 2021 report that a guide spreads its task.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from nsr.experiments.base import Report, bar, experiment
from nsr.experiments.task_tradeoff import mean_ci, fmt_ci
from nsr.fixpoints import FixpointClass, classify
from nsr.task_replicator import TaskWeightwise
from nsr.task_soup import initial_task_soup, task_generation_step
from nsr.task_training import evaluate_task
from nsr.tasks import by_name


def _per_soup(values: torch.Tensor, mask: torch.Tensor, soups: int, n: int) -> np.ndarray:
    """``[soups]`` mean of ``values`` over the slots in ``mask`` of every soup."""
    v, m = values.float().view(soups, n), mask.float().view(soups, n)
    return ((v * m).sum(1) / m.sum(1).clamp(min=1)).numpy()


@experiment("task_soup")
def run(args, folder) -> Report:
    """Guided and unguided soups as one population; the share solving the task and the non-trivial
    fixpoint share over generations, means over soups with 95% intervals."""
    task = by_name(args.task)
    rep = TaskWeightwise.for_task(task, width=args.width, depth=args.depth, activation=args.activation)
    n, S = args.soup_size, args.trials
    if args.guides >= n:
        raise ValueError(f"guides must be fewer than the soup size {n}, got {args.guides}")
    P = 2 * S * n
    state = initial_task_soup(rep, P, guides=args.guides, soup_size=n, seed=args.seed)
    guided_arm = torch.arange(P) < S * n  # the first S soups are guided
    state = state._replace(guide=state.guide & guided_arm)
    measured = (torch.arange(P) % n) >= args.guides  # the non-guide slots, in both arms
    kw = dict(seed=args.seed, attacking_rate=args.attacking_rate, learn_from_rate=args.learn_from_rate,
              learn_from_severity=args.learn_from_severity, learn_from_alpha=args.learn_from_alpha, train=args.epochs,
              guide_alpha=args.guide_alpha, lr=args.lr, batch_size=args.batch_size, momentum=args.momentum,
              task_batch_size=args.task_batch_size, soup_size=n, guides_learn_from=not args.protect_guides)

    def record(gen):
        _, metric = evaluate_task(rep, task, state.weights)
        solved = task.solves(metric)
        nontrivial = classify(rep, state.weights, args.epsilon, args.second_order) == FixpointClass.NONTRIVIAL
        out = {"generation": gen}
        for arm, sel in (("guided", slice(0, S * n)), ("unguided", slice(S * n, P))):
            for name, v in (("solved", solved), ("nontrivial", nontrivial)):
                m, lo, hi = mean_ci(_per_soup(v[sel], measured[sel], S, n))
                lo, hi = (max(0.0, lo), min(1.0, hi)) if not math.isnan(lo) else (lo, hi)  # a share stays in [0, 1]
                out.update({f"{arm}_{name}": m, f"{arm}_{name}_lo": lo, f"{arm}_{name}_hi": hi})
        guides = state.guide
        out["guides_solved"] = float(solved[guides].float().mean()) if bool(guides.any()) else math.nan
        folder.log_scalars("task_soup", {k: v for k, v in out.items() if k != "generation"}, step=gen)
        return out

    rows = [record(0)]
    events = {"learn_from": 0, "respawned": 0, "attacks": 0}
    progress = bar(args, args.generations, "task soup")
    for gen in range(1, args.generations + 1):
        state, ev = task_generation_step(rep, task, state, **kw)
        for k in events:
            events[k] += ev[k]
        if gen % args.record_every == 0 or gen == args.generations:
            rows.append(record(gen))
        progress.update(1)
    progress.close()

    last = rows[-1]
    headers = ["generation", "solving, guided [95% CI]", "solving, unguided [95% CI]", "non-trivial, guided [95% CI]",
               "non-trivial, unguided [95% CI]", "guides solving"]
    shown = {0, args.generations} | {r["generation"] for r in rows[:: max(1, len(rows) // 6)]}
    table = [[r["generation"]] + [fmt_ci(r[f"{a}_{k}"], r[f"{a}_{k}_lo"], r[f"{a}_{k}_hi"], 2)
                                  for k in ("solved", "nontrivial") for a in ("guided", "unguided")]
             + [f"{r['guides_solved']:.2f}"] for r in rows if r["generation"] in shown]
    d_nt = last["guided_nontrivial"] - last["unguided_nontrivial"]
    se = lambda a: (last[f"{a}_nontrivial_hi"] - last[f"{a}_nontrivial_lo"]) / (2 * 1.96)  # noqa: E731
    h = 1.96 * math.sqrt(se("guided") ** 2 + se("unguided") ** 2)
    verdict = (f"After {args.generations} generations {last['guided_solved']:.2f} "
               f"[{last['guided_solved_lo']:.2f}, {last['guided_solved_hi']:.2f}] of the non-guides of a guided soup "
               f"solve the task ({task.metric_name} threshold {task.threshold:g}), against "
               f"{last['unguided_solved']:.2f} [{last['unguided_solved_lo']:.2f}, {last['unguided_solved_hi']:.2f}] "
               f"without a guide; the guides themselves: {last['guides_solved']:.2f}. The non-trivial fixpoint share "
               f"differs by {d_nt:+.2f} [{d_nt - h:+.2f}, {d_nt + h:+.2f}] (guided minus unguided): "
               + ("no measurable change." if d_nt - h <= 0 <= d_nt + h else "a measurable change."))
    fig = _figure(rows, task)
    notes = [f"Task {task!r}; {rep!r} ({rep.num_weights} weights); {S} guided + {S} unguided soups of {n} "
             f"({args.guides} guide(s) each) as one population of {P}; learn_from rate {args.learn_from_rate}, "
             f"severity {args.learn_from_severity}, alpha {args.learn_from_alpha}; train {args.epochs} epochs per "
             f"generation (lr {args.lr}, momentum {args.momentum}), guide alpha {args.guide_alpha}; attacks "
             f"{args.attacking_rate}; guides {'only teach' if args.protect_guides else 'also learn from others'}. "
             f"Events over the run: {events}.",
             "Shares are over the non-guide slots of each soup, averaged over soups; intervals 1.96 standard errors.",
             "The publication shows a guide spreading its task qualitatively; it gives no numbers to compare with."]
    return Report(rows=rows, headers=headers, table=table, notes=notes, figures={"task_soup": fig},
                  settings={"soups per arm": (S, "-"), "generations": (args.generations, "-")},
                  extra_md="## Does the guide spread the task?\n\n" + verdict)


def _figure(rows, task):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    g = [r["generation"] for r in rows]
    for ax, key, title in ((axes[0], "solved", f"share solving the task ({task.name})"),
                           (axes[1], "nontrivial", "non-trivial fixpoint share")):
        for arm, c in (("guided", "C0"), ("unguided", "C1")):
            ax.plot(g, [r[f"{arm}_{key}"] for r in rows], color=c, label=arm)
            ax.fill_between(g, [r[f"{arm}_{key}_lo"] for r in rows], [r[f"{arm}_{key}_hi"] for r in rows],
                            color=c, alpha=0.2)
        ax.set_xlabel("generation")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
