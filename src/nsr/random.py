"""Randomness for populations.

Two sources of random numbers, interchangeable wherever nsr takes a ``generator``:

- a ``torch.Generator`` (or ``None`` for torch's global one): a stream, the usual torch way;
- a :class:`KeyedStream`: counter-based random numbers keyed by (seed, generation, particle id,
  tag). Particle i's numbers depend on nothing but its key, so a population split over devices,
  or a particle alone, draws exactly what it would draw inside the whole population.

The keyed hash is splitmix64, computed in int64 tensors (two's-complement wrap-around is the
same bit pattern as uint64 arithmetic; logical shifts are masked arithmetic shifts). On CPU the
same arithmetic runs in C when :mod:`nsr.kernels` has installed it (:func:`use_native_hash`; it
does on import): the same numbers, bit for bit, several times faster.
"""
from __future__ import annotations

import functools
import math

import torch

_MASK64 = (1 << 64) - 1


def _s64(x: int) -> int:
    """An unsigned 64-bit constant as the signed int64 with the same bits."""
    x &= _MASK64
    return x - (1 << 64) if x >= (1 << 63) else x


_GOLDEN = _s64(0x9E3779B97F4A7C15)
_C1 = _s64(0xBF58476D1CE4E5B9)
_C2 = _s64(0x94D049BB133111EB)


def _lsr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def splitmix64(z: torch.Tensor) -> torch.Tensor:
    """splitmix64 finaliser of ``z + golden`` on int64 tensors (bit-exact with the uint64 one)."""
    z = z + _GOLDEN
    z = (z ^ _lsr(z, 30)) * _C1
    z = (z ^ _lsr(z, 27)) * _C2
    return z ^ _lsr(z, 31)


def splitmix64_int(z: int) -> int:
    """Reference splitmix64 on Python ints (used for scalar keys and in tests)."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


# A native implementation of the streams' arithmetic (``nsr.kernels.keyed.HASH``), or None. Its
# methods keys, bits, rand, order return the tensors the torch code below would, or None where
# they do not apply (then the torch code runs).
_native_hash = None


def use_native_hash(impl) -> None:
    """Install ``impl`` (e.g. ``nsr.kernels.keyed.HASH``) as the keyed streams' arithmetic, or
    ``None`` for the torch code alone. Either gives the same numbers."""
    global _native_hash
    _native_hash = impl


def native_hash():
    """The installed native implementation of the keyed streams, or None."""
    return _native_hash


@functools.lru_cache(maxsize=256)
def _stream_base(seed: int, tag: str) -> int:
    """The part of a stream's key that its seed and tag decide (cached: a stream is made per epoch)."""
    return splitmix64_int(splitmix64_int(seed & _MASK64) ^ _tag_hash(tag))


def _tag_hash(tag: str) -> int:
    h = 0
    for ch in tag.encode():
        h = splitmix64_int(h ^ ch)
    return h


class KeyedStream:
    """Random numbers for particles ``ids``, keyed by ``(seed, generation, id, tag)``.

    Each call to :meth:`rand` returns a fresh ``[len(ids), n]`` block; row i depends only on
    the key of ``ids[i]`` and on how many numbers this stream has already handed out per row.

    >>> s = KeyedStream(seed=0, generation=3, ids=torch.arange(4), tag="attack")
    >>> s.rand(2).shape
    torch.Size([4, 2])
    """

    def __init__(self, seed: int, generation: int, ids: torch.Tensor, tag: str = ""):
        base = splitmix64_int(_stream_base(int(seed), str(tag)) ^ (int(generation) & _MASK64))
        ids = torch.as_tensor(ids, dtype=torch.int64)
        keys = _native_hash.keys(ids, _s64(base)) if _native_hash is not None else None
        self.keys = keys if keys is not None else splitmix64(ids * _C2 + _s64(base))  # [P]
        self.counter = 0
        self.device = ids.device

    @classmethod
    def from_keys(cls, keys: torch.Tensor) -> "KeyedStream":
        """A stream with the given per-particle keys ``[P]`` (int64), e.g. those of several
        generations' streams side by side (:func:`generation_keys`)."""
        stream = cls.__new__(cls)
        stream.keys, stream.counter, stream.device = keys, 0, keys.device
        return stream

    def __len__(self) -> int:
        return self.keys.shape[0]

    def bits(self, n: int) -> torch.Tensor:
        """``[P, n]`` int64 random bit patterns."""
        if _native_hash is not None:
            out = _native_hash.bits(self.keys, self.counter, n)
            if out is not None:
                self.counter += n
                return out
        j = torch.arange(self.counter, self.counter + n, dtype=torch.int64, device=self.device)
        self.counter += n
        return splitmix64(self.keys[:, None] + j[None, :] * _GOLDEN)

    def rand(self, n: int) -> torch.Tensor:
        """``[P, n]`` float32 uniform in [0, 1) (24 random bits each)."""
        if _native_hash is not None:
            out = _native_hash.rand(self.keys, self.counter, n)
            if out is not None:
                self.counter += n
                return out
        return _lsr(self.bits(n), 40).to(torch.float32) * (1.0 / (1 << 24))


