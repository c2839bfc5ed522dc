"""The weightwise replicator: one sample per weight, (w_k, layer_id, cell_id, weight_id) -> new w_k."""
from __future__ import annotations

import torch

from nsr.kernels import MLPKernel
from nsr.replicators.base import ACTIVATIONS, MLPReplicator, check_choice, check_positive_int


class Weightwise(MLPReplicator):
    """Weightwise replicator: layers 4 -> width -> ... -> width -> 1 (``depth`` hidden layers).

    Each weight k is encoded as ``(w_k, layer_id, cell_id, weight_id)``, every id divided by the
    largest id of its scope (when that is > 0); the network outputs the new w_k.

    >>> Weightwise().num_weights
    14
    """

    def __init__(self, width: int = 2, depth: int = 2, activation: str = "linear"):
        self.width = check_positive_int("width", width)
        self.depth = check_positive_int("depth", depth)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.shapes = [(4, width)] + [(width, width)] * (depth - 1) + [(width, 1)]
        self.kernel = MLPKernel(self.shapes, activation, ids=self.identifiers)  # samples: (w_k, ids)

    @property
    def hparams(self):
        return {"width": self.width, "depth": self.depth, "activation": self.activation}

    def identifiers(self, device=None) -> torch.Tensor:
        """``[W, 3]`` normalised (layer_id, cell_id, weight_id) of every genome position."""
        return position_ids(self.shapes, device)

    def encode(self, b: torch.Tensor) -> torch.Tensor:
        """``[P, W, 4]`` inputs that ask for every weight of genomes ``b`` ``[P, W]``."""
        return weightwise_inputs(b, self.shapes)

    def samples(self, w):
        self.check_weights(w)
        return self.encode(w), w[:, :, None].clone()  # [P, W, 4], [P, W, 1]: copies, not views of w

    def identity_genome(self) -> torch.Tensor:
        """``[1, W]``: the hand-built fixpoint. Every kernel's [0, 0] is 1, all else 0, so the
        network copies its first input (genome indices 0, 8, 12 for width 2, depth 2) and
        reproduces any genome, itself included (with linear or relu activation)."""
        w = torch.zeros(1, self.num_weights)
        w[0, self.offsets] = 1.0
        return w


_POSITION_IDS: dict = {}


def position_ids(shapes, device=None) -> torch.Tensor:
    """``[W, 3]`` float32: the weightwise encoding of every genome position of kernels ``shapes``
    (``[(inputs, outputs), ...]`` in genome order): (layer_id, cell_id, weight_id), each id divided
    by the largest id of its scope when that is > 0 (docs/science.md). Cached per layout and device;
    shared by every weightwise-style replicator."""
    key = (tuple(map(tuple, shapes)), str(device))
    if key not in _POSITION_IDS:
        L = len(shapes)
        rows = [(_norm(layer, L - 1), _norm(cell, i - 1), _norm(weight, o - 1))
                for layer, (i, o) in enumerate(shapes) for cell in range(i) for weight in range(o)]
        _POSITION_IDS[key] = torch.tensor(rows, dtype=torch.float32, device=device)
    return _POSITION_IDS[key]


def weightwise_inputs(b: torch.Tensor, shapes) -> torch.Tensor:
    """``[P, W, 4]``: the weightwise encoding (w_k, layer_id, cell_id, weight_id) of every weight of
    genomes ``b`` ``[P, W]`` laid out as kernels ``shapes``: the inputs that ask a network for them."""
    P, W = b.shape
    ids = position_ids(shapes, b.device).to(b.dtype)
    return torch.cat([b[:, :, None], ids[None].expand(P, W, 3)], dim=2)


def _norm(value: int, largest: int) -> float:
    return value / largest if largest > 0 else float(value)
