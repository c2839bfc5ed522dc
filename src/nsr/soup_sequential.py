"""A soup generation in the published sequential order (``SoupParams.update == "sequential"``), the order
of the authors' ``Soup.evolve``: the slots of a soup in turn, each particle doing attack, learn_from,
self-training and the removal check before the next one moves. :func:`nsr.soup.generation_step` calls
:func:`sequential_generation` and does the bookkeeping (ids, event counts) common to both orders.
"""
from __future__ import annotations

import math

import torch

from nsr.random import KeyedStream, random_indices
from nsr.soup_params import particles_per_soup, removed
from nsr.training import learn_from, self_train

__all__ = ["sequential_generation"]


def sequential_generation(rep, w, shard, params, g):
    """One generation in the published order (``update="sequential"``): the slots of every soup in
    turn, each slot's particle (in all soups at once): attack, learn_from, self-training, removal.

    A partner is drawn from *all* slots of the particle's soup, itself included (an attack on itself
    is a self-application); an attack is written at once, so later slots see it, and a particle hit
    after its own turn ends the generation as the attack left it. Divergent genomes attack and teach
    like any other (NaN spreads, as in the published code); a particle that learns from itself trains on
    its own samples as they change, epoch by epoch (the published loop of one-epoch fits). Each shard
    must hold whole soups.
    Returns ``(w, attacks, learned, loss [P_local], divergent [P_local], zero [P_local], attack_source
    [P_local], learn_from_source [P_local])``: the events of this process's soups (sources as global
    indices, -1 none; the last attack written wins); removed particles are already replaced by fresh genomes.
    """
    n = particles_per_soup(shard.size, params.soup_size)
    lo, hi = shard.start, shard.stop
    if lo % n or hi % n:
        raise ValueError(f"update: 'sequential' needs whole soups per process, but rank {shard.rank} holds "
                         f"particles {lo}..{hi - 1} and soup_size is {n}; shard with nsr.soup.soup_bounds")
    P_local, seed, kw = hi - lo, params.seed, params.training
    device = w.device
    idx = torch.arange(lo, hi, dtype=torch.long, device=device)  # [P_local] global indices
    first = idx - idx % n - lo  # [P_local] local index of each particle's slot 0
    ua = KeyedStream(seed, g, idx, "attack").rand(2)  # [P_local, 2]: attack?, whom
    ul = KeyedStream(seed, g, idx, "learn_from").rand(2)  # [P_local, 2]: learn?, from whom
    attacks = ua[:, 0] < params.attacking_rate
    target = first + random_indices(ua[:, 1], n)  # local index of the attacked particle, itself possible
    learns = ul[:, 0] < params.learn_from_rate
    teacher = first + random_indices(ul[:, 1], n)
    w = w.clone()
    loss = torch.full((P_local,), math.nan, dtype=w.dtype, device=device)
    divergent = torch.zeros(P_local, dtype=torch.bool, device=device)
    zero = torch.zeros_like(divergent)
    attack_source = torch.full((P_local,), -1, dtype=torch.long, device=device)  # [P_local] global index, -1 none
    learn_from_source = torch.full((P_local,), -1, dtype=torch.long, device=device)
    for slot in range(n if P_local else 0):  # the only loop: over the slots of a soup
        rows = torch.arange(slot, P_local, n, device=device)  # [soups] this slot's particle in every soup
        a = rows[attacks[rows]]  # attackers among them
        if a.numel():
            t = target[a]
            w[t] = rep.apply(w[a], w[t], generator=KeyedStream(seed, g, a + lo, "attack_apply"))  # N_a(b)
            attack_source[t] = a + lo  # the last attack written wins
        learner = rows[learns[rows]]
        learn_from_source[learner] = teacher[learner] + lo
        if learner.numel() and params.learn_from_severity > 0:
            own = teacher[learner] == learner  # learning from itself: its samples follow it, epoch by epoch
            for mine, ls in ((False, learner[~own]), (True, learner[own])):
                if ls.numel():
                    gen = KeyedStream(seed, g, ls + lo, "learn_from_train")
                    w[ls] = (self_train(rep, w[ls], epochs=params.learn_from_severity, generator=gen, **kw) if mine
                             else learn_from(rep, w[ls], w[teacher[ls]], epochs=params.learn_from_severity,
                                             generator=gen, **kw))
        if params.train > 0:
            st = self_train(rep, w[rows], epochs=params.train, generator=KeyedStream(seed, g, rows + lo, "train"),
                            return_state=True, **kw)
            w[rows], loss[rows] = st.weights, st.loss
        div, zer = removed(rep, w[rows], params)
        dead = rows[div | zer]
        if dead.numel():
            w[dead] = rep.init(len(dead), generator=KeyedStream(seed, g, dead + lo, "respawn"), device=device).to(w.dtype)
            loss[dead] = math.nan  # the slot holds a new particle, not yet trained
            divergent[rows[div]] = True
            zero[rows[zer]] = True
    return w, int(attacks.sum()), int(learns.sum()), loss, divergent, zero, attack_source, learn_from_source
