"""A soup that spreads a task: guiding particles know it, learn_from passes it on.

Particles are task replicators (:class:`nsr.task_replicator.TaskWeightwise`). The first
``guides`` particles of every soup are **guides** (a property of the slot, kept when respawned):
only they see the task's labels, training on ``replication + guide_alpha * task`` every
generation. Nobody else is told the task. One generation, over the whole population at once:

1. **attack** (``attacking_rate``): as in :mod:`nsr.soup` (``attack_assignment``), b <- N_a(b) on
   the replication interface.
2. **learn_from** (``learn_from_rate``, ``learn_from_severity`` epochs; partners from
   :func:`nsr.soup.learn_from_assignment`): the learner trains on the teacher's samples, both
   interfaces: the teacher's replication samples (its weights as targets, as
   ``nsr.training.learn_from``) and the teacher's own answers on a batch of unlabelled task inputs
   (class = the teacher's argmax for classification, its outputs for regression), weighted by
   ``learn_from_alpha``. This is the only way a non-guide can acquire the task.
3. **self-training** (``train`` epochs): everyone self-trains; guides add ``guide_alpha`` times the
   labelled task (``nsr.task_training.task_train`` with a per-particle alpha: 0 for non-guides, so
   they self-train exactly as in a plain soup).
4. **respawn**: divergent particles (``remove_divergent``) get fresh genomes and new ids.

Synchronous like :mod:`nsr.soup`: learners see their teachers as they were after the attack
phase. Randomness is keyed by (seed, generation, particle index, tag), so soups are independent of
how many run together (``soup_size``: many soups as one population, partners within one's soup).

>>> from nsr.tasks import GaussianAddition
>>> from nsr.task_replicator import TaskWeightwise
>>> task = GaussianAddition(train_size=64, test_size=64)
>>> rep = TaskWeightwise.for_task(task)
>>> state = initial_task_soup(rep, size=6, guides=1, soup_size=3, seed=0)
>>> state.guide.tolist()
[True, False, False, True, False, False]
>>> state, events = task_generation_step(rep, task, state, learn_from_rate=0.5, train=2, soup_size=3)
>>> state.generation, sorted(events)
(1, ['attacks', 'learn_from', 'respawned'])
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from nsr.random import KeyedStream
from nsr.soup import attack_assignment, learn_from_assignment
from nsr.task_training import TaskBatches, task_epoch, task_train

TAGS = ("task_soup/init", "task_soup/learn_from", "task_soup/train", "task_soup/respawn")


class TaskSoupState(NamedTuple):
    """Genomes ``[P, W]``, ids ``LongTensor[P]``, the next id, generations done, guide slots ``BoolTensor[P]``."""

    weights: torch.Tensor
    ids: torch.Tensor
    next_id: int
    generation: int
    guide: torch.Tensor


def _check_soup_size(size: int, soup_size: Optional[int]) -> int:
    n = size if soup_size is None else soup_size
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or size % n:
        raise ValueError(f"soup_size must be an integer >= 1 that divides the population size {size}, got {soup_size!r}")
    return n


def guide_slots(size: int, guides: int, soup_size: Optional[int] = None) -> torch.Tensor:
    """``BoolTensor[P]``: the first ``guides`` particles of every soup of ``soup_size`` are guides."""
    n = _check_soup_size(size, soup_size)
    if isinstance(guides, bool) or not isinstance(guides, int) or not 0 <= guides <= n:
        raise ValueError(f"guides must be an integer in [0, {n}] (per soup), got {guides!r}")
    return torch.arange(size) % n < guides


def initial_task_soup(rep, size: int, guides: int = 1, soup_size: Optional[int] = None, seed: int = 0) -> TaskSoupState:
    """Generation 0: ``size`` random genomes keyed by (seed, 0, index), ``guides`` guides per soup."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an integer >= 1, got {size!r}")
    idx = torch.arange(size)
    w = rep.init(size, generator=KeyedStream(seed, 0, idx, TAGS[0]))
    return TaskSoupState(w, idx.clone(), size, 0, guide_slots(size, guides, soup_size))


