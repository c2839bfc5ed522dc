"""TaskDataModule: a :class:`nsr.tasks.Task`'s data as a LightningDataModule.

The train loader yields shuffled minibatches ``(x [B, num_inputs], y [B] or [B, num_outputs])``
of the task's train split (its own seeded generator, so runs are reproducible and the
replication samples' random numbers are untouched); the validation loader yields the test split
as one batch. Every particle of a population sees the same task batch.

>>> from nsr.tasks import GaussianAddition
>>> dm = TaskDataModule(GaussianAddition(train_size=10, test_size=4), batch_size=4)
>>> [tuple(x.shape) for x, y in dm.train_dataloader()]
[(4, 2), (4, 2), (2, 2)]
"""
from __future__ import annotations

from typing import Optional, Union

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from nsr.tasks import Task, from_config


class TaskDataModule(L.LightningDataModule):
    """Minibatches of a task's train split; its test split for validation.

    Args:
        task: a :class:`nsr.tasks.Task`, a registered name (``"digits"``, ``"gaussian_addition"``)
            or ``{"name"|"class_path": ..., "init_args": {...}}``.
        batch_size: task samples per step (``None``: the whole train split).
        shuffle: a new order every epoch, drawn from a generator seeded with ``seed``.
        seed: seeds the shuffling.
    """

    def __init__(self, task: Union[Task, str, dict] = "digits", batch_size: Optional[int] = 64,
                 shuffle: bool = True, seed: int = 0):
        super().__init__()
        self.task = from_config(task)
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be None (whole split) or an integer >= 1, got {batch_size!r}")
        if not isinstance(shuffle, bool):
            raise ValueError(f"shuffle must be a bool, got {shuffle!r}")
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.save_hyperparameters(ignore=["task"])
        self.hparams["task"] = self.task.config()

    def _loader(self, split: str, shuffle: bool):
        x, y = self.task.data(split)
        n = len(x) if self.batch_size is None else self.batch_size
        return DataLoader(TensorDataset(x, y), batch_size=n, shuffle=shuffle,
                          generator=self.generator if shuffle else None)

    def train_dataloader(self):
        return self._loader("train", self.shuffle)

    def val_dataloader(self):
        x, y = self.task.data("test")
        return DataLoader(TensorDataset(x, y), batch_size=len(x))

    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state_dict):
        if "generator" in state_dict:
            self.generator.set_state(state_dict["generator"])
