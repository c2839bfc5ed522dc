"""Fixpoint classes, distance and the published behaviour of random and self-applied networks."""
import math

import pytest
import torch

from nsr.fixpoints import (CLASS_NAMES, FixpointClass, aggregate_distance, classify, counts, distance,
                           is_aggregate_fixpoint, robustness, shares, vergence_times)
from nsr.replicators import Aggregating, Recurrent, Weightwise
from nsr.training import self_train

C = FixpointClass


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_class_order_is_divergent_zero_nontrivial_second_order_other():
    assert [c.name for c in FixpointClass] == ["DIVERGENT", "ZERO", "NONTRIVIAL", "SECOND_ORDER", "OTHER"]
    assert list(FixpointClass) == [0, 1, 2, 3, 4]
    assert CLASS_NAMES == ("divergent", "zero", "nontrivial", "second_order", "other")


def test_hand_built_identity_is_nontrivial_zeros_are_zero_nan_and_inf_are_divergent():
    rep = Weightwise()
    w = torch.cat([rep.identity_genome(), torch.zeros(1, 14), torch.full((1, 14), math.nan), torch.zeros(1, 14)])
    w[3, 5] = math.inf
    assert classify(rep, w).tolist() == [C.NONTRIVIAL, C.ZERO, C.DIVERGENT, C.DIVERGENT]


def test_tiny_weights_that_reproduce_themselves_are_zero_not_nontrivial():
    rep = Weightwise()
    w = rep.identity_genome() * 0.5e-4  # |w_i| < eps everywhere, F(w) ~ 0 ~ w
    assert classify(rep, w).tolist() == [C.ZERO]


def test_a_period_two_orbit_is_second_order():
    # depth 1: output = k0[0,0] * k1[0,0] * w_k. With k0 = 1, k1 = -1: F(w) = -w, and F(-w) = w.
    rep = Weightwise(depth=1)
    w = torch.zeros(1, rep.num_weights)
    w[0, rep.offsets] = torch.tensor([1.0, -1.0])
    assert torch.equal(rep.apply(w, w), -w)
    assert classify(rep, w).tolist() == [C.SECOND_ORDER]


def test_the_published_second_order_test_applies_the_same_network_twice():
    # depth 2, product of the [0,0] entries -1: F(w) = -w, and -w is itself a fixpoint (product +1),
    # so F(F(w)) = -w: no period-2 orbit. But N_w(N_w(w)) = w: second order for the published test.
    rep = Weightwise()
    w = torch.zeros(1, 14)
    w[0, [0, 8, 12]] = torch.tensor([1.0, 1.0, -1.0])
    assert classify(rep, w, second_order="orbit").tolist() == [C.OTHER]
    assert classify(rep, w, second_order="same_network").tolist() == [C.SECOND_ORDER]


def test_distance_is_the_largest_weight_change_under_self_application():
    rep = Weightwise()
    w = torch.cat([rep.identity_genome(), rep.identity_genome() * 2, torch.full((1, 14), math.nan)])
    # 2 * identity: the network multiplies its first input by 8, so F(w) = 8 w and max |7 w_i| = 14
    assert distance(rep, w).tolist() == [0.0, 14.0, math.inf]


def test_epsilon_decides_what_counts_as_reproduced():
    rep = Weightwise()
    w = rep.identity_genome() * (1 + 1e-3)  # F(w) = (1+1e-3)^3 w: off by ~3e-3
    assert classify(rep, w, epsilon=1e-4).tolist() == [C.OTHER]
    assert classify(rep, w, epsilon=1e-2).tolist() == [C.NONTRIVIAL]


@pytest.mark.parametrize("eps", [0, -1e-4, math.nan, math.inf, "1e-4"])
def test_epsilon_must_be_positive_and_finite(eps):
    with pytest.raises(ValueError, match="epsilon"):
        classify(Weightwise(), torch.zeros(1, 14), epsilon=eps)


def test_unknown_second_order_test_is_rejected():
    with pytest.raises(ValueError, match="second_order"):
        classify(Weightwise(), torch.zeros(1, 14), second_order="twice")