def teacher_answers(rep, task, teachers: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """What teachers ``[T, W]`` answer on task inputs ``x`` ``[B, n]``: class labels ``[T, B]``
    (classification) or outputs ``[T, B, m]`` (regression), used as the learners' targets."""
    with torch.no_grad():
        out = rep.task_forward(teachers, x)  # [T, B, m]
    return out.argmax(-1) if task.num_classes else out


def _attack(rep, w, seed, g, rate, soup_size):
    if rate == 0 or w.shape[0] < 2:
        return w, 0
    attacks, target, priority = attack_assignment(w.shape[0], rate, seed, g, w.device, soup_size)
    live = attacks & torch.isfinite(w).all(1)  # a divergent genome does not attack
    if not bool(live.any()):
        return w, 0
    attackers = live.nonzero()[:, 0]
    best = torch.full((w.shape[0],), -1, dtype=torch.long, device=w.device)
    best = best.scatter_reduce(0, target[attackers], priority[attackers], reduce="amax")  # [P] winner's priority
    hit = (best >= 0).nonzero()[:, 0]
    winner = best[hit] & ((1 << 33) - 1)  # the attacker's index (nsr.soup's tie-break layout)
    w = w.clone()
    w[hit] = rep.apply(w[winner], w[hit])  # N_a(b), all attackers as they were at the phase start
    return w, int(attackers.numel())


def task_generation_step(rep, task, state: TaskSoupState, *, seed: int = 0, attacking_rate: float = 0.0,
                         learn_from_rate: float = 0.1, learn_from_severity: int = 10, learn_from_alpha: float = 1.0,
                         train: int = 10, guide_alpha: float = 1.0, lr: float = 0.04, batch_size: Optional[int] = None,
                         momentum: float = 0.0, task_batch_size: int = 64, normalize: bool = True,
                         remove_divergent: bool = True, soup_size: Optional[int] = None,
                         guides_learn_from: bool = True) -> tuple[TaskSoupState, dict]:
    """One generation of a task soup (module docstring). Returns the new state and the events
    ``attacks``, ``learn_from``, ``respawned`` (counts over the whole population).
    ``guides_learn_from=False``: guides only teach (their learn_from events are dropped)."""
    P = state.weights.shape[0]
    n = _check_soup_size(P, soup_size)
    for name, rate in (("attacking_rate", attacking_rate), ("learn_from_rate", learn_from_rate)):
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {rate!r}")
    g = int(state.generation)
    idx = torch.arange(P)
    w = state.weights.detach()
    task_stream = TaskBatches(task, task_batch_size, torch.Generator().manual_seed(seed * 1_000_003 + g))

    w, attacks = _attack(rep, w, seed, g, attacking_rate, n)

    # learn_from on both interfaces: the teacher's replication samples and its task answers
    learns, teacher = learn_from_assignment(P, learn_from_rate, seed, g, w.device, n)
    learns = learns & torch.isfinite(w[teacher]).all(1)  # a divergent genome does not teach
    if not guides_learn_from:
        learns = learns & ~state.guide
    learners = learns.nonzero()[:, 0]
    if learners.numel() and learn_from_severity > 0:
        teachers = w[teacher[learners]]  # [L, W] after the attack phase
        x, y = rep.samples(teachers)  # the teachers' replication samples, fixed while the learners learn
        tx, _ = next(task_stream)  # unlabelled task inputs [B, n]
        ty = teacher_answers(rep, task, teachers, tx)  # [L, B] or [L, B, m]
        a = torch.full((len(learners),), float(learn_from_alpha))
        gen = KeyedStream(seed, g, learners, TAGS[1])
        wl, vel = w[learners], None
        for _ in range(learn_from_severity):
            wl, vel, _, _ = task_epoch(rep, task, wl, x, y, tx, ty, a, lr, batch_size, momentum, True, gen, vel,
                                       normalize)
        w = w.clone()
        w[learners] = wl

    # self-training; guides also learn the labelled task
    if train > 0:
        alpha = torch.where(state.guide, float(guide_alpha), 0.0)  # [P]
        w = task_train(rep, task, w, epochs=train, alpha=alpha, lr=lr, batch_size=batch_size, momentum=momentum,
                       generator=KeyedStream(seed, g, idx, TAGS[2]), task_batches=task_stream,
                       normalize=normalize).weights

    ids, next_id, respawned = state.ids.clone(), int(state.next_id), 0
    if remove_divergent:
        dead = ~torch.isfinite(w).all(1)
        respawned = int(dead.sum())
        if respawned:
            where = dead.nonzero()[:, 0]
            w = w.clone()
            w[where] = rep.init(respawned, generator=KeyedStream(seed, g, where, TAGS[3]))
            ids[where] = next_id + torch.arange(respawned)
            next_id += respawned
    events = {"attacks": attacks, "learn_from": int(learners.numel()), "respawned": respawned}
    return TaskSoupState(w, ids, next_id, g + 1, state.guide), events


__all__ = ["TaskSoupState", "guide_slots", "initial_task_soup", "teacher_answers", "task_generation_step"]
