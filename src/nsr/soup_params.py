"""The parameters of a soup's generations (:class:`SoupParams`), its state between them
(:class:`SoupState`), the names of its events and random streams, and the removal rule of its respawn
phase (:func:`removed`): what both orders of a generation (:mod:`nsr.soup`, :mod:`nsr.soup_sequential`)
share. Every public name here is also importable from :mod:`nsr.soup`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch

from nsr.fixpoints import check_epsilon, is_divergent
from nsr.training import check_hyperparameters

__all__ = ["SoupParams", "SoupState", "UPDATES", "PHASE_TAGS", "ATTACKS", "LEARN_FROM", "RESPAWNED",
           "RESPAWNED_DIVERGENT", "RESPAWNED_ZERO", "EVENT_COUNTS", "check_soup_args", "particles_per_soup", "removed"]

# how a generation walks through the soup: phase by phase over all particles, or particle by particle
UPDATES = ("synchronous", "sequential")

# the tags of the keyed random streams, one per use
PHASE_TAGS = ("init", "attack", "attack_apply", "learn_from", "learn_from_train", "train", "respawn")

# the events of a generation, as keys of generation_step's events dict (and soup/<event> scalars)
ATTACKS = "attacks"  # particles that attacked another
LEARN_FROM = "learn_from"  # particles that learned from another
RESPAWNED = "respawned"  # particles replaced by fresh ones (divergent + zero)
RESPAWNED_DIVERGENT = "respawned_divergent"
RESPAWNED_ZERO = "respawned_zero"
EVENT_COUNTS = (ATTACKS, LEARN_FROM, RESPAWNED)  # the counts logged per generation as soup/<event>


class SoupState(NamedTuple):
    """A soup between generations: this process's particles and the counters of the whole soup.

    weights: ``[P_local, W]`` genomes of the particles this process owns (all of them when not sharded)
    ids: ``LongTensor[P_local]`` particle ids; a respawned slot gets a new id
    next_id: the id the next respawned particle gets (the same on every process)
    generation: generations completed so far
    """

    weights: torch.Tensor
    ids: torch.Tensor
    next_id: int
    generation: int


def _check_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def _check_count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


@dataclass(frozen=True)
class SoupParams:
    """The parameters of a soup's generations, validated once when made (a one-line ``ValueError``
    naming the first bad field). Frozen: change one with ``dataclasses.replace(params, train=5)``.

    attacking_rate: probability that a particle attacks a random other one per generation
    learn_from_rate: probability that a particle learns from a random other one per generation
    learn_from_severity: epochs of such a learn_from
    train: self-training epochs of every particle per generation
    lr, batch_size, momentum, shuffle: the SGD of ``nsr.training`` (momentum restarts every phase)
    remove_divergent, remove_zero: respawn divergent particles, zero fixpoints
    epsilon: the fixpoint tolerance (for zero particles)
    seed: keys every random number of the soup
    soup_size: the population is independent soups of this many consecutive particles (None: one)
    update: ``"synchronous"`` (phase by phase over the whole population, the default; it scales) or
        ``"sequential"`` (the published order: slot by slot, each particle's attack, learn_from,
        training and removal in turn; many soups still advance together), see :data:`UPDATES`

    >>> SoupParams(attacking_rate=1.5)
    Traceback (most recent call last):
    ...
    ValueError: attacking_rate must be a number in [0, 1], got 1.5
    """

    attacking_rate: float = 0.0
    learn_from_rate: float = 0.0
    learn_from_severity: int = 1
    train: int = 0
    lr: float = 0.01
    batch_size: Optional[int] = 1
    momentum: float = 0.0
    shuffle: bool = True
    remove_divergent: bool = True
    remove_zero: bool = False
    epsilon: float = 1e-4
    seed: int = 0
    soup_size: Optional[int] = None
    update: str = "synchronous"

    def __post_init__(self):
        _check_rate("attacking_rate", self.attacking_rate)
        _check_rate("learn_from_rate", self.learn_from_rate)
        _check_count("learn_from_severity", self.learn_from_severity, 0)
        _check_count("train", self.train, 0)
        _check_count("seed", self.seed, 0)
        check_hyperparameters(self.lr, self.batch_size, self.momentum, 1)
        check_epsilon(self.epsilon)
        for name in ("shuffle", "remove_divergent", "remove_zero"):
            _check_bool(name, getattr(self, name))
        if self.soup_size is not None:
            _check_count("soup_size", self.soup_size, 1)
        if self.update not in UPDATES:
            raise ValueError(f"update must be one of {', '.join(UPDATES)}, got {self.update!r}")

    def check_size(self, size: int) -> None:
        """Raise ``ValueError`` unless a population of ``size`` particles fits these parameters."""
        _check_count("size", size, 1)
        particles_per_soup(size, self.soup_size)

    @property
    def training(self) -> dict:
        """The keyword arguments of ``nsr.training``'s functions."""
        return dict(lr=self.lr, batch_size=self.batch_size, momentum=self.momentum, shuffle=self.shuffle)

    def replace(self, **changes) -> "SoupParams":
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)


def check_soup_args(size=1, attacking_rate=0.0, learn_from_rate=0.0, learn_from_severity=1, train=0,
                    lr=0.01, batch_size=1, momentum=0.0, epsilon=1e-4, seed=0, soup_size=None):
    """Raise ``ValueError`` naming the first invalid soup argument (see :class:`SoupParams`)."""
    _check_count("size", size, 1)
    particles_per_soup(size, soup_size)
    SoupParams(attacking_rate=attacking_rate, learn_from_rate=learn_from_rate, learn_from_severity=learn_from_severity,
               train=train, lr=lr, batch_size=batch_size, momentum=momentum, epsilon=epsilon, seed=seed)


def particles_per_soup(size: int, soup_size: Optional[int]) -> int:
    """The number of particles per soup: ``soup_size``, checked to divide ``size`` (``None``: one soup of all)."""
    if soup_size is None:
        return size
    if isinstance(soup_size, bool) or not isinstance(soup_size, int) or soup_size < 1 or size % soup_size:
        raise ValueError(f"soup_size must be an integer >= 1 that divides the population size {size}, got {soup_size!r}")
    return soup_size


def removed(rep, w, params) -> tuple:
    """``(divergent, zero)`` BoolTensors ``[P]``: the particles of genomes ``w`` ``[P, W]`` that the respawn
    phase removes under ``params`` (``remove_divergent``, ``remove_zero``, ``epsilon``)."""
    P = w.shape[0]
    divergent = (is_divergent(w) if params.remove_divergent
                 else torch.zeros(P, dtype=torch.bool, device=w.device))
    zero = _is_zero(rep, w, params.epsilon) & ~divergent if params.remove_zero else torch.zeros_like(divergent)
    return divergent, zero


def _is_zero(rep, w, epsilon):
    """``[P]`` bool: a zero fixpoint (every |w_i| < epsilon and F(w) = w within epsilon)."""
    small = (w.abs() < epsilon).all(dim=1)
    if not bool(small.any()):
        return small
    out = small.clone()
    out[small] = ((rep.apply(w[small], w[small]) - w[small]).abs() < epsilon).all(dim=1)
    return out