def test_counts_and_shares_sum_to_the_population():
    cls = torch.tensor([0, 1, 1, 2, 4, 4, 4, 4])
    assert counts(cls).tolist() == [1, 2, 1, 0, 4]
    s = shares(cls)
    assert list(s) == list(CLASS_NAMES) and sum(s.values()) == pytest.approx(1.0) and s["other"] == 0.5


@pytest.mark.parametrize("Rep", [Weightwise, Aggregating, Recurrent])
def test_fresh_random_networks_are_practically_never_fixpoints(Rep):
    rep = Rep()
    c = classify(rep, rep.init(2000, generator=gen(1)))
    assert (c == C.OTHER).all()


@pytest.mark.parametrize("Rep, check", [
    # published, 50 each: weightwise 23 divergent / 27 zero; aggregating 4 / 46; recurrent 46 / 4
    (Weightwise, lambda s: 0.25 <= s["divergent"] <= 0.65),
    (Aggregating, lambda s: s["zero"] >= 0.8),
    (Recurrent, lambda s: s["divergent"] >= 0.7),
])
def test_100_self_applications_end_zero_or_divergent_as_published(Rep, check):
    rep = Rep()
    w = rep.init(200, generator=gen(2))
    for _ in range(100):
        w = rep.apply(w, w)
    s = shares(classify(rep, w))
    assert s["divergent"] + s["zero"] == 1.0, s
    assert check(s), s


def test_an_aggregating_net_can_reproduce_its_aggregates_without_being_a_fixpoint():
    rep = Aggregating(aggregates=4, width=4, depth=2)  # 48 weights, three 4x4 kernels
    w = torch.zeros(1, 48)
    for off in rep.offsets:
        w[0, off:off + 16] = torch.eye(4).flatten()  # the network is the identity on aggregates
    assert aggregate_distance(rep, w).item() == pytest.approx(0.0, abs=1e-7)
    assert is_aggregate_fixpoint(rep, w).tolist() == [True]
    assert classify(rep, w).tolist() == [C.OTHER]  # chunks are not constant: F(w) != w


def test_self_training_aggregating_nets_moves_their_aggregates_not_their_weights_to_a_fixpoint():
    rep = Aggregating()
    w0 = rep.init(50, generator=gen(3))
    w = self_train(rep, w0, epochs=1000, generator=gen(4))
    assert (classify(rep, w) != C.NONTRIVIAL).all()  # published: 50 "other"
    assert aggregate_distance(rep, w).median() < 0.5 * aggregate_distance(rep, w0).median()
    assert distance(rep, w).median() > 0.5


def test_aggregate_distance_needs_an_aggregating_replicator():
    with pytest.raises(ValueError, match="Aggregating"):
        aggregate_distance(Weightwise(), torch.zeros(1, 14))


def test_vergence_times_of_hand_built_cases():
    rep = Weightwise()
    w = torch.cat([rep.identity_genome(), rep.identity_genome() * 0.5, torch.full((1, 14), math.nan)])
    ttv, taf = vergence_times(rep, w, max_steps=20)
    # identity: a fixpoint forever, never verges. c * identity becomes c^4 * identity (the network
    # multiplies by c^3): 0.5 -> 0.0625 -> 1.5e-5, zero (< 1e-4) at the second step, never a
    # fixpoint on the way. NaN verges at the first step.
    assert ttv.tolist() == [20, 2, 1]
    assert taf.tolist() == [20, 0, 0]


def test_robustness_times_grow_as_the_noise_shrinks():
    rep = Weightwise()
    r = robustness(rep, rep.identity_genome(), scales=[1.0, 1e-3, 1e-6, 1e-9], trials=50, generator=gen(5))
    ttv = [r[s][0].float().mean().item() for s in (1.0, 1e-3, 1e-6, 1e-9)]
    taf = [r[s][1].float().mean().item() for s in (1.0, 1e-3, 1e-6, 1e-9)]
    assert ttv == sorted(ttv) and ttv[-1] > ttv[0] + 10
    assert taf[0] == 0 and taf == sorted(taf) and taf[-1] > 10
