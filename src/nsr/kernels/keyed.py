"""The keyed random streams' arithmetic in C (``keyed.c``): the same numbers as the torch code of
:class:`nsr.random.KeyedStream`, bit for bit (tested on many keys), without its int64 temporaries.

A million-particle soup generation hashes about 20 million keyed numbers (who attacks whom, who
learns from whom, every particle's visiting order of its samples); in torch each hash is a dozen
elementwise passes over int64 tensors, which took most of a generation. :data:`HASH` is installed
into :mod:`nsr.random` when :mod:`nsr.kernels` is imported (``nsr.random`` sits below the kernels
and never imports them); every method returns None where it does not apply (tensors off the CPU,
the native kernels switched off or not built), and the stream then computes in torch.

An epoch's visiting order (:func:`nsr.random.epoch_order`) is an argsort of a row of uniforms;
here a stable insertion sort. Where a row holds two equal numbers the order among them is
whatever torch's argsort gives, so such rows (a few per million) are sorted again by torch.
"""
from __future__ import annotations

import torch

from nsr.kernels.build import Library, Signature, i32, i64, ptr
from nsr.kernels.parallel import row, run

LIBRARY = Library("keyed", ["keyed.c"], [
    Signature("nsr_keyed_keys", P=i64, ids=ptr, base=i64, keys=ptr),
    Signature("nsr_keyed_bits", P=i64, keys=ptr, counter=i64, n=i32, out=ptr),
    Signature("nsr_keyed_rand", P=i64, keys=ptr, counter=i64, n=i32, out=ptr),
    Signature("nsr_keyed_order", P=i64, keys=ptr, counter=i64, S=i32, order=ptr, ties=ptr),
])
MAX_ORDER = 256  # samples per genome the native order takes (keyed.c)


def _ready(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype == torch.int64 and LIBRARY.load() is not None


def _numbers(fn: str, keys: torch.Tensor, counter: int, n: int, dtype) -> "torch.Tensor | None":
    """``[P, n]`` of the C function ``fn`` (``nsr_keyed_bits`` or ``nsr_keyed_rand``): numbers
    ``counter .. counter + n - 1`` of each key's stream (None where the native hash does not apply)."""
    if not _ready(keys):
        return None
    out = torch.empty(len(keys), n, dtype=dtype)
    run(fn, len(keys), lambda p0, p1: LIBRARY.call(fn, P=p1 - p0, keys=row(keys, p0), counter=counter, n=n,
                                                     out=row(out, p0)))
    return out


class NativeHash:
    """What :mod:`nsr.random` calls when installed (``nsr.random.use_native_hash``)."""

    @staticmethod
    def keys(ids: torch.Tensor, base: int):
        """``[P]`` int64: the keys of particles ``ids`` in a stream with key ``base`` (or None)."""
        if not _ready(ids) or ids.dim() != 1:
            return None
        ids = ids.contiguous()
        out = torch.empty_like(ids)
        run("keyed_keys", len(ids), lambda p0, p1: LIBRARY.call(
            "nsr_keyed_keys", P=p1 - p0, ids=row(ids, p0), base=base, keys=row(out, p0)))
        return out

    @staticmethod
    def bits(keys: torch.Tensor, counter: int, n: int):
        """``[P, n]`` int64 random bit patterns, numbers ``counter .. counter + n - 1`` (or None)."""
        return _numbers("nsr_keyed_bits", keys, counter, n, torch.int64)

    @staticmethod
    def rand(keys: torch.Tensor, counter: int, n: int):
        """``[P, n]`` float32 uniforms in [0, 1) (or None)."""
        return _numbers("nsr_keyed_rand", keys, counter, n, torch.float32)

    @staticmethod
    def order(keys: torch.Tensor, counter: int, S: int):
        """``[P, S]`` int64: ``rand(keys, counter, S).argsort(dim=1)``, computed in one pass (or None)."""
        if not _ready(keys) or not 1 <= S <= MAX_ORDER:
            return None
        P = len(keys)
        order = torch.empty(P, S, dtype=torch.int64)
        ties = torch.empty(P, dtype=torch.int8)
        run("keyed_order", P, lambda p0, p1: LIBRARY.call(
            "nsr_keyed_order", P=p1 - p0, keys=row(keys, p0), counter=counter, S=S, order=row(order, p0),
            ties=row(ties, p0)))
        tied = ties.nonzero()[:, 0]
        if tied.numel():  # equal numbers in a row: torch's argsort decides their order
            order[tied] = NativeHash.rand(keys[tied].contiguous(), counter, S).argsort(dim=1)
        return order


HASH = NativeHash()
__all__ = ["HASH", "LIBRARY", "NativeHash"]
