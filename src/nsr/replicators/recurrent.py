"""The recurrent replicator: the genome read as a sequence by stacked simple RNN layers."""
from __future__ import annotations

import torch

from nsr.replicators.base import ACTIVATIONS, Replicator, activate, activation_grad, check_choice, check_positive_int


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
        time written out by hand (equal to autograd to float precision; tested)."""
        Ks = self.kernels(w)
        hs = self._run(w, x)
        out = hs[-1]
        n = out[0].numel()
        diff = out - y
        loss = diff.pow(2).flatten(1).mean(1)
        delta_out = diff * (2.0 / n)  # dL/d h of the top layer, [P, S, T, 1]
        grads = [None] * len(Ks)
        T = x.shape[2]
        for layer in range(len(Ks) // 2 - 1, -1, -1):
            K, R = Ks[2 * layer], Ks[2 * layer + 1]
            h_in, h_out = hs[layer], hs[layer + 1]  # [P, S, T, in], [P, S, T, u]
            dpre = torch.empty_like(h_out)
            carry = torch.zeros_like(h_out[:, :, 0])  # dL/dh_t through h_{t+1}, [P, S, u]
            for t in range(T - 1, -1, -1):
                dh = delta_out[:, :, t] + carry
                d = activation_grad(self.activation, h_out[:, :, t])
                dp = dh if d is None else dh * d
                dpre[:, :, t] = dp
                carry = torch.einsum("psv,puv->psu", dp, R)
            grads[2 * layer] = torch.einsum("pstI,pstu->pIu", h_in, dpre)
            prev = torch.zeros_like(h_out)
            prev[:, :, 1:] = h_out[:, :, :-1]
            grads[2 * layer + 1] = torch.einsum("pstu,pstv->puv", prev, dpre)
            delta_out = torch.einsum("pstu,pIu->pstI", dpre, K)
        return loss, torch.cat([g.flatten(1) for g in grads], dim=1)

    def apply(self, a, b, generator=None):
        self.check_weights(a, "a")
        self.check_weights(b, "b")
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"a and b must hold the same number of particles, got {a.shape[0]} and {b.shape[0]}")
        return self.forward(a, b[:, None, :, None])[:, 0, :, 0]
