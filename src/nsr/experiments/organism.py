"""Organism networks on a task, against a dense network of the same shape (docs/organisms.md).

    nsr experiment organism                           # 10 seeds, digits, host 64 -> 160 -> 10, 30 epochs
    nsr experiment organism --trials 3 --epochs 5     # a quick look

Per seed: an :class:`~nsr.modules.OrganismModule` and a :class:`~nsr.modules.DenseModule` of the same
shape, trained with the same SGD, batches and epochs (Lightning). Recorded per epoch: the particle
classes and the test metric. At the end, **particle dropout**: the test metric when all particles of
one class are zeroed, beside the same share of connections pruned by magnitude (smallest |weight|,
over all layers) from the dense network, and from the organism itself (smallest |gain|). Every mean
comes with a 95% t-interval over seeds.
"""
from __future__ import annotations

import math
import time
import warnings

import numpy as np

from nsr.experiments import figures
from nsr.experiments.base import Report, bar, experiment
from nsr.fixpoints import CLASS_NAMES, classify
from nsr.organism import drop_particles, magnitude_prune, smallest

PUBLISHED_ACCURACY = "~0.9 (15x15 MNIST, ~1,200-1,500 particles, 200 epochs, 3 seeds)"
PUBLISHED_DROPOUT = {"nontrivial": "about -0.0005 (identity particles)"}


def mean_ci(values) -> tuple[float, float, int]:
    """``(mean, half width of the 95% t-interval, n)`` of the finite ``values`` (half width NaN for n < 2)."""
    from scipy.stats import t

    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    if len(v) < 2:
        return float(v.mean()), math.nan, 1
    return float(v.mean()), float(t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))), len(v)


def _num(x: float, digits: int) -> str:
    return f"{x:.{digits}f}" if x == 0 or abs(x) >= 10.0 ** -digits else f"{x:.1e}"


def fmt_ci(values, digits: int = 3) -> str:
    """``mean ± half width`` of the 95% t-interval (small numbers in exponent notation)."""
    m, h, n = mean_ci(values)
    if n == 0:
        return "-"
    return _num(m, digits) if not math.isfinite(h) else f"{_num(m, digits)} ± {_num(h, digits)}"


def _fit(module, dm, epochs: int, logger, callbacks=()) -> float:
    """Train ``module`` for ``epochs``; returns the seconds of the fit."""
    import lightning.pytorch as pl

    with warnings.catch_warnings():  # Lightning's notes on loaders and logging intervals, once per fit
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=logger, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                             log_every_n_steps=1, callbacks=list(callbacks))
        t0 = time.perf_counter()
        trainer.fit(module, datamodule=dm)
        return time.perf_counter() - t0


def run_seed(args, seed: int, folder) -> dict:
    """One organism and one dense network of the same shape on the task; dropout and pruning at the end."""
    import logging

    from lightning.pytorch.loggers import TensorBoardLogger

    from nsr.callbacks import FixpointMonitor
    from nsr.data_tasks import TaskDataModule
    from nsr.modules import DenseModule, OrganismModule
    from nsr.organism import Particle
    from nsr.tasks import by_name

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    task = by_name(args.task)
    metric = task.metric_name
    particle = Particle(width=args.width, depth=args.depth, activation=args.activation)
    org = OrganismModule(task=task, hidden=args.hidden, particle=particle, activation=args.host_activation,
                         replication_weight=args.replication_weight, lr=args.lr, momentum=args.momentum,
                         attacking_rate=args.attacking_rate, learn_from_rate=args.learn_from_rate,
                         epsilon=args.epsilon, second_order=args.second_order, seed=seed)
    dense = DenseModule(task=task, hidden=args.hidden, activation=args.host_activation, lr=args.lr,
                        momentum=args.momentum, seed=seed)
    tb = lambda name: TensorBoardLogger(str(folder.path), name=name, version=f"seed_{seed}", default_hp_metric=False)
    t_org = _fit(org, TaskDataModule(task, batch_size=args.batch_size, seed=seed), args.epochs, tb("organism"),
                 [FixpointMonitor(summary=False)])  # fixpoint/* in TensorBoard
    t_dense = _fit(dense, TaskDataModule(task, batch_size=args.batch_size, seed=seed), args.epochs, tb("dense"))
    w = org.population
    P = w.shape[0]
    base, dense_base = org.evaluate()[metric], dense.evaluate()[metric]
    classes = classify(org.replicator, w, args.epsilon, args.second_order)
    strength = org.organism.strength(w)  # [P] |gain|
    kernels = [k.detach() for k in dense.kernels]
    silent = org.organism.silent(w, task.data("train")[0])  # [P]: no task signal ever reaches them
    dropout = {}
    for k, name in enumerate(CLASS_NAMES):
        mask = classes == k
        n = int(mask.sum())
        if n == 0:
            continue
        share = n / P
        dropout[name] = {
            "share": share,
            "silent": float(silent[mask].double().mean()),
            "class_zeroed": org.evaluate(drop_particles(w, mask))[metric] - base,
            "organism_magnitude": org.evaluate(drop_particles(w, smallest(strength, share)))[metric] - base,
            "dense_magnitude": dense.evaluate(magnitude_prune(kernels, share))[metric] - dense_base,
        }
    return {"seed": seed, "particles": P, "silent": float(silent.double().mean()), "organism": base,
            "dense": dense_base, "organism_s": t_org, "dense_s": t_dense, "history": org.history,
            "dense_history": dense.history, "dropout": dropout}