def generation_keys(seed: int, generations, ids: torch.Tensor, tag: str = "") -> torch.Tensor:
    """``[G, P]`` int64: row g holds the keys of ``KeyedStream(seed, generations[g], ids, tag)``."""
    ids = torch.as_tensor(ids, dtype=torch.int64)
    bases = [_s64(splitmix64_int(_stream_base(int(seed), str(tag)) ^ (int(g) & _MASK64))) for g in generations]
    return splitmix64(ids[None, :] * _C2 + torch.tensor(bases, dtype=torch.int64, device=ids.device)[:, None])


def epoch_orders(seed: int, generations, ids: torch.Tensor, tag: str, S: int) -> torch.Tensor:
    """``[G, P, S]``: row g is ``epoch_order(P, S, True, KeyedStream(seed, generations[g], ids, tag))``,
    the visiting orders of several epochs in one pass (each stream's first S numbers)."""
    keys = generation_keys(seed, generations, ids, tag)  # [G, P]
    G, P = keys.shape
    return epoch_order(G * P, S, True, KeyedStream.from_keys(keys.reshape(-1))).reshape(G, P, S)


def uniform(generator, P: int, n: int, device=None) -> torch.Tensor:
    """``[P, n]`` uniform [0, 1) numbers from a torch generator, ``None`` or a :class:`KeyedStream`."""
    if isinstance(generator, KeyedStream):
        if len(generator) != P:
            raise ValueError(f"generator: a KeyedStream for {len(generator)} particles, {P} needed")
        return generator.rand(n).to(device) if device is not None else generator.rand(n)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator: expected a torch.Generator, a KeyedStream or None, got {type(generator).__name__}")
    dev = generator.device if generator is not None else device
    u = torch.rand(P, n, generator=generator, device=dev)
    return u.to(device) if device is not None else u


def normal_from_uniform(u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
    """Standard normal numbers from two uniform tensors (Box-Muller)."""
    u1 = u1.clamp_min(1e-12)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)


def random_indices(u: torch.Tensor, n: int) -> torch.Tensor:
    """Integers uniform in [0, n) from uniforms ``u`` (any shape)."""
    return (u * n).long().clamp_(max=n - 1)


def add_noise(w: torch.Tensor, scale: float, generator=None) -> torch.Tensor:
    """Noise at scale s: each weight +- U(0, 1) * s, the sign chosen with probability 1/2."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
        raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
    P, W = w.shape
    u = uniform(generator, P, 2 * W, device=w.device).to(w.dtype)  # [P, 2W]
    sign = torch.where(u[:, W:] < 0.5, -1.0, 1.0).to(w.dtype)
    return w + sign * u[:, :W] * scale


def epoch_order(P: int, S: int, shuffle: bool = True, generator=None, device=None) -> torch.Tensor:
    """``[P, S]``: the order in which each particle visits its S samples this epoch (an
    independent random permutation per particle when shuffling)."""
    if not shuffle or S == 1:
        return torch.arange(S, device=device).expand(P, S)
    if isinstance(generator, KeyedStream) and _native_hash is not None and len(generator) == P:
        order = _native_hash.order(generator.keys, generator.counter, S)  # the argsort below, fused
        if order is not None:
            generator.counter += S
            return order.to(device) if device is not None else order
    return uniform(generator, P, S, device=device).argsort(dim=1)
