"""Self-training, learning from others and noise: the one implementation of training in nsr.

Every particle trains exactly as it would alone: the loss is each particle's own MSE, the update
is elementwise, so a population ``[P, W]`` is P independent SGD optimizers. The one definition
of an epoch is :func:`train_epoch_steps` (per step: ``rep.loss_and_grad``, then :func:`sgd_step`).
Replicators with a kernel family (``rep.kernel``: the three of the paper) run the same epochs
through the fused kernels of :mod:`nsr.kernels` (whole epochs, particle-last, hand-written
backpropagation), proven equal to it by the tests; any other replicator steps through it.

>>> import torch
>>> from nsr.replicators import Weightwise
>>> rep = Weightwise()
>>> w = rep.init(3, generator=torch.Generator().manual_seed(0))
>>> self_train(rep, w, epochs=2, generator=torch.Generator().manual_seed(1)).shape
torch.Size([3, 14])
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from nsr import kernels
from nsr.random import add_noise, epoch_order  # noqa: F401  (re-exported)


class TrainState(NamedTuple):
    """Weights ``[P, W]``, momentum buffers ``[P, W]`` (or None) and the last epoch's mean loss ``[P]``."""

    weights: torch.Tensor
    velocity: Optional[torch.Tensor]
    loss: torch.Tensor


def check_hyperparameters(lr=0.01, batch_size=1, momentum=0.0, epochs=1):
    """Raise ``ValueError`` naming the first invalid training hyper-parameter."""
    if isinstance(lr, torch.Tensor):
        if not torch.isfinite(lr).all() or (lr < 0).any():
            raise ValueError("lr must be finite and >= 0")
    elif isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None (full batch) or an integer >= 1, got {batch_size!r}")
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
        raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}")


def batches(order: torch.Tensor, batch_size: Optional[int]) -> list[torch.Tensor]:
    """Split an epoch's order ``[P, S]`` into the index blocks ``[P, b]`` of its steps."""
    S = order.shape[1]
    b = S if batch_size is None else min(batch_size, S)
    return [order[:, t:t + b] for t in range(0, S, b)]


def take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Samples ``x[p, idx[p, j]]``: ``[P, S, ...]`` indexed by ``[P, b]`` -> ``[P, b, ...]``."""
    if idx.shape[1] == x.shape[1] and idx.shape[1] == 1:
        return x
    rows = torch.arange(x.shape[0], device=x.device)[:, None]
    return x[rows, idx]


def sgd_step(w, grad, velocity, lr, momentum):
    """One SGD update of every particle (torch.optim.SGD's rule, dampening 0, no Nesterov)."""
    if momentum:
        velocity = grad if velocity is None else velocity * momentum + grad
        grad = velocity
    return w - lr * grad, velocity


def train_epoch(rep, w, x, y, lr=0.01, batch_size=1, momentum=0.0, shuffle=True, generator=None, velocity=None) -> TrainState:
    """One epoch of every particle over its samples ``x, y`` (``[P, S, ...]``, fixed for the epoch)."""
    if rep.kernel is not None:  # the fused kernels: same steps, same random numbers
        return TrainState(*kernels.train(rep, w, 1, lr, batch_size, momentum, shuffle, generator, velocity,
                                         samples=(x, y)))
    return train_epoch_steps(rep, w, x, y, lr, batch_size, momentum, shuffle, generator, velocity)


def train_epoch_steps(rep, w, x, y, lr=0.01, batch_size=1, momentum=0.0, shuffle=True, generator=None,
                      velocity=None, ranks: int = 1, step_grad=None) -> TrainState:
    """The SGD epoch, step by step: the order of the samples (:func:`nsr.random.epoch_order`), then
    per step of ``batch_size`` samples ``rep.loss_and_grad`` and :func:`sgd_step`. Any replicator.

    Data-parallel training passes ``ranks`` R and ``step_grad(w, idx [P, n]) -> (loss [P], grad
    [P, W])``: a step then takes ``R * batch_size`` samples, and ``step_grad`` computes its loss and
    gradient (e.g. each rank its share, summed over the ranks).
    """
    P, S = x.shape[0], x.shape[1]
    order = epoch_order(P, S, shuffle and batch_size is not None and batch_size < S, generator, x.device)
    if step_grad is None:
        def step_grad(w, idx):
            return rep.loss_and_grad(w, take(x, idx), take(y, idx))
    total = torch.zeros(P, dtype=w.dtype, device=w.device)
    steps = batches(order, None if batch_size is None else batch_size * ranks)
    for idx in steps:
        loss, g = step_grad(w, idx)
        w, velocity = sgd_step(w, g, velocity, lr, momentum)
        total = total + loss
    return TrainState(w, velocity, total / len(steps))


def self_train(rep, w, epochs=1, lr=0.01, batch_size=1, momentum=0.0, shuffle=True, generator=None,
               velocity=None, return_state=False):
    """Self-training: ``epochs`` epochs of SGD on the MSE between each network's outputs on its
    own samples and its own weights. Samples are regenerated from the current weights at the start
    of every epoch. Returns ``[P, W]`` (or a :class:`TrainState` with ``return_state=True``).

    ``batch_size=1`` is the paper's setting, ``None`` a full batch; ``lr`` may be a ``[P, 1]``
    tensor of per-particle learning rates.
    """
    return _train(rep, w, None, epochs, lr, batch_size, momentum, shuffle, generator, velocity, return_state)


def learn_from(rep, w, teachers, epochs=1, lr=0.01, batch_size=1, momentum=0.0, shuffle=True, generator=None,
               velocity=None, return_state=False):
    """learn_from(a, b): particle i trains on genome ``teachers[i]``'s samples (its inputs, and its
    weights as targets) for ``epochs`` epochs. Returns ``[P, W]`` (or a :class:`TrainState`)."""
    rep.check_weights(teachers, "teachers")
    if teachers.shape[0] != w.shape[0]:
        raise ValueError(f"teachers must hold one genome per particle ({w.shape[0]}), got {teachers.shape[0]}")
    return _train(rep, w, teachers, epochs, lr, batch_size, momentum, shuffle, generator, velocity, return_state)


def _train(rep, w, teachers, epochs, lr, batch_size, momentum, shuffle, generator, velocity, return_state):
    check_hyperparameters(lr, batch_size, momentum, epochs)
    rep.check_weights(w)
    w = w.detach()
    if rep.kernel is not None:  # the fused kernels: whole epochs in a particle-last layout
        state = TrainState(*kernels.train(rep, w, epochs, lr, batch_size, momentum, shuffle, generator, velocity,
                                          source=None if teachers is None else teachers.detach()))
        return state if return_state else state.weights
    loss = torch.full((w.shape[0],), math.nan, dtype=w.dtype, device=w.device)
    if teachers is not None:
        x, y = rep.samples(teachers.detach())  # the teacher's samples do not change as w learns
    for _ in range(epochs):
        if teachers is None:
            x, y = rep.samples(w)  # snapshot of the genome at the start of the epoch
        w, velocity, loss = train_epoch_steps(rep, w, x, y, lr, batch_size, momentum, shuffle, generator, velocity)
    state = TrainState(w, velocity, loss)
    return state if return_state else w

