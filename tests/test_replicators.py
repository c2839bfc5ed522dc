"""The three replicators against docs/science.md's definitions and against single-network references."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from nsr.replicators import ACTIVATIONS, Aggregating, Recurrent, Weightwise, from_config

ALL = [Weightwise, Aggregating, Recurrent]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def act_module(name):
    return {"linear": nn.Identity(), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(), "relu": nn.ReLU()}[name]


# ---- layout -------------------------------------------------------------------------------------

def test_default_sizes_are_the_papers_14_20_17():
    assert (Weightwise().num_weights, Aggregating().num_weights, Recurrent().num_weights) == (14, 20, 17)


def test_sizes_follow_the_architecture():
    assert Weightwise(width=3, depth=1).num_weights == 4 * 3 + 3 * 1
    assert Aggregating(aggregates=3, width=2, depth=3).num_weights == 3 * 2 + 2 * 2 + 2 * 2 + 2 * 3
    assert Recurrent(width=3, depth=1).num_weights == (1 * 3 + 9) + (3 * 1 + 1)


def test_genome_kernels_are_row_major_input_by_output():
    rep = Weightwise()
    w = torch.arange(14.0)[None]
    K0, K1, K2 = rep.kernels(w)
    assert K0.shape == (1, 4, 2) and K0[0, 1, 0] == 2 and K0[0, 0, 1] == 1  # [cell, weight]
    assert K1[0, 0, 0] == 8 and K2[0, 0, 0] == 12 and K2[0, 1, 0] == 13


def test_weightwise_identifiers_are_normalised_by_the_largest_id_of_their_scope():
    ids = Weightwise().identifiers()
    assert ids.shape == (14, 3)
    assert ids[0].tolist() == [0.0, 0.0, 0.0]
    assert ids[1].tolist() == [0.0, 0.0, 1.0]  # layer 0, cell 0, weight 1 of 1
    assert ids[6].tolist() == [0.0, 1.0, 0.0]  # cell 3 of 3
    assert ids[2].tolist() == pytest.approx([0.0, 1 / 3, 0.0])
    assert ids[8].tolist() == [0.5, 0.0, 0.0]  # layer 1 of 2
    assert ids[13].tolist() == [1.0, 1.0, 0.0]  # last layer: cell 1 of 1, weight 0 (only one)


def test_hand_built_weightwise_fixpoint_sets_genome_indices_0_8_12():
    w = Weightwise().identity_genome()
    assert torch.nonzero(w[0]).flatten().tolist() == [0, 8, 12]


def test_hand_built_fixpoint_reproduces_any_genome_itself_included():
    rep = Weightwise()
    a = rep.identity_genome().expand(5, 14)
    b = rep.init(5, generator=gen())
    assert torch.equal(rep.apply(a, b), b)
    assert torch.equal(rep.apply(a, a), a)


# ---- references: a loop over single networks ----------------------------------------------------

def single_mlp(rep, genome):
    """One torch network built from one genome: Dense kernels [in, out] become Linear.weight = K.T."""
    layers = []
    for K in rep.kernels(genome[None]):
        lin = nn.Linear(K.shape[1], K.shape[2], bias=False)
        lin.weight.data = K[0].t().clone()
        layers += [lin, act_module(rep.activation)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_weightwise_apply_equals_a_loop_of_single_networks(activation):
    rep = Weightwise(activation=activation)
    a, b = rep.init(7, generator=gen(1)), rep.init(7, generator=gen(2))
    ids = rep.identifiers()
    ref = torch.stack([single_mlp(rep, a[i])(torch.cat([b[i][:, None], ids], 1))[:, 0] for i in range(7)])
    torch.testing.assert_close(rep.apply(a, b), ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_aggregating_apply_equals_a_loop_of_single_networks(activation):
    rep = Aggregating(activation=activation)
    a, b = rep.init(5, generator=gen(1)), rep.init(5, generator=gen(2))
    out = rep.apply(a, b)
    for i in range(5):
        chunks = [b[i, 0:5], b[i, 5:10], b[i, 10:15], b[i, 15:20]]
        new = single_mlp(rep, a[i])(torch.stack([c.mean() for c in chunks]))
        torch.testing.assert_close(out[i], new.repeat_interleave(5), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_recurrent_apply_equals_torch_rnn(activation):
    rep = Recurrent(activation=activation)
    a, b = rep.init(4, generator=gen(3)), rep.init(4, generator=gen(4))
    out = rep.apply(a, b)
    for i in range(4):
        Ks = rep.kernels(a[i:i + 1])
        h = b[i][None, :, None]  # [1, T, 1]
        for K, R in zip(Ks[0::2], Ks[1::2]):
            rnn = nn.RNN(K.shape[1], K.shape[2], bias=False, batch_first=True, nonlinearity=activation)
            rnn.weight_ih_l0.data = K[0].t().clone()
            rnn.weight_hh_l0.data = R[0].t().clone()
            h = rnn(h)[0]
        torch.testing.assert_close(out[i], h[0, :, 0], atol=1e-6, rtol=1e-6)


def test_recurrent_linear_is_the_explicit_recurrence():
    rep = Recurrent(width=1, depth=1)  # layers: 1 -> 1 unit, then 1 -> 1 unit: weights k1, r1, k2, r2
    w = torch.tensor([[0.5, 0.25, 2.0, -1.0]])
    seq = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    h1, h2, out = 0.0, 0.0, []
    for x in seq[0].tolist():
        h1 = 0.5 * x + 0.25 * h1
        h2 = 2.0 * h1 - 1.0 * h2
        out.append(h2)
    torch.testing.assert_close(rep.apply(w, seq), torch.tensor([out]))


@pytest.mark.parametrize("Rep", ALL)
def test_a_particle_gives_identical_results_alone_and_inside_a_population_of_1000(Rep):
    rep = Rep()
    w = rep.init(1000, generator=gen(5))
    together = rep.apply(w, w)
    for i in (0, 123, 999):
        assert torch.equal(rep.apply(w[i:i + 1], w[i:i + 1])[0], together[i])


@pytest.mark.parametrize("Rep", ALL)
def test_a_divergent_particle_changes_no_other_particle(Rep):
    rep = Rep()
    w = rep.init(3, generator=gen(6))
    clean = rep.apply(w, w)
    w[1, 0] = float("nan")
    w[2, 3] = float("inf")
    dirty = rep.apply(w, w)
    assert torch.equal(dirty[0], clean[0])


# ---- activations, aggregation, init --------------------------------------------------------------

@pytest.mark.parametrize("Rep", ALL)
def test_every_activation_really_applies(Rep):
    outs = {}
    for a in ACTIVATIONS:
        rep = Rep(activation=a)
        w = Rep().init(20, generator=gen(8)) * 3  # large enough for the activations to bend
        outs[a] = rep.apply(w, w)
    assert len({tuple(o.flatten()[:50].tolist()) for o in outs.values()}) == 4
    assert (outs["relu"] >= 0).all()
    assert ((outs["sigmoid"] > 0) & (outs["sigmoid"] < 1)).all()
    assert (outs["tanh"].abs() <= 1).all() and (outs["linear"].abs() > 1).any()


def test_aggregating_chunks_take_the_remainder_in_the_last_chunk():
    rep = Aggregating(aggregates=3, width=2, depth=2)  # 16 weights: chunks of 5, 5, 6
    assert rep.bounds == [(0, 5), (5, 10), (10, 16)]
    b = torch.arange(16.0)[None]
    torch.testing.assert_close(rep.aggregate(b), torch.tensor([[2.0, 7.0, 12.5]]))
    assert Aggregating(aggregates=3, aggregator="max").aggregate(b).tolist() == [[4.0, 9.0, 15.0]]


def test_aggregating_writes_each_new_value_to_every_weight_of_its_chunk():
    rep = Aggregating()
    w = rep.init(6, generator=gen(9))
    out = rep.apply(w, w)
    for s, e in rep.bounds:
        assert (out[:, s:e] == out[:, s:s + 1]).all()
    torch.testing.assert_close(rep.aggregate(out), rep.apply_aggregates(w, w))


def test_aggregating_shuffle_permutes_the_written_genome():
    plain, shuffled = Aggregating(), Aggregating(shuffle=True)
    w = plain.init(4, generator=gen(10))
    a, b = plain.apply(w, w), shuffled.apply(w, w, generator=gen(11))
    assert not torch.equal(a, b)
    assert torch.equal(a.sort(1).values, b.sort(1).values)


@pytest.mark.parametrize("Rep", ALL)
def test_init_is_deterministic_for_a_generator_and_float32(Rep):
    rep = Rep()
    a, b, c = rep.init(10, generator=gen(1)), rep.init(10, generator=gen(1)), rep.init(10, generator=gen(2))
    assert a.dtype == torch.float32 and a.shape == (10, rep.num_weights)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_init_is_glorot_uniform_for_kernels():
    rep = Weightwise(width=3, depth=2)
    w = rep.init(20000, generator=gen(12))
    for (i, o), K in zip(rep.shapes, rep.kernels(w)):
        limit = math.sqrt(6 / (i + o))
        assert K.abs().max() <= limit
        assert K.abs().max() > 0.99 * limit
        assert abs(K.mean().item()) < 0.01 * limit
        assert K.var().item() == pytest.approx(limit ** 2 / 3, rel=0.03)


@pytest.mark.parametrize("orthogonal", ["keras2", "uniform"])
def test_init_recurrent_kernels_are_orthogonal(orthogonal):
    rep = Recurrent(width=3, depth=2, orthogonal=orthogonal)
    w = rep.init(50, generator=gen(13))
    Ks = rep.kernels(w)
    for k in rep.recurrent:
        R = Ks[k]
        eye = torch.eye(R.shape[1]).expand_as(R)
        torch.testing.assert_close(R.transpose(1, 2) @ R, eye, atol=1e-5, rtol=0)


def test_keras2_orthogonal_2x2_kernels_are_always_reflections_uniform_half_rotations():
    """The published (Keras 2, numpy SVD) initialiser draws only reflections for a 2x2 kernel; the
    uniform (QR) one draws rotations and reflections alike."""
    for orthogonal, expected in (("keras2", 1.0), ("uniform", 0.5)):
        rep = Recurrent(orthogonal=orthogonal)
        Ks = rep.kernels(rep.init(4000, generator=gen(14)))
        for k in rep.recurrent[:-1]:  # the 2x2 recurrent kernels (the last one is 1x1)
            reflections = (torch.linalg.det(Ks[k].double()) < 0).double().mean().item()
            assert reflections == pytest.approx(expected, abs=0.03)


@pytest.mark.parametrize("shape", [(2, 2), (3, 3), (2, 3), (3, 2), (1, 1)])
def test_keras2_orthogonal_equals_numpy_svd_factor_as_keras_picks_it(shape):
    """Keras 2's Orthogonal: u, _, v = np.linalg.svd(a, full_matrices=False); q = u if u.shape == shape else v."""
    from nsr.replicators.base import orthogonal_keras2

    a = torch.randn(200, *shape, generator=gen(15), dtype=torch.float64)
    ours = orthogonal_keras2(a)
    for i in range(len(a)):
        u, _, v = np.linalg.svd(a[i].numpy(), full_matrices=False)
        q = u if u.shape == shape else v
        np.testing.assert_allclose(ours[i].numpy(), q, atol=1e-10)


