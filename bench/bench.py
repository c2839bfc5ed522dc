"""nsr's benchmark: populations as one tensor against a loop of single torch networks.

    python bench/bench.py --quick                 # under a minute: P up to 10^5, one thread
    python bench/bench.py                         # P up to 10^6, 1 and 2 threads, memory, Lightning
    python bench/bench.py --json results.json     # also write the rows
    python bench/bench.py --device cuda           # populations on the GPU (the loop too)
    python bench/bench.py --quick --no-fit        # leave out the `nsr fit` rows

Besides the throughput table it measures (in modules of its own, each also a command):
the phases of a soup generation at P = 10^4 .. 10^6 (``bench/soup_phases.py``), ``nsr fit`` end
to end on every shipped config (``bench/fit_configs.py``; under ``--quick`` only the paper's run,
shrunk to 50 epochs) and the native kernels' own compute ceiling (``bench/ceiling.py``).

For weightwise, aggregating and recurrent (2, 2) replicators it times, side by side in one process:
self-application (``rep.apply``), one full-batch and one batch-size-1 self-training epoch
(``nsr.training.self_train``), classification (``nsr.fixpoints.classify``) and one soup generation
(``nsr.soup.generation_step``: attack 0.1, learn_from 0.1, train 1, respawn), at several population
sizes P, each against the same thing done by a Python loop over single networks, one ``nn.Module``
and one ``torch.optim.SGD`` each (the published PyTorch code's way). The loop is timed on a few
networks and extrapolated per network (its cost is linear in the number of networks).

A *particle-step* is one unit of work of one particle: a self-application, an SGD step (a
full-batch epoch is one step, a batch-size-1 epoch of weightwise is 14), a classification, a
generation. ``ratio_vs_loop`` = nsr's particle-steps per second / the loop's. Every time is the
best of ``--repeats`` runs (the median and the spread are in the JSON). Threads are pinned with
``torch.set_num_threads`` (the native kernels split particles over the same number of threads).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # bench/lightning_overhead.py, soup_phases.py, fit_configs.py, ceiling.py

from nsr import soup  # noqa: E402
from nsr.fixpoints import classify  # noqa: E402
from nsr import kernels  # noqa: E402
from nsr.kernels import build  # noqa: E402
from nsr.replicators import Aggregating, Recurrent, Weightwise  # noqa: E402
from nsr.training import self_train  # noqa: E402

import ceiling  # noqa: E402
import fit_configs  # noqa: E402
import soup_phases  # noqa: E402

ARCHS = {"weightwise": Weightwise, "aggregating": Aggregating, "recurrent": Recurrent}
OPS = ("apply", "train_full", "train_b1", "classify", "soup")
SOUP = dict(attacking_rate=0.1, learn_from_rate=0.1, learn_from_severity=1, train=1)
LR = 0.01


# ---- timing ------------------------------------------------------------------------------------------
def timed(fn, repeats: int, min_time: float) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds per call of ``fn``, ``repeats`` times each; calls are batched so one
    timing lasts >= min_time. (CPU time leaves out the time the scheduler gave to other processes.)"""
    fn()  # warm-up (and native kernels built)
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - start
        if t >= min_time or n >= 1 << 16:
            break
        n = max(n * 2, int(n * min_time / max(t, 1e-9)) + 1)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        cpu.append((time.process_time() - start_cpu) / n)
        wall.append((time.perf_counter() - start) / n)
    return wall, cpu


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---- nsr: one batched call per operation --------------------------------------------------------------
def steps_per_call(rep, op: str) -> int:
    """Particle-steps per particle of one call of ``op`` (SGD steps for training)."""
    if op == "train_b1":
        return rep.num_weights if isinstance(rep, Weightwise) else 1
    return 1


def nsr_call(rep, op: str, P: int, device):
    g = torch.Generator(device="cpu").manual_seed(0)
    w = rep.init(P, generator=g).to(device)
    if op == "apply":
        return lambda: (rep.apply(w, w), sync(device))
    if op == "train_full":
        return lambda: (self_train(rep, w, epochs=1, lr=LR, batch_size=None), sync(device))
    if op == "train_b1":
        return lambda: (self_train(rep, w, epochs=1, lr=LR, batch_size=1, generator=g if device.type == "cpu" else None),
                        sync(device))
    if op == "classify":
        return lambda: (classify(rep, w), sync(device))
    state = soup.initial_state(rep, P, seed=0, device=device)
    state = soup.generation_step(rep, state, seed=0, **SOUP)[0]  # past the first generation's respawns
    return lambda: (soup.generation_step(rep, state, seed=0, **SOUP), sync(device))


