"""The weightwise replicator: one sample per weight, (w_k, layer_id, cell_id, weight_id) -> new w_k."""
from __future__ import annotations

import torch

from nsr.replicators.base import ACTIVATIONS, MLPReplicator, activate, check_choice, check_positive_int


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
        return self._apply_particle_last(a, b)

    def _apply_particle_last(self, a, b):
        """Self-application in a particle-last layout: every op runs on contiguous [P] rows.
        Same numbers as ``forward(a, encode(b))`` (tested), several times faster at large P."""
        P = a.shape[0]
        aT, bT = a.t().contiguous(), b.t().contiguous()  # [W, P]
        Ks = [aT[off:off + i * o].view(i, o, P) for off, (i, o) in zip(self.offsets, self.shapes)]
        ids = self.identifiers(a.device).to(a.dtype)  # [W, 3]
        K0 = Ks[0]  # [4, width, P]
        # first layer: the id columns are the same for every particle, so they are one matmul
        h = torch.matmul(ids, K0[1:].reshape(3, -1)).view(-1, K0.shape[1], P)  # [W, width, P]
        h.addcmul_(bT[:, None, :], K0[0][None])
        h = activate(self.activation, h)
        for K in Ks[1:]:  # K [in, out, P]
            out = h[:, 0:1, :] * K[0][None]  # [W, out, P]
            for j in range(1, K.shape[0]):
                out.addcmul_(h[:, j:j + 1, :], K[j][None])
            h = activate(self.activation, out)
        return h[:, 0, :].t()  # [P, W]

    def identity_genome(self) -> torch.Tensor:
        """``[1, W]``: the hand-built fixpoint. Every kernel's [0, 0] is 1, all else 0, so the
        network copies its first input (genome indices 0, 8, 12 for width 2, depth 2) and
        reproduces any genome, itself included (with linear or relu activation)."""
        w = torch.zeros(1, self.num_weights)
        w[0, self.offsets] = 1.0
        return w


def _norm(value: int, largest: int) -> float:
    return value / largest if largest > 0 else float(value)