# ---- configuration and bad input ----------------------------------------------------------------

@pytest.mark.parametrize("rep", [Weightwise(width=3), Aggregating(aggregator="max", shuffle=True), Recurrent(activation="tanh"),
                                 Recurrent(orthogonal="uniform")])
def test_to_config_round_trips(rep):
    assert from_config(rep.to_config()) == rep


@pytest.mark.parametrize("make, name", [
    (lambda: Weightwise(width=0), "width"),
    (lambda: Weightwise(depth=-1), "depth"),
    (lambda: Recurrent(width=1.5), "width"),
    (lambda: Recurrent(orthogonal="qr"), "orthogonal"),
    (lambda: Aggregating(aggregates=0), "aggregates"),
    (lambda: Weightwise(activation="softmax"), "activation"),
    (lambda: Aggregating(aggregator="median"), "aggregator"),
    (lambda: from_config({"class_path": "nsr.replicators.Convolutional"}), "Convolutional"),
])
def test_invalid_arguments_raise_value_error_naming_them(make, name):
    with pytest.raises(ValueError, match=name):
        make()


@pytest.mark.parametrize("bad", [torch.zeros(14), torch.zeros(2, 13), torch.zeros(2, 14, dtype=torch.long), [[0.0] * 14]])
def test_wrong_shapes_or_dtypes_raise_value_error(bad):
    rep = Weightwise()
    with pytest.raises(ValueError, match=r"\bw\b|\ba\b"):
        rep.apply(bad, torch.zeros(2, 14))
    with pytest.raises(ValueError, match="w"):
        rep.samples(bad)


def test_apply_rejects_populations_of_different_sizes():
    rep = Weightwise()
    with pytest.raises(ValueError, match="same number"):
        rep.apply(torch.zeros(2, 14), torch.zeros(3, 14))
