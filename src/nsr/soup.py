"""The soup: an artificial chemistry of replicators, as pure functions over a population ``[P, W]``.

A soup evolves in generations (docs/science.md, "The soup"). One call of :func:`generation_step` is one
generation. ``SoupParams.update`` says in which order (:data:`UPDATES`).

Synchronous (``update="synchronous"``, the default; it scales): four phases over the whole population:

1. **attack**: each particle, with probability ``attacking_rate``, attacks a random *other*
   particle b: b's genome becomes N_a(b), particle a's network applied to b's genome. A particle
   attacked by several gets the result of one of its attackers, chosen uniformly at random.
2. **learn_from**: each particle, with probability ``learn_from_rate``, learns from a random other
   particle b for ``learn_from_severity`` epochs (``nsr.training.learn_from``: it trains on b's
   samples, b's weights as targets).
3. **self-training**: every particle self-trains ``train`` epochs (``nsr.training.self_train``).
4. **respawn**: divergent particles (``remove_divergent``) and zero fixpoints (``remove_zero``)
   are replaced by fresh random genomes (``rep.init``) that get new particle ids.

Every phase reads the genomes *as they were at the start of that phase*. Partners are always other
particles (a soup of one particle has no interactions), and a divergent genome (NaN or inf) neither
attacks nor teaches: it is inert until it is respawned.

Sequential (``update="sequential"``, the published order of the authors' ``Soup.evolve``): the slots
of a soup in turn, each particle doing attack, learn_from, self-training and the removal check
before the next one moves; partners are drawn from all slots, itself included, and every change is
written at once (:mod:`nsr.soup_sequential`). Many soups (``soup_size``) still advance together:
slot s of every soup at once, so the only loop is over the slots of one soup. Sharded, every process
must hold whole soups (:func:`soup_bounds`).

The parameters, the state and the removal rule live in :mod:`nsr.soup_params`, the sequential order in
:mod:`nsr.soup_sequential`; every public name of both is importable from here (``nsr.soup.SoupParams``).

Randomness
----------
Every random number is drawn from :class:`nsr.random.KeyedStream`, keyed by
``(seed, generation, global particle index, phase tag)``. The same seed gives the same soup
whether the population is in one process or split into contiguous shards over many (see
:class:`Shard`), and reruns are bit-identical: the state of a soup is only :class:`SoupState`.

>>> import torch
>>> from nsr.replicators import Weightwise
>>> rep = Weightwise()
>>> state = initial_state(rep, size=5, seed=0)
>>> state, events = generation_step(rep, state, SoupParams(seed=0, attacking_rate=0.5, train=1))
>>> state.weights.shape, state.generation, sorted(events)
(torch.Size([5, 14]), 1, ['attack_source', 'attacks', 'learn_from', 'learn_from_source', 'loss', 'particle_loss', 'respawn_mask', 'respawned', 'respawned_divergent', 'respawned_zero'])

The keyword form ``generation_step(rep, state, seed=0, attacking_rate=0.5, train=1)`` builds the
same :class:`SoupParams`.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from nsr.fixpoints import is_divergent
from nsr.random import KeyedStream, random_indices
from nsr.sharding import Shard, gather_rows, shard_bounds, whole  # noqa: F401  (part of the soup's API)
from nsr.soup_params import (ATTACKS, EVENT_COUNTS, LEARN_FROM, PHASE_TAGS, RESPAWNED,  # noqa: F401  (the soup's API)
                             RESPAWNED_DIVERGENT, RESPAWNED_ZERO, UPDATES, SoupParams, SoupState, check_soup_args,
                             particles_per_soup, removed)
from nsr.soup_sequential import sequential_generation
from nsr.training import learn_from, self_train

__all__ = ["SoupParams", "SoupState", "UPDATES", "soup_bounds", "Shard", "whole", "shard_bounds", "check_soup_args", "initial_state",
           "attack_assignment", "learn_from_assignment", "gather_rows", "generation_step", "PHASE_TAGS",
           "ATTACKS", "LEARN_FROM", "RESPAWNED", "RESPAWNED_DIVERGENT", "RESPAWNED_ZERO", "EVENT_COUNTS"]

_INDEX_BITS = 33  # attacker index bits in the tie-break priority (populations up to 8.5e9)


def initial_state(rep, size: int, seed: int = 0, shard: Optional[Shard] = None, device=None) -> SoupState:
    """Generation 0: ``size`` fresh random genomes (``rep.init`` keyed by (seed, 0, index, "init")),
    ids ``0 .. size-1``. With a ``shard``, only this process's slice is made."""
    check_soup_args(size=size, seed=seed)
    shard = shard or whole(size)
    if shard.size != size:
        raise ValueError(f"shard covers {shard.size} particles, size is {size}")
    idx = torch.arange(shard.start, shard.stop, dtype=torch.long, device=device)  # [P_local]
    if len(idx):
        w = rep.init(len(idx), generator=KeyedStream(seed, 0, idx, "init"), device=device)
    else:
        w = torch.zeros(0, rep.num_weights, device=device)
    return SoupState(w, idx.clone(), size, 0)


