"""Organism networks: a host network whose every connection is a self-replicating particle
(docs/organisms.md; Illium et al., "Constructing Organism Networks from Collaborative
Self-Replicators", 2022). Pure torch, no Lightning.

The particle is a weightwise-style replicator with **five** inputs, ``(w_k, layer_id, cell_id,
weight_id, signal)``, layers 5 -> width -> ... -> 1 (16 weights for width 2, depth 2):

- **self-replication** asks for weight k of a genome with ``(w_k, ids of k, 0)``: the weightwise
  encoding of nsr's :class:`~nsr.replicators.Weightwise` plus a fifth input that is 0;
- **the host** sends its signal through the particle as ``(0, 0, 0, 0, s)``: the host's value
  ``s`` on the fifth input, every other input 0 (the authors' embedding).

So the fifth input's kernel row never meets the replication samples, and the replication loss
constrains it only through the hidden layers it shares with the weight path. A linear particle
passes the host signal with a gain ``g = K0[4] @ K1 @ ... @ K_last``: it acts as one host weight.
A self-replicating particle can have any gain (see :meth:`Particle.identity_genome`).

The host is a stack of dense layers ``widths[0] -> widths[1] -> ... -> widths[-1]`` without
biases; the connection from input unit i to output unit j of host layer l is one particle. The
population is one tensor ``[P, W]``, P the number of host connections, ordered layer by layer and,
within a layer, as nsr orders a kernel ``[inputs, outputs]`` (row-major: ``p = i * n_out + j``).
The host's activation (``activation``) is applied between host layers, not after the last.

>>> org = Organism([3, 2])
>>> org.num_particles, org.particle.num_weights
(6, 16)
>>> w = org.particle.identity_genome(torch.tensor([1.0, 2.0, 0.0, 0.0, 0.5, -1.0]))  # gains of the 6 connections
>>> org.forward(w, torch.tensor([[1.0, 1.0, 2.0]]))  # [[1*1 + 0*1 + 0.5*2, 2*1 + 0*1 - 1*2]]
tensor([[2., 0.]])
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from nsr.replicators import ACTIVATIONS, Replicator, mse
from nsr.replicators.weightwise import position_ids
from nsr.replicators.base import activate, check_choice, check_positive_int

SIGNAL = 4  # the particle's input that carries the host's signal


class Particle(Replicator):
    """The organism's particle: a weightwise replicator with a fifth input for the host signal.

    Layers 5 -> width -> ... -> width -> 1 (``depth`` hidden layers), no biases. Its samples are
    nsr's weightwise ones, ``(w_k, layer_id, cell_id, weight_id)``, with a fifth input 0; its
    output is the new w_k. On the host it computes ``N_w(0, 0, 0, 0, s)``.

    >>> Particle().num_weights
    16
    """

    def __init__(self, width: int = 2, depth: int = 2, activation: str = "linear"):
        self.width = check_positive_int("width", width)
        self.depth = check_positive_int("depth", depth)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.shapes = [(5, width)] + [(width, width)] * (depth - 1) + [(width, 1)]

    def identifiers(self, device=None) -> torch.Tensor:
        """``[W, 3]`` normalised (layer_id, cell_id, weight_id) of every genome position, as
        :meth:`nsr.replicators.Weightwise.identifiers` (each id over the largest of its scope)."""
        return position_ids(self.shapes, device)

    def encode(self, b: torch.Tensor) -> torch.Tensor:
        """``[P, W, 5]``: the inputs that ask for every weight of genomes ``b`` ``[P, W]``."""
        P, W = b.shape
        ids = self.identifiers(b.device).to(b.dtype)[None].expand(P, W, 3)
        return torch.cat([b[:, :, None], ids, torch.zeros_like(b)[:, :, None]], dim=2)

    def samples(self, w):
        self.check_weights(w)
        return self.encode(w), w[:, :, None].clone()  # [P, W, 5], [P, W, 1]

    def forward(self, w, x):
        h = x  # [P, S, 5]
        for K in self.kernels(w):
            h = activate(self.activation, torch.bmm(h, K))  # [P, S, out]
        return h

    # apply (self-application): Replicator's default, the outputs on the genome's samples, one per weight

    def transmit(self, w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``[B, P]``: particle p's output on the host signal ``s[:, p]`` (``s`` ``[B, P]``), i.e.
        ``N_w(0, 0, 0, 0, s)`` for every particle and sample at once (elementwise, particle-last).
        Equals :meth:`forward` on the inputs ``(0, 0, 0, 0, s)`` for finite genomes (tested)."""
        Ks = self.kernels(w)
        h = activate(self.activation, s[..., None] * Ks[0][:, SIGNAL, :])  # [B, P, width]: the other inputs are 0
        for K in Ks[1:]:
            h = activate(self.activation, (h[..., :, None] * K).sum(-2))  # [B, P, out]
        return h[..., 0]

    def gain(self, w: torch.Tensor) -> torch.Tensor:
        """``[P]``: the factor by which a *linear* particle scales the host signal,
        ``K0[4] @ K1 @ ... @ K_last`` (its effective host weight)."""
        Ks = self.kernels(w)
        g = Ks[0][:, SIGNAL:SIGNAL + 1, :]  # [P, 1, width]
        for K in Ks[1:]:
            g = torch.bmm(g, K)
        return g[:, 0, 0]

    def identity_genome(self, gain: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[N, W]`` hand-built fixpoints that copy their weight input and pass the host signal with
        ``gain`` ``[N]`` (default: one particle, gain 0). Every kernel's [0, 0] is 1 and
        ``K0[4, 0] = gain``, all else 0, so a sample ``(w_k, ids, 0)`` gives ``w_k``: the genome
        reproduces itself (a non-trivial fixpoint for linear activation and any gain; for relu
        when ``gain >= 0``), and on the host it computes ``gain * s``."""
        gain = torch.zeros(1) if gain is None else torch.as_tensor(gain, dtype=torch.float32).reshape(-1)
        w = torch.zeros(gain.shape[0], self.num_weights)
        w[:, self.offsets] = 1.0
        w[:, SIGNAL * self.width] = gain  # K0[4, 0]
        return w



def check_widths(widths) -> list[int]:
    """The host's layer widths as a list of >= 2 positive integers (``ValueError`` otherwise)."""
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or len(widths) < 2:
        raise ValueError(f"widths must be a list of at least 2 layer widths, got {widths!r}")
    for k in widths:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"widths must be integers >= 1, got {list(widths)!r}")
    return [int(k) for k in widths]


