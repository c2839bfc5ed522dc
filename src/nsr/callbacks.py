"""Callbacks that watch a population train: fixpoint scalars, the robustness test, trajectories.

They rely only on what every nsr module offers: ``replicator``, ``epsilon``, ``population``
(this process's ``[P_local, W]`` genomes), ``gather_population()`` (the whole ``[P, W]``, a
collective call: every rank makes it) and, optionally, ``particle_ids``/``gather_particle_ids()``,
``particle_loss`` (``[P_local]``, each particle's mean loss over the last epoch) and
``second_order``. Scalars go through ``pl_module.log`` or the loggers; figures go to TensorBoard
and, as PNG, to the run's log folder; both only from rank 0.
"""
from __future__ import annotations

import csv
import math
import os
import sys
from typing import Optional, Sequence

import torch
from lightning.pytorch.callbacks import Callback, ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from nsr.checkpoint import write_atomically
from nsr.fixpoints import CLASS_NAMES, FixpointClass, classify, distance, robustness
from nsr.metrics import PopulationStats

DEFAULT_SCALES = tuple(10.0 ** -k for k in range(10))  # 1e0 .. 1e-9, the paper's noise scales


def scale_tag(scale: float) -> str:
    """``1e-3`` for 0.001: the suffix of the robustness scalars.

    >>> [scale_tag(s) for s in (1.0, 0.1, 1e-9, 0.5)]
    ['1e0', '1e-1', '1e-9', '0.5']
    """
    k = round(-math.log10(scale)) if scale > 0 else 0
    if scale > 0 and math.isclose(scale, 10.0 ** -k, rel_tol=1e-9):
        return f"1e{-k}" if k else "1e0"
    return f"{scale:g}"


def _second_order(pl_module) -> str:
    return getattr(pl_module, "second_order", "orbit")


