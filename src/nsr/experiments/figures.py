"""The experiments' figures (matplotlib, Agg backend): stacked class bars, box plots, sweep lines,
PCA trajectories. Each function returns a Figure; the run folder saves it as PNG and to TensorBoard."""
from __future__ import annotations

import numpy as np

from nsr.fixpoints import CLASS_NAMES


def _plt():
    """pyplot on the Agg backend, imported on first use (keeps ``--help`` fast)."""
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt

def class_colours() -> dict:
    """The one class palette (``nsr.callbacks.figures.CLASS_COLORS``) keyed by class name."""
    from nsr.callbacks.figures import CLASS_COLORS  # the one class palette

    return {k.name.lower(): v for k, v in CLASS_COLORS.items()}



def class_bars(bars: list[tuple[str, dict]], title: str, ylabel: str = "share"):
    """Stacked bars of class shares: ``bars`` is ``[(label, {class: share})]``; a missing share
    (e.g. a class the publication does not report) counts as 0."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(bars) + 2), 3.6))
    x = np.arange(len(bars))
    bottom = np.zeros(len(bars))
    for name in CLASS_NAMES:
        h = np.array([float(s.get(name, 0.0) or 0.0) for _, s in bars])
        ax.bar(x, h, bottom=bottom, color=class_colours()[name], label=name.replace("_", " "), width=0.7)
        bottom += h
    ax.set_xticks(x)
    ax.set_xticklabels([label for label, _ in bars], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, max(1.0, float(bottom.max()) if len(bars) else 1.0))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def box_plots(groups: list[tuple[str, np.ndarray]], title: str, ylabel: str, published: list | None = None,
              xlabel: str = ""):
    """Box plots of ``[(label, values)]``; ``published`` (same order, or None) marks the published
    means as red crosses."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(groups) + 2), 3.6))
    ax.boxplot([np.asarray(v, dtype=float) for _, v in groups], showmeans=True)
    ax.set_xticks(range(1, len(groups) + 1))
    ax.set_xticklabels([g for g, _ in groups], fontsize=8)
    if published is not None:
        xs = [i + 1 for i, p in enumerate(published) if p is not None]
        ax.scatter(xs, [p for p in published if p is not None], marker="x", color="red", zorder=3,
                   label="published mean")
        ax.legend(fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return fig


def sweep_lines(xlabel: str, ylabel: str, title: str, series: dict, published: dict | None = None):
    """Line plot of ``series`` ``{label: (xs, ys)}``; ``published`` ``{label: (xs, ys)}`` as dashed
    lines, or ``{label: (lo, hi)}`` as a shaded band."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, (xs, ys)) in enumerate(series.items()):
        c = colours[i % len(colours)]
        ax.plot(xs, ys, marker="o", color=c, label=f"{label} (ours)")
        pub = (published or {}).get(label)
        if pub is None:
            continue
        if isinstance(pub, tuple) and len(pub) == 2 and np.isscalar(pub[0]):
            ax.axhspan(pub[0], pub[1], color=c, alpha=0.12, label=f"{label} (published range)")
        else:
            ax.plot(pub[0], pub[1], ls="--", color=c, alpha=0.8, label=f"{label} (published)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return fig


def histograms(groups: dict, xlabel: str, title: str):
    """Overlaid histograms of ``{label: values}``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, v in groups.items():
        v = np.asarray(v, dtype=float)
        v = v[np.isfinite(v)]
        if len(v):
            ax.hist(v, bins=60, alpha=0.5, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("networks")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return fig


def pca_trajectories(times, ids, weights, title: str, three_d: bool = False):
    """Weight trajectories in a PCA-reduced weight space, drawn by
    ``nsr.callbacks.figures.trajectory_figures`` (one PCA fitted on all finite points; one colour per
    particle id, so a respawned particle is a new trajectory; a circle marks a start, a cross an end):
    ``times [N]`` generations, ``ids [N]`` particle ids, ``weights [N, W]``. ``three_d`` adds the
    generation as the third axis. An empty figure if no point is finite."""
    from nsr.callbacks.figures import trajectory_figures

    figs = trajectory_figures(times, ids, weights, "generation", title)
    if figs is None:
        plt = _plt()
        fig = plt.figure(figsize=(6, 5))
        fig.add_subplot(111, projection="3d" if three_d else None).set_title(title, fontsize=10)
        return fig
    return figs[1] if three_d else figs[0]


def count_histogram(counts, n: int, xlabel: str, title: str, published: float | None = None):
    """Bars of how many soups ended with each count 0..n (``counts`` one per soup), the published
    count marked."""
    plt = _plt()
    counts = np.asarray(counts, dtype=int)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.bar(np.arange(n + 1), np.bincount(counts, minlength=n + 1)[:n + 1], color="tab:blue", alpha=0.8)
    if published is not None:
        ax.axvline(published, color="tab:red", linestyle="--", label=f"published ({published:g})")
        ax.legend(fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("soups")
    ax.set_title(title, fontsize=10)
    return fig
