"""PopulationModule: the contract every nsr LightningModule offers callbacks and the CLI.

A population module holds a replicator and a population of genomes ``[P, W]`` (on several devices
possibly sharded: each process owns ``[P_local, W]``) and exposes:

- ``replicator``: the architecture (an ``nsr.replicators.Replicator``);
- ``epsilon``: the fixpoint tolerance; ``second_order``: the second-order test (``"orbit"``);
- ``population``: this process's genomes ``[P_local, W]``, detached;
- ``gather_population()``: the whole ``[P, W]`` (a collective: every process calls it);
- ``particle_ids`` ``LongTensor[P_local]`` and ``gather_particle_ids()`` ``LongTensor[P]``: which
  particle each slot holds (a slot whose particle is replaced gets a new id);
- ``particle_loss``: ``[P_local]`` each particle's self-training loss over the last epoch, or None
  when the module does not self-train;
- ``time_unit``: what one epoch is (``"epoch"``, ``"generation"``), for figures and summaries;
- ``kind``: the ``checkpoint["nsr"]["kind"]`` it writes and resumes from, and
  :meth:`check_checkpoint`, which the CLI calls before resuming (``--ckpt_path``).

Callbacks rely on nothing else, so a duck-typed object with these attributes works as well (the
callbacks then take the defaults above for what it lacks).
"""
from __future__ import annotations

import inspect
import math
from typing import Optional

import lightning as L
import torch

from nsr.checkpoint import check_compatible, check_entry
from nsr.fixpoints import classify, distance, shares
from nsr.scalar_logs import log_epoch_metrics


def count_optimizer_step(optimizer) -> None:
    """Count one optimizer step in Lightning's counters (``global_step``) for an update the module
    has already applied itself (the fused kernels, a soup generation). Lightning's own
    ``optimizer.step()`` would also run the ``on_before_optimizer_step`` hooks and torch's
    optimizer-step wrappers for an update that has nothing left to do: at a small population that
    is a tenth of an epoch. Falls back to ``optimizer.step()`` outside a manual-optimization loop."""
    before, after = getattr(optimizer, "_on_before_step", None), getattr(optimizer, "_on_after_step", None)
    if before is None or after is None or getattr(before, "__name__", "") == "do_nothing_closure":
        optimizer.step()
        return
    before()
    after()


class PopulationModule(L.LightningModule):
    """Base class of ``ReplicatorModule`` and ``SoupModule``: the contract in the module docstring."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("training_step")
        if callable(step) and "__signature__" not in getattr(step, "__dict__", {}):
            # Lightning reads training_step's signature before every step (inspect.getfullargspec):
            # a precomputed one is returned at once instead of being rebuilt every epoch
            step.__signature__ = inspect.signature(step)

    kind: str = "replicator"
    time_unit: str = "epoch"
    second_order: str = "orbit"
    replicator = None
    epsilon: float = 1e-4

    # The defaults: the whole population in this process, as the parameter ``genomes`` ``[P, W]``,
    # particle p in slot p for the whole run. Sharded modules (ReplicatorModule, SoupModule) override them.
    @property
    def population(self) -> torch.Tensor:
        """``[P_local, W]``: this process's genomes, detached."""
        return self.genomes.detach()

    @property
    def particle_ids(self) -> torch.Tensor:
        """``LongTensor[P_local]``: the ids of this process's particles."""
        return torch.arange(self.genomes.shape[0], device=self.genomes.device)

    def gather_population(self) -> torch.Tensor:
        """``[P, W]``: the whole population (a collective)."""
        return self.population

    def gather_particle_ids(self) -> torch.Tensor:
        """``LongTensor[P]``: the ids of the whole population (a collective)."""
        return self.particle_ids

    # ---- validation: the population as it is ------------------------------------------------------
    def validation_step(self, batch, batch_idx):
        """``val/loss`` (mean self-replication error over the finite particles), ``val/distance`` and
        the class shares ``val/<class>`` of the whole population as it is. They go to the loggers at
        the step the population has trained to (a checkpoint's when validating one), so a validated
        checkpoint's values sit on its run's curves."""
        from nsr.replicators import mse

        w = self.gather_population()  # [P, W]
        x, y = self.replicator.samples(w)
        loss = mse(self.replicator.forward(w, x), y)  # [P]
        d = distance(self.replicator, w)  # [P]
        metrics = {"val/loss": _finite_mean(loss), "val/distance": _finite_mean(d)}
        metrics.update({f"val/{name}": float(v) for name, v in
                        shares(classify(self.replicator, w, self.epsilon, self.second_order)).items()})
        trainer = self.trainer
        stepped = getattr(getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None), "_batches_that_stepped", None)
        if trainer.state.fn == "fit" and not trainer.sanity_checking and isinstance(stepped, int):
            # what Lightning logs for self.log(on_epoch=True) at the end of a validation inside a
            # fit (these values and "epoch", at the steps trained so far), without its machinery:
            # its first call in a process costs 0.2 s, more than 200 epochs of the paper's run
            log_epoch_metrics(trainer, {**metrics, "epoch": float(trainer.current_epoch)}, step=stepped)
            return
        for name, value in metrics.items():
            self.log(name, value, on_epoch=True, batch_size=1)
        step = getattr(self, "_checkpoint_step", None)
        if self.trainer.state.fn != "fit" and step is not None:
            self.log("step", float(step), on_epoch=True, batch_size=1)  # Lightning logs at this step

    # ---- checkpoints -----------------------------------------------------------------------------
    def resume_population(self) -> Optional[int]:
        """The population size a checkpoint must hold to resume this run (None: checked on load)."""
        return None

    def check_checkpoint(self, path) -> dict:
        """Raise a one-line ``ValueError`` unless the checkpoint at ``path`` can resume this run
        (same architecture, same kind of module, same population size). Returns the checkpoint."""
        return check_compatible(path, self.replicator, kind=self.kind, population=self.resume_population())

    def checked_entry(self, checkpoint: dict, population: Optional[int] = None,
                      population_name: str = "this run's population") -> dict:
        """``checkpoint["nsr"]`` after checking that it fits this run (``on_load_checkpoint``)."""
        trainer = self._trainer
        where = f"checkpoint {trainer.ckpt_path}" if trainer is not None and trainer.ckpt_path else "checkpoint"
        nsr = checkpoint.get("nsr")
        check_entry(nsr, where, self.replicator, self.kind, population, population_name)
        self._checkpoint_step = checkpoint.get("global_step")  # where a validated checkpoint's values go
        return nsr


def _finite_mean(v: torch.Tensor) -> float:
    finite = torch.isfinite(v)
    return float(v[finite].mean()) if bool(finite.any()) else math.nan