# ---- the loop: single torch networks, one nn.Module and one optimizer each ---------------------------
ACT = {"linear": lambda x: x, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}


class SingleMLP(nn.Module):
    """One weightwise or aggregating network: dense layers without biases."""

    def __init__(self, rep, genome):
        super().__init__()
        self.act = ACT[rep.activation]
        self.layers = nn.ModuleList(nn.Linear(i, o, bias=False) for i, o in rep.shapes)
        self.set_genome(genome)

    def forward(self, x):
        for layer in self.layers:
            x = self.act(layer(x))
        return x

    def genome(self):
        return torch.cat([layer.weight.detach().t().reshape(-1) for layer in self.layers])

    @torch.no_grad()
    def set_genome(self, g):
        off = 0
        for layer in self.layers:
            o, i = layer.weight.shape
            layer.weight.copy_(g[off:off + i * o].view(i, o).t())
            off += i * o


class SingleRNN(nn.Module):
    """One recurrent network: stacked simple RNNs (no bias) as an explicit recurrence (torch's
    nn.RNN has no linear activation)."""

    def __init__(self, rep, genome):
        super().__init__()
        self.act = ACT[rep.activation]
        self.shapes = rep.shapes
        self.kernels = nn.ParameterList(nn.Parameter(torch.zeros(i, o)) for i, o in rep.shapes)
        self.set_genome(genome)

    def forward(self, seq):  # [T, 1] -> [T, 1]
        h_in = seq
        for K, R in zip(self.kernels[0::2], self.kernels[1::2]):
            h, outs = None, []
            for t in range(h_in.shape[0]):
                h = self.act(h_in[t] @ K if h is None else h_in[t] @ K + h @ R)
                outs.append(h)
            h_in = torch.stack(outs)
        return h_in

    def genome(self):
        return torch.cat([K.detach().reshape(-1) for K in self.kernels])

    @torch.no_grad()
    def set_genome(self, g):
        off = 0
        for K in self.kernels:
            K.copy_(g[off:off + K.numel()].view_as(K))
            off += K.numel()


class Loop:
    """The published way: a list of networks, each with its own optimizer, processed one by one."""

    def __init__(self, rep, N: int, device):
        self.rep, self.device = rep, device
        w = rep.init(N, generator=torch.Generator().manual_seed(0)).to(device)
        cls = SingleRNN if isinstance(rep, Recurrent) else SingleMLP
        self.nets = [cls(rep, w[i]).to(device) for i in range(N)]
        self.opts = [torch.optim.SGD(n.parameters(), lr=LR) for n in self.nets]
        self.ids = rep.identifiers(device) if isinstance(rep, Weightwise) else None
        self.chunk = rep.chunk_of(device) if isinstance(rep, Aggregating) else None

    def samples(self, g):
        """A network's samples (inputs, targets) from its genome ``g [W]``."""
        if self.ids is not None:
            return torch.cat([g[:, None], self.ids], dim=1), g[:, None]  # [W, 4], [W, 1]
        if self.chunk is not None:
            agg = torch.stack([g[s:e].mean() for s, e in self.rep.bounds])[None]  # [1, A]
            return agg, agg
        return g[:, None], g[:, None]  # the sequence [T, 1]

    def written(self, out):
        """The genome a network's outputs write (self-application's result)."""
        if self.ids is not None:
            return out[:, 0]
        if self.chunk is not None:
            return out[0][self.chunk]
        return out[:, 0]

    def F(self, net, g):
        with torch.no_grad():
            return self.written(net(self.samples(g)[0]))

    def epoch(self, net, opt, x, y, batch_size):
        S = x.shape[0] if not isinstance(self.rep, Recurrent) else 1
        idx = torch.randperm(S) if batch_size == 1 else [slice(None)]
        for i in idx:
            opt.zero_grad()
            if isinstance(self.rep, Recurrent):
                loss = nn.functional.mse_loss(net(x), y)
            else:
                xi, yi = (x[i:i + 1], y[i:i + 1]) if batch_size == 1 else (x, y)
                loss = nn.functional.mse_loss(net(xi), yi)
            loss.backward()
            opt.step()

    def run(self, op: str, i: int):
        net, opt = self.nets[i], self.opts[i]
        if op == "apply":
            net.set_genome(self.F(net, net.genome()))
        elif op in ("train_full", "train_b1"):
            x, y = self.samples(net.genome())
            self.epoch(net, opt, x, y, None if op == "train_full" else 1)
        elif op == "classify":
            g = net.genome()
            fg = self.F(net, g)
            scratch = self.nets[(i + 1) % len(self.nets)]
            keep = scratch.genome()
            scratch.set_genome(fg)
            ffg = self.F(scratch, fg)
            scratch.set_genome(keep)
            finite = bool(torch.isfinite(g).all())
            fixed = bool(((fg - g).abs() < 1e-4).all())
            _ = (not finite, fixed and bool((g.abs() < 1e-4).all()), fixed, bool(((ffg - g).abs() < 1e-4).all()))
        else:  # one particle's turn in a soup generation (the published per-particle walk)
            N = len(self.nets)
            if torch.rand(()) < SOUP["attacking_rate"]:
                j = int(torch.randint(N, ()))
                self.nets[j].set_genome(self.F(net, self.nets[j].genome()))
            if torch.rand(()) < SOUP["learn_from_rate"]:
                j = int(torch.randint(N, ()))
                x, y = self.samples(self.nets[j].genome())
                self.epoch(net, opt, x, y, 1)
            x, y = self.samples(net.genome())
            self.epoch(net, opt, x, y, 1)
            if not bool(torch.isfinite(net.genome()).all()):
                net.set_genome(self.rep.init(1, generator=None)[0].to(self.device))


