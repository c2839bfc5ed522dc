"""The recurrent replicator: the genome read as a sequence by stacked simple RNN layers."""
from __future__ import annotations

import torch

from nsr.replicators import fast
from nsr.replicators.base import ACTIVATIONS, Replicator, activate, check_choice, check_positive_int


class Recurrent(Replicator):
    """Recurrent replicator: simple RNN layers of units width, ..., width (``depth`` of them), 1.

    The genome is read one scalar per step; output step k is the new w_k. Each layer computes
    ``h_t = act(x_t @ kernel + h_{t-1} @ recurrent_kernel)`` with h_0 = 0 (Keras' SimpleRNN, no
    bias). Genome layout per layer: input kernel [in, units], then recurrent kernel [units, units].
    One sample (the whole sequence) per genome.

    >>> Recurrent().num_weights
    17
    """

    def __init__(self, width: int = 2, depth: int = 2, activation: str = "linear"):
        self.width = check_positive_int("width", width)
        self.depth = check_positive_int("depth", depth)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        units = [width] * depth + [1]
        ins = [1] + units[:-1]
        self.shapes = []
        for i, u in zip(ins, units):
            self.shapes += [(i, u), (u, u)]
        self.recurrent = tuple(range(1, len(self.shapes), 2))

    @property
    def hparams(self):
        return {"width": self.width, "depth": self.depth, "activation": self.activation}

    def samples(self, w):
        self.check_weights(w)
        seq = w[:, None, :, None].clone()  # [P, 1, T=W, 1], a copy: w may be updated in place
        return seq, seq.clone()

    def _run(self, w, x):
        """Forward pass keeping every layer's outputs: list of ``[P, S, T, units]``."""
        Ks = self.kernels(w)
        hs = [x]
        for K, R in zip(Ks[0::2], Ks[1::2]):
            xk = torch.einsum("pstI,pIu->pstu", hs[-1], K)  # [P, S, T, u]
            steps, h = [], None
            for t in range(xk.shape[2]):
                pre = xk[:, :, t] if h is None else xk[:, :, t] + torch.einsum("psu,puv->psv", h, R)
                h = activate(self.activation, pre)  # [P, S, u]
                steps.append(h)
            hs.append(torch.stack(steps, dim=2))
        return hs

    def forward(self, w, x):
        return self._run(w, x)[-1]

    def loss_and_grad(self, w, x, y):
        """Per-particle MSE ``[P]`` and its exact gradient ``[P, W]`` by backpropagation through
        time written out by hand, particle-last (equal to autograd to float precision; tested)."""
        return fast.loss_and_grad(self, w, x, y)

    def apply(self, a, b, generator=None):
        self.check_weights(a, "a")
        self.check_weights(b, "b")
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"a and b must hold the same number of particles, got {a.shape[0]} and {b.shape[0]}")
        return fast.apply(self, a, b)

    # ---- the fused kernels (nsr.replicators.fast): particle-last sequences --------------------------
    _fast = "rnn"
    _native_samples = "genome"
    _num_samples = 1
    _apply_floats = property(lambda self: self.num_weights * 2 * self.width)

    @property
    def _native_dims(self) -> list[int]:
        """Units of every layer (the last is 1), for the native kernels."""
        return [o for _, o in self.shapes[0::2]]

    def _chunk_floats(self, batch: int) -> int:
        return self.num_weights * batch * max(self.width, 1) * 2

    def _samples_pl(self, bT):
        """The one sample of genomes ``bT [W, P]``: the genome as a sequence ``[T=W, 1, 1, P]``."""
        seq = bT[:, None, None, :]
        return seq, seq

    def _samples_pl_from(self, x, y):
        """Particle-first sequences ``x [P, S, T, F]`` as ``[T, S, F, P]`` (and the targets)."""
        return x.permute(2, 1, 3, 0).contiguous(), y.permute(2, 1, 3, 0).contiguous()

    def _apply_pl(self, aT, bT):
        """``[W, P]``: networks ``aT [W, P]`` reading genomes ``bT [W, P]``."""
        return fast.rnn_apply(self.shapes, self.activation, aT, self._samples_pl(bT)[0])[:, 0, 0, :]