def _other(idx: torch.Tensor, u: torch.Tensor, soup_size: int) -> torch.Tensor:
    """A uniformly random *other* particle of the same soup for every particle ``idx`` ``[P]``
    (soups of ``soup_size`` consecutive particles), from uniforms ``u`` ``[P]``."""
    first = idx - idx % soup_size  # [P] the first particle of each one's soup
    other = random_indices(u, max(soup_size - 1, 1))
    return first + other + (other >= idx - first).long()  # skip itself: uniform over the other soup_size - 1


def attack_assignment(size: int, attacking_rate: float, seed: int, generation: int, device=None,
                      soup_size: Optional[int] = None):
    """Who attacks whom in a generation, for the whole population (the same on every process).

    Returns ``(attacks BoolTensor[P], target LongTensor[P], priority LongTensor[P])``: whether
    particle a attacks, the other particle it attacks, and the random priority by which one of
    several attackers of the same target wins (the highest). With ``soup_size``, the population is
    independent soups of that many consecutive particles, and partners come from one's own soup.
    """
    n = particles_per_soup(size, soup_size)
    idx = torch.arange(size, dtype=torch.long, device=device)
    s = KeyedStream(seed, generation, idx, "attack")
    u = s.rand(2)  # [P, 2]: attack?, whom
    attacks = (u[:, 0] < attacking_rate) & (n > 1)
    target = _other(idx, u[:, 1], n)
    bits = s.bits(1)[:, 0]
    priority = ((bits >> 34) & ((1 << 30) - 1)) << _INDEX_BITS | idx  # random, ties broken by index
    return attacks, target, priority


def learn_from_assignment(size: int, learn_from_rate: float, seed: int, generation: int, device=None,
                          soup_size: Optional[int] = None):
    """Who learns from whom: ``(learns BoolTensor[P], teacher LongTensor[P])`` for the whole population
    (partners from one's own soup of ``soup_size`` consecutive particles, if given)."""
    n = particles_per_soup(size, soup_size)
    idx = torch.arange(size, dtype=torch.long, device=device)
    u = KeyedStream(seed, generation, idx, "learn_from").rand(2)  # [P, 2]: learn?, from whom
    learns = (u[:, 0] < learn_from_rate) & (n > 1)
    return learns, _other(idx, u[:, 1], n)


def _attack_phase(rep, w, shard, seed, generation, attacking_rate, soup_size):
    """Synchronous attacks: returns the new local genomes, the number of attacks in the soup, and
    ``source`` ``LongTensor[P_local]``: the global index of the attacker whose result each local
    particle took (-1: not attacked)."""
    P, lo, hi = shard.size, shard.start, shard.stop
    source = torch.full((hi - lo,), -1, dtype=torch.long, device=w.device)  # [P_local]
    if attacking_rate == 0 or P < 2:
        return w, 0, source
    attacks, target, priority = attack_assignment(P, attacking_rate, seed, generation, w.device, soup_size)
    if not bool(attacks.any()):
        return w, 0, source
    attackers = attacks.nonzero()[:, 0]  # [A] global indices, ascending
    genomes = gather_rows(shard, w, attacks)  # [A, W] the attackers' genomes at the phase start
    live = ~is_divergent(genomes)  # a divergent genome does not attack
    attackers, genomes = attackers[live], genomes[live]
    if attackers.numel() == 0:
        return w, 0, source
    # the winner of every attacked particle: the attacker with the highest priority
    best = torch.full((P,), -1, dtype=torch.long, device=w.device)
    best = best.scatter_reduce(0, target[attackers], priority[attackers], reduce="amax")  # [P]
    mine = best[lo:hi]  # [P_local]
    hit = (mine >= 0).nonzero()[:, 0]  # local indices of attacked particles
    if hit.numel():
        winner = mine[hit] & ((1 << _INDEX_BITS) - 1)  # global attacker index
        row = torch.searchsorted(attackers, winner)  # its row in `genomes`
        gen = KeyedStream(seed, generation, hit + lo, "attack_apply")  # used by shuffling replicators
        w = w.clone()
        w[hit] = rep.apply(genomes[row], w[hit], generator=gen)  # N_a(b)
        source[hit] = winner
    return w, int(attackers.numel()), source


