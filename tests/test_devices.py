"""Populations on any device compute what the native CPU kernels compute: the keyed random streams
bit for bit, training and soups to float rounding. Runs on the CPU (the eager torch kernels against
the native ones) and, where torch sees a GPU, on it too (``bench/gpu_check.sh`` runs this file)."""
import pytest
import torch

from nsr import kernels, soup
from nsr.random import KeyedStream, epoch_order
from nsr.replicators import Aggregating, Recurrent, Weightwise
from nsr.training import learn_from, self_train

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    """A device whose populations run the eager torch kernels (on the CPU: the native ones switched off)."""
    before = kernels.compile_enabled()
    kernels.set_compile(request.param != "cpu")  # off on the CPU; on GPUs the eager kernels run anyway
    yield torch.device(request.param)
    kernels.set_compile(before)


def test_keyed_streams_give_the_same_bits_on_every_device(device):
    ids = torch.arange(0, 50_000, 7)
    on_cpu = KeyedStream(3, 11, ids, "train")
    there = KeyedStream(3, 11, ids.to(device), "train")
    assert torch.equal(there.keys.cpu(), on_cpu.keys)
    assert torch.equal(there.rand(5).cpu(), on_cpu.rand(5))
    assert torch.equal(there.bits(2).cpu(), on_cpu.bits(2))


def test_epoch_orders_agree_on_every_device_where_no_two_numbers_of_a_row_are_equal(device):
    P, S = 20_000, 14
    u = KeyedStream(0, 2, torch.arange(P), "train").rand(S)
    distinct = (u.sort(dim=1).values.diff(dim=1) != 0).all(dim=1)  # equal numbers: the sort decides
    on_cpu = epoch_order(P, S, generator=KeyedStream(0, 2, torch.arange(P), "train"))
    there = epoch_order(P, S, generator=KeyedStream(0, 2, torch.arange(P, device=device), "train"), device=device)
    assert there.device.type == device.type
    assert torch.equal(there.cpu()[distinct], on_cpu[distinct])


@pytest.mark.parametrize("Rep", [Weightwise, Aggregating, Recurrent])
@pytest.mark.parametrize("batch_size", [None, 1])
def test_training_on_a_device_equals_the_native_cpu_kernels_to_rounding(device, Rep, batch_size):
    rep = Rep()
    w = rep.init(300, generator=torch.Generator().manual_seed(0)) * (0.5 if Rep is Recurrent else 1.0)
    ids = torch.arange(300)
    kernels.set_compile(True)
    want = self_train(rep, w, epochs=3, batch_size=batch_size, generator=KeyedStream(0, 0, ids, "train"))
    kernels.set_compile(device.type != "cpu")
    got = self_train(rep, w.to(device), epochs=3, batch_size=batch_size,
                     generator=KeyedStream(0, 0, ids.to(device), "train"))
    assert got.device.type == device.type
    torch.testing.assert_close(got.cpu(), want, atol=1e-5, rtol=1e-4)


def test_learn_from_and_self_application_on_a_device_equal_the_native_cpu_kernels(device):
    rep = Weightwise()
    w, teachers = (rep.init(257, generator=torch.Generator().manual_seed(s)) for s in (1, 2))
    kernels.set_compile(True)
    want = learn_from(rep, w, teachers, epochs=2, generator=torch.Generator().manual_seed(3)), rep.apply(w, teachers)
    kernels.set_compile(device.type != "cpu")
    got = (learn_from(rep, w.to(device), teachers.to(device), epochs=2, generator=torch.Generator().manual_seed(3)),
           rep.apply(w.to(device), teachers.to(device)))
    for a, b in zip(got, want):
        torch.testing.assert_close(a.cpu(), b, atol=1e-5, rtol=1e-4)


def test_a_soup_generation_on_a_device_equals_the_native_cpu_generation(device):
    rep = Weightwise()
    params = soup.SoupParams(seed=4, attacking_rate=0.2, learn_from_rate=0.2, train=2)
    kernels.set_compile(True)
    want, want_events = soup.generation_step(rep, soup.initial_state(rep, 400, seed=4), params)
    kernels.set_compile(device.type != "cpu")
    got, events = soup.generation_step(rep, soup.initial_state(rep, 400, seed=4, device=device), params)
    assert got.weights.device.type == device.type
    assert torch.equal(got.ids.cpu(), want.ids) and got.next_id == want.next_id
    assert {k: events[k] for k in soup.EVENT_COUNTS} == {k: want_events[k] for k in soup.EVENT_COUNTS}
    torch.testing.assert_close(got.weights.cpu(), want.weights, atol=1e-5, rtol=1e-4)
