"""The replication/task trade-off: task replicators trained on ``replication + alpha * task``.

    nsr experiment task_tradeoff --task digits --trials 10 --out runs/task_tradeoff

alpha is swept from 0 (pure replication) to ``inf`` (pure task); every alpha x trial is one
particle of ONE population (alpha a ``[P]`` tensor), trained with ``nsr.task_training.task_train``.
Measured per alpha: the replication error (MSE of self-application, mean over weights), the
fixpoint classes (on the replication interface), the task metric on the test split; 95% intervals
over trials. A plain network of the task path's size, trained on the task alone with the same
optimizer and batches, is the reference. Gabor et al. 2021 claim the task does not hinder
self-replication and can stabilise it; Chang & Lipson 2018 report a trade-off.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from nsr.experiments.base import Report, experiment
from nsr.fixpoints import CLASS_NAMES, classify, distance, vergence_times
from nsr.training import add_noise
from nsr.task_replicator import PlainTaskNetwork, TaskWeightwise
from nsr.task_training import TaskBatches, evaluate_task, task_train, train_on_task
from nsr.tasks import by_name

DEFAULT_ALPHAS = [0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0, math.inf]


def mean_ci(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and its 95% interval (normal approximation, 1.96 standard errors) of the finite values."""
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    h = 1.96 * float(x.std(ddof=1)) / math.sqrt(len(x)) if len(x) > 1 else math.nan
    return m, m - h, m + h


def wilson(k: int, n: int) -> tuple[float, float, float]:
    """Share k/n and its 95% Wilson interval."""
    if n == 0:
        return math.nan, math.nan, math.nan
    p, z = k / n, 1.96
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, c - h), min(1.0, c + h)


def replication_error(rep, w: torch.Tensor) -> torch.Tensor:
    """``[P]`` mean squared difference between self-application and the genome (NaN if divergent)."""
    with torch.no_grad():
        e = (rep.apply(w, w) - w).square().mean(1)
    return torch.where(torch.isfinite(e), e, torch.full_like(e, math.nan))


