"""Linear stability of fixpoints: spectra of self-application, robustness predicted from them, and the
search for attracting replicators (docs/stability.md).

    nsr experiment stability                               # 10^4 per architecture + the hand-built fixpoint
    nsr experiment stability --trials 1000 --search-trials 50   # quicker
    nsr experiment stability --search-trials 1000 --penalty-steps 2000   # a wider search

Writes ``fixpoints.npz`` into the run folder: ``weights [N, W_max]`` (float64; rows of an architecture
with fewer weights are padded with NaN; ``num_weights [N]`` says how many are real), ``spectral_radius
[N]``, ``architecture [N]`` (one name per row: ``hand_built``, ``weightwise``, ``aggregating``,
``recurrent``), ``stability [N]`` (StabilityClass names) and ``eigenvalues [N, W_max]`` (complex, NaN
padded), so anyone can recompute the numbers with ``nsr.stability``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from nsr.experiments import figures, published
from nsr.experiments.base import Report, bar, experiment, make_replicator, stream
from nsr.experiments.fixpoint_classes import train_epochs
from nsr.experiments.robustness import exponent, noise_label, time_clones
from nsr.experiments.stability_search import family, search
from nsr.fixpoints import FixpointClass, classify, is_aggregate_fixpoint
from nsr.replicators import Weightwise
from nsr.stability import STABILITY_NAMES, StabilityClass, classify_stability, eigenvalues, genome_gain, jacobian


# ---- the science: pure functions -----------------------------------------------------------------------
def fixpoints_of(rep, w: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``[P]`` bool: the genomes analysed: non-trivial fixpoints; for an aggregating replicator the
    aggregate fixpoints (N_w(agg w) = agg w within epsilon), the only kind self-training finds."""
    if hasattr(rep, "aggregate"):
        return is_aggregate_fixpoint(rep, w, epsilon) & torch.isfinite(w).all(1)
    return classify(rep, w, epsilon) == FixpointClass.NONTRIVIAL


def predicted_slope(radius: float) -> float:
    """Self-applications per decade of noise for a perturbation growing ``radius``-fold per
    self-application until it is O(1): 1 / log10(radius)."""
    return 1.0 / math.log10(radius) if radius > 1 else math.inf


def slope_interval(res: dict, scales, lo: int, hi: int, generator, resamples: int = 1000) -> tuple[float, float]:
    """95% bootstrap interval of the fitted slope: the clones of every scale resampled with replacement."""
    from nsr.random import uniform

    sel = [(exponent(s), res[s]["time_to_vergence_paper"].double()) for s in scales if lo <= exponent(s) <= hi]
    if len(sel) < 2:
        return (math.nan, math.nan)
    ks = [k for k, _ in sel]
    means = []
    for k, t in sel:
        idx = (uniform(generator, resamples, len(t)) * len(t)).long().clamp(max=len(t) - 1)  # [R, n]
        means.append(t[idx].mean(1).numpy())  # [R]
    M = np.stack(means, 1)  # [R, scales]
    kc = np.asarray(ks, dtype=float) - np.mean(ks)
    slopes = (M - M.mean(1, keepdims=True)) @ kc / (kc @ kc)
    return float(np.quantile(slopes, 0.025)), float(np.quantile(slopes, 0.975))


def fitted_slope(exponents, times) -> float:
    """Least-squares slope of mean time to vergence over the noise exponent k (noise 10^-k)."""
    k, t = np.asarray(exponents, dtype=float), np.asarray(times, dtype=float)
    if len(k) < 2:
        return math.nan
    return float(np.polyfit(k, t, 1)[0])


# ---- figures ---------------------------------------------------------------------------------------------
def eigen_plane(groups: dict, title: str):
    """Eigenvalues ``{label: complex array}`` in the complex plane with the unit circle."""
    plt = figures._plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    t = np.linspace(0, 2 * np.pi, 400)
    ax.plot(np.cos(t), np.sin(t), "k--", lw=1, label="unit circle")
    for label, ev in groups.items():
        ev = np.asarray(ev).ravel()
        ev = ev[np.isfinite(ev)]
        if len(ev):
            ax.scatter(ev.real, ev.imag, s=6, alpha=0.4, label=label)
    ax.set_xlabel("Re lambda")
    ax.set_ylabel("Im lambda")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return fig


