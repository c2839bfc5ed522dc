"""Fused kernels: self-application and whole training epochs of populations.

Every replicator is a tiny network (a few dozen weights) evaluated for P particles at once. A
replicator hands its work to a *kernel family* (its ``kernel`` attribute, see
:mod:`nsr.kernels.family`): :class:`MLPKernel` (weightwise, aggregating; :mod:`nsr.kernels.mlp`)
or :class:`RNNKernel` (recurrent; :mod:`nsr.kernels.rnn`). Each family has two implementations
of the same arithmetic, picked by the drivers :func:`train`, :func:`loss_and_grad`, :func:`apply`:

- **native** (float32 on CPU): C kernels (``mlp.c``, ``rnn.c``, package data) built on first use
  (:mod:`nsr.kernels.build`); a block of 8 particles runs a whole epoch in registers (about 100
  bytes of memory traffic per particle and epoch). Threads: ``torch.get_num_threads()``.
- **eager torch** (any device and dtype, and the fallback): particle-last tensor code
  (:mod:`nsr.kernels.ops`), on CPU in cache-sized chunks of particles.

Both compute backpropagation by hand and torch.optim.SGD's update, and agree with autograd to float
rounding (tested). A particle's numbers never depend on how many particles run beside it. Switch
the native kernels off with ``NSR_COMPILE=0`` or :func:`set_compile`.

>>> import torch
>>> from nsr.replicators import Weightwise
>>> rep = Weightwise()
>>> w = rep.init(5, generator=torch.Generator().manual_seed(0))
>>> x, y = rep.samples(w)
>>> torch.allclose(rep.apply(w, w), rep.forward(w, x)[:, :, 0], atol=1e-6)
True
"""
from nsr import random as _random
from nsr.kernels import build, keyed
from nsr.kernels.driver import apply, backend, loss_and_grad, train
from nsr.kernels.family import KernelFamily
from nsr.kernels.mlp import MLPKernel
from nsr.kernels.rnn import RNNKernel

_random.use_native_hash(keyed.HASH)  # the keyed streams' hash in C (same numbers; see keyed.py)


def set_compile(enabled: bool) -> None:
    """Use the native (compiled) kernels where they apply (``True``), or only the eager torch ones."""
    build.set_enabled(enabled)


def compile_enabled() -> bool:
    """Whether the native kernels are switched on (``NSR_COMPILE=0`` switches them off)."""
    return build.enabled()


__all__ = ["KernelFamily", "MLPKernel", "RNNKernel", "apply", "backend", "compile_enabled", "loss_and_grad",
           "set_compile", "train"]
