"""The fixpoint tests of a population in C (``classify.c``): given the genomes ``w``, their
self-applications F(w) and the second-order outputs, every particle's class and fixpoint distance
and the sums of the fixpoint scalars, in one pass instead of a dozen torch passes. The same
comparisons as :func:`nsr.fixpoints.classify_and_distance` (tested bit for bit); the per-epoch
measurement of a small population (``FixpointMonitor``) is otherwise mostly the overhead of
those torch calls. Returns None where it does not apply (not float32 CPU tensors, the native
kernels switched off or not built); the torch code then runs."""
from __future__ import annotations

import ctypes
from typing import NamedTuple, Optional

import torch

from nsr.kernels.build import Library, Signature, f32, i64, ptr

LIBRARY = Library("classify", ["classify.c"], [
    Signature("nsr_fixpoint_tests", P=i64, W=i64, w=ptr, fw=ptr, ffw=ptr, eps=f32, loss=ptr, classes=ptr,
              distance=ptr, counts=ptr, sums=ptr),
])


class FixpointTests(NamedTuple):
    """One pass of the fixpoint tests: ``counts`` per class (divergent, zero, nontrivial,
    second_order, other), the sum and number of the finite fixpoint distances and of the finite
    losses (double), and, if asked for, ``classes`` ``LongTensor[P]`` and ``distance`` ``[P]``."""

    counts: list
    distance_sum: float
    distance_count: float
    loss_sum: float
    loss_count: float
    classes: Optional[torch.Tensor] = None
    distance: Optional[torch.Tensor] = None


def _ready(*tensors) -> bool:
    return (all(t is None or (t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous()
                              and not t.requires_grad) for t in tensors)
            and LIBRARY.load() is not None)


def applies(w: torch.Tensor) -> bool:
    """Whether :func:`fixpoint_tests` runs for genomes like ``w`` (float32 on CPU, the native
    kernels built); callers check first to skip computing its inputs for nothing."""
    return w.device.type == "cpu" and w.dtype == torch.float32 and LIBRARY.load() is not None


def fixpoint_tests(w: torch.Tensor, fw: torch.Tensor, ffw: torch.Tensor, epsilon: float,
                   loss: Optional[torch.Tensor] = None, per_particle: bool = False) -> Optional[FixpointTests]:
    """The tests of genomes ``w`` ``[P, W]`` with F(w) ``fw`` and second-order outputs ``ffw``
    (both ``[P, W]``) at tolerance ``epsilon``, and the finite sum of ``loss`` ``[P]``; None where
    the native kernels do not apply."""
    if not _ready(w, fw, ffw, loss) or fw.shape != w.shape or ffw.shape != w.shape or w.dim() != 2:
        return None
    P, W = w.shape
    counts = (ctypes.c_int64 * 5)()
    sums = (ctypes.c_double * 4)()
    classes = torch.empty(P, dtype=torch.long) if per_particle else None
    distance = torch.empty(P, dtype=torch.float32) if per_particle else None
    rc = LIBRARY.call("nsr_fixpoint_tests", P=P, W=W, w=w.data_ptr(), fw=fw.data_ptr(), ffw=ffw.data_ptr(),
                      eps=epsilon, loss=None if loss is None else loss.data_ptr(),
                      classes=None if classes is None else classes.data_ptr(),
                      distance=None if distance is None else distance.data_ptr(), counts=counts, sums=sums)
    if rc:
        raise RuntimeError(f"nsr native kernel fixpoint_tests failed with code {rc}")
    return FixpointTests(list(counts), sums[0], sums[1], sums[2], sums[3], classes, distance)