def _writer(trainer):
    """The TensorBoard SummaryWriter of the run on rank 0, else None."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def _gather_ids(pl_module, P: int) -> torch.Tensor:
    if hasattr(pl_module, "gather_particle_ids"):
        return pl_module.gather_particle_ids().cpu()
    ids = getattr(pl_module, "particle_ids", None)
    return ids.cpu() if ids is not None and ids.shape[0] == P else torch.arange(P)


def save_figure(fig, path: str) -> None:
    """Save a matplotlib figure as PNG, atomically."""
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=120))


def log_epoch_metrics(trainer, metrics: dict[str, float], prog_bar: Sequence[str] = (), step: Optional[int] = None) -> None:
    """Log scalars once per epoch, with the number of epochs trained as the step: straight to the
    loggers (rank 0) in one call, and into ``trainer.callback_metrics`` (all ranks) so that
    ``ModelCheckpoint(monitor=...)`` and ``EarlyStopping`` see them. ``pl_module.log`` would do the
    same at about a millisecond per value and epoch, which dominates short epochs."""
    step = trainer.current_epoch + 1 if step is None else step
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=step)
    trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
    trainer.progress_bar_metrics.update({k: v for k, v in metrics.items() if k in prog_bar})


# ---- fixpoint scalars ------------------------------------------------------------------------------
class FixpointMonitor(Callback):
    """Every ``every_n_epochs`` epochs, design.md's scalars: ``train/loss`` (mean over particles of
    their epoch loss), ``fixpoint/distance`` (mean over finite particles), and the class shares
    ``fixpoint/divergent|zero|nontrivial|second_order|other`` (summing to 1); for Aggregating
    replicators also ``fixpoint/aggregate_fixpoint`` and ``fixpoint/aggregate_distance``. The
    torchmetrics states are sum-reduced, so the numbers cover every rank's particles. At the end of
    fit it prints a summary (``summary=True``)."""

    def __init__(self, every_n_epochs: int = 1, summary: bool = True):
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be an integer >= 1, got {every_n_epochs!r}")
        self.every_n_epochs = every_n_epochs
        self.summary = summary
        self._metric = None
        self.last: dict[str, float] = {}  # the latest scalars
        self.final: Optional[dict] = None  # the summary of the last fit, on rank 0

    def measure(self, pl_module) -> dict[str, float]:
        """The scalars of the population as it is now (a collective call under DDP)."""
        if self._metric is None:
            self._metric = PopulationStats().to(pl_module.device)
        loss = getattr(pl_module, "particle_loss", None)
        self._metric.update(pl_module.replicator, pl_module.population, pl_module.epsilon,
                            second_order=_second_order(pl_module), loss=None if loss is None else loss.to(pl_module.device))
        out = self._metric.compute()
        self._metric.reset()
        return out

    def setup(self, trainer, pl_module, stage):
        self._metric = PopulationStats().to(pl_module.device)

    def on_train_epoch_end(self, trainer, pl_module):
        last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        if (trainer.current_epoch + 1) % self.every_n_epochs and not last:
            return
        self.last = self.measure(pl_module)
        log_epoch_metrics(trainer, self.last, prog_bar=("fixpoint/nontrivial", "train/loss"))

    def on_train_end(self, trainer, pl_module):
        w = pl_module.gather_population()  # collective: every rank calls it
        log_dir = trainer.log_dir  # broadcasts
        if not trainer.is_global_zero:
            return
        classes = classify(pl_module.replicator, w, pl_module.epsilon, second_order=_second_order(pl_module))
        d = distance(pl_module.replicator, w)
        finite = torch.isfinite(d)
        counts = torch.bincount(classes, minlength=len(FixpointClass)).tolist()
        ckpt = trainer.checkpoint_callback
        self.final = {
            "replicator": repr(pl_module.replicator), "population": int(w.shape[0]), "epochs": trainer.current_epoch,
            "time_unit": getattr(pl_module, "time_unit", "epoch"),
            "shares": {n: c / max(w.shape[0], 1) for n, c in zip(CLASS_NAMES, counts)}, "counts": dict(zip(CLASS_NAMES, counts)),
            "distance_mean": float(d[finite].mean()) if bool(finite.any()) else math.nan,
            "distance_max": float(d[finite].max()) if bool(finite.any()) else math.nan,
            "log_dir": log_dir, "tensorboard_dir": _tensorboard_root(trainer, log_dir),
            "checkpoint": getattr(ckpt, "last_model_path", "") or getattr(ckpt, "best_model_path", "") if ckpt else "",
        }

    def on_fit_end(self, trainer, pl_module):
        if self.summary and self.final is not None and trainer.is_global_zero:
            print(format_summary(self.final), flush=True)


def _tensorboard_root(trainer, log_dir) -> Optional[str]:
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.root_dir
    return log_dir


def format_summary(s: dict) -> str:
    """The end-of-fit summary: class shares, fixpoint distance, where the logs and checkpoint are."""
    shares = "  ".join(f"{n} {s['shares'][n]:.2f} ({s['counts'][n]})" for n in CLASS_NAMES)
    if math.isnan(s["distance_mean"]):
        dist = "none finite (every particle diverged)"
    else:
        dist = f"mean {s['distance_mean']:.3g}, max {s['distance_max']:.3g} (finite particles)"
    lines = [f"nsr: {s['population']} x {s['replicator']} after {s['epochs']} {s.get('time_unit', 'epoch')}s",
             f"  classes:   {shares}",
             f"  fixpoint distance: {dist}"]
    if s.get("log_dir"):
        lines.append(f"  logs:      {s['log_dir']}")
    if s.get("checkpoint"):
        lines.append(f"  checkpoint: {s['checkpoint']}")
    if s.get("tensorboard_dir"):
        lines.append(f"  view:      tensorboard --logdir {s['tensorboard_dir']}")
    return "\n".join(lines)


# ---- robustness --------------------------------------------------------------------------------------
class RobustnessProbe(Callback):
    """The paper's robustness test on the population's non-trivial fixpoints: for every noise
    scale, ``trials`` noisy clones of each (up to ``max_fixpoints``) are self-applied up to
    ``max_steps`` times. Logs ``robustness/time_to_vergence/1e-k`` and
    ``robustness/time_as_fixpoint/1e-k`` (means), a box plot, and ``robustness.csv`` (mean,
    median, min, max) in the log folder. Runs at the end of training, and every
    ``every_n_epochs`` epochs if set.

    A trained fixpoint reproduces itself only to its own fixpoint distance (about 1e-6 in float32),
    so noise below that scale cannot be told apart from the fixpoint's own error: the times level
    off around 1e-7..1e-9 instead of growing as they do for the exact hand-built fixpoint
    (``nsr experiment robustness``)."""

    def __init__(self, every_n_epochs: Optional[int] = None, scales: Sequence[float] = DEFAULT_SCALES,
                 trials: int = 20, max_steps: int = 100, max_fixpoints: int = 50, seed: int = 0):
        if every_n_epochs is not None and (isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1):
            raise ValueError(f"every_n_epochs must be None or an integer >= 1, got {every_n_epochs!r}")
        scales = [float(s) for s in scales]
        if not scales or any(not math.isfinite(s) or s <= 0 for s in scales):
            raise ValueError(f"scales must be finite numbers > 0, got {scales!r}")
        for name, v in (("trials", trials), ("max_steps", max_steps), ("max_fixpoints", max_fixpoints)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        self.every_n_epochs, self.scales, self.trials = every_n_epochs, scales, trials
        self.max_steps, self.max_fixpoints, self.seed = max_steps, max_fixpoints, seed
        self.results: Optional[dict[float, tuple[torch.Tensor, torch.Tensor]]] = None

    def probe(self, pl_module, w: torch.Tensor) -> Optional[dict]:
        """``{scale: (time_to_vergence, time_as_fixpoint)}`` for the non-trivial fixpoints in
        ``w`` ``[P, W]``; None if there are none."""
        rep = pl_module.replicator
        classes = classify(rep, w, pl_module.epsilon, second_order=_second_order(pl_module))
        fixpoints = w[classes == FixpointClass.NONTRIVIAL][: self.max_fixpoints]  # [F, W]
        if fixpoints.shape[0] == 0:
            return None
        return robustness(rep, fixpoints, scales=self.scales, trials=self.trials, max_steps=self.max_steps,
                          epsilon=pl_module.epsilon, generator=torch.Generator().manual_seed(self.seed))

    def _run(self, trainer, pl_module, epochs: int):
        w = pl_module.gather_population()
        log_dir = trainer.log_dir
        if not trainer.is_global_zero:
            return
        self.results = self.probe(pl_module, w)
        if self.results is None:
            print("robustness probe: no non-trivial fixpoint to probe", file=sys.stderr)
            return
        metrics = {}
        for s, (ttv, taf) in self.results.items():
            metrics[f"robustness/time_to_vergence/{scale_tag(s)}"] = float(ttv.double().mean())
            metrics[f"robustness/time_as_fixpoint/{scale_tag(s)}"] = float(taf.double().mean())
        log_epoch_metrics(trainer, metrics, step=epochs)
        fig = robustness_figure(self.results)
        writer = _writer(trainer)
        if log_dir:
            save_figure(fig, os.path.join(log_dir, "robustness.png"))
            write_atomically(os.path.join(log_dir, "robustness.csv"), lambda f: _write_robustness_csv(f, self.results), "w")
        if writer is not None:
            writer.add_figure("robustness/boxplot", fig, global_step=epochs)

    def on_train_epoch_end(self, trainer, pl_module):
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
            if not last:  # the end of training runs it anyway
                self._run(trainer, pl_module, trainer.current_epoch + 1)

    def on_train_end(self, trainer, pl_module):
        self._run(trainer, pl_module, trainer.current_epoch)


def _write_robustness_csv(f, results):
    out = csv.writer(f, lineterminator="\n")
    out.writerow(["noise", "trials", "time_to_vergence", "time_to_vergence_median", "time_to_vergence_min",
                  "time_to_vergence_max", "time_as_fixpoint", "time_as_fixpoint_median", "time_as_fixpoint_min",
                  "time_as_fixpoint_max"])
    for s, (ttv, taf) in results.items():
        row = [scale_tag(s), ttv.numel()]
        for t in (ttv, taf):
            t = t.double()
            row += [f"{float(t.mean()):.4g}", f"{float(t.median()):g}", int(t.min()), int(t.max())]
        out.writerow(row)


def robustness_figure(results: dict):
    """Box plots of time to vergence and time as fixpoint per noise scale."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5))
    labels = [scale_tag(s) for s in results]
    for i, (title, k) in enumerate((("time to vergence", 0), ("time as fixpoint", 1))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.boxplot([v[k].double().numpy() for v in results.values()])
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=45)
        ax.set_xlabel("noise scale")
        ax.set_ylabel("self-applications")
        ax.set_title(title)
    fig.tight_layout()
    return fig


