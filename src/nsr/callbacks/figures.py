"""Figures of a population (matplotlib ``Figure`` objects, no pyplot state): the robustness box
plots and the weight trajectories in one PCA of weight space. The experiments draw their
trajectories with the same :func:`trajectory_figures` (``nsr.experiments.figures``)."""
from __future__ import annotations

from typing import Optional

import torch

from nsr.fixpoints import noise_label


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
        ax.set_xlabel("noise scale")
        ax.set_ylabel("self-applications")
        ax.set_title(title)
    fig.tight_layout()
    return fig


def pca(points: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean [W], components [k, W])`` of the principal component analysis (scikit-learn's PCA)
    of ``points`` ``[N, W]`` (rows must be finite); components beyond what the data can give are zero."""
    from sklearn.decomposition import PCA

    x = points.double()
    mean = x.mean(0)
    comps = torch.zeros(k, x.shape[1], dtype=torch.float64)
    m = min(k, x.shape[0], x.shape[1])
    if x.shape[0] > 1 and m > 0 and bool((x != mean).any()):  # points that all coincide have no direction
        comps[:m] = torch.from_numpy(PCA(n_components=m).fit(x.numpy()).components_)
    return mean, comps


def trajectory_figures(times: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor, time_label: str = "epoch",
                       title: Optional[str] = None):
    """Trajectories through weight space in one PCA of all their (finite) points: a 2D and a 3D
    (time as the third axis) matplotlib figure, a colour per particle id, ``o`` at a particle's
    first point and ``x`` at its last. ``times [N]``, ``ids [N]``, ``weights [N, W]``: one row per
    recorded genome. None if nothing finite was recorded."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    finite = torch.isfinite(weights).all(1) if weights.numel() else torch.zeros(0, dtype=torch.bool)
    if not bool(finite.any()):
        return None
    times, ids, weights = times[finite], ids[finite], weights[finite]
    mean, comps = pca(weights, 2)
    xy = ((weights.double() - mean) @ comps.T).numpy()  # [N, 2]
    fig2 = Figure(figsize=(6, 5))
    ax2 = fig2.add_subplot(1, 1, 1)
    fig3 = Figure(figsize=(6, 5))
    ax3 = fig3.add_subplot(1, 1, 1, projection="3d")
    cmap = colormaps["tab20"]
    for j, pid in enumerate(torch.unique(ids).tolist()):
        sel = (ids == pid).nonzero().flatten()
        sel = sel[times[sel].argsort()]
        t, p = times[sel].numpy(), xy[sel.numpy()]
        c = cmap(j % 20)
        ax2.plot(p[:, 0], p[:, 1], "-", color=c, lw=1, alpha=0.8)
        ax2.plot(p[:1, 0], p[:1, 1], "o", color=c, ms=4)
        ax2.plot(p[-1:, 0], p[-1:, 1], "x", color=c, ms=6)
        ax3.plot(p[:, 0], p[:, 1], t, "-", color=c, lw=1, alpha=0.8)
        ax3.plot(p[:1, 0], p[:1, 1], t[:1], "o", color=c, ms=4)
        ax3.plot(p[-1:, 0], p[-1:, 1], t[-1:], "x", color=c, ms=6)
    ax2.set_xlabel("PC 1")
    ax2.set_ylabel("PC 2")
    ax2.set_title(title or "trajectories in weight space (o start, x end)", fontsize=10)
    ax3.set_xlabel("PC 1")
    ax3.set_ylabel("PC 2")
    ax3.set_zlabel(time_label)
    if title:
        ax3.set_title(title, fontsize=10)
    fig2.tight_layout()
    return fig2, fig3
