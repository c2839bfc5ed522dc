"""FixpointMonitor: the fixpoint scalars of a population every few epochs, and the end-of-fit summary."""
from __future__ import annotations

import math
from typing import Optional

import torch
from lightning.pytorch.callbacks import Callback

from nsr.callbacks.logs import flush_scalar_events, log_epoch_metrics, log_final_hparams, second_order, tensorboard_root, time_unit
from nsr.fixpoints import CLASS_NAMES, classify, distance
from nsr.fixpoints import counts as class_counts
from nsr.metrics import PopulationStats, population_scalars


class FixpointMonitor(Callback):
    """Every ``every_n_epochs`` epochs, the scalars of docs/architecture.md: ``train/loss`` (mean over particles of
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
        loss = getattr(pl_module, "particle_loss", None)
        trainer = getattr(pl_module, "_trainer", None)
        if trainer is None or trainer.world_size == 1:  # one process: the same sums, without the metric's machinery
            return population_scalars(pl_module.replicator, pl_module.population, pl_module.epsilon,
                                      second_order=second_order(pl_module), loss=loss)
        if self._metric is None:
            self._metric = PopulationStats().to(pl_module.device)
        self._metric.update(pl_module.replicator, pl_module.population, pl_module.epsilon,
                            second_order=second_order(pl_module), loss=None if loss is None else loss.to(pl_module.device))
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
        self.final = self.summarize(trainer, pl_module)
        if self.final is not None:
            log_final_hparams(trainer, pl_module, self.final)

    def summarize(self, trainer, pl_module) -> Optional[dict]:
        """The summary of the population as it is (on rank 0; None elsewhere): class shares and
        counts, fixpoint distance, where the logs and the checkpoint are. A collective call."""
        w = pl_module.gather_population()  # collective: every rank calls it
        log_dir = trainer.log_dir  # broadcasts
        if not trainer.is_global_zero:
            return None
        classes = classify(pl_module.replicator, w, pl_module.epsilon, second_order=second_order(pl_module))
        d = distance(pl_module.replicator, w)
        finite = torch.isfinite(d)
        counts = class_counts(classes).tolist()
        ckpt = trainer.checkpoint_callback
        return {
            "replicator": repr(pl_module.replicator), "population": int(w.shape[0]), "epochs": trainer.current_epoch,
            "time_unit": time_unit(pl_module),
            "shares": {n: c / max(w.shape[0], 1) for n, c in zip(CLASS_NAMES, counts)}, "counts": dict(zip(CLASS_NAMES, counts)),
            "distance_mean": float(d[finite].mean()) if bool(finite.any()) else math.nan,
            "distance_max": float(d[finite].max()) if bool(finite.any()) else math.nan,
            "log_dir": log_dir, "tensorboard_dir": tensorboard_root(trainer, log_dir),
            "checkpoint": getattr(ckpt, "last_model_path", "") or getattr(ckpt, "best_model_path", "") if ckpt else "",
        }

    def on_exception(self, trainer, pl_module, exception):
        flush_scalar_events(trainer)

    def teardown(self, trainer, pl_module, stage):
        flush_scalar_events(trainer)

    def on_fit_end(self, trainer, pl_module):
        if self.summary and self.final is not None and trainer.is_global_zero:
            print(format_summary(self.final), flush=True)


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