# ---- trajectories ------------------------------------------------------------------------------------
class TrajectoryRecorder(Callback):
    """Every ``every_n_epochs`` epochs, the genomes of up to ``max_particles`` particles (the first
    slots of the population) and a histogram of the population's weights. At the end: one PCA
    fitted on all recorded genomes, and the trajectories in it (2D, and 3D with time as the third
    axis; a colour per particle id, start ``o`` and end ``x``), plus an embedding-projector snapshot
    of the final population labelled by fixpoint class. A slot whose particle is replaced gets a new
    id and so a new trajectory: trajectories never jump."""

    def __init__(self, every_n_epochs: int = 10, max_particles: int = 50, histograms: bool = True,
                 embedding: bool = True, max_embedding: int = 5000):
        for name, v in (("every_n_epochs", every_n_epochs), ("max_particles", max_particles), ("max_embedding", max_embedding)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        self.every_n_epochs, self.max_particles = every_n_epochs, max_particles
        self.histograms, self.embedding, self.max_embedding = histograms, embedding, max_embedding
        self.times: list[int] = []
        self.ids: list[torch.Tensor] = []  # LongTensor[n] per record
        self.weights: list[torch.Tensor] = []  # [n, W] per record

    def record(self, trainer, pl_module, time: int) -> None:
        w = pl_module.gather_population()  # collective
        ids = _gather_ids(pl_module, w.shape[0])  # may be a collective too: every rank calls it
        if not trainer.is_global_zero:
            return
        n = min(self.max_particles, w.shape[0])
        self.times.append(int(time))
        self.ids.append(ids[:n].clone())
        self.weights.append(w[:n].detach().float().cpu().clone())
        writer = _writer(trainer)
        if self.histograms and writer is not None:
            values = w[:10_000].detach().cpu().flatten()
            values = values[torch.isfinite(values)]
            if values.numel():
                writer.add_histogram("weights/population", values, global_step=time)

    def on_train_start(self, trainer, pl_module):
        if not self.times:  # a resumed run already holds its earlier records
            self.record(trainer, pl_module, trainer.current_epoch)

    def on_train_epoch_end(self, trainer, pl_module):
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        if epoch % self.every_n_epochs == 0 or last:
            self.record(trainer, pl_module, epoch)

    def on_train_end(self, trainer, pl_module):
        w = pl_module.gather_population()
        ids = _gather_ids(pl_module, w.shape[0])  # may be a collective too: every rank calls it
        log_dir = trainer.log_dir
        if not trainer.is_global_zero:
            return
        if self.times and self.times[-1] != trainer.current_epoch:
            self.times.append(trainer.current_epoch)
            n = min(self.max_particles, w.shape[0])
            self.ids.append(ids[:n].clone())
            self.weights.append(w[:n].detach().float().cpu().clone())
        writer = _writer(trainer)
        figs = trajectory_figures(*self.trajectories(), time_label=getattr(pl_module, "time_unit", "epoch"))
        if figs is not None:
            for name, fig in zip(("pca_2d", "pca_3d"), figs):
                if log_dir:
                    save_figure(fig, os.path.join(log_dir, f"trajectories_{name}.png"))
                if writer is not None:
                    writer.add_figure(f"trajectories/{name}", fig, global_step=trainer.current_epoch)
        if self.embedding and writer is not None:
            w = w[: self.max_embedding].detach().cpu()
            classes = classify(pl_module.replicator, w, pl_module.epsilon, second_order=_second_order(pl_module))
            labels = [CLASS_NAMES[c] for c in classes.tolist()]
            writer.add_embedding(torch.nan_to_num(w.float(), nan=0.0, posinf=0.0, neginf=0.0), metadata=labels,
                                 tag="population", global_step=trainer.current_epoch)

    def trajectories(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All records stacked: ``times [N]``, ``ids [N]``, ``weights [N, W]``."""
        if not self.times:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0, 0)
        times = torch.cat([torch.full((i.shape[0],), t, dtype=torch.long) for t, i in zip(self.times, self.ids)])
        return times, torch.cat(self.ids), torch.cat(self.weights)

    def state_dict(self):
        # a few stacked tensors rather than two per record: a checkpoint is written every epoch,
        # and each tensor costs a record of its own in the file
        times, ids, weights = self.trajectories()
        sizes = torch.tensor([i.shape[0] for i in self.ids], dtype=torch.long)
        return {"times": torch.tensor(self.times, dtype=torch.long), "sizes": sizes, "ids": ids, "weights": weights}

    def load_state_dict(self, state_dict):
        sizes = state_dict["sizes"].tolist()
        self.times = state_dict["times"].tolist()
        self.ids = list(state_dict["ids"].split(sizes)) if sizes else []
        self.weights = list(state_dict["weights"].split(sizes)) if sizes else []


def pca(points: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean [W], components [k, W])`` of the principal component analysis of ``points`` ``[N, W]``
    (rows must be finite); components beyond the data's rank are zero."""
    x = points.double()
    mean = x.mean(0)
    comps = torch.zeros(k, x.shape[1], dtype=torch.float64)
    if x.shape[0] > 1:
        _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
        m = min(k, vh.shape[0])
        comps[:m] = vh[:m]
    return mean, comps


def trajectory_figures(times: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor, time_label: str = "epoch"):
    """The trajectories in one PCA of all their (finite) points: a 2D and a 3D (time as the third
    axis) matplotlib figure, a colour per particle id. None if nothing finite was recorded."""
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
    ax2.set_title("trajectories in weight space (o start, x end)")
    ax3.set_xlabel("PC 1")
    ax3.set_ylabel("PC 2")
    ax3.set_zlabel(time_label)
    fig2.tight_layout()
    return fig2, fig3


# ---- progress -----------------------------------------------------------------------------------------
class EpochProgressBar(ProgressBar):
    """One progress bar over the whole fit, one tick per epoch, with the epoch's non-trivial share
    and loss: readable for runs of thousands of short epochs."""

    def __init__(self, refresh_s: float = 0.5):
        super().__init__()
        self.refresh_s = refresh_s
        self._enabled = True
        self._bar = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    @property
    def is_disabled(self) -> bool:
        return not self._enabled

    def on_train_start(self, trainer, pl_module):
        if not self._enabled or not trainer.is_global_zero:
            return
        from tqdm.auto import tqdm

        total = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else None
        self._bar = tqdm(total=total, initial=trainer.current_epoch, desc="fit", unit="epoch", dynamic_ncols=True,
                         mininterval=self.refresh_s, file=sys.stderr, leave=True)

    def _set_postfix(self, trainer) -> None:
        metrics = trainer.progress_bar_metrics
        post = {}
        if "fixpoint/nontrivial" in metrics:
            post["nontrivial"] = f"{float(metrics['fixpoint/nontrivial']):.2f}"
        if "train/loss" in metrics:
            post["loss"] = f"{float(metrics['train/loss']):.2e}"
        self._bar.set_postfix(post, refresh=False)

    def on_train_epoch_end(self, trainer, pl_module):
        if self._bar is None:
            return
        # the monitor and the epoch's loss are logged after this hook: these are the previous epoch's
        self._set_postfix(trainer)
        self._bar.update(1)

    def on_train_end(self, trainer, pl_module):
        if self._bar is not None:
            self._set_postfix(trainer)  # the final bar shows the last epoch's values, as the summary does
            self._bar.close()
            self._bar = None

    def on_exception(self, trainer, pl_module, exception):
        self.on_train_end(trainer, pl_module)