def _learn_from_phase(rep, w, shard, seed, generation, learn_from_rate, severity, train_kwargs, soup_size):
    """Synchronous learn_from: returns the new local genomes, the number of learn_from events, and
    ``source`` ``LongTensor[P_local]``: the global index of each local particle's teacher (-1: none)."""
    P, lo, hi = shard.size, shard.start, shard.stop
    source = torch.full((hi - lo,), -1, dtype=torch.long, device=w.device)  # [P_local]
    if learn_from_rate == 0 or P < 2:
        return w, 0, source
    learns, teacher = learn_from_assignment(P, learn_from_rate, seed, generation, w.device, soup_size)
    if not bool(learns.any()):
        return w, 0, source
    needed = torch.zeros(P, dtype=torch.bool, device=w.device)
    needed[teacher[learns]] = True
    teachers = needed.nonzero()[:, 0]  # [T] global indices, ascending
    genomes = gather_rows(shard, w, needed)  # [T, W] teachers after the attack phase
    live_teacher = torch.zeros(P, dtype=torch.bool, device=w.device)
    live_teacher[teachers] = ~is_divergent(genomes)  # a divergent genome does not teach
    learns = learns & live_teacher[teacher]
    events = int(learns.sum())
    local = learns[lo:hi].nonzero()[:, 0]  # local indices of learners
    source[local] = teacher[local + lo]
    if local.numel() and severity > 0:
        row = torch.searchsorted(teachers, teacher[local + lo])
        gen = KeyedStream(seed, generation, local + lo, "learn_from_train")
        w = w.clone()
        w[local] = learn_from(rep, w[local], genomes[row], epochs=severity, generator=gen, **train_kwargs)
    return w, events, source