class Organism:
    """A host of dense layers ``widths`` whose connections are the particles ``[P, W]``.

    ``particle``: the :class:`Particle` (default width 2, depth 2, linear); ``activation``: the
    host's activation between its layers (default relu). ``exact=False`` lets linear particles
    run as their gains (one matmul per layer: the same function, rounded differently);
    ``exact=True`` always evaluates every particle network on its signal (:meth:`Particle.transmit`).
    """

    def __init__(self, widths, particle: Optional[Particle] = None, activation: str = "relu", exact: bool = False):
        self.widths = check_widths(widths)
        self.particle = Particle() if particle is None else particle
        if not isinstance(self.particle, Particle):
            raise ValueError(f"particle must be an nsr.organism.Particle, got {type(self.particle).__name__}")
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        if not isinstance(exact, bool):
            raise ValueError(f"exact must be true or false, got {exact!r}")
        self.exact = exact
        self.layers = []  # (start, stop, n_in, n_out) of every host layer
        start = 0
        for n_in, n_out in zip(self.widths[:-1], self.widths[1:]):
            self.layers.append((start, start + n_in * n_out, n_in, n_out))
            start += n_in * n_out

    @property
    def num_particles(self) -> int:
        """P, the number of host connections."""
        return self.layers[-1][1]

    def init(self, generator=None, device=None) -> torch.Tensor:
        """``[P, W]`` random particle genomes (the replicator's Keras-style init)."""
        return self.particle.init(self.num_particles, generator=generator, device=device)

    def positions(self) -> torch.Tensor:
        """``LongTensor[P, 3]``: (host layer, input unit, output unit) of every particle.

        >>> Organism([2, 2, 1]).positions().tolist()
        [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1], [1, 0, 0], [1, 1, 0]]
        """
        rows = []
        for l, (_, _, n_in, n_out) in enumerate(self.layers):
            i = torch.arange(n_in).repeat_interleave(n_out)  # p = i * n_out + j
            j = torch.arange(n_out).repeat(n_in)
            rows.append(torch.stack([torch.full_like(i, l), i, j], dim=1))
        return torch.cat(rows)

    def check(self, w: torch.Tensor) -> torch.Tensor:
        self.particle.check_weights(w)
        if w.shape[0] != self.num_particles:
            raise ValueError(f"w must hold one particle per host connection ({self.num_particles}), got {w.shape[0]}")
        return w

    def contributions(self, w: torch.Tensor, layer: int, x: torch.Tensor) -> torch.Tensor:
        """``[B, n_in, n_out]``: what every particle of host layer ``layer`` sends on its connection
        i -> j when that layer's input is ``x`` ``[B, n_in]`` (each particle evaluated on x_i)."""
        start, stop, n_in, n_out = self.layers[layer]
        s = x[:, :, None].expand(x.shape[0], n_in, n_out).reshape(x.shape[0], -1)  # [B, P_l]: x_i for p = (i, j)
        return self.particle.transmit(w[start:stop], s).view(-1, n_in, n_out)

    def gains(self, w: torch.Tensor) -> list[torch.Tensor]:
        """The effective host weights ``[n_in, n_out]`` of every layer (linear particles)."""
        g = self.particle.gain(w)  # [P]
        return [g[start:stop].view(n_in, n_out) for start, stop, n_in, n_out in self.layers]

    def forward(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``[B, widths[-1]]``: the host's output on inputs ``x`` ``[B, widths[0]]``, computed
        through its particles ``w`` ``[P, W]``: unit j of a layer sums its particles' outputs."""
        return self.signals(w, x)[-1]

    def signals(self, w: torch.Tensor, x: torch.Tensor) -> list[torch.Tensor]:
        """The host's units on inputs ``x``: ``[B, widths[l]]`` for every host layer l (the input
        ``x`` first, the output last), each the input of the next layer's particles."""
        self.check(w)
        linear = self.particle.activation == "linear" and not self.exact
        G = self.gains(w) if linear else None
        hs = [x]
        for l in range(len(self.layers)):
            h = hs[-1] @ G[l] if linear else self.contributions(w, l, hs[-1]).sum(1)  # [B, n_out]
            hs.append(activate(self.activation, h) if l < len(self.layers) - 1 else h)
        return hs

    def silent(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``BoolTensor[P]``: particles whose input unit is 0 on every sample of ``x`` (they get
        no task gradient: only self-replication moves them)."""
        with torch.no_grad():
            hs = self.signals(w, x)
        return torch.cat([(hs[l] == 0).all(0)[:, None].expand(n_in, n_out).reshape(-1)
                          for l, (_, _, n_in, n_out) in enumerate(self.layers)])

    def replication_loss(self, w: torch.Tensor) -> torch.Tensor:
        """``[P]``: every particle's self-replication MSE on its own samples, made from a snapshot
        of the genomes (the samples carry no gradient, as in self-training): its gradient is
        nsr's self-training gradient (full batch)."""
        x, y = self.particle.samples(w.detach())
        return mse(self.particle.forward(w, x), y)

    def strength(self, w: torch.Tensor) -> torch.Tensor:
        """``[P]``: |output on a unit host signal| of every particle, its magnitude as a
        connection (``|gain|`` for linear particles)."""
        with torch.no_grad():
            return self.particle.transmit(w, torch.ones(1, w.shape[0], dtype=w.dtype, device=w.device))[0].abs()


# ---- the dense network of the same shape, and pruning --------------------------------------------
def dense_init(widths, generator=None) -> list[torch.Tensor]:
    """Kernels ``[n_in, n_out]`` of a dense network of the host's shape, glorot-uniform, no biases."""
    widths = check_widths(widths)
    out = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        limit = math.sqrt(6.0 / (n_in + n_out))
        out.append((torch.rand(n_in, n_out, generator=generator) * 2 - 1) * limit)
    return out


def dense_forward(kernels: Sequence[torch.Tensor], x: torch.Tensor, activation: str = "relu") -> torch.Tensor:
    """``[B, O]``: a dense network without biases (``activation`` between its layers)."""
    h = x
    for l, K in enumerate(kernels):
        h = h @ K
        if l < len(kernels) - 1:
            h = activate(activation, h)
    return h


def smallest(magnitude: torch.Tensor, share: float) -> torch.Tensor:
    """``BoolTensor[N]``: the ``round(share * N)`` entries of smallest ``magnitude`` (ties by index)."""
    n = int(round(float(share) * magnitude.numel()))
    mask = torch.zeros(magnitude.numel(), dtype=torch.bool)
    if n > 0:
        mask[torch.sort(magnitude.flatten(), stable=True).indices[:n]] = True
    return mask


def magnitude_prune(kernels: Sequence[torch.Tensor], share: float) -> list[torch.Tensor]:
    """The kernels with the ``share`` of all connections of smallest |weight| set to 0 (global)."""
    flat = torch.cat([K.flatten() for K in kernels])
    keep = ~smallest(flat.abs(), share)
    out, pos = [], 0
    for K in kernels:
        out.append(K * keep[pos:pos + K.numel()].view_as(K).to(K.dtype))
        pos += K.numel()
    return out


def drop_particles(w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Particle dropout: the genomes ``w`` ``[P, W]`` with the particles in ``mask`` ``[P]`` zeroed
    (a zero particle sends nothing: its connection is removed)."""
    return torch.where(mask[:, None], torch.zeros_like(w), w)


__all__ = ["Particle", "Organism", "SIGNAL", "check_widths", "dense_init", "dense_forward", "smallest",
           "magnitude_prune", "drop_particles"]
