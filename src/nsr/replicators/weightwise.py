"""The weightwise replicator: one sample per weight, (w_k, layer_id, cell_id, weight_id) -> new w_k."""
from __future__ import annotations

import torch

from nsr.replicators import fast
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
        self._ids = {}

    @property
    def hparams(self):
        return {"width": self.width, "depth": self.depth, "activation": self.activation}

    def identifiers(self, device=None) -> torch.Tensor:
        """``[W, 3]`` normalised (layer_id, cell_id, weight_id) of every genome position."""
        key = str(device)
        if key not in self._ids:
            rows = []
            L = len(self.shapes)
            for layer, (i, o) in enumerate(self.shapes):
                for cell in range(i):
                    for weight in range(o):
                        rows.append((_norm(layer, L - 1), _norm(cell, i - 1), _norm(weight, o - 1)))
            self._ids[key] = torch.tensor(rows, dtype=torch.float32, device=device)
        return self._ids[key]

    def encode(self, b: torch.Tensor) -> torch.Tensor:
        """``[P, W, 4]`` inputs that ask for every weight of genomes ``b`` ``[P, W]``."""
        P, W = b.shape
        ids = self.identifiers(b.device).to(b.dtype)
        return torch.cat([b[:, :, None], ids[None].expand(P, W, 3)], dim=2)

    def samples(self, w):
        self.check_weights(w)
        return self.encode(w), w[:, :, None].clone()  # [P, W, 4], [P, W, 1]: copies, not views of w

    def apply(self, a, b, generator=None):
        self.check_weights(a, "a")
        self.check_weights(b, "b")
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"a and b must hold the same number of particles, got {a.shape[0]} and {b.shape[0]}")
        return fast.apply(self, a, b)

    # ---- the fused kernels (nsr.replicators.fast): particle-last samples ---------------------------
    _native_samples = "genome"
    _num_samples = property(lambda self: self.num_weights)
    _apply_floats = property(lambda self: self.num_weights * max(self.width, 4))

    def _native_ids(self) -> torch.Tensor:
        """``[W, 3]`` float32 CPU ids for the native kernels."""
        return self.identifiers("cpu").contiguous()

    def _id_columns(self, device, dtype) -> list[torch.Tensor]:
        """The three id columns ``[W, 1, 1]``: the same for every particle, never expanded over P."""
        ids = self.identifiers(device).to(dtype)  # [W, 3]
        return [ids[:, c].reshape(-1, 1, 1) for c in range(3)]

    def _samples_pl(self, bT):
        """Samples of genomes ``bT [W, P]``: input columns (w_k, then the shared ids) and targets."""
        wk = bT[:, None, :]  # [W, 1, P]
        return [wk] + self._id_columns(bT.device, bT.dtype), wk

    def _apply_pl(self, aT, bT):
        """``[W, P]``: networks ``aT [W, P]`` applied to genomes ``bT [W, P]``."""
        return fast.mlp_apply(self.shapes, self.activation, aT, self._samples_pl(bT)[0])[:, 0, :]

    def identity_genome(self) -> torch.Tensor:
        """``[1, W]``: the hand-built fixpoint. Every kernel's [0, 0] is 1, all else 0, so the
        network copies its first input (genome indices 0, 8, 12 for width 2, depth 2) and
        reproduces any genome, itself included (with linear or relu activation)."""
        w = torch.zeros(1, self.num_weights)
        w[0, self.offsets] = 1.0
        return w


def _norm(value: int, largest: int) -> float:
    return value / largest if largest > 0 else float(value)