def soup_bounds(size: int, world: int, soup_size: Optional[int] = None) -> tuple:
    """Shard bounds that split ``size`` particles over ``world`` processes in whole soups of
    ``soup_size`` (balanced in soups; :func:`shard_bounds` when ``soup_size`` is None): the sharding
    the sequential order needs, since a soup's slots are visited one after another."""
    if soup_size is None:
        return shard_bounds(size, world)
    n = particles_per_soup(size, soup_size)
    return tuple(b * n for b in shard_bounds(size // n, world))


def generation_step(rep, state: SoupState, params: Optional[SoupParams] = None, *, shard: Optional[Shard] = None,
                    **kwargs) -> tuple[SoupState, dict]:
    """One generation of the soup: attack, learn_from, self-training and respawn, synchronous phases or
    in the published sequential order (``params.update``; see the module docstring). Returns the new state and the generation's events,
    counted over the whole soup: ``attacks``, ``learn_from``, ``respawned`` (of which
    ``respawned_divergent`` and ``respawned_zero``) and ``loss``, the mean self-training loss of
    the finite particles (NaN without self-training); and ``particle_loss``, this process's
    particles' self-training losses ``[P_local]`` (NaN for respawned slots). Provenance of this
    process's particles, for lineages (``nsr.lineage``): ``attack_source`` ``LongTensor[P_local]``
    (global index of the attacker whose result the particle took, -1 none), ``learn_from_source``
    (global index of its teacher, -1 none) and ``respawn_mask`` ``BoolTensor[P_local]`` (respawned slots).

    ``params`` (:class:`SoupParams`) says how the soup evolves; keyword arguments instead (or on
    top) build it: ``generation_step(rep, state, seed=0, attacking_rate=0.5)``.
    ``state`` holds this process's particles; ``shard`` says which (``None``: all of them).
    ``soup_size``: the population is many independent soups of this many consecutive particles
    (partners are drawn within each one's soup; ``None``: one soup), e.g. the trials of an
    experiment evolved as one batch.
    Every process of a sharded soup must call this together (it gathers partners' genomes).
    Training hyper-parameters (``lr``, ``batch_size``, ``momentum``, ``shuffle``) are those of
    ``nsr.training``; momentum buffers start at zero in every phase.
    """
    if params is None:
        params = SoupParams(**kwargs)
    elif kwargs:
        params = params.replace(**kwargs)
    elif not isinstance(params, SoupParams):
        raise ValueError(f"params must be an nsr.soup.SoupParams, got {type(params).__name__}")
    P_local = state.weights.shape[0]
    shard = shard or whole(P_local)
    params.check_size(shard.size)
    if shard.stop - shard.start != P_local or state.ids.shape != (P_local,):
        raise ValueError(f"state holds {P_local} particles and {tuple(state.ids.shape)} ids, "
                         f"shard rank {shard.rank} owns {shard.stop - shard.start}")
    rep.check_weights(state.weights, "state.weights")
    g = int(state.generation)
    lo, hi = shard.start, shard.stop
    seed, soup_size, kw = params.seed, params.soup_size, params.training
    w = state.weights.detach()

    sequential = params.update == "sequential"
    if sequential:
        w, attacks, learned, loss, divergent, zero, attack_source, learn_from_source = sequential_generation(
            rep, w, shard, params, g)
    else:
        w, attacks, attack_source = _attack_phase(rep, w, shard, seed, g, params.attacking_rate, soup_size)
        w, learned, learn_from_source = _learn_from_phase(rep, w, shard, seed, g, params.learn_from_rate,
                                                          params.learn_from_severity, kw, soup_size)
        loss = torch.full((P_local,), math.nan, dtype=w.dtype, device=w.device)
        if params.train > 0 and P_local:
            idx = torch.arange(lo, hi, dtype=torch.long, device=w.device)
            w, _, loss = self_train(rep, w, epochs=params.train, generator=KeyedStream(seed, g, idx, "train"),
                                    return_state=True, **kw)
        # respawn: divergent and (optionally) zero particles become fresh particles with new ids
        divergent, zero = removed(rep, w, params)
    dead = divergent | zero  # [P_local]
    finite = torch.isfinite(loss)
    local = [attacks, learned] if sequential else [0, 0]  # synchronous counts are of the whole soup already
    stats = torch.tensor([float(dead.sum()), float(divergent.sum()), float(zero.sum()),
                          float(loss[finite].double().sum()), float(finite.sum())] + local, dtype=torch.float64,
                         device=w.device)  # [7]
    per_rank = shard.all_gather(stats) if shard.world > 1 else stats[None]  # [world, 7]
    before = int(per_rank[:shard.rank, 0].sum())  # respawned in lower ranks: ids stay global
    total = per_rank.sum(0)
    if sequential:
        attacks, learned = int(total[5]), int(total[6])
    ids = state.ids.clone()
    n_dead = int(dead.sum())
    if n_dead:
        where = dead.nonzero()[:, 0]
        if not sequential:  # the sequential order replaced them at their turn
            fresh = rep.init(n_dead, generator=KeyedStream(seed, g, where + lo, "respawn"), device=w.device)
            if params.train == 0:  # else w is self_train's new tensor: the caller's genomes are not touched
                w = w.clone()
            w[where] = fresh.to(w.dtype)
            loss = loss.clone()
            loss[where] = math.nan  # the slot holds a new particle, not yet trained
        ids[where] = state.next_id + before + torch.arange(n_dead, dtype=torch.long, device=ids.device)
    events = {ATTACKS: attacks, LEARN_FROM: learned, RESPAWNED: int(total[0]),
              RESPAWNED_DIVERGENT: int(total[1]), RESPAWNED_ZERO: int(total[2]),
              "loss": float(total[3] / total[4]) if total[4] > 0 else math.nan, "particle_loss": loss,
              "attack_source": attack_source, "learn_from_source": learn_from_source, "respawn_mask": dead}
    return SoupState(w, ids, int(state.next_id) + int(total[0]), g + 1), events