def fmt_ci(m, lo, hi, digits=3) -> str:
    if math.isnan(m):
        return "-"
    if math.isnan(lo):
        return f"{m:.{digits}g}"
    return f"{m:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """Which points (cost_a, cost_b), both lower-is-better, no other point dominates."""
    out = []
    for i, (a, b) in enumerate(points):
        dominated = any((a2 <= a and b2 <= b and (a2 < a or b2 < b)) for j, (a2, b2) in enumerate(points)
                        if j != i and not (math.isnan(a2) or math.isnan(b2)))
        out.append(not dominated and not (math.isnan(a) or math.isnan(b)))
    return out


@experiment("task_tradeoff")
def run(args, folder) -> Report:
    """alpha x seeds as one population of task replicators; replication error, fixpoint share and
    task metric per alpha with 95% intervals; a plain network trained on the task alone as reference."""
    task = by_name(args.task)
    rep = TaskWeightwise.for_task(task, width=args.width, depth=args.depth, activation=args.activation)
    A, T = len(args.alphas), args.trials
    alpha = torch.tensor(args.alphas, dtype=torch.float32).repeat_interleave(T)  # [A*T]: alpha-major
    seed_of = torch.arange(T).repeat(A)  # trial t has the same initial genome under every alpha
    g = torch.Generator().manual_seed(args.seed)
    w0 = rep.init(T, generator=g)[seed_of]  # [A*T, W]
    state = task_train(rep, task, w0, epochs=args.epochs, alpha=alpha, lr=args.lr, batch_size=args.batch_size,
                       momentum=args.momentum, generator=g, task_batch_size=args.task_batch_size,
                       task_generator=torch.Generator().manual_seed(args.seed + 1), normalize=not args.no_normalize)
    w = state.weights
    classes = classify(rep, w, args.epsilon, args.second_order)
    err = replication_error(rep, w).numpy()
    dist = distance(rep, w).numpy()  # max_i |F(w)_i - w_i|, what the fixpoint test compares with epsilon
    # robustness ("can the task stabilise replication?"): self-applications until a noisy clone verges
    tv, _ = vergence_times(rep, add_noise(w, args.noise, generator=torch.Generator().manual_seed(args.seed + 3)),
                           max_steps=100, epsilon=args.epsilon)
    tv = tv.double().numpy()
    _, metric = evaluate_task(rep, task, w)
    metric = metric.numpy()

    plain = PlainTaskNetwork(task.num_inputs, task.num_outputs, args.width, args.depth, args.activation)
    pw = train_on_task(plain, task, plain.init(T, generator=torch.Generator().manual_seed(args.seed + 2)),
                       epochs=args.epochs, lr=args.lr, momentum=args.momentum,
                       task_batches=TaskBatches(task, args.task_batch_size, torch.Generator().manual_seed(args.seed + 1)))
    plain_metric = evaluate_task(plain, task, pw)[1].numpy()
    pm = mean_ci(plain_metric)

    rows, table, summary = [], [], []
    metric_name = task.metric_name
    for a_i, a in enumerate(args.alphas):
        sl = slice(a_i * T, (a_i + 1) * T)
        c = classes[sl]
        n = {name: int((c == k).sum()) for k, name in enumerate(CLASS_NAMES)}
        log_err = np.log10(np.maximum(err[sl], 1e-30))
        le = mean_ci(log_err)
        nt = wilson(n["nontrivial"], T)
        fx = wilson(n["nontrivial"] + n["zero"], T)
        tm = mean_ci(metric[sl])
        solved = wilson(int(task.solves(torch.as_tensor(metric[sl])).sum()), T)
        med_dist = float(np.median(dist[sl]))
        tvi = mean_ci(tv[sl])
        row = {"alpha": a, "trials": T, "replication_error_log10": le[0], "replication_error_log10_lo": le[1],
               "replication_error_log10_hi": le[2], "nontrivial": nt[0], "nontrivial_lo": nt[1], "nontrivial_hi": nt[2],
               "distance_median": med_dist, "time_to_vergence": tvi[0], "time_to_vergence_lo": tvi[1],
               "time_to_vergence_hi": tvi[2], "fixpoint": fx[0], "fixpoint_lo": fx[1], "fixpoint_hi": fx[2],
               **{f"n_{k}": v for k, v in n.items()}, f"task_{metric_name}": tm[0], f"task_{metric_name}_lo": tm[1],
               f"task_{metric_name}_hi": tm[2], "task_solved": solved[0]}
        rows.append(row)
        summary.append((a, le, nt, fx, tm, n, (med_dist, tvi)))
        folder.log_scalars("task_tradeoff", {"replication_error_log10": le[0], "nontrivial": nt[0],
                                             f"task_{metric_name}": tm[0]}, step=a_i)
    # Pareto front over the alpha settings: low replication error and good task metric
    sign = -1.0 if task.higher_is_better else 1.0
    front = pareto([(s[1][0], sign * s[4][0]) for s in summary])
    for row, (a, le, nt, fx, tm, n, (md, tvi)), f in zip(rows, summary, front):
        row["pareto"] = bool(f)
        table.append([_fmt_alpha(a), fmt_ci(*le), f"{md:.2g}", fmt_ci(*tvi), fmt_ci(*nt, digits=2),
                      f"{n['zero']}/{n['divergent']}/{n['other']}", fmt_ci(*tm), "yes" if f else ""])
    rows.append({"alpha": "plain", "trials": T, f"task_{metric_name}": pm[0], f"task_{metric_name}_lo": pm[1],
                 f"task_{metric_name}_hi": pm[2]})
    table.append(["plain network (task only)", "-", "-", "-", "-", "-", fmt_ci(*pm), ""])

    headers = ["alpha", "log10 replication error [95% CI]", "median fixpoint distance",
               f"time to vergence at noise {args.noise:g} [95% CI]", "non-trivial share [95% CI]",
               "zero/divergent/other",
               f"task {metric_name} (test) [95% CI]", "Pareto"]
    verdict = _verdict(summary, pm, task, T)
    fig = _figure(summary, front, err, metric, args.alphas, T, pm, metric_name)
    notes = [f"Task {task.name} ({task!r}); replicator {rep!r} with {rep.num_weights} weights; plain network "
             f"{plain.num_weights} weights; {args.epochs} epochs, lr {args.lr}, momentum {args.momentum}, replication "
             f"batch {'full' if args.batch_size is None else args.batch_size}, task batch {args.task_batch_size}; "
             f"{'normalised: (replication + alpha task) / (1 + alpha)' if not args.no_normalize else 'not normalised'}.",
             "Neither publication gives numbers for this setting: the claims are qualitative, so the table stands alone.",
             f"The verdict holds at this training budget ({args.epochs} epochs): the task slows the replication's "
             "convergence, so a longer run can turn a trade-off into kept fixpoints (docs/tasks.md: digits, 20000 "
             "epochs).",
             "Replication error: mean over weights of (F(w)_i - w_i)^2, averaged over trials in log10; the fixpoint test "
             f"compares the largest |F(w)_i - w_i| (median shown) with epsilon {args.epsilon:g}. Time to vergence: "
             f"self-applications (up to 100) until the trained genome plus noise at scale {args.noise:g} becomes zero "
             "or divergent (the paper's robustness measure). Intervals are 1.96 standard errors (means) and Wilson "
             "intervals (shares)."]
    return Report(rows=rows, headers=headers, table=table, notes=notes, figures={"pareto": fig},
                  settings={"alphas": (", ".join(_fmt_alpha(a) for a in args.alphas), "-"), "trials per alpha": (T, "-")},
                  extra_md="## Which claim holds\n\n" + verdict)


def _fmt_alpha(a: float) -> str:
    return "inf (task only)" if math.isinf(a) else f"{a:g}"


def _overlap(a, b) -> bool:
    return not (a[2] < b[1] or b[2] < a[1])


def _verdict(summary, pm, task, T) -> str:
    """Sentences that say where the task hinders replication (a trade-off) and where it does not."""
    base = summary[0]
    if base[0] != 0:
        return "alpha = 0 is not in the sweep: no comparison with plain replication."
    lines = [f"alpha = 0 (replication only): non-trivial share {base[2][0]:.2f}, log10 replication error "
             f"{base[1][0]:.2f}; plain network on the task alone: {task.metric_name} {pm[0]:.3g}.", ""]
    no_hind, mild, hind = [], [], []
    for a, le, nt, fx, tm, n, _ in summary[1:]:
        if math.isinf(a):
            continue
        same_share = _overlap(nt, base[2])
        worse_err = le[1] > base[1][2] if not math.isnan(le[1]) and not math.isnan(base[1][2]) else False
        text = (f"alpha {a:g}: non-trivial {nt[0]:.2f} (vs {base[2][0]:.2f}), log10 error {le[0]:.2f} "
                f"(vs {base[1][0]:.2f}), task {task.metric_name} {tm[0]:.3g}")
        (no_hind if same_share and not worse_err else mild if same_share else hind).append(text)
    if no_hind:
        lines += ["**No hindrance** (Gabor et al. 2021) where the non-trivial share is within the 95% interval of "
                  "alpha = 0 and the replication error is not larger: " + "; ".join(no_hind) + ".", ""]
    if mild:
        lines += ["**Fixpoints kept, replication error measurably larger** (a mild trade-off): "
                  + "; ".join(mild) + ".", ""]
    if hind:
        lines += ["**Trade-off** (Chang & Lipson 2018): the non-trivial share falls outside alpha = 0's interval: "
                  + "; ".join(hind) + ".", ""]
    stab = [s for s in summary[1:] if not math.isinf(s[0]) and s[2][1] > base[2][2]]
    lines += ["Stabilisation as a higher non-trivial share than alpha = 0 (intervals disjoint): "
              + ("; ".join(f"alpha {s[0]:g} ({s[2][0]:.2f})" for s in stab) if stab else "not observed") + "."]
    b_tv = base[6][1]
    longer = [s for s in summary[1:] if not math.isinf(s[0]) and s[6][1][1] > b_tv[2]]
    shorter = [s for s in summary[1:] if not math.isinf(s[0]) and s[6][1][2] < b_tv[1]]
    lines += ["", f"Stabilisation as robustness: a noisy clone of an alpha = 0 genome verges after {b_tv[0]:.2f} "
              f"[{b_tv[1]:.2f}, {b_tv[2]:.2f}] self-applications; longer (more robust) at "
              + ("; ".join(f"alpha {s[0]:g} ({s[6][1][0]:.2f})" for s in longer) if longer else "no alpha")
              + ", shorter at " + ("; ".join(f"alpha {s[0]:g} ({s[6][1][0]:.2f})" for s in shorter) if shorter else "no alpha")
              + "."]
    return "\n".join(lines)


def _figure(summary, front, err, metric, alphas, T, pm, metric_name):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    cmap = plt.get_cmap("viridis")
    for i, (a, le, nt, fx, tm, n, _) in enumerate(summary):
        color = cmap(i / max(len(summary) - 1, 1))
        sl = slice(i * T, (i + 1) * T)
        ax.scatter(np.log10(np.maximum(err[sl], 1e-30)), metric[sl], s=8, color=color, alpha=0.35)
        ax.errorbar(le[0], tm[0], xerr=None if math.isnan(le[1]) else [[le[0] - le[1]], [le[2] - le[0]]],
                    yerr=None if math.isnan(tm[1]) else [[tm[0] - tm[1]], [tm[2] - tm[0]]], fmt="o", color=color,
                    markeredgecolor="k" if front[i] else color, label=f"alpha {_fmt_alpha(a)}")
    pts = sorted((s[1][0], s[4][0]) for s, f in zip(summary, front) if f)
    if pts:
        ax.plot(*zip(*pts), "k--", lw=1, label="Pareto front")
    if not math.isnan(pm[0]):
        ax.axhline(pm[0], color="gray", ls=":", label="plain network, task only")
    ax.set_xlabel("log10 replication error (MSE of self-application)")
    ax.set_ylabel(f"task {metric_name} (test)")
    ax.set_title("Replication vs task (mean and 95% CI per alpha)")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
