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
