"""The fast variants of the native kernels compute the same bits as the generic ones: mlp.c's and
rnn.c's kernels compiled for the shipped layouts (constant widths and activation) against the
generic kernels, for every activation, batch size and momentum."""
import pytest
import torch

from nsr.kernels import mlp, rnn
from nsr.replicators import ACTIVATIONS, Aggregating, Recurrent, Weightwise
from nsr.training import learn_from, self_train, train_epoch


def _train(rep, w, specialised, **kw):
    before = mlp.SPECIALISED, rnn.SPECIALISED
    mlp.SPECIALISED = rnn.SPECIALISED = specialised
    try:
        return self_train(rep, w, generator=torch.Generator().manual_seed(1), return_state=True, **kw)
    finally:
        mlp.SPECIALISED, rnn.SPECIALISED = before


@pytest.mark.parametrize("Rep", [Weightwise, Aggregating, Recurrent])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_kernels_compiled_for_the_shipped_layouts_give_the_generic_kernels_bits(Rep, activation):
    rep = Rep(activation=activation)
    assert rep.kernel.native_ready()
    w = rep.init(37, generator=torch.Generator().manual_seed(0))  # 37: full blocks and a partial one
    w = w * 0.5 if Rep is Recurrent else w  # 17 steps of recurrence stay finite
    for kw in (dict(epochs=3, batch_size=None), dict(epochs=2, batch_size=1, momentum=0.9),
               dict(epochs=1, batch_size=3, lr=torch.linspace(0.001, 0.05, 37)[:, None])):
        fast, generic = _train(rep, w, True, **kw), _train(rep, w, False, **kw)
        assert torch.isfinite(generic.weights).all()
        for a, b in zip(fast, generic):
            assert (a is None and b is None) or torch.equal(a, b), kw


def test_learn_from_through_the_compiled_layouts_equals_the_generic_kernel():
    rep = Weightwise()
    w, teachers = (rep.init(21, generator=torch.Generator().manual_seed(s)) for s in (0, 1))
    before = mlp.SPECIALISED
    try:
        out = []
        for flag in (True, False):
            mlp.SPECIALISED = flag
            out.append(learn_from(rep, w, teachers, epochs=2, generator=torch.Generator().manual_seed(2)))
    finally:
        mlp.SPECIALISED = before
    assert torch.equal(out[0], out[1])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_weightwise_full_batch_code_gives_the_generic_kernels_bits_in_every_mode(activation):
    """The weightwise full batch has code of its own (linear and relu: sample by sample, blocks
    transposed in registers): with momentum carried in and out, per-particle learning rates,
    learn_from and a partial block it still computes the generic kernel's bits."""
    rep = Weightwise(activation=activation)
    w, teachers = (rep.init(53, generator=torch.Generator().manual_seed(s)) for s in (3, 4))  # 3 blocks + 5
    lr = torch.linspace(0.001, 0.05, 53)[:, None]
    velocity = 0.1 * torch.randn(53, rep.num_weights, generator=torch.Generator().manual_seed(5))
    cases = [dict(epochs=4, batch_size=None), dict(epochs=1, batch_size=64, lr=lr),
             dict(epochs=3, batch_size=None, momentum=0.9), dict(epochs=2, batch_size=None, momentum=0.5,
                                                                 velocity=velocity, lr=lr)]
    for kw in cases:
        fast, generic = _train(rep, w, True, **kw), _train(rep, w, False, **kw)
        assert torch.isfinite(generic.weights).all() and torch.isfinite(generic.loss).all()
        for a, b in zip(fast, generic):
            assert (a is None and b is None) or torch.equal(a, b), kw
    before = mlp.SPECIALISED
    try:
        out = []
        for flag in (True, False):
            mlp.SPECIALISED = flag
            out.append(learn_from(rep, w, teachers, epochs=3, batch_size=None, lr=lr, return_state=True))
    finally:
        mlp.SPECIALISED = before
    for a, b in zip(*out):
        assert (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize("P", [1, 16, 32, 45])  # one lane; one block alone; one pair; two pairs, the last partial
@pytest.mark.parametrize("activation", ["linear", "tanh"])
def test_recurrent_blocks_interleaved_in_pairs_give_a_lone_blocks_bits(P, activation):
    """The shipped recurrent layout runs particle blocks in interleaved pairs (rnn.c); every particle
    (self-training, learning from teachers, shuffled data sequences) ends with the bits of the generic
    kernel, which runs one block at a time, whatever the number of blocks and the partner's fill."""
    rep = Recurrent(activation=activation)
    w, teachers = (rep.init(P, generator=torch.Generator().manual_seed(s)) * 0.5 for s in (0, 1))
    x, y = (torch.randn(P, 3, 6, 1, generator=torch.Generator().manual_seed(s)) * 0.5 for s in (2, 3))
    lr = torch.linspace(0.001, 0.05, P)[:, None]
    before = rnn.SPECIALISED
    try:
        out = []
        for flag in (True, False):
            rnn.SPECIALISED = flag
            out.append([
                self_train(rep, w, epochs=2, lr=lr, batch_size=None, momentum=0.9),
                learn_from(rep, w, teachers, epochs=2, generator=torch.Generator().manual_seed(4)),
                train_epoch(rep, w, x, y, lr=lr, batch_size=2, momentum=0.9,
                            generator=torch.Generator().manual_seed(5)).weights,
            ])
    finally:
        rnn.SPECIALISED = before
    for fast, generic in zip(*out):
        assert torch.isfinite(generic).all()
        assert torch.equal(fast, generic)


@pytest.mark.parametrize("P", [1, 17, 33, 70])  # one lane; full blocks and one partial; 70: four full blocks, then more
def test_recurrent_particle_alone_equals_itself_inside_full_blocks_moved_in_registers(P):
    """A full block of the shipped recurrent layout's genomes (and velocities) moves to and from lanes
    as a tile transposed in registers and a gather (scatter) of the 17th numbers (rnn.c), a partial
    block number by number: every particle, trained alone (a partial block), ends with the bits it
    gets inside the population (self-training and learning from teachers, momentum carried in and out)."""
    rep = Recurrent()
    w, teachers = (rep.init(P, generator=torch.Generator().manual_seed(s)) * 0.5 for s in (6, 7))
    velocity = 0.1 * torch.randn(P, rep.num_weights, generator=torch.Generator().manual_seed(8))
    lr = torch.linspace(0.001, 0.05, P)[:, None]

    def train(i):  # particles i (a slice) of every input
        return [self_train(rep, w[i], epochs=2, lr=lr[i], batch_size=None, momentum=0.9, velocity=velocity[i],
                           return_state=True),
                learn_from(rep, w[i], teachers[i], epochs=2, lr=lr[i], batch_size=None, momentum=0.5,
                           return_state=True)]

    together = train(slice(0, P))
    for state in together:
        assert torch.isfinite(state.weights).all() and torch.isfinite(state.loss).all()
    for p in range(P):
        for alone, inside in zip(train(slice(p, p + 1)), together):
            for a, b in zip(alone, inside):
                assert (a is None and b is None) or torch.equal(a, b[p:p + 1]), p
