"""Keyed randomness: a particle's numbers depend on its key alone."""
import torch

from nsr.random import KeyedStream, random_indices, splitmix64, splitmix64_int, uniform


def test_splitmix64_on_tensors_is_bit_exact_with_the_uint64_reference():
    xs = [0, 1, 2, 12345, 2**31 - 1, 2**40 + 7, 2**62 + 3, -1, -(2**63)]
    got = splitmix64(torch.tensor(xs, dtype=torch.int64)).tolist()
    want = [splitmix64_int(x & (2**64 - 1)) for x in xs]
    assert [g & (2**64 - 1) for g in got] == want


def test_a_particles_numbers_do_not_depend_on_the_population_around_it():
    whole = KeyedStream(3, 5, torch.arange(100), tag="attack")
    part = KeyedStream(3, 5, torch.arange(40, 60), tag="attack")
    a, b = whole.rand(7), part.rand(7)
    assert torch.equal(a[40:60], b)
    assert torch.equal(whole.rand(3)[40:60], part.rand(3))  # later draws stay aligned


def test_keys_seed_generation_and_tag_all_change_the_numbers():
    ids = torch.arange(10)
    base = KeyedStream(0, 0, ids, "a").rand(4)
    for other in (KeyedStream(1, 0, ids, "a"), KeyedStream(0, 1, ids, "a"), KeyedStream(0, 0, ids, "b")):
        assert not torch.equal(base, other.rand(4))
    assert torch.equal(base, KeyedStream(0, 0, ids, "a").rand(4))


def test_keyed_uniforms_are_uniform_on_the_unit_interval():
    u = KeyedStream(0, 0, torch.arange(10000)).rand(10)
    assert u.dtype == torch.float32 and (u >= 0).all() and (u < 1).all()
    assert abs(u.mean().item() - 0.5) < 0.005
    counts = torch.bincount(random_indices(u.flatten(), 10), minlength=10).float()
    assert ((counts / counts.mean() - 1).abs() < 0.05).all()


def test_uniform_accepts_a_generator_none_or_a_keyed_stream():
    g = torch.Generator().manual_seed(0)
    assert uniform(g, 3, 2).shape == (3, 2) and uniform(None, 3, 2).shape == (3, 2)
    assert uniform(KeyedStream(0, 0, torch.arange(3)), 3, 2).shape == (3, 2)