def loop_seconds_per_network(rep, op, N, repeats, device) -> list[float]:
    loop = Loop(rep, N, device)

    def run_all():
        for i in range(N):
            loop.run(op, i)
        sync(device)

    run_all()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_all()
        times.append((time.perf_counter() - start) / N)
    return times


# ---- the machine's roofline -----------------------------------------------------------------------------
def roofline(device) -> dict:
    """Memory bandwidth (a big tensor copy, bytes read + written) and FLOP/s (a float32 matmul)."""
    n = 1 << 25  # 128 MiB
    a = torch.rand(n, device=device)
    b = torch.empty_like(a)
    t = min(timed(lambda: (b.copy_(a), sync(device)), 5, 0.2)[1 if device.type == "cpu" else 0])
    m = torch.rand(2048, 2048, device=device)
    f = min(timed(lambda: (m @ m, sync(device)), 5, 0.2)[1 if device.type == "cpu" else 0])
    return {"bandwidth_GBps": 2 * 4 * n / t / 1e9, "gflops": 2 * 2048 ** 3 / f / 1e9}


# what one particle-step of weightwise (2, 2) moves and computes in the native kernels
KERNEL_COST = {  # op: (flops, bytes) per particle-step; see RESULTS.md for the count
    "apply": (14 * 28, 3 * 56),          # 14 samples x 14 multiply-adds; read a and b, write the result
    "train_full": (ceiling.mlp_flops([4, 2, 2, 1], 14), 2 * 56),  # mlp.c's flops (910); read + write w
}


