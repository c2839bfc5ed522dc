"""The soup's pure functions (nsr.soup) on hand-built soups of two or three particles: one invariant
per test, stated in its name."""
import math
import threading

import pytest
import torch

from nsr.fixpoints import FixpointClass, classify
from nsr.replicators import Aggregating, Weightwise, mse
from nsr.soup import (Shard, SoupState, attack_assignment, generation_step, initial_state,
                      learn_from_assignment, shard_bounds)

REP = Weightwise()


def soup(weights, generation=0):
    P = weights.shape[0]
    return SoupState(weights.clone(), torch.arange(P), P, generation)


def random_genomes(P, seed=0, rep=REP):
    return rep.init(P, generator=torch.Generator().manual_seed(seed))


def test_attack_writes_exactly_N_a_of_b_into_b():
    w = random_genomes(2)
    new, events = generation_step(REP, soup(w), seed=0, attacking_rate=1.0)
    # two particles attacking each other: synchronous, so each uses the other's genome before the attack
    assert torch.equal(new.weights[1], REP.apply(w[0:1], w[1:2])[0])
    assert torch.equal(new.weights[0], REP.apply(w[1:2], w[0:1])[0])
    assert events["attacks"] == 2


def test_particle_attacked_by_several_gets_one_attackers_result_and_others_stay():
    w = random_genomes(3, seed=1)
    for seed in range(6):
        attacks, target, _ = attack_assignment(3, 1.0, seed, 0)
        new, _ = generation_step(REP, soup(w), seed=seed, attacking_rate=1.0)
        for b in range(3):
            attackers = [a for a in range(3) if target[a] == b]
            results = [REP.apply(w[a:a + 1], w[b:b + 1])[0] for a in attackers]
            if attackers:
                assert any(torch.equal(new.weights[b], r) for r in results)
            else:
                assert torch.equal(new.weights[b], w[b])
        assert bool((target != torch.arange(3)).all())  # a particle never attacks itself


def test_learn_from_moves_a_toward_reproducing_b():
    w = random_genomes(2, seed=2)
    x, y = REP.samples(w)
    before = mse(REP.forward(w, x.flip(0)), y.flip(0))  # [2]: each particle on the other's samples
    new, events = generation_step(REP, soup(w), seed=0, learn_from_rate=1.0, learn_from_severity=20, lr=0.05)
    after = mse(REP.forward(new.weights, x.flip(0)), y.flip(0))
    assert events["learn_from"] == 2
    assert bool((after < 0.5 * before).all()), (before, after)


def test_nan_particle_is_respawned_with_a_new_id_and_no_other_particle_changes():
    w = random_genomes(3, seed=3)
    w[1] = math.nan
    new, events = generation_step(REP, soup(w), seed=0)
    assert torch.equal(new.weights[[0, 2]], w[[0, 2]])
    assert bool(torch.isfinite(new.weights[1]).all())
    assert new.ids.tolist() == [0, 3, 2] and new.next_id == 4
    assert events["respawned"] == events["respawned_divergent"] == 1


def test_divergent_particle_neither_attacks_nor_teaches():
    w = random_genomes(3, seed=4)
    w[2, 5] = math.inf
    new, events = generation_step(REP, soup(w), seed=0, attacking_rate=1.0, learn_from_rate=1.0,
                                  remove_divergent=False)
    assert bool(torch.isfinite(new.weights[:2]).all())
    assert events["attacks"] == 2  # only the two finite particles attack


def test_every_rate_zero_and_train_zero_change_nothing():
    w = random_genomes(3, seed=5)
    new, events = generation_step(REP, soup(w, generation=7), seed=0, attacking_rate=0.0, learn_from_rate=0.0,
                                  train=0, remove_divergent=True, remove_zero=True)
    assert torch.equal(new.weights, w) and torch.equal(new.ids, torch.arange(3))
    assert (new.next_id, new.generation) == (3, 8)
    assert [events[k] for k in ("attacks", "learn_from", "respawned")] == [0, 0, 0]


def test_zero_fixpoint_is_respawned_only_with_remove_zero():
    w = torch.cat([torch.zeros(1, 14), REP.identity_genome()])
    assert classify(REP, w).tolist() == [FixpointClass.ZERO, FixpointClass.NONTRIVIAL]
    kept, _ = generation_step(REP, soup(w), seed=0, remove_zero=False)
    assert torch.equal(kept.weights, w)
    new, events = generation_step(REP, soup(w), seed=0, remove_zero=True)
    assert events["respawned_zero"] == 1 and new.ids.tolist() == [2, 1]
    assert torch.equal(new.weights[1], w[1]) and bool((new.weights[0] != 0).any())


