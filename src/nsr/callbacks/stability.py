"""StabilityMonitor: the linear stability of a running population's fixpoints (docs/stability.md).

Works with every nsr module (single replicators and soups): it reads ``replicator``, ``epsilon`` and
``gather_population()`` (a collective call: every rank makes it), and logs from rank 0 only.
"""
from __future__ import annotations

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from nsr.fixpoints import FixpointClass, classify, is_aggregate_fixpoint
from nsr.stability import STABILITY_NAMES, StabilityClass, classify_stability, spectrum


class StabilityMonitor(Callback):
    """Every ``every_n_epochs`` epochs (and at the last), the spectrum of the Jacobian of
    self-application (float64) at up to ``max_fixpoints`` of the population's non-trivial fixpoints
    (aggregating: aggregate fixpoints). Scalars: ``stability/fixpoints`` (share of the population
    analysed), ``stability/spectral_radius`` (median over them), ``stability/attracting`` (share of
    them with every |lambda| < 1 - tol), and the shares ``stability/marginal|saddle|repelling``;
    a TensorBoard histogram ``stability/spectral_radius``."""

    def __init__(self, every_n_epochs: int = 10, max_fixpoints: int = 1000, tol: float = 1e-3):
        for name, v in (("every_n_epochs", every_n_epochs), ("max_fixpoints", max_fixpoints)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < 1:
            raise ValueError(f"tol must be a number in [0, 1), got {tol!r}")
        self.every_n_epochs, self.max_fixpoints, self.tol = every_n_epochs, max_fixpoints, float(tol)
        self.last: dict[str, float] = {}
        self.last_radii = torch.zeros(0, dtype=torch.float64)

    def measure(self, rep, w: torch.Tensor, epsilon: float) -> dict[str, float]:
        """The scalars of population ``w`` ``[P, W]``; keeps the spectral radii in ``last_radii``."""
        if hasattr(rep, "aggregate"):
            fix = is_aggregate_fixpoint(rep, w, epsilon) & torch.isfinite(w).all(1)
        else:
            fix = classify(rep, w, epsilon) == FixpointClass.NONTRIVIAL
        f = w[fix][: self.max_fixpoints].detach().cpu()
        out = {"stability/fixpoints": float(fix.double().mean()) if w.shape[0] else 0.0}
        if f.shape[0] == 0:
            self.last_radii = torch.zeros(0, dtype=torch.float64)
            out["stability/attracting"] = 0.0
            return out
        ev = spectrum(rep, f, dtype=torch.float64)  # [F, W]
        cls, _ = classify_stability(ev, self.tol)
        self.last_radii = ev.abs()[:, 0]
        out["stability/spectral_radius"] = float(self.last_radii.median())
        for name, c in zip(STABILITY_NAMES[:4], list(StabilityClass)[:4]):
            out[f"stability/{name}"] = float((cls == c).double().mean())
        return out

    def _run(self, trainer, pl_module, step: int) -> None:
        w = pl_module.gather_population()  # collective: every rank calls it
        if not trainer.is_global_zero:
            return
        self.last = self.measure(pl_module.replicator, w, pl_module.epsilon)
        for logger in trainer.loggers:
            logger.log_metrics(self.last, step=step)
            if isinstance(logger, TensorBoardLogger):
                radii = self.last_radii[torch.isfinite(self.last_radii)]
                if radii.numel():
                    logger.experiment.add_histogram("stability/spectral_radius", radii, global_step=step)

    def on_train_epoch_end(self, trainer, pl_module):
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        if epoch % self.every_n_epochs == 0 or last:
            self._run(trainer, pl_module, epoch)

