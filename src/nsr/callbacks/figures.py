"""Figures of a population (matplotlib ``Figure`` objects, no pyplot state): the robustness box
plots and the weight trajectories in one PCA of weight space. The experiments draw their
trajectories with the same :func:`trajectory_figures` (``nsr.experiments.figures``)."""
from __future__ import annotations

from typing import Optional

import torch

from nsr.fixpoints import FixpointClass, noise_label

# one palette for the fixpoint classes, used by every figure (the callbacks' and the experiments')
CLASS_COLORS = {FixpointClass.DIVERGENT: "#d62728", FixpointClass.ZERO: "#7f7f7f", FixpointClass.NONTRIVIAL: "#2ca02c",
                FixpointClass.SECOND_ORDER: "#9467bd", FixpointClass.OTHER: "#1f77b4"}
CLASS_MARKERS = {FixpointClass.DIVERGENT: "X", FixpointClass.ZERO: "s", FixpointClass.NONTRIVIAL: "*",
                 FixpointClass.SECOND_ORDER: "D", FixpointClass.OTHER: "P"}


def robustness_figure(results: dict):
    """Box plots of time to vergence and time as fixpoint per noise scale, from ``{scale:
    (time_to_vergence, time_as_fixpoint)}`` (``nsr.fixpoints.robustness``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5))
    labels = [noise_label(s) for s in results]
    for i, (title, k) in enumerate((("time to vergence", 0), ("time as fixpoint", 1))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.boxplot([v[k].double().numpy() for v in results.values()])
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=45)
        ax.set_xlabel("noise scale s (each weight moved by up to s)")
        ax.set_ylabel("self-applications")
        ax.set_title(title)
    fig.tight_layout()
    return fig


def pca(points: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean [W], components [k, W])`` of the principal component analysis of ``points``
    ``[N, W]`` (rows must be finite), as scikit-learn's PCA gives them: the leading right singular
    vectors of the centred points, each signed so that its largest entry in absolute value is
    positive; components beyond what the data can give are zero. (Computed with
    ``torch.linalg.svd``: importing scikit-learn took longer than the whole figure.)"""
    x = points.double()
    mean = x.mean(0)
    comps = torch.zeros(k, x.shape[1], dtype=torch.float64)
    m = min(k, x.shape[0], x.shape[1])
    if x.shape[0] > 1 and m > 0 and bool((x != mean).any()):  # points that all coincide have no direction
        vt = torch.linalg.svd(x - mean, full_matrices=False).Vh[:m]  # [m, W]
        signs = torch.sign(vt.gather(1, vt.abs().argmax(1, keepdim=True)))  # [m, 1]
        comps[:m] = vt * torch.where(signs == 0, torch.ones_like(signs), signs)
    return mean, comps


def explained_variance(points: torch.Tensor, mean: torch.Tensor, comps: torch.Tensor) -> list[float]:
    """The share of the variance of ``points`` ``[N, W]`` along each of ``comps`` ``[k, W]``
    (explained variance ratios, 0 for a zero component)."""
    x = points.double() - mean
    total = float((x ** 2).sum(1).mean())
    if total <= 0:
        return [0.0] * comps.shape[0]
    return [float(((x @ c) ** 2).mean()) / total for c in comps]


def particle_color(j: int):
    """The colour of the j-th particle drawn: the ``turbo`` colormap at golden-ratio steps, so
    colours never repeat however many particles there are, and neighbours differ."""
    from matplotlib import colormaps

    return colormaps["turbo"](0.05 + 0.9 * ((j * 0.6180339887) % 1.0))


