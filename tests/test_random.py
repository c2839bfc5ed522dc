"""Keyed randomness: a particle's numbers depend on its key alone."""
import torch

from nsr.random import KeyedStream, epoch_order, random_indices, splitmix64, splitmix64_int, uniform


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


# ---- the native hash (nsr.kernels.keyed) against the torch code ---------------------------------------
def _torch_only(fn):
    """``fn()`` computed by the torch code of the keyed streams alone."""
    import nsr.random as nr

    impl = nr.native_hash()
    nr.use_native_hash(None)
    try:
        return fn()
    finally:
        nr.use_native_hash(impl)


def test_the_native_hash_is_installed_and_builds():
    import nsr.random as nr
    from nsr.kernels import keyed

    assert nr.native_hash() is keyed.HASH and keyed.LIBRARY.load() is not None


def test_native_keyed_streams_give_the_torch_streams_numbers_bit_for_bit_on_many_keys():
    g = torch.Generator().manual_seed(0)
    ids = torch.cat([torch.arange(5000), torch.randint(-(2**62), 2**62, (5000,), generator=g),
                     torch.tensor([2**63 - 1, -(2**63), -1])])
    for seed, generation, tag in [(0, 0, ""), (3, 7, "attack"), (2**40 + 1, 123456, "train"), (1, 2**62, "respawn")]:
        def draws():
            s = KeyedStream(seed, generation, ids, tag)
            return s.keys, s.rand(3), s.bits(2), s.rand(14), s.counter

        native, torch_only = draws(), _torch_only(draws)
        for a, b in zip(native, torch_only):
            assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))


def test_native_epoch_order_equals_torch_argsort_of_the_same_uniforms_ties_included():
    from nsr.kernels import keyed
    from nsr.random import epoch_order

    for S, P in [(2, 3000), (14, 20000), (17, 3000), (256, 3000)]:
        s = KeyedStream(5, 1, torch.arange(P), "train")
        u = s.rand(S)
        ties = (u.sort(dim=1).values.diff(dim=1) == 0).any(dim=1)
        native = epoch_order(P, S, generator=KeyedStream(5, 1, torch.arange(P), "train"))
        reference = _torch_only(lambda: epoch_order(P, S, generator=KeyedStream(5, 1, torch.arange(P), "train")))
        assert torch.equal(native, reference) and torch.equal(native, u.argsort(dim=1)), S
        if S == 256:
            assert ties.sum() > 0  # rows with equal numbers were among them
        stream = KeyedStream(5, 1, torch.arange(P), "train")
        assert torch.equal(keyed.HASH.order(stream.keys, 0, S), reference)


def test_the_native_hash_gives_the_same_numbers_on_any_number_of_threads():
    before = torch.get_num_threads()
    draws = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            s = KeyedStream(9, 4, torch.arange(10_000), "train")
            draws.append((s.keys, s.rand(3), s.bits(1), epoch_order(10_000, 14, generator=s)))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*draws):
        assert torch.equal(a, b)
