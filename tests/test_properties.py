"""Property-based tests: replicators and fixpoint functions on random shapes and values, inf and
NaN included. Whatever the genome, nothing raises, shapes hold and particles stay independent."""
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nsr.fixpoints import FixpointClass, classify, distance
from nsr.replicators import ACTIVATIONS, Aggregating, Recurrent, Weightwise
from nsr.training import self_train

values = st.one_of(st.floats(-10, 10, width=32), st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1e30]))


@st.composite
def populations(draw):
    kind = draw(st.sampled_from(["weightwise", "aggregating", "recurrent"]))
    width, depth = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    act = draw(st.sampled_from(ACTIVATIONS))
    if kind == "weightwise":
        rep = Weightwise(width=width, depth=depth, activation=act)
    elif kind == "aggregating":
        rep = Aggregating(aggregates=draw(st.integers(1, 4)), width=width, depth=depth, activation=act,
                          aggregator=draw(st.sampled_from(["mean", "max"])))
    else:
        rep = Recurrent(width=width, depth=depth, activation=act)
    P = draw(st.integers(1, 4))
    flat = draw(st.lists(values, min_size=P * rep.num_weights, max_size=P * rep.num_weights))
    return rep, torch.tensor(flat, dtype=torch.float32).view(P, rep.num_weights)


@settings(max_examples=60, deadline=None)
@given(populations())
def test_classification_is_total_and_consistent_with_the_definitions(case):
    rep, w = case
    c = classify(rep, w)
    d = distance(rep, w)
    assert c.shape == d.shape == (w.shape[0],)
    assert ((c >= 0) & (c <= 4)).all()
    divergent = ~torch.isfinite(w).all(1)
    assert torch.equal(c == FixpointClass.DIVERGENT, divergent)
    fixed = (c == FixpointClass.ZERO) | (c == FixpointClass.NONTRIVIAL)
    assert (d[fixed] < 1e-4).all()  # a fixpoint is within epsilon of its self-application
    assert (d[divergent] == math.inf).all()


@settings(max_examples=40, deadline=None)
@given(populations())
def test_each_particle_is_computed_as_if_alone(case):
    rep, w = case
    together = rep.apply(w, w)
    trained = self_train(rep, w, epochs=1, batch_size=None)
    for i in range(w.shape[0]):
        alone = rep.apply(w[i:i + 1], w[i:i + 1])[0]
        assert torch.equal(alone.isnan(), together[i].isnan())
        torch.testing.assert_close(alone, together[i], equal_nan=True, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(self_train(rep, w[i:i + 1], epochs=1, batch_size=None)[0], trained[i],
                                   equal_nan=True, atol=1e-4, rtol=1e-4)
