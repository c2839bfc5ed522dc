"""The aggregating replicator: the genome in ``aggregates`` chunks, each reduced to one value."""
from __future__ import annotations

import torch

from nsr.kernels.aggregates import AggregatesKernel
from nsr.random import uniform
from nsr.replicators.base import ACTIVATIONS, MLPReplicator, check_choice, check_positive_int

AGGREGATORS = ("mean", "max")


class Aggregating(MLPReplicator):
    """Aggregating replicator: aggregates -> width -> ... -> width -> aggregates.

    The genome is cut into ``aggregates`` consecutive chunks of W // aggregates weights (the last
    chunk also takes the remainder); each chunk is reduced by ``aggregator`` (mean or max); the
    network maps the aggregates to new ones, and each new value is written to every weight of its
    chunk (then, with ``shuffle=True``, the genome is randomly permuted). One sample per genome.

    >>> Aggregating().num_weights
    20
    """

    def __init__(self, aggregates: int = 4, width: int = 2, depth: int = 2, activation: str = "linear",
                 aggregator: str = "mean", shuffle: bool = False):
        self.aggregates = check_positive_int("aggregates", aggregates)
        self.width = check_positive_int("width", width)
        self.depth = check_positive_int("depth", depth)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.aggregator = check_choice("aggregator", aggregator, AGGREGATORS)
        if not isinstance(shuffle, bool):
            raise ValueError(f"shuffle must be a bool, got {shuffle!r}")
        self.shuffle = shuffle
        self.shapes = [(aggregates, width)] + [(width, width)] * (depth - 1) + [(width, aggregates)]
        W, A = self.num_weights, aggregates
        size = W // A
        self.bounds = [(c * size, (c + 1) * size if c < A - 1 else W) for c in range(A)]
        self._chunk_of = {}
        self.kernel = AggregatesKernel(self.shapes, activation, self.bounds, aggregator)  # its one sample: the aggregates

    @property
    def hparams(self):
        return {"aggregates": self.aggregates, "width": self.width, "depth": self.depth,
                "activation": self.activation, "aggregator": self.aggregator, "shuffle": self.shuffle}

    def chunk_of(self, device=None) -> torch.Tensor:
        """``[W]`` the chunk (aggregate index) of every genome position."""
        key = str(device)
        if key not in self._chunk_of:
            c = torch.empty(self.num_weights, dtype=torch.long)
            for i, (s, e) in enumerate(self.bounds):
                c[s:e] = i
            self._chunk_of[key] = c.to(device)
        return self._chunk_of[key]

    def aggregate(self, b: torch.Tensor) -> torch.Tensor:
        """``[P, A]`` the aggregates of genomes ``b`` ``[P, W]``."""
        self.check_weights(b, "b")
        return self.kernel.aggregate(b)

    def samples(self, w):
        agg = self.aggregate(w)[:, None, :]  # [P, 1, A]
        return agg, agg.clone()

    def apply_aggregates(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``[P, A]``: network ``a[i]`` applied to the aggregates of genome ``b[i]``."""
        self.check_weights(a, "a")
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"a and b must hold the same number of particles, got {a.shape[0]} and {b.shape[0]}")
        return self.kernel.forward(a, self.aggregate(b)[:, None, :])[:, 0, :]

    def apply(self, a, b, generator=None):
        new = self.apply_aggregates(a, b)  # [P, A]
        out = new[:, self.chunk_of(new.device)]  # [P, W]: each value written to its chunk
        if self.shuffle:
            perm = uniform(generator, out.shape[0], out.shape[1], device=out.device).argsort(dim=1)
            out = out.gather(1, perm)
        return out
