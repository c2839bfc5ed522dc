"""Calling native kernels: output tensors, particle rows as pointers, and the population split
over torch's threads (ctypes releases the GIL, so the threads run in parallel).

A particle's numbers never depend on how the population is split: each thread runs whole
particle blocks of its range.
"""
from __future__ import annotations

import ctypes
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import torch

MIN_PARTICLES_PER_THREAD = 2048
HUGE_PAGE_BYTES = 1 << 21
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0  # a forked child gets the object but not the threads: it makes its own pool
_madvise = None


def empty(*shape) -> torch.Tensor:
    """A new float32 tensor for a kernel's output. Large ones are backed by transparent huge pages
    where Linux offers them (``madvise``): the first write then faults 512x fewer pages, which
    otherwise costs more than the kernel itself at a million particles."""
    global _madvise
    t = torch.empty(*shape, dtype=torch.float32)
    n = t.numel() * 4
    if n >= 8 * HUGE_PAGE_BYTES and sys.platform.startswith("linux"):
        try:
            if _madvise is None:
                libc = ctypes.CDLL(None, use_errno=True)
                libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                _madvise = libc.madvise
            p = t.data_ptr()
            start = (p + HUGE_PAGE_BYTES - 1) // HUGE_PAGE_BYTES * HUGE_PAGE_BYTES
            length = (p + n - start) // HUGE_PAGE_BYTES * HUGE_PAGE_BYTES
            if length > 0:
                _madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), 14)  # MADV_HUGEPAGE
        except (OSError, AttributeError, TypeError):
            _madvise = False
    return t


def run(fn, P: int, call):
    """``call(p0, p1)`` over particle ranges, in parallel on ``torch.get_num_threads()`` threads."""
    global _pool, _pool_pid
    if P < 2 * MIN_PARTICLES_PER_THREAD:  # one thread: no split (small populations call this every epoch)
        rc = call(0, P)
        if rc:
            raise RuntimeError(f"nsr native kernel {fn} failed with code {rc}")
        return
    n = max(1, min(torch.get_num_threads(), P // MIN_PARTICLES_PER_THREAD))
    bounds = [(P * i // n, P * (i + 1) // n) for i in range(n)]
    if n == 1:
        rcs = [call(0, P)]
    else:
        if _pool is None or _pool._max_workers < n or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="nsr-kernel")
            _pool_pid = os.getpid()
        rcs = list(_pool.map(lambda b: call(*b), bounds))
    if any(rcs):
        raise RuntimeError(f"nsr native kernel {fn} failed with code {max(rcs)}")


_arrays: dict = {}


def int_array(values):
    """A cached C int array of ``values`` (layer widths)."""
    key = tuple(values)
    if key not in _arrays:
        _arrays[key] = (ctypes.c_int * len(key))(*key)
    return _arrays[key]


def row(t, p0):
    """Pointer to row p0 of a contiguous particle-first tensor (None stays None)."""
    return None if t is None else ctypes.c_void_p(t.data_ptr() + p0 * t.stride(0) * t.element_size())


def pointer(t):
    """A tensor's data pointer (a ctypes array, e.g. a scalar learning rate, passes as it is)."""
    if t is None or isinstance(t, ctypes.Array):
        return t
    return ctypes.c_void_p(t.data_ptr())
