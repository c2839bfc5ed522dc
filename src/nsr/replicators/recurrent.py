"""The recurrent replicator: the genome read as a sequence by stacked simple RNN layers."""
from __future__ import annotations

import torch

from nsr.kernels import RNNKernel
from nsr.replicators.base import ACTIVATIONS, ORTHOGONAL, Replicator, activate, check_choice, check_positive_int


class Recurrent(Replicator):
    """Recurrent replicator: simple RNN layers of units width, ..., width (``depth`` of them), 1.

    The genome is read one scalar per step; output step k is the new w_k. Each layer computes
    ``h_t = act(x_t @ kernel + h_{t-1} @ recurrent_kernel)`` with h_0 = 0 (Keras' SimpleRNN, no
    bias). Genome layout per layer: input kernel [in, units], then recurrent kernel [units, units].
    One sample (the whole sequence) per genome. ``orthogonal`` says how the recurrent kernels are
    drawn: ``"keras2"`` (the published Keras 2 initialiser, SVD-based: a 2x2 kernel is always a
    reflection) or ``"uniform"`` (uniform over orthogonal matrices, QR-based as TensorFlow 2 and PyTorch).

    >>> Recurrent().num_weights
    17
    """

    def __init__(self, width: int = 2, depth: int = 2, activation: str = "linear", orthogonal: str = "keras2"):
        self.width = check_positive_int("width", width)
        self.depth = check_positive_int("depth", depth)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.orthogonal = check_choice("orthogonal", orthogonal, ORTHOGONAL)
        units = [width] * depth + [1]
        ins = [1] + units[:-1]
        self.shapes = []
        for i, u in zip(ins, units):
            self.shapes += [(i, u), (u, u)]
        self.recurrent = tuple(range(1, len(self.shapes), 2))
        self.kernel = RNNKernel(self.shapes, activation)  # fused BPTT; apply reads the genome as a sequence

    @property
    def hparams(self):
        return {"width": self.width, "depth": self.depth, "activation": self.activation, "orthogonal": self.orthogonal}

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
