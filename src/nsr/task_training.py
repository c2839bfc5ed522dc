"""Training on replication and a task: ``loss = replication + alpha * task``, batched over particles.

The one implementation of task training in nsr (the Lightning module, the experiments and the task
soup call it). A self-training epoch of a :class:`nsr.task_replicator.TaskWeightwise` population
is the usual one (its samples are a snapshot of the genomes at the epoch's start, visited in each
particle's random order) and every one of its SGD steps adds ``alpha * grad(task loss)`` on the
epoch's task batch. ``alpha`` is a number or a ``[P]`` tensor (one per particle); ``alpha = inf``
means the task alone (no replication gradient). Particles with ``alpha = 0`` take exactly the
replication step (the task gradient is not even added), and the task batches come from their own
generator: ``alpha = 0`` reproduces ``nsr.training.self_train`` bit for bit.

>>> import torch
>>> from nsr.tasks import GaussianAddition
>>> from nsr.task_replicator import TaskWeightwise
>>> task = GaussianAddition(train_size=32, test_size=32)
>>> rep = TaskWeightwise.for_task(task)
>>> w = rep.init(4, generator=torch.Generator().manual_seed(0))
>>> state = task_train(rep, task, w, epochs=3, alpha=torch.tensor([0.0, 1.0, 10.0, float("inf")]),
...                    generator=torch.Generator().manual_seed(1))
>>> state.weights.shape, state.task_loss.shape
(torch.Size([4, 20]), torch.Size([4]))
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from nsr.training import batches, check_hyperparameters, epoch_order, sgd_step, take


class TaskTrainState(NamedTuple):
    """Weights ``[P, W]``, momentum ``[P, W]`` (or None), the last epoch's mean replication loss
    ``[P]`` and task loss ``[P]``."""

    weights: torch.Tensor
    velocity: Optional[torch.Tensor]
    loss: torch.Tensor
    task_loss: torch.Tensor


def check_alpha(alpha, P: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``[P]`` task weights from a number or a ``[P]`` tensor; ``ValueError`` unless every one is
    >= 0 (``inf``: the task alone)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, torch.Tensor)):
        raise ValueError(f"alpha must be a number >= 0 or a [P] tensor, got {alpha!r}")
    a = torch.as_tensor(alpha, dtype=dtype, device=device)
    if a.dim() == 0:
        a = a.expand(P)
    if a.shape != (P,):
        raise ValueError(f"alpha must be a number or have shape [{P}], got {list(a.shape)}")
    if bool(torch.isnan(a).any()) or bool((a < 0).any()):
        raise ValueError("alpha must be >= 0 (inf: the task alone)")
    return a


def task_loss_and_grad(rep, task, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    """Per-particle task loss ``[P]`` of networks ``w`` ``[P, W]`` on a task batch ``x, y`` and its
    gradient ``[P, W]`` (autograd through ``rep.task_forward``; the loss is summed over particles,
    so each particle gets the gradient of its own mean loss)."""
    with torch.enable_grad():
        wv = w.detach().requires_grad_(True)
        loss = task.loss(rep.task_forward(wv, x), y)  # [P]
        (g,) = torch.autograd.grad(loss.sum(), wv)
    return loss.detach(), g


def combine(g_rep: torch.Tensor, g_task: torch.Tensor, alpha: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """``[P, W]`` gradient of ``replication + alpha * task`` per particle (``normalize``: of
    ``(replication + alpha * task) / (1 + alpha)``, the same direction at a step size that does not
    grow with alpha): exactly ``g_rep`` where alpha is 0, exactly ``g_task`` where alpha is inf."""
    a = alpha[:, None]
    finite = torch.where(torch.isinf(a), 0.0, a)
    mixed = g_rep + finite * g_task
    if normalize:
        mixed = mixed / (1.0 + finite)
    mixed = torch.where(torch.isinf(a), g_task, mixed)
    return torch.where(a == 0, g_rep, mixed)


def task_epoch(rep, task, w, x, y, tx, ty, alpha, lr=0.01, batch_size=1, momentum=0.0, shuffle=True,
               generator=None, velocity=None, normalize: bool = False) -> TaskTrainState:
    """One self-training epoch over the snapshot samples ``x, y`` (``[P, S, ...]``), every SGD step
    on ``replication + alpha * task`` with the task batch ``tx, ty``. ``alpha`` ``[P]``."""
    P, S = x.shape[0], x.shape[1]
    order = epoch_order(P, S, shuffle and batch_size is not None and batch_size < S, generator, x.device)
    total = torch.zeros(P, dtype=w.dtype, device=w.device)
    task_total = torch.zeros(P, dtype=w.dtype, device=w.device)
    steps = batches(order, batch_size)
    need_task = bool((alpha != 0).any())
    for idx in steps:
        loss, g = rep.loss_and_grad(w, take(x, idx), take(y, idx))
        if need_task:
            t_loss, g_t = task_loss_and_grad(rep, task, w, tx, ty)
            g = combine(g, g_t, alpha, normalize)
            task_total = task_total + t_loss
        w, velocity = sgd_step(w, g, velocity, lr, momentum)
        total = total + loss
    if not need_task:
        task_total = torch.full_like(total, math.nan)
    return TaskTrainState(w, velocity, total / len(steps), task_total / len(steps))


class TaskBatches:
    """An endless stream of task minibatches ``(x, y)`` of the train split: a new random order
    (``torch.randperm`` from ``generator``) every pass, as a shuffled DataLoader draws it."""

    def __init__(self, task, batch_size: Optional[int] = 64, generator=None, split: str = "train"):
        self.x, self.y = task.data(split)
        self.batch_size = len(self.x) if batch_size is None else min(batch_size, len(self.x))
        self.generator = generator
        self._queue: list = []

    def __iter__(self):
        return self

    def __next__(self):
        if not self._queue:
            perm = torch.randperm(len(self.x), generator=self.generator)
            self._queue = [perm[i:i + self.batch_size] for i in range(0, len(perm), self.batch_size)]
        idx = self._queue.pop(0)
        return self.x[idx], self.y[idx]


def task_train(rep, task, w, epochs=1, alpha=1.0, lr=0.01, batch_size=1, momentum=0.0, shuffle=True,
               generator=None, task_batch_size: Optional[int] = 64, task_generator=None, velocity=None,
               task_batches=None, normalize: bool = False) -> TaskTrainState:
    """``epochs`` epochs of self-training plus ``alpha`` times the task: each epoch's samples are a
    snapshot of the genomes, each epoch uses the next task batch (``task_batches`` or a
    :class:`TaskBatches` of ``task_batch_size`` drawn from ``task_generator``). ``generator`` only
    shuffles the replication samples, as in ``nsr.training.self_train``. ``normalize``: step on
    ``(replication + alpha * task) / (1 + alpha)`` (see :func:`combine`)."""
    check_hyperparameters(lr, batch_size, momentum, epochs)
    rep.check_weights(w)
    w = w.detach()
    a = check_alpha(alpha, w.shape[0], w.device, w.dtype)
    stream = task_batches if task_batches is not None else TaskBatches(task, task_batch_size, task_generator)
    nan = torch.full((w.shape[0],), math.nan, dtype=w.dtype, device=w.device)
    state = TaskTrainState(w, velocity, nan, nan)
    for _ in range(epochs):
        x, y = rep.samples(state.weights)  # snapshot of the genomes at the start of the epoch
        tx, ty = next(stream)
        state = task_epoch(rep, task, state.weights, x, y, tx, ty, a, lr, batch_size, momentum, shuffle,
                           generator, state.velocity, normalize)
    return state


def evaluate_task(rep, task, w: torch.Tensor, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-particle task loss and metric ``([P], [P])`` on a whole split (no gradient)."""
    x, y = task.data(split)
    with torch.no_grad():
        out = rep.task_forward(w, x)  # [P, N, m]
        return task.loss(out, y), task.metric(out, y)


__all__ = ["TaskTrainState", "check_alpha", "task_loss_and_grad", "combine", "task_epoch", "TaskBatches",
           "task_train", "evaluate_task"]
