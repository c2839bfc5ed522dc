"""RobustnessProbe: the paper's robustness test on a population's non-trivial fixpoints during a fit."""
from __future__ import annotations

import csv
import math
import os
import sys
from typing import Optional, Sequence

import torch
from lightning.pytorch.callbacks import Callback

from nsr.atomic import write_atomically
from nsr.callbacks.figures import robustness_figure
from nsr.callbacks.logs import log_epoch_metrics, log_figure, second_order, tensorboard_writer
from nsr.fixpoints import DEFAULT_SCALES, FixpointClass, classify, noise_label, robustness


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
        classes = classify(rep, w, pl_module.epsilon, second_order=second_order(pl_module))
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
            metrics[f"robustness/time_to_vergence/{noise_label(s)}"] = float(ttv.double().mean())
            metrics[f"robustness/time_as_fixpoint/{noise_label(s)}"] = float(taf.double().mean())
        log_epoch_metrics(trainer, metrics, step=epochs)
        fig = robustness_figure(self.results)
        writer = tensorboard_writer(trainer)
        log_figure(writer, "robustness/boxplot", fig, epochs, os.path.join(log_dir, "robustness.png") if log_dir else None)
        if log_dir:
            write_atomically(os.path.join(log_dir, "robustness.csv"), lambda f: _write_robustness_csv(f, self.results), "w")

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
        row = [noise_label(s), ttv.numel()]
        for t in (ttv, taf):
            t = t.double()
            row += [f"{float(t.mean()):.4g}", f"{float(t.median()):g}", int(t.min()), int(t.max())]
        out.writerow(row)