def trajectory_figures(times: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor, time_label: str = "epoch",
                       title: Optional[str] = None, end_classes: Optional[dict] = None):
    """Trajectories through weight space in one PCA of all their (finite) points: a 2D and a 3D
    (time as the third axis) matplotlib figure. ``times [N]``, ``ids [N]``, ``weights [N, W]``:
    one row per recorded genome. Each particle id is a line in its own colour
    (:func:`particle_color`) with ``o`` at its first point; its last point is a marker in its final
    class's colour (:data:`CLASS_COLORS`) when ``end_classes`` ``{id: FixpointClass}`` says it,
    else ``x``. The PC axes give the share of variance they explain. None if nothing finite was
    recorded."""
    import numpy as np
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    finite = torch.isfinite(weights).all(1) if weights.numel() else torch.zeros(0, dtype=torch.bool)
    if not bool(finite.any()):
        return None
    times, ids, weights = times[finite], ids[finite], weights[finite]
    mean, comps = pca(weights, 2)
    ratio = explained_variance(weights, mean, comps)
    xy = ((weights.double() - mean) @ comps.T).numpy()  # [N, 2]
    fig2 = Figure(figsize=(7, 5.5))
    ax2 = fig2.add_subplot(1, 1, 1)
    fig3 = Figure(figsize=(7.5, 6.5))
    ax3 = fig3.add_subplot(1, 1, 1, projection="3d")
    seen = set()
    unique = torch.unique(ids).tolist()
    # one artist per kind of mark for all particles (a path collection, the starts, the ends of
    # each class): drawing 50 particles as 300 artists took longer than the rest of a fit's end
    order = torch.argsort(ids * (int(times.max()) + 1 if times.numel() else 1) + times, stable=True)
    counts = torch.unique_consecutive(ids[order], return_counts=True)[1].tolist()  # rows per id, ids ascending
    colors, paths2, paths3, starts, ends = [], [], [], [], {}
    for j, (pid, sel) in enumerate(zip(unique, order.split(counts))):
        t, p = times[sel].numpy(), xy[sel.numpy()]  # one particle's points in time order
        c = particle_color(j)
        colors.append(c)
        paths2.append(p)
        paths3.append(list(zip(p[:, 0], p[:, 1], t)))
        starts.append((p[0, 0], p[0, 1], t[0]))
        cls = None if end_classes is None else end_classes.get(pid)
        if cls is not None:
            seen.add(FixpointClass(cls))
        ends.setdefault(None if cls is None else FixpointClass(cls), []).append((p[-1, 0], p[-1, 1], t[-1], c))
    ax2.add_collection(LineCollection(paths2, colors=colors, linewidths=1, alpha=0.7, zorder=2))
    ax3.add_collection3d(Line3DCollection(paths3, colors=colors, linewidths=1, alpha=0.7))
    sx, sy, st = (np.array(v) for v in zip(*starts))
    ax2.scatter(sx, sy, s=3.5 ** 2, c=colors, marker="o", linewidths=1, edgecolors=colors, zorder=2)
    ax3.scatter(sx, sy, st, s=3.5 ** 2, c=colors, marker="o", linewidths=1, edgecolors=colors, depthshade=False)
    for cls, pts in ends.items():
        ex, ey, et = (np.array(v) for v in list(zip(*pts))[:3])
        cs = [q[3] for q in pts]
        if cls is None:
            style = dict(marker="x", s=6 ** 2, c=cs, linewidths=1)
        else:
            style = dict(marker=CLASS_MARKERS[cls], s=7 ** 2, c=CLASS_COLORS[cls], edgecolors="black", linewidths=0.5)
        ax2.scatter(ex, ey, zorder=3, **style)
        ax3.scatter(ex, ey, et, depthshade=False, **style)
    if times.numel() and int(times.max()) > int(times.min()):
        ax3.set_zlim(int(times.min()), int(times.max()))  # time runs from the first record to the last
    pc = [f"PC {i + 1} ({100 * r:.0f}% of variance)" for i, r in enumerate(ratio)]
    handles = [Line2D([], [], marker="o", color="grey", ls="none", ms=4, label="start")]
    if end_classes is None:
        handles.append(Line2D([], [], marker="x", color="grey", ls="none", ms=6, label="end"))
    handles += [Line2D([], [], marker=CLASS_MARKERS[k], color=CLASS_COLORS[k], mec="black", mew=0.5, ls="none", ms=7,
                       label=f"end: {k.name.lower().replace('_', '-')}") for k in FixpointClass if k in seen]
    heading = title or f"{len(unique)} particle trajectories in weight space (PCA)"
    ax2.set_xlabel(pc[0])
    ax2.set_ylabel(pc[1])
    ax2.set_title(heading, fontsize=10)
    ax2.legend(handles=handles, fontsize=7, loc="best", framealpha=0.8)
    for axis in (ax3.xaxis, ax3.yaxis, ax3.zaxis):
        axis.set_major_locator(MaxNLocator(4))
    ax3.tick_params(labelsize=7, pad=1)
    ax3.set_xlabel(pc[0], fontsize=8, labelpad=6)
    ax3.set_ylabel(pc[1], fontsize=8, labelpad=6)
    ax3.set_zlabel(time_label, fontsize=8, labelpad=6)
    ax3.set_title(f"{heading}, {time_label} upwards", fontsize=10)
    ax3.legend(handles=handles, fontsize=7, loc="upper left", framealpha=0.8)
    fig2.tight_layout()
    fig3.subplots_adjust(left=0.02, right=0.95, bottom=0.05, top=0.93)
    return fig2, fig3
