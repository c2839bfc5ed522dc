"""The figures say what they show: one class palette everywhere, end markers by final class with a
legend, particle colours that never repeat, PC axes with their explained variance, labelled axes."""
import torch
from matplotlib.colors import to_hex, to_rgba

from nsr.callbacks.figures import CLASS_COLORS, explained_variance, pca, robustness_figure, trajectory_figures
from nsr.fixpoints import FixpointClass


def trajectories(n_particles: int, steps: int = 3):
    g = torch.Generator().manual_seed(0)
    times = torch.arange(steps).repeat_interleave(n_particles)  # [N]
    ids = torch.arange(n_particles).repeat(steps)  # [N]
    weights = torch.randn(steps * n_particles, 14, generator=g)  # [N, W]
    return times, ids, weights


def drawn(ax):
    """A trajectory figure's artists: the paths (one line collection), the start markers and the
    end markers (one collection per final class)."""
    from matplotlib.collections import LineCollection, PathCollection

    paths = [c for c in ax.collections if isinstance(c, LineCollection)]
    marks = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(paths) == 1 and marks
    return paths[0], marks[0], marks[1:]


def test_forty_particles_get_forty_different_colours_and_end_markers_in_their_class_colour():
    times, ids, weights = trajectories(40)
    ends = {pid: FixpointClass(pid % 5) for pid in range(40)}
    fig2, fig3 = trajectory_figures(times, ids, weights, "generation", end_classes=ends)
    ax = fig2.axes[0]
    paths, starts, ends = drawn(ax)
    assert len(paths.get_segments()) == 40 and len({to_hex(c) for c in paths.get_colors()}) == 40  # no colour repeats
    assert len(starts.get_offsets()) == 40
    end_colours = [to_hex(c) for e in ends for c in e.get_facecolors() for _ in range(len(e.get_offsets()) // len(e.get_facecolors()))]
    assert set(end_colours) == set(CLASS_COLORS.values())  # ends in their class colours
    assert end_colours.count(CLASS_COLORS[FixpointClass.DIVERGENT]) == 8
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == "start" and {f"end: {c.name.lower().replace('_', '-')}" for c in FixpointClass} <= set(legend)
    assert fig3.axes[0].get_legend() is not None


def test_pc_axes_give_their_explained_variance_and_the_3d_figure_is_titled_and_labelled():
    times, ids, weights = trajectories(5)
    weights[:, 0] *= 10  # most of the variance along one weight
    fig2, fig3 = trajectory_figures(times, ids, weights, "epoch")
    mean, comps = pca(weights.double(), 2)
    share = explained_variance(weights, mean, comps)
    assert share[0] > 0.8 and 0 < share[1] < share[0] and sum(share) <= 1 + 1e-9
    ax2, ax3 = fig2.axes[0], fig3.axes[0]
    assert ax2.get_xlabel() == f"PC 1 ({100 * share[0]:.0f}% of variance)"
    assert ax3.get_ylabel().startswith("PC 2 (") and ax3.get_zlabel() == "epoch" and ax3.get_title()
    assert len(ax3.get_xticks()) <= 6  # few ticks: labels do not run together


def test_one_class_palette_for_every_figure_and_labelled_robustness_axes():
    from nsr.experiments.figures import class_bars

    bars = class_bars([("a", {"divergent": 0.5, "nontrivial": 0.5})], "t")
    colours = {to_hex(p.get_facecolor()) for p in bars.axes[0].patches if p.get_height() > 0}
    assert colours == {CLASS_COLORS[FixpointClass.DIVERGENT], CLASS_COLORS[FixpointClass.NONTRIVIAL]}
    fig = robustness_figure({1e-1: (torch.tensor([1, 2]), torch.tensor([0, 1])), 1e-2: (torch.tensor([3]), torch.tensor([2]))})
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    assert to_rgba(CLASS_COLORS[FixpointClass.ZERO]) != to_rgba(CLASS_COLORS[FixpointClass.OTHER])


def test_pca_equals_scikit_learns_pca_to_rounding_signs_included():
    from sklearn.decomposition import PCA

    g = torch.Generator().manual_seed(3)
    points = torch.randn(40, 14, generator=g, dtype=torch.float64) * torch.linspace(3, 0.1, 14)
    mean, comps = pca(points, 2)
    ref = PCA(n_components=2).fit(points.numpy())
    assert torch.allclose(mean, torch.from_numpy(ref.mean_), atol=1e-12)
    assert torch.allclose(comps, torch.from_numpy(ref.components_), atol=1e-9)
