"""A population split over processes: each process owns a contiguous slice of the particles.

A soup on several devices is *sharded*: rank r owns global particle indices ``[bounds[r],
bounds[r+1])``. :class:`Shard` says where this process's slice sits; :func:`gather_rows` collects
rows of the whole population (a collective). Outside a distributed run the population is
:func:`whole`: one shard, and gathering is the identity.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import torch

__all__ = ["Shard", "whole", "shard_bounds", "gather_rows"]


class Shard(NamedTuple):
    """Where this process's particles sit in the whole population.

    bounds: ``world + 1`` cumulative offsets; rank r owns global indices ``[bounds[r], bounds[r+1])``
    rank: this process's rank
    all_gather: ``x [n, ...]`` (the same shape on every rank) -> ``[world, n, ...]``, in rank order
    """

    bounds: tuple
    rank: int
    all_gather: Callable[[torch.Tensor], torch.Tensor]

    @property
    def size(self) -> int:
        return int(self.bounds[-1])

    @property
    def start(self) -> int:
        return int(self.bounds[self.rank])

    @property
    def stop(self) -> int:
        return int(self.bounds[self.rank + 1])

    @property
    def world(self) -> int:
        return len(self.bounds) - 1


def whole(size: int) -> Shard:
    """The shard of a population that lives in one process."""
    return Shard((0, int(size)), 0, lambda x: x[None])


def shard_bounds(size: int, world: int) -> tuple:
    """Contiguous, balanced slices of ``size`` particles over ``world`` processes (cumulative offsets)."""
    return tuple(r * size // world for r in range(world + 1))


def gather_rows(shard: Shard, local: torch.Tensor, needed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Rows of the whole population marked in ``needed`` (BoolTensor[P], known on every process),
    in global index order (``needed=None``: all of them). ``local`` is this process's ``[P_local, ...]`` slice.
    A collective: every process of a sharded soup calls it together."""
    b = shard.bounds
    if needed is None:
        needed = torch.ones(shard.size, dtype=torch.bool, device=local.device)
    counts = [int(needed[b[r]:b[r + 1]].sum()) for r in range(shard.world)]
    mine = local[needed[shard.start:shard.stop]]  # [counts[rank], ...]
    if shard.world == 1:
        return mine
    m = max(counts)
    if m == 0:
        return mine
    pad = torch.zeros((m - mine.shape[0],) + tuple(mine.shape[1:]), dtype=mine.dtype, device=mine.device)
    gathered = shard.all_gather(torch.cat([mine, pad]).contiguous())  # [world, m, ...]
    return torch.cat([gathered[r, :counts[r]] for r in range(shard.world)])