# ---- the experiment ----------------------------------------------------------------------------------------


@experiment("stability")
def run_stability(args, folder) -> Report:
    """Self-train every architecture, take the fixpoints found and the hand-built one, and compute the
    spectrum of the Jacobian of self-application at each (float64): spectral radii, stability classes,
    the robustness predicted from the dominant eigenvalue against the measured one, and a search for
    families with attracting fixpoints, verified with noisy clones."""
    for f in args.families:
        family(f, args)
    f64 = torch.float64
    rows, table, notes, figs = [], [], [], {}
    npz = {"weights": [], "radius": [], "arch": [], "stab": [], "ev": []}
    radii, planes = {}, {}
    trained = {}

    def analyse(label, rep, w):
        ev = eigenvalues(jacobian(rep, w, dtype=f64))  # [F, W]
        cls, unstable = classify_stability(ev, args.tol)
        r = ev.abs()[:, 0]
        npz["weights"].append(w.double().numpy())
        npz["radius"].append(r.numpy())
        npz["arch"] += [label] * len(w)
        npz["stab"] += [STABILITY_NAMES[c] for c in cls.tolist()]
        npz["ev"].append(ev.numpy())
        radii[label] = r.numpy()
        planes[label] = ev[:200].numpy()
        return ev, cls, unstable, r

    groups = []
    if args.activation in ("linear", "relu"):  # the hand-built fixpoint copies its input: linear or relu only
        groups.append(("hand_built", make_replicator("weightwise", args),
                       Weightwise(args.width, args.depth, args.activation).identity_genome(), 1))
    for arch in args.architectures:
        rep = make_replicator(arch, args)
        ids = torch.arange(args.trials)
        w = rep.init(args.trials, generator=stream(args, f"{arch}/init", ids))
        with bar(args, args.epochs, f"training {arch}") as pbar:
            w = train_epochs(rep, w, args.epochs, args.lr, args.batch_size, args.momentum,
                             stream(args, f"{arch}/train", ids), lambda e, st: pbar.update(1))
        fix = fixpoints_of(rep, w, args.epsilon)
        trained[arch] = (rep, w[fix])
        groups.append((arch, rep, w[fix], args.trials))
    law = args.depth + 2  # depth + 1 + A with A = 1: the copy networks self-training finds (docs/stability.md)
    headers = ["fixpoints of", "networks", "fixpoints", "spectral radius median [min-max]", f"radius >= {law} - 1e-3",
               "attracting", "marginal", "saddle (median unstable)", "repelling", "genome gain A (median)"]
    for label, rep, w, n in groups:
        row = {"source": label, "networks": n, "fixpoints": len(w)}
        cells = [label, str(n), str(len(w))]
        if len(w):
            ev, cls, unstable, r = analyse(label, rep, w)
            sh = {name: float((cls == c).double().mean()) for name, c in zip(STABILITY_NAMES, StabilityClass)}
            row.update({"radius_median": float(r.median()), "radius_min": float(r.min()), "radius_max": float(r.max()),
                        "radius_ge_depth_plus_2": float((r >= law - 1e-3).double().mean()), **sh,
                        "unstable_median": float(unstable.double().median())})
            if isinstance(rep, Weightwise) and rep.activation in ("linear", "relu"):
                row["genome_gain_median"] = float(genome_gain(rep, w.double()).median())
            cells += [f"{row['radius_median']:.4g} [{row['radius_min']:.3g}-{row['radius_max']:.3g}]",
                      f"{row['radius_ge_depth_plus_2']:.2f}", f"{sh['attracting']:.2f}", f"{sh['marginal']:.2f}",
                      f"{sh['saddle']:.2f} ({row['unstable_median']:g})", f"{sh['repelling']:.2f}",
                      f"{row.get('genome_gain_median', math.nan):.4g}"]
        else:
            cells += ["-"] * 7
        rows.append(row)
        folder.log_scalars(f"stability/{label}", row)
        table.append(cells)
    if radii:
        figs["spectral_radius"] = figures.histograms({k: np.log10(np.clip(v, 1e-6, None)) for k, v in radii.items()},
                                                     "log10 spectral radius of self-application", "spectral radii")
        figs["eigenvalues"] = eigen_plane(planes, "eigenvalues of the Jacobian of self-application (200 per source)")
        for k, v in radii.items():
            folder.writer.add_histogram(f"stability/spectral_radius/{k}", np.asarray(v), 0)
    _write_npz(folder, npz)

    extra, rob_rows = _robustness(args, folder, trained, figs)
    rows += rob_rows
    search_md, search_rows, search_planes = search(args, folder)
    if search_planes:
        figs["eigenvalues_search"] = eigen_plane(search_planes, "eigenvalues at the fixpoints of the search (50 per family)")
    rows += search_rows
    notes += [
        "Spectra in float64 of the Jacobian of F(w) = N_w(w) (nsr.stability.jacobian), at the hand-built fixpoint "
        "and at the non-trivial fixpoints found by self-training; aggregating: at its aggregate fixpoints "
        "(N_w(agg w) = agg w), which are not fixpoints of F weight by weight, so their spectrum describes one "
        "self-application only (docs/stability.md).",
        f"Stability classes use tol {args.tol:g}: attracting = every |lambda| < 1 - tol; a saddle has at least one "
        "|lambda| > 1 + tol. For linear weightwise networks at least W - 4 eigenvalues equal the genome gain A "
        "exactly, and the genome is an eigenvector with eigenvalue depth + 1 + A (docs/stability.md).",
        "No published numbers exist for spectra; the robustness comparison uses the published table.",
    ]
    settings = {"networks per architecture": (args.trials, "-"), "self-training epochs": (args.epochs, 1000),
                "robustness clones per scale": (args.robustness_trials, published.ROBUSTNESS["trials"]),
                "search networks per family": (args.search_trials, "-")}
    return Report(rows, headers, table, notes, figs, settings, extra + "\n\n" + search_md)