@experiment("organism")
def run_organism(args, folder) -> Report:
    """Organism networks on a task over several seeds, beside a dense network of the same shape."""
    from nsr.tasks import by_name

    task = by_name(args.task)
    metric = task.metric_name
    results = []
    with bar(args, args.trials, "seeds") as pbar:
        for s in range(args.trials):
            results.append(run_seed(args, args.seed + s, folder))
            pbar.update(1)
    P = results[0]["particles"]
    rows = []
    for r in results:
        for h, d in zip(r["history"], r["dense_history"]):
            rows.append({"kind": "epoch", "seed": r["seed"], "epoch": h["epoch"], "organism": h[f"task/{metric}"],
                         "dense": d[f"task/{metric}"], **{c: h[c] / P for c in CLASS_NAMES}})
        rows.append({"kind": "final", "seed": r["seed"], "epoch": args.epochs, "organism": r["organism"],
                     "dense": r["dense"], "organism_s": r["organism_s"], "dense_s": r["dense_s"]})
        for c, d in r["dropout"].items():
            rows.append({"kind": "dropout", "seed": r["seed"], "class": c, **d})
    better = task.higher_is_better
    # ---- the dropout table --------------------------------------------------------------------------
    headers = ["class zeroed", "seeds with it", "share of particles", "of them silent", f"{metric} change: class zeroed",
               "same share by magnitude: dense", "same share by magnitude: organism",
               "class zeroed - dense magnitude (paired)", "published (class zeroed)"]
    table, verdict = [], []
    for c in CLASS_NAMES:
        ds = [r["dropout"][c] for r in results if c in r["dropout"]]
        if not ds:
            continue
        diff = [d["class_zeroed"] - d["dense_magnitude"] for d in ds]
        table.append([c.replace("_", " "), str(len(ds)), fmt_ci([d["share"] for d in ds]), fmt_ci([d["silent"] for d in ds]),
                      fmt_ci([d["class_zeroed"] for d in ds]), fmt_ci([d["dense_magnitude"] for d in ds]),
                      fmt_ci([d["organism_magnitude"] for d in ds]), fmt_ci(diff),
                      PUBLISHED_DROPOUT.get(c, "-") if args.task == "digits" else "-"])
        m, h, n = mean_ci(diff)
        if n >= 2 and math.isfinite(h):
            gain = (m - h, m + h) if better else (-(m + h), -(m - h))  # the organism's advantage, an interval
            shares_txt = fmt_ci([d["share"] for d in ds], 2)
            if gain[0] > 0:
                how = f"hurts the {metric} less than"
            elif gain[1] < 0:
                how = f"hurts the {metric} more than"
            else:
                how = "is not distinguishable from"
            verdict.append(f"zeroing the {c} particles ({shares_txt} of them) {how} pruning the same share of the "
                           f"dense network by magnitude (paired difference of the {metric} changes {fmt_ci(diff)})")
    # ---- accuracy and cost ---------------------------------------------------------------------------
    org_acc, dense_acc = [r["organism"] for r in results], [r["dense"] for r in results]
    per_epoch_org = [_epoch_seconds(r["history"]) for r in results]
    per_epoch_dense = [_epoch_seconds(r["dense_history"]) for r in results]
    final_nontrivial = [r["history"][-1]["nontrivial"] / P for r in results]
    cost = [["test " + metric, fmt_ci(org_acc), fmt_ci(dense_acc), fmt_ci([a - b for a, b in zip(org_acc, dense_acc)]),
             PUBLISHED_ACCURACY if args.task == "digits" else "-"],
            ["seconds per epoch of training steps (median, 1 thread)", fmt_ci(per_epoch_org, 3), fmt_ci(per_epoch_dense, 3),
             fmt_ci([a / b for a, b in zip(per_epoch_org, per_epoch_dense)], 1) + " x", "-"],
            ["parameters", f"{P} particles x {_weights(args)} = {P * _weights(args)} weights",
             f"{P} weights", "-", "-"],
            ["non-trivial fixpoints at the end", fmt_ci(final_nontrivial), "-", "-", "-"],
            ["silent particles (input unit always 0 on the train split)", fmt_ci([r["silent"] for r in results]),
             "-", "-", "-"]]
    extra = "\n".join([
        "## Accuracy and cost (95% intervals over seeds)", "",
        "| quantity | organism | dense, same shape | organism - dense | published |",
        "|---|---|---|---|---|", *["| " + " | ".join(r) + " |" for r in cost], "",
        "## Does particle dropout prune better than magnitude pruning?", "",
        *[f"- {v}" for v in verdict], ""])
    host = " -> ".join(str(x) for x in [task.num_inputs, *args.hidden, task.num_outputs])
    notes = [
        f"Task: {args.task} (scikit-learn's 8x8 digits stand in for the authors' 15x15 MNIST); host {host}, "
        f"{args.host_activation} between layers; {args.epochs} epochs (published: 200); {args.trials} seeds (published: 3).",
        "Both networks: SGD lr %g momentum %g, batches of %s, the same data order per seed; the organism adds "
        "%g x the summed replication loss (the authors alternate one replication and one task step with alpha 1)."
        % (args.lr, args.momentum, args.batch_size, args.replication_weight),
        "Magnitude pruning removes the given share of connections with the smallest |weight| over all layers "
        "(the organism's: smallest |gain|, the factor by which a linear particle passes the host signal).",
        "Silent particles sit on a connection whose input unit is 0 on every training image (e.g. the digits' "
        "always-blank border pixels, or a dead relu unit): no task gradient reaches them, only self-replication.",
        "The published dropout number is an accuracy change on MNIST with another host; no dense baseline was published.",
    ]
    figs = {"classes_per_epoch": _classes_figure(results, P), "accuracy": _accuracy_figure(results, metric),
            "dropout": _dropout_figure(results, metric)}
    settings = {"seeds": (args.trials, 3), "epochs": (args.epochs, 200), "particles": (P, "~1,200-1,500"),
                "task": (args.task, "MNIST 15x15")}
    return Report(rows=rows, headers=headers, table=table, notes=notes, figures=figs, settings=settings,
                  extra_md=extra)


