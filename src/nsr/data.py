"""SelfReplicationDataModule: the training samples of an epoch, made from the genomes themselves.

A replicator's data is its own weights. At the start of every epoch (the Trainer calls
``train_dataloader()`` once per epoch with ``reload_dataloaders_every_n_epochs=1``, before
``on_train_epoch_start``) the module's population is copied and turned into samples: one epoch
is one pass over that snapshot, as in the paper.

The loader yields the whole epoch as one batch ``{"x", "y", "batch_size", "shuffle"}``; the
module's ``training_step`` runs all of its SGD steps (Lightning's per-step overhead would
otherwise dominate a 14-step epoch of one network), drawing each particle's visiting order keyed
by (seed, epoch, particle index). On several devices each process makes the samples of its own
slice of the population (``module.population`` is ``[P_local, W]``).
"""
from __future__ import annotations

from typing import Optional

import lightning as L
import torch
from torch.utils.data import DataLoader

from nsr.training import check_hyperparameters


class SelfReplicationDataModule(L.LightningDataModule):
    """Samples generated from the model's current weights, a fresh snapshot every epoch.

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

    def epoch(self, module) -> dict:
        """The batch of one epoch: the samples ``x, y`` ``[P, S, ...]`` of a snapshot of the
        module's genomes, and how to visit them (the module draws each particle's order)."""
        w = module.population.clone()  # a snapshot: the parameter is updated in place
        x, y = module.replicator.samples(w)
        return {"x": x, "y": y, "batch_size": self.batch_size, "shuffle": self.shuffle}

    def train_dataloader(self):
        trainer = self.trainer
        if trainer is not None and trainer.reload_dataloaders_every_n_epochs != 1:
            raise ValueError("trainer.reload_dataloaders_every_n_epochs must be 1 with SelfReplicationDataModule "
                             f"(samples are made from the weights every epoch), got {trainer.reload_dataloaders_every_n_epochs}")
        return DataLoader([self.epoch(trainer.lightning_module)], batch_size=None, collate_fn=None)

    def val_dataloader(self):
        # validation measures the population as it is; the module builds what it needs
        return DataLoader([torch.zeros(1)], batch_size=None)
