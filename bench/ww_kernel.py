"""The weightwise full-batch self-training kernel alone, timed side by side with another version
of ``mlp.c``: the native call ``nsr_mlp_train`` on a preallocated output, no Python in between.

    python bench/ww_kernel.py [--baseline REV] [--P 100000] [--epochs 1 10] [--rounds 7] [--parts]

Both libraries are built from ``common.h``, ``mlp_weightwise.h`` and ``mlp.c`` (this tree's, and
those of git revision ``REV``, default HEAD) with the kernels' flags, loaded in one process and called alternately,
``rounds`` times each; the best CPU time per call is kept (the machine is shared: the minimum is
the least disturbed). Prints ns of CPU per particle-step for each epoch count, the per-epoch
cost from the difference (the step loops alone) and the rest (reading and writing the population
once per call), and checks that both give the same bits. ``--parts`` also times the two halves
of this tree's weightwise full-batch code apart: the step and SGD update of each particle block
alone (the blocks' genomes already in lanes, in L1), and the blocks' reading and writing alone
(the transposes in registers and the memory traffic of ``P`` genomes in and out).
"""
from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import time

import torch

from nsr.kernels import build
from nsr.kernels.mlp import LIBRARY
from nsr.replicators import Weightwise

import ceiling  # bench/ceiling.py (this script's folder is on the path)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ("common.h", "mlp_weightwise.h", "mlp.c")


def sources_at(rev: str | None) -> dict[str, str]:
    """``{file: text}`` of the kernel sources in this tree (None) or at git revision ``rev``."""
    if rev is None:
        return {f: build.read_source(f) for f in FILES}
    out = {}
    for f in FILES:  # (older revisions lack some files)
        res = subprocess.run(["git", "show", f"{rev}:src/nsr/kernels/{f}"], cwd=ROOT, capture_output=True, text=True)
        if res.returncode == 0:
            out[f] = res.stdout
    return out


def load(name: str, sources: dict[str, str]) -> ctypes.CDLL:
    lib = ctypes.CDLL(build.compile_library(name, sources))
    LIBRARY.signatures["nsr_mlp_train"].bind(lib)
    return lib


def caller(lib, activation: str, P: int, epochs: int, w, out, loss, ids, lr):
    """A function running ``epochs`` full-batch self-training epochs of ``w`` into ``out``."""
    dims = (ctypes.c_int * 4)(4, 2, 2, 1)
    act = ["linear", "tanh", "sigmoid", "relu"].index(activation)
    sig = LIBRARY.signatures["nsr_mlp_train"]
    args = dict(P=P, w=w.data_ptr(), w_out=out.data_ptr(), vel=None, vel_init=0, loss=loss.data_ptr(), mode=1,
                src=None, self_samples=1, X=None, Y=None, S=14, ids=ids.data_ptr(), order=None, batch=14,
                lr=lr.data_ptr(), lr_stride=0, mom=0.0, epochs=epochs, L=3, dims=dims, act=act, specialised=1)

    def call():
        rc = sig(lib, **args)
        assert rc == 0, rc
    return call


PARTS = r"""
#include "mlp_impl.h"
/* the step and SGD update of nb blocks, their genomes read from and written to 64 blocks of
   lanes (L1): no transposes, no population */
int nsr_ww_step_only(int64_t nb, const float* ids, float lr, float* sink) {
    static vf wv[64 * 14], ov[64 * 14];
    vf idv[42];
    for (int i = 0; i < 42; ++i) idv[i] = (vf){0} + ids[i];
    for (int i = 0; i < 64 * 14; ++i) wv[i] = (vf){0} + 0.01f * (float)(i % 97 - 48);
    const vf lrl = (vf){0} + lr;
    vf s = {0};
    for (int64_t b = 0; b < nb; ++b) {
        vf wl[14], gl[14];
        memcpy(wl, wv + 14 * (b & 63), sizeof wl);
        s = s + ww4221_step(LINEAR, wl, wl, idv, gl);
        int vinit = 0;
        sgd(14, wl, gl, NULL, &vinit, lrl, 0.0f);
        memcpy(ov + 14 * (b & 63), wl, sizeof wl);
    }
    *sink = s[0] + ov[0][0];
    return 0;
}
/* reading and writing P genomes [P, 14] as the kernel does, nothing in between */
int nsr_ww_io_only(int64_t P, const float* w, float* out) {
    for (int64_t p0 = 0; p0 < P; p0 += LN) {
        const int64_t np = P - p0 < LN ? P - p0 : LN;
        vf b[14];
        ww_load_rows(b, w, p0, np);
        ww_store_rows(out, b, p0, np);
    }
    return 0;
}
"""


