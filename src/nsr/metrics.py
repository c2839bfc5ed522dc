"""torchmetrics wrapper around ``nsr.fixpoints``: sum-reduced states, so the numbers stay right
when a population is split over devices (each rank updates with its own particles; ``compute``
adds the states of all ranks). One metric holds every state, so a step costs one update, one
synchronisation and one reset.

>>> import torch
>>> from nsr.replicators import Weightwise
>>> rep = Weightwise()
>>> w = torch.cat([rep.identity_genome(), torch.zeros(1, 14), torch.full((1, 14), float("nan"))])
>>> m = PopulationStats()
>>> m.update(rep, w, epsilon=1e-4, loss=torch.tensor([0.0, 0.0, float("nan")]))
>>> out = m.compute()
>>> [out[f"fixpoint/{c}"] for c in ("divergent", "zero", "nontrivial", "second_order", "other")]
[0.3333333333333333, 0.3333333333333333, 0.3333333333333333, 0.0, 0.0]
>>> out["fixpoint/distance"], out["train/loss"]
(0.0, 0.0)
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torchmetrics import Metric

from nsr.fixpoints import CLASS_NAMES, FixpointClass, aggregate_distance, classify_and_distance, counts
from nsr.kernels.classify import applies as fixpoint_tests_apply
from nsr.kernels.classify import fixpoint_tests


def _finite_sum_count(values: torch.Tensor) -> torch.Tensor:
    """``[2]`` float64: the sum of the finite values and how many there are."""
    finite = torch.isfinite(values)
    return torch.stack([values[finite].double().sum(), finite.sum().double()])


def _mean(sum_count: torch.Tensor) -> float:
    return float(sum_count[0] / sum_count[1]) if float(sum_count[1]) > 0 else math.nan


class PopulationStats(Metric):
    """The fixpoint scalars of a population (docs/architecture.md): ``fixpoint/<class>`` shares summing to 1,
    ``fixpoint/distance`` (mean over particles whose distance is finite), ``train/loss`` (mean
    over particles with a finite loss; absent if no loss was given), and for Aggregating
    replicators ``fixpoint/aggregate_fixpoint`` (share of genomes whose aggregates are reproduced)
    and ``fixpoint/aggregate_distance``."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("classes", default=torch.zeros(len(FixpointClass), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("distance", default=torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")
        # [sum of finite losses, how many, how many particles reported a loss]
        self.add_state("loss", default=torch.zeros(3, dtype=torch.float64), dist_reduce_fx="sum")
        # [aggregate fixpoints, sum of finite aggregate distances, how many, particles tested]
        self.add_state("aggregate", default=torch.zeros(4, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, rep, w: torch.Tensor, epsilon: float = 1e-4, second_order: str = "orbit",
               loss: Optional[torch.Tensor] = None) -> None:  # w: [P, W], loss: [P]
        dev = self.classes.device
        for name, value in population_states(rep, w, epsilon, second_order, loss).items():
            setattr(self, name, getattr(self, name) + value.to(dev))

    def compute(self) -> dict[str, float]:
        return scalars({name: getattr(self, name) for name in STATES})


STATES = ("classes", "distance", "loss", "aggregate")


def population_states(rep, w: torch.Tensor, epsilon: float = 1e-4, second_order: str = "orbit",
                      loss: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """The sum-reducible states of :class:`PopulationStats` for the genomes ``w`` ``[P, W]`` (and
    their losses ``[P]``): what one update adds. ``scalars(population_states(...))`` are the
    scalars of a population held by one process, without the metric's machinery."""
    classes, d = classify_and_distance(rep, w, epsilon, second_order=second_order)
    n = torch.tensor([float(w.shape[0])], dtype=torch.float64)
    states = {"classes": counts(classes), "distance": _finite_sum_count(d),
              "loss": torch.zeros(3, dtype=torch.float64), "aggregate": torch.zeros(4, dtype=torch.float64)}
    if loss is not None:
        states["loss"] = torch.cat([_finite_sum_count(loss).cpu(), n])
    if hasattr(rep, "apply_aggregates"):
        d = aggregate_distance(rep, w)
        hits = (d < epsilon).sum().double().cpu()[None]
        states["aggregate"] = torch.cat([hits, _finite_sum_count(d).cpu(), n])
    return states


def population_scalars(rep, w: torch.Tensor, epsilon: float = 1e-4, second_order: str = "orbit",
                       loss: Optional[torch.Tensor] = None) -> dict[str, float]:
    """``scalars(population_states(rep, w, ...))``: the fixpoint scalars of a population held by one
    process. Where the native kernels apply, the class tests and sums run in one C pass after the
    two self-applications (:func:`nsr.kernels.classify.fixpoint_tests`, the same comparisons);
    measured every epoch, a small population's scalars are otherwise mostly torch call overhead."""
    if not hasattr(rep, "apply_aggregates") and w.dim() == 2 and fixpoint_tests_apply(w):
        w = w.detach().contiguous()
        rep.check_weights(w)
        fw = rep.apply(w, w)  # [P, W]
        ffw = rep.apply(fw, fw) if second_order == "orbit" else rep.apply(w, fw)
        t = fixpoint_tests(w, fw.contiguous(), ffw.contiguous(), float(epsilon),
                           None if loss is None else loss.detach().contiguous())
        if t is not None:
            total = max(sum(t.counts), 1)
            out = {f"fixpoint/{name}": c / total for name, c in zip(CLASS_NAMES, t.counts)}
            out["fixpoint/distance"] = t.distance_sum / t.distance_count if t.distance_count > 0 else math.nan
            if loss is not None and w.shape[0] > 0:
                out["train/loss"] = t.loss_sum / t.loss_count if t.loss_count > 0 else math.nan
            return out
    return scalars(population_states(rep, w, epsilon, second_order, loss))


def scalars(states: dict[str, torch.Tensor]) -> dict[str, float]:
    """The scalars (``fixpoint/<class>``, ``fixpoint/distance``, ``train/loss``, ...) of summed states."""
    classes, distance, loss, aggregate = (states[k] for k in STATES)
    total = max(int(classes.sum()), 1)
    out = {f"fixpoint/{name}": int(c) / total for name, c in zip(CLASS_NAMES, classes.tolist())}
    out["fixpoint/distance"] = _mean(distance)
    if float(loss[2]) > 0:
        out["train/loss"] = _mean(loss[:2])
    if float(aggregate[3]) > 0:
        out["fixpoint/aggregate_fixpoint"] = float(aggregate[0]) / total
        out["fixpoint/aggregate_distance"] = _mean(aggregate[1:3])
    return out
