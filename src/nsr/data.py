"""SelfReplicationDataModule: how an epoch visits the samples the genomes make of themselves.

A replicator's data is its own weights. One epoch is one pass over the samples of a snapshot of the
genomes taken at the epoch's start, as in the paper. The module takes that snapshot inside its
``training_step`` (:func:`epoch_samples`): every epoch is one step that runs all of its SGD steps
(Lightning's per-step overhead would otherwise dominate a 14-step epoch of one network), so the
step's start is the epoch's start and nothing can be stale (a loader that made the samples would
have to be rebuilt every epoch, ``reload_dataloaders_every_n_epochs=1``, which costs more than the
epoch itself at the paper's size).

The loader yields one batch per epoch ``{"batch_size", "shuffle"}``: how to visit the samples.
Each particle's visiting order is keyed by (seed, epoch, particle index), so it is the same on any
number of devices. On several devices each process makes the samples of its own slice of the
population (``module.population`` is ``[P_local, W]``).
"""
from __future__ import annotations

from typing import Optional

import lightning as L
import torch
from torch.utils.data import DataLoader

from nsr.training import check_hyperparameters


def epoch_samples(module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` ``[P_local, S, ...]``: the samples of a snapshot of ``module``'s genomes (copied:
    the parameter is updated in place during the epoch)."""
    w = module.population.clone()
    return module.replicator.samples(w)


class EpochBatches:
    """The train loader: one batch per epoch, ``recipe``. Lightning iterates any iterable; a
    DataLoader's iterator costs more to make every epoch than a small population's epoch of training."""

    def __init__(self, recipe: dict):
        self.recipe = recipe

    def __iter__(self):
        yield self.recipe

    def __len__(self) -> int:
        return 1


class SelfReplicationDataModule(L.LightningDataModule):
    """One batch per epoch saying how the module's own samples are visited.

    Args:
        batch_size: samples per SGD step and particle; 1 is the paper's setting, ``None`` a full batch.
        shuffle: visit each particle's samples in an independent random order every epoch (keyed by
            the module's seed, the epoch and the particle, so runs are reproducible and resumable on
            any number of devices).
    """

    def __init__(self, batch_size: Optional[int] = 1, shuffle: bool = True):
        super().__init__()
        check_hyperparameters(batch_size=batch_size)
        if not isinstance(shuffle, bool):
            raise ValueError(f"shuffle must be a bool, got {shuffle!r}")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.save_hyperparameters()

    def recipe(self) -> dict:
        """The batch of every epoch: ``{"batch_size", "shuffle"}``."""
        return {"batch_size": self.batch_size, "shuffle": self.shuffle}

    def epoch(self, module) -> dict:
        """One epoch's batch with its samples made now: ``{"x", "y", "batch_size", "shuffle"}``
        (what ``training_step`` computes at the epoch's start)."""
        x, y = epoch_samples(module)
        return {"x": x, "y": y, **self.recipe()}

    def train_dataloader(self):
        return EpochBatches(self.recipe())

    def val_dataloader(self):
        # validation measures the population as it is; the module builds what it needs
        return DataLoader([torch.zeros(1)], batch_size=None)