def test_a_soup_of_one_particle_has_no_interactions():
    w = random_genomes(1, seed=6)
    new, events = generation_step(REP, soup(w), seed=0, attacking_rate=1.0, learn_from_rate=1.0)
    assert torch.equal(new.weights, w) and events["attacks"] == events["learn_from"] == 0


def test_event_counts_match_the_rates_at_ten_thousand_particles():
    P, rate_a, rate_l = 10_000, 0.1, 0.2
    state = initial_state(REP, P, seed=11)
    _, events = generation_step(REP, state, seed=11, attacking_rate=rate_a, learn_from_rate=rate_l,
                                learn_from_severity=0)
    for key, p in (("attacks", rate_a), ("learn_from", rate_l)):
        sd = math.sqrt(P * p * (1 - p))
        assert abs(events[key] - P * p) < 5 * sd, (key, events[key])
    # partners are uniform over the others: every particle is chosen about rate times
    attacks, target, _ = attack_assignment(P, 0.5, 11, 0)
    hits = torch.bincount(target[attacks], minlength=P).double()
    assert abs(hits.mean().item() - 0.5) < 0.02 and abs(hits.var().item() - 0.5) < 0.05  # ~ Poisson(0.5)
    learns, teacher = learn_from_assignment(P, 1.0, 11, 0)
    assert bool(learns.all()) and bool((teacher != torch.arange(P)).all())


def test_reruns_are_bit_identical():
    def run():
        s = initial_state(REP, 30, seed=5)
        for _ in range(3):
            s, _ = generation_step(REP, s, seed=5, attacking_rate=0.3, learn_from_rate=0.3, train=2)
        return s
    a, b = run(), run()
    assert torch.equal(a.weights, b.weights) and torch.equal(a.ids, b.ids)