# ---- memory -----------------------------------------------------------------------------------------------
def peak_bytes(fn, device) -> float:
    """Peak memory above the current level while ``fn`` runs (VmHWM on Linux CPUs)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - base)
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)  # hand freed heap memory back, so the peak counts what fn needs
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident size
        base = _status_kb("VmRSS")
        fn()
        return 1024.0 * (_status_kb("VmHWM") - base)
    except OSError:
        return math.nan


def peak_in_fresh_process(arch: str, op: str, P: int, device) -> float:
    """Peak memory of one call in a new process, whose allocator holds nothing from earlier runs."""
    code = (f"import sys, torch; sys.path.insert(0, {HERE!r}); torch.set_num_threads(1); import bench; "
            f"call = bench.nsr_call(bench.ARCHS[{arch!r}](), {op!r}, {P}, torch.device({str(device)!r})); "
            f"print(bench.peak_bytes(call, torch.device({str(device)!r})))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    try:
        return float(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return math.nan


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(key)


# ---- the machine ------------------------------------------------------------------------------------------
def machine(device) -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
            "backend": kernels.backend(torch.zeros(1, 14, device=device))}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        info["cpu"] = fields.get("Model name", "").strip()
        info["cpus"] = fields.get("CPU(s)", "").strip()
        info["caches"] = ", ".join(f"{k.strip()} {fields[k].strip()}" for k in fields if "cache" in k)
    except (OSError, subprocess.SubprocessError):
        info["cpu"] = platform.processor()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# ---- the run ------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="P up to 10^5, 2 threads only for weightwise (< 1 min)")
    parser.add_argument("--json", help="write the rows (and the machine) to this file")
    parser.add_argument("--markdown", help="write the report (tables, machine, roofline) to this file, e.g. "
                                           "bench/RESULTS.md")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, nargs="+", help="thread counts (default: 1 2)")
    parser.add_argument("--sizes", type=int, nargs="+", help="population sizes (default 1 100 10^4 10^5 [10^6])")
    parser.add_argument("--repeats", type=int, help="timings per measurement (default 3 quick, 5 full)")
    parser.add_argument("--archs", nargs="+", choices=list(ARCHS), default=list(ARCHS))
    parser.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS))
    parser.add_argument("--soup-sizes", type=int, nargs="+",
                        help="soup generations timed by phase (default 10^4 10^5 [10^6])")
    parser.add_argument("--no-fit", action="store_true", help="leave out `nsr fit` of the shipped configs")
    parser.add_argument("--report-only", metavar="JSON", help="only rewrite --markdown from a --json file of a run")
    args = parser.parse_args(argv)
    if args.report_only:
        with open(args.report_only) as f:
            saved = json.load(f)
        rows = saved.pop("rows")
        write_markdown(args.markdown, markdown(rows, saved))
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    quick = args.quick
    sizes = args.sizes or ([1, 100, 10_000, 100_000] if quick else [1, 100, 10_000, 100_000, 1_000_000])
    threads = args.threads or [1, 2]
    repeats = args.repeats or (3 if quick else 5)
    min_time = 0.02 if quick else 0.1
    loop_n = 6 if quick else 32
    started = time.perf_counter()
    info = machine(device)
    print(f"nsr bench on {info.get('gpu') or info.get('cpu')} ({info.get('cpus', '?')} CPUs), torch {info['torch']}, "
          f"device {device}, kernels: {info['backend']}")

    rows = []
    for nt in threads:
        torch.set_num_threads(nt)
        for arch in args.archs:
            if quick and nt > 1 and arch != "weightwise":
                continue
            rep = ARCHS[arch]()
            for op in args.ops:
                loop_t = loop_seconds_per_network(rep, op, loop_n, repeats, device)
                loop_rate = steps_per_call(rep, op) / min(loop_t)
                for P in sizes:
                    if quick and (nt > 1 and (P < 100_000 or op in ("classify", "soup"))
                                  or op == "soup" and P >= 100_000 and arch != "weightwise"):
                        continue  # --quick: the other threads and big soups only where the targets are
                    if op == "soup" and P < 2:
                        continue  # a soup of one particle has no interactions
                    t, cpu = timed(nsr_call(rep, op, P, device), repeats, min_time)
                    rate = P * steps_per_call(rep, op) / min(t)
                    rows.append({"case": f"{arch}/{op}", "arch": arch, "op": op, "P": P, "threads": nt,
                                 "device": str(device), "backend": kernels.backend(torch.zeros(1, 1, device=device)),
                                 "seconds": min(t), "seconds_median": statistics.median(t), "cpu_seconds": min(cpu),
                                 "spread": max(t) / min(t) - 1, "particle_steps_per_s": rate,
                                 "loop_particle_steps_per_s": loop_rate, "loop_networks": loop_n,
                                 "loop_spread": max(loop_t) / min(loop_t) - 1, "ratio_vs_loop": rate / loop_rate})
                    print(_row_text(rows[-1]), flush=True)

    # the eager torch kernels (what runs without a C compiler, and on GPUs), at the target size
    torch.set_num_threads(1)
    if device.type == "cpu" and build.available():
        before = kernels.compile_enabled()
        kernels.set_compile(False)
        try:
            rep = Weightwise()
            for op in ("apply", "train_full", "train_b1"):
                base = next((r for r in rows if r["case"] == f"weightwise/{op}" and r["threads"] == 1), None)
                if base is None:
                    continue
                t, cpu = timed(nsr_call(rep, op, 100_000, device), repeats, min_time)
                rate = 100_000 * steps_per_call(rep, op) / min(t)
                rows.append({**base, "case": f"weightwise/{op} (eager)", "P": 100_000, "backend": "eager",
                             "seconds": min(t), "seconds_median": statistics.median(t), "cpu_seconds": min(cpu),
                             "spread": max(t) / min(t) - 1,
                             "particle_steps_per_s": rate, "ratio_vs_loop": rate / base["loop_particle_steps_per_s"]})
                print(_row_text(rows[-1]), flush=True)
        finally:
            kernels.set_compile(before)

    extra = {"machine": info}
    torch.set_num_threads(1)
    soup_sizes = [P for P in args.soup_sizes or ([10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]) if P > 1]
    if soup_sizes:
        print("\nsoup generation by phase (weightwise; attack 0.1, learn_from 0.1 x 1, train 1, respawn), 1 thread, "
              + ("wall seconds" if device.type == "cuda" else "CPU seconds") + ":")
        extra["soup_phases"] = []
        for P in soup_sizes:
            extra["soup_phases"].append(soup_phases.measure(P, repeats, device, torch_hash=device.type == "cpu"))
            print("  " + soup_phases.text(extra["soup_phases"][-1]), flush=True)
    if not args.no_fit:
        names, epochs = (["weightwise"], 50) if quick else (fit_configs.shipped(), None)
        print("\nnsr fit, end to end, 1 thread" + (" (weightwise shrunk to 50 epochs)" if quick else "") + ":")
        extra["fit"] = []
        for name in names:
            extra["fit"].append(fit_configs.measure(name, epochs))
            print("  " + fit_configs.text(extra["fit"][-1]), flush=True)
    roof = roofline(device)
    if device.type == "cpu":
        roof.update(ceiling.peak())
    extra["roofline"] = roof
    print(f"\nroofline, 1 thread: memory {roof['bandwidth_GBps']:.1f} GB/s (copy), {roof['gflops']:.1f} GFLOP/s (matmul)"
          + (f", {roof['mul_add_gflops']:.1f} GFLOP/s separate mul + add, {roof['fma_gflops']:.1f} FMA (bench/ceiling.py)"
             if "mul_add_gflops" in roof else ""))
    extra["kernel_roofline"] = []
    for op, (flops, nbytes) in KERNEL_COST.items():
        for r in rows:
            if r["case"] != f"weightwise/{op}" or r["threads"] != 1 or r["P"] < 100_000:
                continue
            ns = 1e9 * r["cpu_seconds"] / (r["P"] * steps_per_call(Weightwise(), op))  # CPU time per step
            floor = max(flops / roof["gflops"], nbytes / roof["bandwidth_GBps"])  # ns per particle-step
            row = {"op": op, "P": r["P"], "flops": flops, "bytes": nbytes, "cpu_ns_per_step": ns,
                   "roofline_ns": floor, "fraction": floor / ns, "particle_steps_per_s_cpu": 1e9 / ns}
            if "mul_add_gflops" in roof:  # the kernels' own ceiling: separate multiplies and adds, no FMA
                row["compute_ceiling_ns"] = flops / roof["mul_add_gflops"]
                row["fraction_of_compute_ceiling"] = row["compute_ceiling_ns"] / ns
            extra["kernel_roofline"].append(row)
            print(f"  weightwise {op} at P={r['P']}: {ns:.1f} ns CPU time per particle-step ({1e3 / ns:.1f} M/s); "
                  f"{flops} flops and {nbytes} bytes -> roofline {floor:.1f} ns: {100 * floor / ns:.0f}% of it"
                  + (f"; own compute ceiling {row['compute_ceiling_ns']:.1f} ns: "
                     f"{100 * row['fraction_of_compute_ceiling']:.0f}% of it" if "compute_ceiling_ns" in row else ""))

    extra["per_flop"] = []  # full-batch self-training of every family, per flop of its native kernel
    for r in rows:
        if r["op"] == "train_full" and r["threads"] == 1 and r["P"] == 100_000 and "(eager)" not in r["case"]:
            flops = ceiling.train_flops(ARCHS[r["arch"]]())
            extra["per_flop"].append({"arch": r["arch"], "flops": flops, "cpu_ns_per_step": 1e9 * r["cpu_seconds"] / r["P"],
                                      "gflops": flops * r["P"] / r["cpu_seconds"] / 1e9})
    for k in extra["per_flop"]:
        k["vs_weightwise"] = extra["per_flop"][0]["gflops"] / k["gflops"] if extra["per_flop"] else math.nan
        print(f"  {k['arch']} train_full at P=10^5: {k['flops']} flops per particle-step, {k['gflops']:.1f} GFLOP/s "
              f"(CPU time), x{k['vs_weightwise']:.2f} weightwise's time per flop")
    soup_rows = [r for r in rows if r["case"] == "weightwise/soup" and r["P"] == 100_000 and r["threads"] == 1]
    if soup_rows:
        extra["soup_generations_per_minute_1e5"] = 60 / soup_rows[0]["seconds"]
        print(f"  weightwise soup of 10^5 (attack 0.1, learn_from 0.1, train 1): "
              f"{extra['soup_generations_per_minute_1e5']:.0f} generations per minute")

    if not quick:
        extra["peak_bytes_per_particle_1e6"] = {}
        print("\npeak memory above the population itself, P = 10^6, 1 thread (bytes per particle):")
        for arch, cls in ARCHS.items():
            for op in ("apply", "train_full", "train_b1", "classify", "soup"):
                b = peak_in_fresh_process(arch, op, 1_000_000, device) / 1e6
                extra["peak_bytes_per_particle_1e6"][f"{arch}/{op}"] = b
                print(f"  {arch}/{op}: {b:.0f} (genome: {4 * cls().num_weights})")
        try:
            import lightning_overhead

            print("\nLightning's overhead (bench/lightning_overhead.py), 1 thread:")
            over = []
            for P, epochs in ((1, 100), (10_000, 10)):
                over += lightning_overhead.measure(P, epochs)
            for r in over:
                print(f"  {r['case']:<14} P={r['P']:<7} {r['epochs_per_s']:8.1f} epochs/s  "
                      f"{r['ratio_vs_self_train']:.3f}x self_train")
            extra["lightning_overhead"] = over
        except ImportError:
            print("\n(bench/lightning_overhead.py not found: Lightning's overhead not measured)")
    print(f"\n{len(rows)} rows in {time.perf_counter() - started:.0f} s; loops timed on {loop_n} networks each, "
          "extrapolated per network")
    extra["seconds"] = time.perf_counter() - started
    extra["command"] = "python bench/bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, **extra}, f, indent=1, default=float)
    if args.markdown:
        write_markdown(args.markdown, markdown(rows, extra))
    return 0


HAND_WRITTEN = "<!-- written by hand below this line: bench.py keeps it when it rewrites the file -->"


def write_markdown(path, text: str) -> None:
    """Write the report to ``path`` (stdout if None), keeping the hand-written part of an existing file
    (everything after the ``HAND_WRITTEN`` line)."""
    if not path:
        print(text)
        return
    kept = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        if HAND_WRITTEN in old:
            kept = HAND_WRITTEN + old.split(HAND_WRITTEN, 1)[1]
    with open(path, "w") as f:
        f.write(text.rstrip("\n") + "\n\n" + kept if kept else text)


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3), ("", 1.0)):
        if abs(x) >= 0.9995 * scale or not unit:
            return f"{x / scale:.3g}{unit}"


def _p(P: int) -> str:
    return f"10^{int(round(math.log10(P)))}" if P >= 1000 and 10 ** round(math.log10(P)) == P else str(P)


def markdown(rows, extra) -> str:
    """The report: one table per thread count (particle-steps/s and the ratio to the loop)."""
    m = extra["machine"]
    out = ["# nsr benchmark results", "",
           f"Produced by `{extra['command']}` in {extra['seconds']:.0f} s "
           "(regenerate with the same command; `bench/bench.py` writes this file).", "",
           "## Machine", "",
           f"- CPU: {m.get('cpu', '?')} ({m.get('cpus', '?')} CPUs); {m.get('caches', '')}",
           f"- torch {m['torch']}, Python {m['python']}; device `{m['device']}`; kernels: {m['backend']}",
           "- shared with other users while measured: every time is the best of several runs, side by side with "
           "the loop it is compared with (the spread column of the JSON gives max/min - 1).", "",
           "## Throughput", "",
           "Each cell: particle-steps per second (a self-application, an SGD step, a classification or a "
           "generation of one particle), and in brackets the ratio to a Python loop of single networks (one "
           "`nn.Module` and one `torch.optim.SGD` each) doing the same; the loop column is the loop's rate, timed "
           f"on {rows[0]['loop_networks']} networks and extrapolated per network. A batch-size-1 epoch of "
           "weightwise is 14 steps, every other epoch 1.", ""]
    sizes = sorted({r["P"] for r in rows if "(eager)" not in r["case"]})
    for nt in sorted({r["threads"] for r in rows}):
        out += [f"### {nt} thread{'s' if nt > 1 else ''}", "",
                "| case | " + " | ".join(f"P = {_p(P)}" for P in sizes) + " | loop |",
                "|---|" + "---|" * (len(sizes) + 1)]
        cases = list(dict.fromkeys(r["case"] for r in rows if r["threads"] == nt and "(eager)" not in r["case"]))
        for case in cases:
            cell = {r["P"]: r for r in rows if r["threads"] == nt and r["case"] == case}
            loop = next(iter(cell.values()))["loop_particle_steps_per_s"]
            out.append(f"| {case} | " + " | ".join(
                f"{_si(cell[P]['particle_steps_per_s'])} (x{cell[P]['ratio_vs_loop']:.0f})" if P in cell else ""
                for P in sizes) + f" | {_si(loop)} |")
        out.append("")
    eager = [r for r in rows if "(eager)" in r["case"]]
    if eager:
        out += ["### Without the native kernels (eager torch, `NSR_COMPILE=0`), 1 thread", "",
                "| case | P | particle-steps/s | x loop |", "|---|---|---|---|"]
        out += [f"| {r['case']} | {_p(r['P'])} | {_si(r['particle_steps_per_s'])} | {r['ratio_vs_loop']:.0f} |"
                for r in eager]
        out.append("")
    if extra.get("soup_phases"):
        unit = "wall seconds" if extra["soup_phases"][0]["device"].startswith("cuda") else "CPU seconds"
        out += ["## A soup generation by phase (`bench/soup_phases.py`), weightwise, 1 thread", "",
                "One generation (attack 0.1, learn_from 0.1 x 1 epoch, train 1, respawn) through "
                f"`nsr.soup.generation_step`, its phases timed separately, in {unit} (best of several). "
                "*randomness* is the keyed random numbers inside the phases (a share of them); *torch hash* is the "
                "same generation with the keyed streams computed by the torch code alone (the same bits).", "",
                "| P | attack | learn_from | train | respawn | randomness | total | torch hash: randomness | total |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in extra["soup_phases"]:
            sec, th = r["seconds"], r.get("torch_hash")
            out.append(f"| {_p(r['P'])} | " + " | ".join(f"{sec[k]:.3f}" for k in soup_phases.PHASES)
                       + f" | **{sec['total']:.3f}** | "
                       + (f"{th['randomness']:.3f} | {th['total']:.3f} |" if th else "not measured | |"))
        out.append("")
    if extra.get("fit"):
        out += ["## `nsr fit` end to end (`bench/fit_configs.py`), 1 thread", "",
                "Each shipped config in a fresh process, as `nsr fit --config configs/NAME.yaml` runs it: the wall "
                "clock of the whole command (start-up and end-of-run probes included), the training loop's epochs "
                "(generations) per second, and the share of the loop spent inside nsr's kernels (the drivers "
                "`nsr.kernels.train`, `apply`, `loss_and_grad`, timed in the process).", "",
                "| config | epochs | wall clock s | loop s | epochs/s | in kernels |", "|---|---|---|---|---|---|"]
        out += [f"| {r['config']} | {r['epochs']} | {r['wall_s']:.1f} | {r['loop_s']:.2f} | {r['epochs_per_s']:.0f} | "
                f"{100 * r['kernel_share']:.0f}% |" for r in extra["fit"]]
        out.append("")
    roof = extra["roofline"]
    out += ["## Targets and roofline (one thread, weightwise (2, 2))", "",
            f"Measured here: memory bandwidth {roof['bandwidth_GBps']:.1f} GB/s (copy of a 128 MiB tensor, bytes "
            f"read + written), {roof['gflops']:.1f} GFLOP/s (2048 x 2048 float32 matmul)"
            + (f"; the native kernels' own compute ceiling (`bench/ceiling.py`): {roof['mul_add_gflops']:.1f} GFLOP/s "
               f"as separate multiplies and adds in {roof['lanes']}-lane vectors ({roof['fma_gflops']:.1f} as FMA)"
               if "mul_add_gflops" in roof else "") + ".", ""]
    for k in extra.get("kernel_roofline", []):
        out.append(f"- {k['op']} at P = {_p(k['P'])}: {k['cpu_ns_per_step']:.1f} ns of CPU time per particle-step "
                   f"({1e3 / k['cpu_ns_per_step']:.1f} M/s); the kernel does {k['flops']} flops and moves "
                   f"{k['bytes']} bytes per particle-step, so the roofline is {k['roofline_ns']:.1f} ns: "
                   f"**{100 * k['fraction']:.0f}%** of it"
                   + (f"; its own compute ceiling is {k['compute_ceiling_ns']:.1f} ns: "
                      f"**{100 * k['fraction_of_compute_ceiling']:.0f}%** of it" if "compute_ceiling_ns" in k else "")
                   + ".")
    if extra.get("per_flop"):
        out.append("- full-batch self-training at P = 10^5, per flop of each family's native kernel (`bench/ceiling.py`, "
                   "`train_flops`): " + "; ".join(f"{k['arch']} {k['flops']} flops, {k['gflops']:.1f} GFLOP/s "
                                                 f"(x{k['vs_weightwise']:.2f} weightwise's time per flop)"
                                                 for k in extra["per_flop"]) + ".")
    if "soup_generations_per_minute_1e5" in extra:
        out.append(f"- a soup of 10^5 weightwise particles (attack 0.1, learn_from 0.1, train 1, respawn): "
                   f"**{extra['soup_generations_per_minute_1e5']:.0f} generations per minute**.")
    for op in ("train_full", "apply"):
        best = [r for r in rows if r["case"] == f"weightwise/{op}" and r["threads"] == 1 and r["P"] >= 100_000]
        if best:
            out.append(f"- weightwise {op}: " + ", ".join(f"x{r['ratio_vs_loop']:.0f} at P = {_p(r['P'])}"
                                                        for r in best) + " (target x1000).")
    out.append("")
    if "peak_bytes_per_particle_1e6" in extra:
        out += ["## Peak memory, P = 10^6, 1 thread", "",
                "Peak resident memory of one call above what the process held before it (the population "
                "included), per particle, each in a fresh process; the genome itself is 56 bytes for "
                "weightwise, 80 aggregating, 68 recurrent, and every call returns a new population.", "",
                "| case | bytes per particle |", "|---|---|"]
        out += [f"| {k} | {v:.0f} |" for k, v in extra["peak_bytes_per_particle_1e6"].items()]
        out.append("")
    if "lightning_overhead" in extra:
        out += ["## Lightning's overhead (`bench/lightning_overhead.py`), 1 thread, weightwise, batch size 1", "",
                "| case | P | epochs/s | x self_train |", "|---|---|---|---|"]
        out += [f"| {r['case']} | {_p(r['P'])} | {r['epochs_per_s']:.1f} | {r['ratio_vs_self_train']:.3f} |"
                for r in extra["lightning_overhead"]]
        out.append("")
    out += ["## Notes", "",
            "- nsr runs these through `nsr.kernels`: native C kernels (float32 on CPU, built on first use "
            "with the system C compiler) that run a whole epoch per block of particles in registers, else eager "
            "torch kernels in a particle-last layout (`NSR_COMPILE=0`, other dtypes, GPUs).",
            "- Flops and bytes per particle-step of weightwise (2, 2), counted from mlp.c's loops "
            "(`bench/ceiling.py`, `mlp_flops`): a full-batch epoch does, per sample, 23 forward flops (4x2 + 2x2 + "
            "2x1 multiplies, 8 adds), 4 for the loss and dL/d output, 28 for the kernel gradients and 8 for the "
            "deltas (63), times 14 samples, plus 28 for the SGD update: 910 flops; it reads and writes the genome "
            "once (2 x 56 bytes). A self-application is 14 x 28 = 392 flops; it reads the network and the genome "
            "and writes the result (3 x 56 bytes).",
            "- The native kernels are compiled with FMA contraction off, so that an epoch gives exactly the bits of "
            "stepping with `loss_and_grad` and `nsr.training.sgd_step` (what the Lightning module does); their own "
            "compute ceiling is the rate of separate vector multiplies and adds, measured by `bench/ceiling.py`.",
            "- The loop's networks do what the published PyTorch code does per network: build the samples from the "
            "current weights, forward, `mse_loss`, `backward`, `optimizer.step()` (self-application writes the "
            "outputs back into the weights). A soup generation walks the particles one by one (attack and "
            "learn_from a random partner with probability 0.1 each, one batch-size-1 epoch, respawn if divergent).",
            "- Times on a shared machine vary by tens of percent between runs (see `spread` in the JSON); the ratios "
            "are measured side by side in one process and are steadier than the absolute numbers. The eager "
            "kernels' full-batch ratio at P = 10^5 has ranged from x700 to x2500 over runs here.",
            "- This machine's two vCPUs were shared with other users' test runs while measured, so the 2-thread "
            "rows mostly measure that contention (often slower than one thread). The native kernels split the "
            "particles evenly over `torch.get_num_threads()` threads, with bit-identical results (tested).", ""]
    out += ["## GPU", "", "Not measured (no GPU was available). On a CUDA machine, `bash bench/gpu_check.sh` runs the "
            "CUDA tests and the GPU rows (weightwise full-batch self-training at P = 10^7, a 10^7-particle soup "
            "generation by phase) in under 8 minutes and writes `bench/gpu_check.json`; see \"The GPU check\" below.", ""]
    return "\n".join(out)


def _row_text(r) -> str:
    return (f"{r['case']:<32} P={r['P']:<8} threads={r['threads']}  {r['seconds'] * 1e3:10.3f} ms  "
            f"{r['particle_steps_per_s']:12.4g} steps/s  loop {r['loop_particle_steps_per_s']:9.4g}/s  "
            f"x{r['ratio_vs_loop']:<9.0f} ({r['backend']}, spread {100 * r['spread']:.0f}%)")


if __name__ == "__main__":
    sys.exit(main())
