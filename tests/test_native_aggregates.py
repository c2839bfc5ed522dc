"""The aggregating replicator's aggregates made inside the native kernels are torch's, bit for bit:
``b[:, s:e].mean(1)`` and ``.amax(1)`` of every chunk, on genomes of every magnitude with signed
zeros, infinities, NaNs and subnormals, for the shipped layout and others (chunks of 5 to 4000
numbers); so self-training and learn_from give the same bits as with the aggregates computed by
torch before each epoch."""
import pytest
import torch

from nsr.kernels import aggregates
from nsr.replicators import Aggregating, Weightwise
from nsr.training import learn_from, self_train

LAYOUTS = [dict(), dict(aggregates=3, width=5), dict(aggregates=2, width=40, depth=1),
           dict(aggregates=1, width=2000, depth=1)]  # chunks of 5; 18 and 19; 80; 4000 numbers


def bits(t):
    return None if t is None else t.view(torch.int32)


def torch_and_native(rep, fn):
    """``fn()`` with the aggregates made by torch, then by the native kernels."""
    out = []
    for native in (False, True):
        before = aggregates.NATIVE
        aggregates.NATIVE = native
        try:
            assert rep.kernel.reads_genome == native
            out.append(fn())
        finally:
            aggregates.NATIVE = before
    return out


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("aggregator", ["mean", "max"])
def test_native_aggregates_are_torchs_bit_for_bit_on_extreme_genomes(layout, aggregator):
    rep = Aggregating(aggregator=aggregator, **layout)
    width = aggregates.torch_vector_width(rep.bounds, aggregator)
    assert width is not None, "no vector width reproduces torch's aggregates on this machine"
    for seed in (1, 2, 3):
        b = aggregates.extreme_genomes(rep.num_weights, seed=seed, per_kind=16)
        b = torch.cat([b, rep.init(21, generator=torch.Generator().manual_seed(seed))])  # full and partial blocks
        want = aggregates.aggregate(b, rep.bounds, aggregator)
        assert torch.equal(bits(aggregates.native_aggregate(b, rep.bounds, aggregator, width)), bits(want))
        assert torch.equal(bits(rep.aggregate(b)), bits(want))
        strided = b.t().contiguous().t()  # torch orders the sums of strided rows otherwise: torch's own
        assert torch.equal(bits(rep.aggregate(strided)), bits(aggregates.aggregate(strided, rep.bounds, aggregator)))


@pytest.mark.parametrize("layout", LAYOUTS[:3])
@pytest.mark.parametrize("aggregator,activation", [("mean", "linear"), ("max", "linear"), ("mean", "tanh"),
                                                   ("max", "relu")])
def test_self_training_on_native_aggregates_gives_the_bits_of_torchs_aggregates(layout, aggregator, activation):
    rep = Aggregating(aggregator=aggregator, activation=activation, **layout)
    w = torch.cat([rep.init(21, generator=torch.Generator().manual_seed(0)),
                   aggregates.extreme_genomes(rep.num_weights, seed=4, per_kind=4)])  # 37: NaNs, infinities, ...
    lr = torch.linspace(0.001, 0.05, w.shape[0])[:, None]
    for kw in (dict(epochs=3, batch_size=None), dict(epochs=2, batch_size=1, momentum=0.9), dict(epochs=2, lr=lr)):
        torch_run, native_run = torch_and_native(rep, lambda: self_train(
            rep, w, generator=torch.Generator().manual_seed(1), return_state=True, **kw))
        for a, b in zip(torch_run, native_run):
            assert (a is None and b is None) or torch.equal(bits(a), bits(b)), kw


@pytest.mark.parametrize("aggregator", ["mean", "max"])
def test_learn_from_on_native_aggregates_gives_the_bits_of_torchs_aggregates(aggregator):
    rep = Aggregating(aggregator=aggregator)
    w, teachers = (rep.init(37, generator=torch.Generator().manual_seed(s)) for s in (0, 1))
    teachers[::5] = aggregates.extreme_genomes(rep.num_weights, seed=5, per_kind=2)[:8]
    for kw in (dict(epochs=3, batch_size=None), dict(epochs=2, batch_size=1, momentum=0.9)):
        torch_run, native_run = torch_and_native(rep, lambda: learn_from(
            rep, w, teachers, generator=torch.Generator().manual_seed(2), return_state=True, **kw))
        for a, b in zip(torch_run, native_run):
            assert (a is None and b is None) or torch.equal(bits(a), bits(b)), kw


def test_a_layout_whose_sums_torch_orders_otherwise_keeps_torchs_aggregates(monkeypatch):
    rep = Aggregating(aggregates=3, width=5)  # chunks of 18 numbers: their sums depend on the vector width
    monkeypatch.setattr(aggregates, "VECTOR_WIDTHS", (4,))  # a width torch's kernels do not use here
    monkeypatch.setattr(aggregates, "_widths", {})
    assert aggregates.torch_vector_width(rep.bounds, "mean") is None
    assert not rep.kernel.reads_genome  # so the driver hands torch's aggregates to the kernel
    w = rep.init(19, generator=torch.Generator().manual_seed(0))
    b = aggregates.extreme_genomes(rep.num_weights, seed=6, per_kind=8)
    assert torch.equal(bits(rep.aggregate(b)), bits(aggregates.aggregate(b, rep.bounds, "mean")))
    fallback = self_train(rep, w, epochs=2, batch_size=None)
    monkeypatch.setattr(aggregates, "NATIVE", False)
    assert torch.equal(bits(fallback), bits(self_train(rep, w, epochs=2, batch_size=None)))


@pytest.mark.parametrize("rep", [Weightwise(), Aggregating()] + [Aggregating(aggregates=1, width=k, depth=1)
                                                               for k in (1, 2, 3, 7, 8, 9, 17, 25)])
def test_a_step_of_learning_rate_zero_returns_every_genome_unchanged(rep):
    """Genomes move in and out of the native kernels' particle blocks (W = 2 .. 50 numbers, full
    blocks and a partial one) without a bit changed."""
    w = rep.init(37, generator=torch.Generator().manual_seed(0))
    assert torch.equal(bits(self_train(rep, w, epochs=1, lr=0.0, batch_size=None)), bits(w))