def _epoch_seconds(history) -> float:
    """Median seconds of an epoch's training steps (the first epoch, with its warm-up, left out when there are more)."""
    s = [h["seconds"] for h in history]
    return float(np.median(s[1:] if len(s) > 1 else s))


def _weights(args) -> int:
    from nsr.organism import Particle

    return Particle(width=args.width, depth=args.depth).num_weights


def _classes_figure(results, P):
    plt = figures._plt()
    epochs = np.array([h["epoch"] for h in results[0]["history"]])
    shares = {c: np.mean([[h[c] / P for h in r["history"]] for r in results], axis=0) for c in CLASS_NAMES}
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.stackplot(epochs, *[shares[c] for c in CLASS_NAMES], labels=[c.replace("_", " ") for c in CLASS_NAMES],
                 colors=[figures.class_colours()[c] for c in CLASS_NAMES])
    ax.set_xlabel("epoch")
    ax.set_ylabel("share of particles (mean over seeds)")
    ax.set_ylim(0, 1)
    ax.set_title(f"particle classes per epoch ({len(results)} seeds, {P} particles)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _accuracy_figure(results, metric):
    plt = figures._plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    epochs = np.array([h["epoch"] for h in results[0]["history"]])
    for key, label, hist in (("organism", "organism", "history"), ("dense", "dense, same shape", "dense_history")):
        curves = np.array([[h[f"task/{metric}"] for h in r[hist]] for r in results])
        m = curves.mean(0)
        h = np.array([mean_ci(curves[:, e])[1] for e in range(curves.shape[1])]) if len(results) > 1 else 0 * m
        ax.plot(epochs, m, label=label)
        ax.fill_between(epochs, m - np.nan_to_num(h), m + np.nan_to_num(h), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"test {metric}")
    ax.set_title("task metric per epoch (mean, 95% interval over seeds)", fontsize=10)
    ax.legend(fontsize=7)
    return fig


def _dropout_figure(results, metric):
    plt = figures._plt()
    present = [c for c in CLASS_NAMES if any(c in r["dropout"] for r in results)]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    x = np.arange(len(present))
    for i, (key, label) in enumerate((("class_zeroed", "class zeroed"), ("dense_magnitude", "dense, magnitude"),
                                      ("organism_magnitude", "organism, magnitude"))):
        stats = [mean_ci([r["dropout"][c][key] for r in results if c in r["dropout"]]) for c in present]
        ax.bar(x + (i - 1) * 0.27, [s[0] for s in stats], 0.27, yerr=[0 if not math.isfinite(s[1]) else s[1] for s in stats],
               label=label, capsize=3)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xticks(x)
    ax.set_xticklabels([c.replace("_", " ") for c in present])
    ax.set_ylabel(f"change of test {metric}")
    ax.set_title("particle dropout vs the same share pruned by magnitude", fontsize=10)
    ax.legend(fontsize=7)
    return fig
