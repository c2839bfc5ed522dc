"""The native kernels' own compute ceiling: how many float32 multiplies and adds per second this
CPU retires in the instructions the kernels use (SIMD vectors of particles, mul and add apart,
no fused multiply-add), and what that makes the floor of a weightwise training epoch.

    python bench/ceiling.py

A C loop of 12 independent chains ``a = a * m + c`` over vectors of the kernels' width (compiled
like the kernels, FMA contraction off) gives the peak rate of separate multiplies and adds; the
same loop with contraction on gives the FMA rate (what a matmul reaches). The floor of a kernel is
its flops per particle-step over the peak (:func:`mlp_flops` counts them from mlp.c's loops).
"""
from __future__ import annotations

import ctypes
import sys
import time

from nsr.kernels import build

SOURCE = r"""
#include "common.h"
#define CHAINS 12
static double run(int64_t n, float m0) {
    vf a[CHAINS];
    const vf m = (vf){0} + m0, c = (vf){0} + 1e-7f;
    for (int i = 0; i < CHAINS; ++i) a[i] = (vf){0} + (float)i;
    for (int64_t k = 0; k < n; ++k)
        for (int i = 0; i < CHAINS; ++i) a[i] = a[i] * m + c;
    double s = 0;
    for (int i = 0; i < CHAINS; ++i) for (int l = 0; l < LN; ++l) s += a[i][l];
    return s;
}
double nsr_peak_mul_add(int64_t n, float m) { return run(n, m); }
__attribute__((optimize("fp-contract=fast"))) double nsr_peak_fma(int64_t n, float m) {
    vf a[CHAINS];
    const vf mm = (vf){0} + m, c = (vf){0} + 1e-7f;
    for (int i = 0; i < CHAINS; ++i) a[i] = (vf){0} + (float)i;
    for (int64_t k = 0; k < n; ++k)
        for (int i = 0; i < CHAINS; ++i) a[i] = a[i] * mm + c;
    double s = 0;
    for (int i = 0; i < CHAINS; ++i) for (int l = 0; l < LN; ++l) s += a[i][l];
    return s;
}
int nsr_lanes(void) { return LN; }
"""


def mlp_flops(dims, samples: int) -> int:
    """Flops of one full-batch step of mlp.c (linear activation) on ``samples`` samples: forward,
    loss and dL/d output, kernel gradients, deltas, SGD update; per particle."""
    B, L, W = samples, len(dims) - 1, sum(dims[k] * dims[k + 1] for k in range(len(dims) - 1))
    fwd = sum(dims[k] * dims[k + 1] + (dims[k] - 1) * dims[k + 1] for k in range(L))
    loss = 4 * dims[-1]
    grads = sum(2 * dims[k] * dims[k + 1] for k in range(L))
    deltas = sum(dims[k] * (2 * dims[k + 1] - 1) for k in range(1, L))
    return B * (fwd + loss + grads + deltas) + 2 * W


def rnn_flops(units, T: int) -> int:
    """Flops of one step of rnn.c (linear activation) on one sequence of T steps; per particle."""
    ins = [1] + list(units[:-1])
    W = sum(i * u + u * u for i, u in zip(ins, units))
    f = 4 * T + 2 * W  # loss and dL/d output of the top layer; SGD update
    for k, (din, u) in enumerate(zip(ins, units)):
        f += T * u * (2 * din - 1) + (T - 1) * 2 * u * u  # forward: input kernel, recurrent kernel (t > 0)
        f += (T - 1) * u + (T - 1) * u * (2 * u - 1)  # deltas: + carry, carry through the recurrent kernel
        f += 2 * T * din * u + 2 * (T - 1) * u * u  # kernel gradients
        if k:
            f += T * din * (2 * u - 1)  # dL/d inputs, the layer below's outputs
    return f


def train_flops(rep) -> int:
    """Flops per particle of one full-batch self-training step of a replicator in the native kernels
    (weightwise: its W samples; aggregating: its one sample of aggregates; recurrent: one sequence)."""
    fam = rep.kernel
    if hasattr(fam, "dims"):
        return mlp_flops(fam.dims, fam.num_samples)
    return rnn_flops(fam.units, rep.num_weights)


def peak(repeats: int = 5, n: int = 2_000_000) -> dict:
    """``{"lanes", "mul_add_gflops", "fma_gflops"}``: the best of ``repeats`` CPU-timed runs."""
    lib = ctypes.CDLL(build.compile_library("ceiling", {"common.h": build.read_source("common.h"), "ceiling.c": SOURCE}))
    for name in ("nsr_peak_mul_add", "nsr_peak_fma"):
        getattr(lib, name).argtypes = [ctypes.c_int64, ctypes.c_float]
        getattr(lib, name).restype = ctypes.c_double
    lanes = lib.nsr_lanes()
    out = {"lanes": lanes}
    for key, fn in (("mul_add_gflops", lib.nsr_peak_mul_add), ("fma_gflops", lib.nsr_peak_fma)):
        best = float("inf")
        for _ in range(repeats):
            start = time.process_time()
            fn(n, 0.9999)
            best = min(best, time.process_time() - start)
        out[key] = n * 12 * 2 * lanes / best / 1e9
    return out


def main() -> int:
    p = peak()
    f = mlp_flops([4, 2, 2, 1], 14)
    print(f"{p['lanes']} lanes: {p['mul_add_gflops']:.1f} GFLOP/s as separate multiplies and adds, "
          f"{p['fma_gflops']:.1f} GFLOP/s as FMA")
    print(f"weightwise (2, 2) full-batch step: {f} flops -> floor {f / p['mul_add_gflops']:.1f} ns per particle-step, "
          f"ceiling {p['mul_add_gflops'] / f * 1e3:.1f} M particle-steps/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