def test_a_population_computed_as_shards_with_the_same_keys_equals_the_whole():
    P, world, gens = 23, 2, 4
    kw = dict(seed=3, attacking_rate=0.3, learn_from_rate=0.3, learn_from_severity=2, train=2, remove_zero=True)
    start = initial_state(REP, P, seed=3)
    start.weights[4] = math.nan  # a respawn on the first shard shifts the ids of the second
    whole_state = start
    for _ in range(gens):
        whole_state, whole_events = generation_step(REP, whole_state, **kw)

    bounds = shard_bounds(P, world)
    slots, barrier, results = [None] * world, threading.Barrier(world, timeout=60), [None] * world

    def all_gather(rank):
        def gather(x):  # the collective, between threads
            slots[rank] = x
            barrier.wait()
            out = torch.stack(list(slots))
            barrier.wait()
            return out
        return gather

    def run(rank):
        lo, hi = bounds[rank], bounds[rank + 1]
        s = SoupState(start.weights[lo:hi].clone(), start.ids[lo:hi].clone(), start.next_id, 0)
        for _ in range(gens):
            s, events = generation_step(REP, s, shard=Shard(bounds, rank, all_gather(rank)), **kw)
        results[rank] = (s, events)

    threads = [threading.Thread(target=run, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.equal(torch.cat([r[0].weights for r in results]), whole_state.weights)
    assert torch.equal(torch.cat([r[0].ids for r in results]), whole_state.ids)
    for s, events in results:
        assert s.next_id == whole_state.next_id and events["respawned"] == whole_events["respawned"]


def test_initial_state_of_a_shard_is_the_slice_of_the_whole():
    full = initial_state(REP, 10, seed=2)
    part = initial_state(REP, 10, seed=2, shard=Shard(shard_bounds(10, 3), 1, None))
    assert torch.equal(part.weights, full.weights[3:6]) and part.ids.tolist() == [3, 4, 5]


def test_aggregating_soup_runs_and_keeps_its_shape():
    rep = Aggregating(shuffle=True)
    s = initial_state(rep, 8, seed=1)
    s, _ = generation_step(rep, s, seed=1, attacking_rate=0.5, learn_from_rate=0.5, train=1)
    assert s.weights.shape == (8, 20)


@pytest.mark.parametrize("key,value", [
    ("attacking_rate", 1.5), ("attacking_rate", -0.1), ("learn_from_rate", 2), ("learn_from_severity", -1),
    ("train", -1), ("lr", -0.1), ("epsilon", 0.0), ("seed", -3),
])
def test_invalid_soup_arguments_raise_naming_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        generation_step(REP, soup(random_genomes(2)), **{key: value})


def test_size_below_one_raises_naming_size():
    with pytest.raises(ValueError, match="size"):
        initial_state(REP, 0)


def test_independent_soups_in_one_population_never_touch_each_other():
    P, n = 40, 10
    attacks, target, _ = attack_assignment(P, 1.0, 0, 0, soup_size=n)
    learns, teacher = learn_from_assignment(P, 1.0, 0, 0, soup_size=n)
    assert bool((target // n == torch.arange(P) // n).all()) and bool((teacher // n == torch.arange(P) // n).all())
    kw = dict(seed=1, attacking_rate=0.5, learn_from_rate=0.5, train=1, soup_size=n)
    start = initial_state(REP, P, seed=1)
    a, _ = generation_step(REP, start, **kw)
    other = start.weights.clone()
    other[:n] = random_genomes(n, seed=9)  # a different first soup
    b, _ = generation_step(REP, SoupState(other, start.ids, P, 0), **kw)
    assert torch.equal(a.weights[n:], b.weights[n:]) and not torch.equal(a.weights[:n], b.weights[:n])
    with pytest.raises(ValueError, match="soup_size"):
        generation_step(REP, start, soup_size=7)


# ---- the soup's parameters: one frozen, validated object ------------------------------------------------
def test_soup_params_are_validated_once_naming_the_field_and_are_frozen():
    import dataclasses

    from nsr.soup import SoupParams

    for key, value in [("attacking_rate", 1.5), ("learn_from_severity", -1), ("train", 1.5), ("momentum", 1.0),
                       ("batch_size", 0), ("shuffle", 1), ("remove_zero", "yes"), ("epsilon", 0.0), ("seed", -1),
                       ("soup_size", 0)]:
        with pytest.raises(ValueError, match=f"^{key} "):
            SoupParams(**{key: value})
    params = SoupParams(attacking_rate=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.train = 3
    with pytest.raises(ValueError, match="^train "):
        params.replace(train=-1)  # a changed copy is validated again
    assert params.replace(train=2).train == 2 and params.train == 0


def test_generation_step_with_soup_params_equals_the_keyword_call_bit_for_bit():
    from nsr.soup import SoupParams

    kw = dict(seed=4, attacking_rate=0.5, learn_from_rate=0.5, learn_from_severity=2, train=1, remove_zero=True)
    start = initial_state(REP, 6, seed=4)
    a, ea = generation_step(REP, start, SoupParams(**kw))
    b, eb = generation_step(REP, start, **kw)
    c, ec = generation_step(REP, start, SoupParams(seed=4), **{k: v for k, v in kw.items() if k != "seed"})
    for s, e in ((b, eb), (c, ec)):
        assert torch.equal(a.weights, s.weights) and torch.equal(a.ids, s.ids)
        assert {k: v for k, v in ea.items() if k != "loss" and not torch.is_tensor(v)} == \
               {k: v for k, v in e.items() if k != "loss" and not torch.is_tensor(v)}
        assert all(torch.equal(v, e[k]) for k, v in ea.items() if torch.is_tensor(v) and k != "particle_loss")


def test_every_declared_event_is_counted_by_a_generation():
    from nsr.soup import EVENT_COUNTS, RESPAWNED, RESPAWNED_DIVERGENT, RESPAWNED_ZERO

    w = random_genomes(3)
    w[2] = float("nan")
    _, events = generation_step(REP, soup(w), seed=0, attacking_rate=1.0, learn_from_rate=1.0)
    assert set(EVENT_COUNTS) <= set(events)
    assert events[RESPAWNED] == events[RESPAWNED_DIVERGENT] + events[RESPAWNED_ZERO] == 1


# ---- the published order: update="sequential" ------------------------------------------------------------
def published_order(rep, state, params):
    """The published soup's generation (soup.py ``evolve``), written as a plain loop over soups and slots,
    one particle at a time, on the same keyed random numbers as nsr.soup: in slot order each particle
    attacks a partner drawn from all slots of its soup (itself included, written at once), learns from
    one, self-trains, and is replaced by a fresh particle if divergent (or zero)."""
    from nsr.random import KeyedStream
    from nsr.training import learn_from, self_train

    w, g, n = state.weights.clone(), state.generation, params.soup_size
    for first in range(0, w.shape[0], n):  # every soup
        for i in range(first, first + n):  # its slots, in order
            key = lambda tag: KeyedStream(params.seed, g, torch.tensor([i]), tag)  # noqa: E731
            ua, ul = key("attack").rand(2)[0], key("learn_from").rand(2)[0]
            if ua[0] < params.attacking_rate:
                t = first + min(int(ua[1] * n), n - 1)
                w[t] = rep.apply(w[i:i + 1], w[t:t + 1], generator=key("attack_apply"))[0]
            if ul[0] < params.learn_from_rate:
                t = first + min(int(ul[1] * n), n - 1)
                stream = key("learn_from_train")
                for _ in range(params.learn_from_severity):  # one-epoch fits on the partner's samples as they are now
                    w[i] = learn_from(rep, w[i:i + 1], w[t:t + 1], epochs=1, generator=stream, **params.training)[0]
            if params.train:
                w[i] = self_train(rep, w[i:i + 1], epochs=params.train, generator=key("train"), **params.training)[0]
            dead = not bool(torch.isfinite(w[i]).all()) and params.remove_divergent
            if params.remove_zero and bool((w[i].abs() < params.epsilon).all()):
                dead = True
            if dead:
                w[i] = rep.init(1, generator=key("respawn"))[0]
    return w


def test_sequential_generation_equals_a_loop_over_slots_in_the_published_order():
    from nsr.soup import SoupParams

    params = SoupParams(seed=5, attacking_rate=0.5, learn_from_rate=0.4, learn_from_severity=2, train=2,
                        remove_zero=True, soup_size=4, update="sequential")
    state = initial_state(REP, 12, seed=5)
    state.weights[6] = math.nan  # a divergent particle: it attacks (NaN spreads) until its turn removes it
    for _ in range(3):
        expected = published_order(REP, state, params)
        state, events = generation_step(REP, state, params)
        torch.testing.assert_close(state.weights, expected, rtol=1e-6, atol=1e-7, equal_nan=True)
    assert events["attacks"] > 0 and events["learn_from"] > 0


def test_sequential_two_slot_soup_hand_built_attacks_written_at_once_and_partner_may_be_itself():
    """Genomes c * identity: N_{cI}(dI) = c^3 d I. Slot 0 (2I) attacks first, then slot 1 with its genome
    as slot 0's attack may have left it."""
    from nsr.random import KeyedStream
    from nsr.soup import SoupParams

    I = REP.identity_genome()[0]
    seen = set()
    for seed in range(12):
        params = SoupParams(seed=seed, attacking_rate=1.0, soup_size=2, update="sequential", remove_divergent=False)
        targets = [min(int(KeyedStream(seed, 0, torch.tensor([i]), "attack").rand(2)[0, 1] * 2), 1) for i in (0, 1)]
        seen.add(tuple(targets))
        c = [2.0, 3.0]
        for i in (0, 1):
            c[targets[i]] = c[i] ** 3 * c[targets[i]]
        state, events = generation_step(REP, soup(torch.stack([2 * I, 3 * I])), params)
        assert torch.equal(state.weights, torch.stack([c[0] * I, c[1] * I])), (targets, c)
        assert events["attacks"] == 2
        source = [-1, -1]
        for i in (0, 1):
            source[targets[i]] = i  # the last attack written wins
        assert events["attack_source"].tolist() == source
    assert len(seen) == 4  # every pattern: (self, self), (self, other), (other, self), (other, other)


def test_sequential_soup_alone_equals_the_same_soup_inside_a_batch_of_soups():
    from nsr.soup import SoupParams, soup_bounds

    n, soups = 5, 4
    params = SoupParams(seed=2, attacking_rate=0.5, learn_from_rate=0.3, train=1, remove_zero=True, soup_size=n,
                        update="sequential")
    start = initial_state(REP, n * soups, seed=2)
    batch, _ = generation_step(REP, start, params)
    bounds = soup_bounds(n * soups, 3, n)
    assert all(b % n == 0 for b in bounds)
    for k in range(soups):  # soup k alone in a process of its own
        lo, hi = k * n, (k + 1) * n
        zeros = lambda x: torch.zeros_like(x)  # noqa: E731
        shard = Shard((0, lo, hi, n * soups), 1, lambda x: torch.stack([zeros(x), x, zeros(x)]))
        alone, _ = generation_step(REP, SoupState(start.weights[lo:hi].clone(), start.ids[lo:hi].clone(), n * soups, 0),
                                   params, shard=shard)
        assert torch.equal(alone.weights, batch.weights[lo:hi])
    with pytest.raises(ValueError, match="^update: 'sequential' needs whole soups"):
        generation_step(REP, SoupState(start.weights[:7].clone(), start.ids[:7].clone(), 20, 0), params,
                        shard=Shard((0, 7, 20), 0, lambda x: torch.stack([x, x])))


def test_update_must_be_synchronous_or_sequential_naming_the_field():
    from nsr.soup import SoupParams

    with pytest.raises(ValueError, match="^update must be one of synchronous, sequential"):
        SoupParams(update="async")
    assert SoupParams().update == "synchronous"
