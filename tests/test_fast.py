"""The fused kernels (native and eager torch) compute exactly what autograd and single networks do.

Every training function of nsr runs through nsr.kernels; these tests pin both of its
backends to references that share no code with it: autograd through ``rep.forward``, a loop of
single ``nn.Module`` networks with their own ``torch.optim.SGD``, and each other.
"""
import ctypes
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from nsr.random import KeyedStream
from nsr import kernels
from nsr.kernels import build, parallel
from nsr.replicators import ACTIVATIONS, Aggregating, Recurrent, Replicator, Weightwise
from nsr.random import epoch_order
from nsr.training import batches, learn_from, self_train, sgd_step, take, train_epoch, train_epoch_steps

ALL = [Weightwise, Aggregating, Recurrent]
BACKENDS = ["native", "eager"]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run a test with the native kernels, then with the eager torch kernels."""
    before = kernels.compile_enabled()
    kernels.set_compile(request.param == "native")
    yield request.param
    kernels.set_compile(before)


def genomes(rep, P, seed=0, dtype=torch.float32):
    """Random genomes; recurrent ones at half scale so 17 steps of recurrence stay well conditioned
    (a float32 comparison then measures the kernels, not the amplification of rounding)."""
    w = rep.init(P, generator=gen(seed)).to(dtype)
    return w * 0.5 if isinstance(rep, Recurrent) else w


def reference_train(rep, w, epochs, lr, batch_size, momentum, generator, teachers=None):
    """SGD with autograd gradients through ``rep.forward``, step by step (shares no kernel code)."""
    velocity, loss = None, None
    for _ in range(epochs):
        x, y = rep.samples(w if teachers is None else teachers)
        P, S = x.shape[0], x.shape[1]
        order = epoch_order(P, S, batch_size is not None and batch_size < S, generator)
        steps = batches(order, batch_size)
        total = 0
        for idx in steps:
            l_step, g = Replicator.loss_and_grad(rep, w, take(x, idx), take(y, idx))  # autograd
            w, velocity = sgd_step(w, g, velocity, lr, momentum)
            total = total + l_step
        loss = total / len(steps)
    return w, velocity, loss


def test_the_backend_is_native_for_float32_cpu_exactly_when_the_kernels_are_built():
    # where a C compiler exists (here, and on CI) the native half of these tests must really run
    # native code; without one nsr says why and runs the eager kernels everywhere
    before = kernels.compile_enabled()
    try:
        kernels.set_compile(True)
        built = build.available()
        assert built or build.unavailable_reason()
        assert kernels.backend(torch.zeros(1, 14)) == ("native" if built else "eager")
        assert kernels.backend(torch.zeros(1, 14, dtype=torch.float64)) == "eager"
    finally:
        kernels.set_compile(before)


@pytest.mark.parametrize("Rep", ALL)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("batch_size, momentum", [(1, 0.0), (None, 0.0), (1, 0.9), (None, 0.9), (3, 0.5)])
def test_self_train_equals_autograd_sgd(backend, Rep, activation, batch_size, momentum):
    rep = Rep(activation=activation)
    w = genomes(rep, 21)  # 21: two native blocks, the second one partly empty
    got = self_train(rep, w, epochs=2, lr=0.02, batch_size=batch_size, momentum=momentum, generator=gen(1),
                     return_state=True)
    want = reference_train(rep, w, 2, 0.02, batch_size, momentum, gen(1))
    assert kernels.backend(w) == (backend if build.available() else "eager")
    assert torch.isfinite(want[0]).all()  # compare numbers, not NaNs
    torch.testing.assert_close(got.weights, want[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got.loss, want[2], atol=1e-6, rtol=1e-5)
    if momentum:  # a sum of every step's gradient: float32 rounding adds up over the 28 steps
        torch.testing.assert_close(got.velocity, want[1], atol=1e-6, rtol=1e-5)
    else:
        assert got.velocity is None


@pytest.mark.parametrize("Rep", ALL)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_eager_kernels_equal_autograd_in_float64_to_rounding(Rep, activation):
    # float64 removes float32's rounding: the hand-written backpropagation is the same function
    rep = Rep(activation=activation)
    w = genomes(rep, 5, dtype=torch.float64)
    for batch_size, momentum in [(1, 0.9), (None, 0.0), (2, 0.5)]:
        got = self_train(rep, w, epochs=3, lr=0.02, batch_size=batch_size, momentum=momentum, generator=gen(2),
                         return_state=True)
        want = reference_train(rep, w, 3, 0.02, batch_size, momentum, gen(2))
        assert torch.isfinite(want[0]).all()
        torch.testing.assert_close(got.weights, want[0], atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(got.loss, want[2], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("Rep", ALL)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_loss_and_grad_and_apply_equal_autograd_and_forward(backend, Rep, activation):
    rep = Rep(activation=activation)
    w = genomes(rep, 11, seed=1)
    x, y = rep.samples(genomes(rep, 11, seed=2))
    loss, g = rep.loss_and_grad(w, x, y)
    want_loss, want_g = Replicator.loss_and_grad(rep, w, x, y)
    torch.testing.assert_close(loss, want_loss, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(g, want_g, atol=1e-6, rtol=1e-5)
    xs, _ = rep.samples(w)
    out = rep.forward(w, xs)  # the network on its own samples
    want = {Weightwise: lambda: out[:, :, 0], Recurrent: lambda: out[:, 0, :, 0],
            Aggregating: lambda: out[:, 0, rep.chunk_of()]}[Rep]()
    torch.testing.assert_close(rep.apply(w, w), want, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("Rep", ALL)
@pytest.mark.parametrize("batch_size, momentum", [(1, 0.9), (None, 0.0), (2, 0.0)])
def test_epoch_kernel_equals_the_step_by_step_epoch_bit_for_bit(backend, Rep, batch_size, momentum):
    # the one definition of an epoch (train_epoch_steps: rep.loss_and_grad + sgd_step per step, what
    # a Lightning module runs) and the fused kernels (whole epochs) are the same floating-point operations
    rep = Rep()
    w = genomes(rep, 19)
    x, y = rep.samples(w)
    got = train_epoch(rep, w, x, y, lr=0.02, batch_size=batch_size, momentum=momentum, generator=gen(3))
    want = train_epoch_steps(rep, w, x, y, lr=0.02, batch_size=batch_size, momentum=momentum, generator=gen(3))
    assert torch.isfinite(want.weights).all()
    assert torch.equal(got.weights, want.weights)
    assert torch.equal(got.loss, want.loss)
    assert (got.velocity is None) == (want.velocity is None)
    assert want.velocity is None or torch.equal(got.velocity, want.velocity)


def test_the_step_by_step_epoch_is_loss_and_grad_then_sgd_step_in_the_epoch_order():
    rep = Weightwise(activation="tanh")
    w = genomes(rep, 5)
    x, y = rep.samples(w)
    got = train_epoch_steps(rep, w, x, y, lr=0.02, batch_size=3, momentum=0.9, generator=gen(3))
    order = epoch_order(5, x.shape[1], True, gen(3))
    v, total, steps = None, 0, batches(order, 3)
    for idx in steps:
        loss, g = rep.loss_and_grad(w, take(x, idx), take(y, idx))
        w, v = sgd_step(w, g, v, 0.02, 0.9)
        total = total + loss
    assert torch.equal(got.weights, w) and torch.equal(got.velocity, v)
    assert torch.equal(got.loss, total / len(steps))


class SingleMLP(nn.Module):
    """One weightwise or aggregating network: nn.Linear layers without biases."""

    def __init__(self, rep, genome):
        super().__init__()
        self.act = rep.activation
        self.layers = nn.ModuleList(nn.Linear(i, o, bias=False) for i, o in rep.shapes)
        with torch.no_grad():
            for layer, K in zip(self.layers, rep.kernels(genome[None])):
                layer.weight.copy_(K[0].t())

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
            x = {"linear": x, "tanh": torch.tanh(x), "sigmoid": torch.sigmoid(x), "relu": torch.relu(x)}[self.act]
        return x

    def genome(self):
        return torch.cat([layer.weight.detach().t().reshape(-1) for layer in self.layers])


class SingleRNN(nn.Module):
    """One recurrent network: stacked simple RNNs written as an explicit recurrence."""

    def __init__(self, rep, genome):
        super().__init__()
        self.act = rep.activation
        self.kernels = nn.ParameterList(nn.Parameter(K[0].clone()) for K in rep.kernels(genome[None]))

    def forward(self, seq):  # seq [T, 1]
        h_in = seq
        for K, R in zip(self.kernels[0::2], self.kernels[1::2]):
            h, outs = None, []
            for t in range(h_in.shape[0]):
                pre = h_in[t] @ K if h is None else h_in[t] @ K + h @ R
                h = {"linear": pre, "tanh": torch.tanh(pre), "sigmoid": torch.sigmoid(pre), "relu": torch.relu(pre)}[self.act]
                outs.append(h)
            h_in = torch.stack(outs)
        return h_in

    def genome(self):
        return torch.cat([K.detach().reshape(-1) for K in self.kernels])


def single_samples(rep, genome):
    """A single network's samples (inputs, targets) from its genome ``[W]``, as its own code makes them."""
    if isinstance(rep, Weightwise):
        return torch.cat([genome[:, None], rep.identifiers()], dim=1), genome[:, None]  # [W, 4], [W, 1]
    if isinstance(rep, Aggregating):
        agg = torch.stack([genome[s:e].mean() for s, e in rep.bounds])[None]  # [1, A]
        return agg, agg
    return genome[:, None], genome[:, None]  # the sequence [T, 1]