def parts(P: int, rounds: int, ids, w) -> dict:
    """ns per particle of the step and update alone and of the population's reading and writing
    alone (this tree's code, see PARTS)."""
    src = sources_at(None)
    lib = ctypes.CDLL(build.compile_library("ww_parts", {"common.h": src["common.h"], "mlp_weightwise.h":
                                                         src["mlp_weightwise.h"], "mlp_impl.h": src["mlp.c"],
                                                         "parts.c": PARTS}))
    lib.nsr_ww_step_only.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_float, ctypes.c_void_p]
    lib.nsr_ww_io_only.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    out, sink = torch.empty(P, 14), torch.empty(1)
    best = best_times({"step and update alone": lambda: lib.nsr_ww_step_only(P // 16, ids.data_ptr(), 0.01,
                                                                                sink.data_ptr()),
                       "reading and writing alone": lambda: lib.nsr_ww_io_only(P, w.data_ptr(), out.data_ptr())},
                      rounds)
    return {k: v / P * 1e9 for k, v in best.items()}


def best_times(calls: dict, rounds: int, min_time: float = 0.05) -> dict:
    """Best CPU seconds per call of each function, measured alternately, ``rounds`` times."""
    n = {}
    for key, fn in calls.items():
        fn()
        k = 1
        while True:
            t0 = time.process_time()
            for _ in range(k):
                fn()
            if time.process_time() - t0 >= min_time:
                break
            k *= 2
        n[key] = k
    best = {key: float("inf") for key in calls}
    for _ in range(rounds):
        for key, fn in calls.items():
            t0 = time.process_time()
            for _ in range(n[key]):
                fn()
            best[key] = min(best[key], (time.process_time() - t0) / n[key])
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default="HEAD", help="git revision of the other mlp.c (default HEAD)")
    ap.add_argument("--P", type=int, default=100_000)
    ap.add_argument("--epochs", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--activation", default="linear")
    ap.add_argument("--parts", action="store_true", help="also time the step and the population's I/O apart")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    libs = {"baseline": load("ww_baseline", sources_at(args.baseline)), "tree": load("ww_tree", sources_at(None))}
    rep = Weightwise(activation=args.activation)
    P = args.P
    w = rep.init(P, generator=torch.Generator().manual_seed(0)).contiguous()
    ids = rep.kernel.ids("cpu").contiguous()
    lr = torch.tensor([0.01])
    outs = {k: (torch.empty(P, 14), torch.empty(P)) for k in libs}
    calls = {}
    for e in args.epochs:
        for k, lib in libs.items():
            calls[(k, e)] = caller(lib, args.activation, P, e, w, *outs[k], ids, lr)
    for e in args.epochs:  # the same bits
        for k in libs:
            calls[(k, e)]()
        same = torch.equal(outs["baseline"][0], outs["tree"][0]) and torch.equal(outs["baseline"][1], outs["tree"][1])
        print(f"epochs={e}: same bits: {same}")
        if not same:
            return 1
    best = best_times(calls, args.rounds)
    for k in libs:
        ns = {e: best[(k, e)] / P * 1e9 for e in args.epochs}
        line = "  ".join(f"{e} epoch(s): {ns[e] / e:.2f} ns/particle-step" for e in args.epochs)
        if len(args.epochs) >= 2:
            e0, e1 = min(args.epochs), max(args.epochs)
            step = (ns[e1] - ns[e0]) / (e1 - e0)
            line += f"  | per epoch {step:.2f} ns, once per call {ns[e0] - e0 * step:.2f} ns"
        print(f"{k:9s} {line}")
    if args.parts:
        for k, ns in parts(P, args.rounds, ids, w).items():
            print(f"tree, {k}: {ns:.2f} ns per particle")
        peak, flops = ceiling.peak(repeats=args.rounds), ceiling.mlp_flops([4, 2, 2, 1], 14)
        floor = flops / peak["mul_add_gflops"]
        e0 = min(args.epochs)
        tree_ns = best[("tree", e0)] / P * 1e9 / e0
        print(f"compute ceiling {peak['mul_add_gflops']:.1f} GFLOP/s (bench/ceiling.py): floor {floor:.2f} ns per "
              f"particle-step; tree, {e0} epoch(s) a call: {floor / tree_ns:.0%} of the ceiling")
    return 0


if __name__ == "__main__":
    sys.exit(main())
