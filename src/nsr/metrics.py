"""torchmetrics wrappers around ``nsr.fixpoints``: sum-reduced states, so the numbers stay right
when a population is split over devices (each rank updates with its own particles; ``compute``
adds the states of all ranks).

>>> import torch
>>> m = FixpointShares()
>>> m.update(torch.tensor([2, 2, 1, 0]))
>>> m.compute().tolist()
[0.25, 0.25, 0.5, 0.0, 0.0]
>>> f = FiniteMean()
>>> f.update(torch.tensor([1.0, 3.0, float("inf")]))
>>> f.compute().item()
2.0
"""
from __future__ import annotations

import math

import torch
from torchmetrics import Metric

from nsr.fixpoints import FixpointClass, counts


class FixpointShares(Metric):
    """Share of each :class:`~nsr.fixpoints.FixpointClass` in the population: ``[5]``, summing to 1."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("counts", default=torch.zeros(len(FixpointClass), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, classes: torch.Tensor) -> None:  # classes: LongTensor[P]
        self.counts += counts(classes).to(self.counts.device)

    def compute(self) -> torch.Tensor:
        total = self.counts.sum().clamp_min(1)
        return self.counts.double() / total


class FiniteMean(Metric):
    """Mean of the finite values seen (NaN if none): e.g. the fixpoint distance over non-divergent
    particles, or the training loss over particles that have not diverged."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor) -> None:  # values: [P]
        finite = torch.isfinite(values)
        self.total += values[finite].double().sum().to(self.total.device)
        self.count += finite.sum().to(self.count.device)

    def compute(self) -> torch.Tensor:
        if int(self.count) == 0:
            return torch.tensor(math.nan, dtype=torch.float64)
        return self.total / self.count
