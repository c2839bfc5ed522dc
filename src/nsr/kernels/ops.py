"""Shared pieces of the eager kernels, in the particle-last layout.

A population is ``wT [W, P]``, a kernel is a view ``[inputs, outputs, P]`` of its rows, and every
multiply-add is one elementwise op over rows of P numbers. Sums over samples are pairwise by
elementwise adds (:func:`bsum`), never torch reductions, so a particle's numbers never depend on
how many particles run beside it. Also here: the activations, chunking of the population, the
SGD update and the MSE.
"""
from __future__ import annotations

import torch

ACTIVATIONS = ("linear", "tanh", "sigmoid", "relu")
ACT_CODES = {"linear": 0, "tanh": 1, "sigmoid": 2, "relu": 3}  # as in common.h


def activate(name: str, h: torch.Tensor) -> torch.Tensor:
    """The activation ``name`` applied to pre-activations ``h``."""
    if name == "linear":
        return h
    if name == "tanh":
        return torch.tanh(h)
    if name == "sigmoid":
        return torch.sigmoid(h)
    return torch.relu(h)


def activation_grad(name: str, y: torch.Tensor) -> torch.Tensor | None:
    """d act / d pre-activation, written in terms of the output ``y`` (None: identity)."""
    if name == "linear":
        return None
    if name == "tanh":
        return 1.0 - y * y
    if name == "sigmoid":
        return y * (1.0 - y)
    return (y > 0).to(y.dtype)


# ---- chunking ----------------------------------------------------------------------------------------
CHUNK_FLOATS = 1 << 19  # elements of the largest temporary per chunk on CPU (2 MiB in float32)
CHUNK_FLOATS_GPU = 1 << 27  # on GPUs (512 MiB): big kernels, bounded memory at 10^8 particles


def chunk_size(P: int, floats_per_particle: int, device: torch.device) -> int:
    """Particles per chunk: cache-sized chunks on CPUs, large ones on GPUs."""
    budget = CHUNK_FLOATS if device.type == "cpu" else CHUNK_FLOATS_GPU
    return max(256, budget // max(floats_per_particle, 1))


def chunks(P: int, size: int):
    """Particle ranges ``(p0, p1)`` of at most ``size`` particles."""
    return [(p, min(p + size, P)) for p in range(0, P, size)]


# ---- dense layers, particle-last -------------------------------------------------------------------
def kernels(wT: torch.Tensor, shapes) -> list[torch.Tensor]:
    """Kernels of genomes ``wT [W, P]`` as views ``[inputs, outputs, P]`` (genome order)."""
    out, off = [], 0
    for i, o in shapes:
        out.append(wT[off:off + i * o].view(i, o, wT.shape[1]))
        off += i * o
    return out


def dense(cols, K: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
    """``z + sum_c cols[c] * K[c]``: a dense layer on input columns ``cols`` (each broadcastable to
    ``[B, 1, P]``; ``[B, 1, 1]`` for an input shared by all particles) with kernel ``K [I, O, P]``.
    Returns pre-activations ``[B, O, P]``."""
    for c in range(len(cols)):
        z = cols[c] * K[c] if z is None else z.addcmul(cols[c], K[c])
    return z


def columns(h: torch.Tensor) -> list[torch.Tensor]:
    """The columns ``[B, 1, P]`` of ``h [B, F, P]``."""
    return [h[:, j:j + 1] for j in range(h.shape[1])]


def bsum(t: torch.Tensor) -> torch.Tensor:
    """Sum over the leading (sample) axis of ``t [B, ...]`` by halving: elementwise adds only, so
    a particle's sum never depends on how many particles are computed alongside it (torch's
    reductions change their order when the other axes collapse to one element)."""
    while t.shape[0] > 1:
        h = t.shape[0] // 2
        s = t[:h] + t[h:2 * h]
        if t.shape[0] % 2:
            s[:1] += t[2 * h:]  # the odd one out joins the first partial sum
        t = s
    return t[0]


def sgd(wT, gT, velT, lr, momentum):
    """torch.optim.SGD's update (dampening 0, no Nesterov) in the particle-last layout."""
    if momentum:
        velT = gT if velT is None else velT * momentum + gT
        gT = velT
    return wT - lr * gT, velT


def mse(out, yT):
    """Per-particle MSE ``[P]`` over all samples and outputs, and dL/d out."""
    e = out - yT
    n = e[..., 0].numel()
    return bsum(e.square().flatten(0, -2)) / n, e * (2.0 / n)


def take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Per-particle samples ``t [S, F, P]`` (or shared ``[S, F, 1]``) at ``idx [b, P]`` -> ``[b, F, P]``."""
    if t.shape[-1] == 1 and idx.shape[1] != 1:
        return t[:, :, 0][idx].permute(0, 2, 1)
    return torch.gather(t, 0, idx[:, None, :].expand(idx.shape[0], t.shape[1], idx.shape[1]))


def lr_chunk(lr, p0, p1, P):
    """The learning rate of particles p0..p1 in the particle-last layout (broadcastable to [W, c])."""
    if not isinstance(lr, torch.Tensor) or lr.dim() == 0:
        return lr
    lr2 = lr.reshape(1, -1) if lr.dim() == 1 else lr  # broadcastable to [P, W]
    return (lr2[p0:p1] if lr2.shape[0] == P and P > 1 else lr2).t()