@pytest.mark.parametrize("Rep, activation", [(Weightwise, a) for a in ACTIVATIONS] + [(Aggregating, "tanh"),
                                                                                     (Recurrent, "linear")])
@pytest.mark.parametrize("batch_size, momentum", [(1, 0.0), (None, 0.9)])
def test_a_population_trains_like_a_loop_of_single_torch_networks(backend, Rep, activation, batch_size, momentum):
    rep = Rep(activation=activation)
    P, epochs, lr = 10, 2, 0.02
    w = genomes(rep, P)
    keys = KeyedStream(11, 0, torch.arange(P), "train")
    out = self_train(rep, w, epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum, generator=keys)
    # the same per-particle visiting orders, drawn up front from an identical stream
    S = rep.samples(w)[0].shape[1]
    shuffled = batch_size is not None and batch_size < S
    replay = KeyedStream(11, 0, torch.arange(P), "train")
    orders = [epoch_order(P, S, shuffled, replay) for _ in range(epochs)]  # [P, S] each
    for i in range(P):
        net = (SingleRNN if Rep is Recurrent else SingleMLP)(rep, w[i])
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
        for e in range(epochs):
            x, y = single_samples(rep, net.genome())  # fixed for the epoch
            for idx in batches(orders[e][i:i + 1], batch_size):
                opt.zero_grad()
                # a recurrent network has one sample, its whole sequence
                loss = nn.functional.mse_loss(net(x), y) if Rep is Recurrent else nn.functional.mse_loss(
                    net(x[idx[0]]), y[idx[0]])
                loss.backward()
                opt.step()
        torch.testing.assert_close(out[i], net.genome(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("Rep", ALL)
def test_a_particle_gives_identical_bits_alone_and_in_any_population(backend, Rep):
    rep = Rep(activation="tanh")
    w = genomes(rep, 37)
    applied = rep.apply(w, w)
    trained = self_train(rep, w, epochs=2, lr=0.05, batch_size=1, momentum=0.9,
                         generator=KeyedStream(5, 0, torch.arange(37)))
    x, y = rep.samples(w)
    loss, g = rep.loss_and_grad(w, x, y)
    for i in (0, 7, 8, 15, 16, 36):  # the edges of native blocks of 8 and 16
        one = w[i:i + 1]
        assert torch.equal(rep.apply(one, one)[0], applied[i])
        alone = self_train(rep, one, epochs=2, lr=0.05, batch_size=1, momentum=0.9,
                           generator=KeyedStream(5, 0, torch.tensor([i])))
        assert torch.equal(alone[0], trained[i])
        l1, g1 = rep.loss_and_grad(one, x[i:i + 1], y[i:i + 1])
        assert torch.equal(l1[0], loss[i]) and torch.equal(g1[0], g[i])


@pytest.mark.parametrize("Rep", ALL)
def test_divergent_particles_change_no_other_particle(backend, Rep):
    rep = Rep()
    w = genomes(rep, 20)
    bad = w.clone()
    bad[3, 0], bad[9, 2], bad[16] = float("nan"), float("inf"), float("-inf")
    for f in (lambda v: rep.apply(v, v),
              lambda v: self_train(rep, v, epochs=2, lr=0.05, batch_size=1, generator=KeyedStream(1, 0, torch.arange(20))),
              lambda v: self_train(rep, v, epochs=2, lr=0.05, batch_size=None, momentum=0.9)):
        clean, dirty = f(w), f(bad)
        keep = [i for i in range(20) if i not in (3, 9, 16)]
        assert torch.equal(clean[keep], dirty[keep])
        assert not torch.isfinite(dirty[[3, 9, 16]]).all(dim=1).any()


def test_learn_from_and_per_particle_learning_rates_equal_the_reference(backend):
    rep = Weightwise(activation="sigmoid")
    w, teachers = genomes(rep, 12, seed=1), genomes(rep, 12, seed=2)
    lr = torch.linspace(0.0, 0.1, 12)[:, None]  # [P, 1]
    got = learn_from(rep, w, teachers, epochs=2, lr=lr, batch_size=1, generator=gen(4))
    want = reference_train(rep, w, 2, lr, 1, 0.0, gen(4), teachers=teachers)[0]
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    assert torch.equal(got[0], w[0])  # lr 0: unchanged


def test_training_can_continue_from_a_returned_velocity(backend):
    rep = Weightwise()
    w = genomes(rep, 9)
    both = self_train(rep, w, epochs=2, lr=0.05, batch_size=None, momentum=0.9, return_state=True)
    first = self_train(rep, w, epochs=1, lr=0.05, batch_size=None, momentum=0.9, return_state=True)
    second = self_train(rep, first.weights, epochs=1, lr=0.05, batch_size=None, momentum=0.9,
                        velocity=first.velocity, return_state=True)
    assert torch.equal(both.weights, second.weights) and torch.equal(both.velocity, second.velocity)


def test_zero_epochs_change_nothing(backend):
    rep = Recurrent()
    w = genomes(rep, 4)
    state = self_train(rep, w, epochs=0, return_state=True)
    assert torch.equal(state.weights, w) and torch.isnan(state.loss).all()


def test_without_a_compiler_nsr_warns_once_and_runs_the_eager_kernels(monkeypatch):
    rep = Weightwise(activation="relu")
    w = genomes(rep, 9)
    want = self_train(rep, w, epochs=2, lr=0.05, batch_size=1, generator=gen(6))

    def no_compiler():
        raise RuntimeError("no C compiler found (set CC)")

    monkeypatch.setattr(build, "compile_library", lambda name, sources: no_compiler())
    for library in build._LIBRARIES:  # every family's native code, as if never built
        monkeypatch.setattr(library, "_lib", None)
        monkeypatch.setattr(library, "error", None)
    monkeypatch.setattr(build, "_enabled", True)
    with pytest.warns(RuntimeWarning, match="native kernels unavailable"):
        assert kernels.backend(w) == "eager"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not at every call
        got = self_train(rep, w, epochs=2, lr=0.05, batch_size=1, generator=gen(6))
    assert "no C compiler" in build.unavailable_reason()
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


def test_the_switch_turns_the_native_kernels_off_and_on():
    before = kernels.compile_enabled()
    try:
        kernels.set_compile(False)
        assert not kernels.compile_enabled() and kernels.backend(torch.zeros(2, 14)) == "eager"
        kernels.set_compile(True)
        assert kernels.backend(torch.zeros(2, 14)) == "native"
    finally:
        kernels.set_compile(before)


def test_splitting_particles_over_threads_changes_no_bit(backend):
    rep = Weightwise(activation="tanh")
    w = genomes(rep, 2 * parallel.MIN_PARTICLES_PER_THREAD + 37)  # enough for two threads
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            results.append((rep.apply(w, w), self_train(rep, w, epochs=1, lr=0.02, batch_size=1, momentum=0.9,
                                                        generator=gen(8))))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_the_cache_key_includes_the_sources_so_an_edited_kernel_is_built_anew(monkeypatch, tmp_path):
    monkeypatch.setenv("NSR_CACHE_DIR", str(tmp_path))
    one = build.compile_library("probe", {"probe.h": "#define V 1\n", "probe.c": '#include "probe.h"\nint v(void) { return V; }\n'})
    two = build.compile_library("probe", {"probe.h": "#define V 2\n", "probe.c": '#include "probe.h"\nint v(void) { return V; }\n'})
    libraries = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".so")  # beside each, its seal (.sha256)
    assert one != two and libraries == sorted([Path(one).name, Path(two).name])
    assert build.compile_library("probe", {"probe.h": "#define V 1\n", "probe.c": '#include "probe.h"\nint v(void) { return V; }\n'}) == one
    assert [ctypes.CDLL(p).v() for p in (one, two)] == [1, 2]


def test_native_kernels_are_called_with_named_arguments_only():
    sig = build.Signature("nsr_mlp_apply", P=build.i64, a=build.ptr)
    with pytest.raises(TypeError, match="'a'"):
        sig(None, P=1)
    with pytest.raises(TypeError, match="'b'"):
        sig(None, P=1, a=None, b=None)


def test_the_kernel_sources_ship_as_package_data():
    for name in ("common.h", "mlp.c", "mlp_weightwise.h", "rnn.c"):
        assert "nsr" in build.read_source(name)