def _write_npz(folder, npz) -> None:
    if not npz["weights"]:
        return
    Wm = max(a.shape[1] for a in npz["weights"])
    pad = lambda arrs, fill: np.concatenate([np.pad(a, ((0, 0), (0, Wm - a.shape[1])), constant_values=fill)  # noqa: E731
                                             for a in arrs])
    np.savez_compressed(folder.path / "fixpoints.npz", weights=pad(npz["weights"], np.nan),
                        num_weights=np.concatenate([np.full(len(a), a.shape[1]) for a in npz["weights"]]),
                        spectral_radius=np.concatenate(npz["radius"]), architecture=np.array(npz["arch"]),
                        stability=np.array(npz["stab"]), eigenvalues=pad(npz["ev"], complex(np.nan, np.nan)))


def _robustness(args, folder, trained, figs):
    """Mean time to vergence per noise scale predicted from the spectrum vs measured (the published
    count of nsr.experiments.robustness): the hand-built fixpoint in float32 (as published: slope
    1 / log10|lambda_1| above the float32 resolution, 1 / log10|lambda_2| below it) and in float64,
    and trained fixpoints (float32)."""
    from nsr.experiments.runfolder import markdown_table

    rep = make_replicator("weightwise", args)
    hand = rep.identity_genome()
    pub = published.ROBUSTNESS["time_to_vergence"]
    if (args.width, args.depth, args.activation) != (2, 2, "linear"):
        pub = {}  # the published table is of the (2, 2) linear hand-built fixpoint
    sources = []  # (label, parents, [(low, high, eigenvalue index)])
    if args.activation in ("linear", "relu"):
        sources += [("hand_built", hand, [tuple(args.fit_range) + (0,), tuple(args.subresolution_range) + (1,)]),
                    ("hand_built_float64", hand.double(), [tuple(args.float64_fit_range) + (0,)])]
    if "weightwise" in trained and len(trained["weightwise"][1]):
        sources.append(("trained", trained["weightwise"][1][: args.robustness_parents], [tuple(args.trained_fit_range) + (0,)]))
    ks = [exponent(s) for s in args.noise]
    rows, md_rows, series = [], [], {}
    for src, parents, ranges in sources:
        moduli = eigenvalues(jacobian(rep, parents, dtype=torch.float64)).abs()  # [F, W]
        res = time_clones(rep, parents, args.noise, args.robustness_trials, 100, args.epsilon,
                          stream(args, f"robustness/{src}", torch.arange(len(args.noise) * args.robustness_trials * len(parents))))
        means = [float(res[s]["time_to_vergence_paper"].double().mean()) for s in args.noise]
        series[f"{src} measured"] = (ks, means)
        predicted = {}
        for lo, hi, j in ranges:
            lo, hi = min(lo, hi), max(lo, hi)
            radius = float(moduli[:, j].median())
            lin = [(k, m) for k, m in zip(ks, means) if lo <= k <= hi]
            measured = fitted_slope(*zip(*lin)) if len(lin) >= 2 else math.nan
            ci = slope_interval(res, args.noise, lo, hi, torch.Generator().manual_seed(args.seed))
            pred = predicted_slope(radius)
            icpt = float(np.mean([m - pred * k for k, m in lin])) if lin else math.nan  # the one fitted number
            for k in range(lo, hi + 1):
                predicted[k] = icpt + pred * k
            row = {"source": f"robustness/{src}", "eigenvalue": j + 1, "modulus": radius, "predicted_slope": pred,
                   "measured_slope": measured, "slope_error": measured / pred - 1 if pred else math.nan,
                   "measured_slope_ci_low": ci[0], "measured_slope_ci_high": ci[1], "fit_low": lo, "fit_high": hi}
            if src == "hand_built" and (args.width, args.depth, args.activation) == (2, 2, "linear"):
                pk = [(k, pub[k][0]) for k in ks if k in pub and lo <= k <= hi]
                row["published_slope"] = fitted_slope(*zip(*pk)) if len(pk) >= 2 else math.nan
            rows.append(row)
            folder.log_scalars(f"robustness_prediction/{src}/lambda{j + 1}", row)
        for k, s, m in zip(ks, args.noise, means):
            md_rows.append([src, noise_label(s), f"{m:.2f}", f"{predicted[k]:.2f}" if k in predicted else "-",
                            f"{pub[k][0]:.2f}" if src == "hand_built" and k in pub else "-"])
        pk = sorted(predicted)
        series[f"{src} predicted"] = (pk, [predicted[k] for k in pk])
    if not sources:
        return "", rows
    published_line = {"hand_built measured": ([k for k in ks if k in pub], [pub[k][0] for k in ks if k in pub])}
    figs["robustness_prediction"] = figures.sweep_lines("noise exponent k (noise 1e-k)", "mean time to vergence",
                                                        "time to vergence: predicted from the spectrum vs measured", series,
                                                        published_line)
    slope_rows = [[r["source"].split("/")[1], f"1e-{r['fit_low']}..1e-{r['fit_high']}", f"lambda_{r['eigenvalue']}",
                   f"{r['modulus']:.4g}", f"{r['predicted_slope']:.3f}",
                   f"{r['measured_slope']:.3f} [{r['measured_slope_ci_low']:.3f}, {r['measured_slope_ci_high']:.3f}]",
                   f"{100 * r['slope_error']:+.1f}%",
                   f"{r['published_slope']:.3f}" if not math.isnan(r.get("published_slope", math.nan)) else "-"]
                  for r in rows]
    md = ("## Robustness predicted from the spectrum\n\n"
          "Slope = self-applications per decade of noise (least squares of the mean time to vergence, published "
          "count, over the range); predicted 1 / log10|lambda|: a perturbation grows |lambda|-fold per "
          "self-application until it is O(1). In float32 a perturbation along the dominant eigenvector of the "
          "hand-built fixpoint (its weights equal to 1) is rounded away below ~6e-8, so there the second "
          "eigenvalue (5/3) sets the slope; float64 keeps the first one down to 1e-12. The intercepts are fitted "
          "(the spectrum fixes only the slopes). 95% bootstrap intervals resample the clones.\n\n"
          + markdown_table(["fixpoint", "range", "eigenvalue", "modulus", "predicted slope",
                            "measured slope [95%]", "error", "published slope"], slope_rows)
          + "\n\n" + markdown_table(["fixpoint", "noise", "measured mean", "predicted", "published"], md_rows))
    return md, rows


