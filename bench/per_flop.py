"""Full-batch self-training per flop of each family's native kernel (``ceiling.train_flops``),
before and after a change, side by side; and where the aggregating kernel's time goes.

    git archive <old commit> src | tar -x -C /tmp/before      # the old sources
    python bench/per_flop.py /tmp/before/src src 3            # old, new, rounds

Alternating fresh processes (one thread), several rounds, the best of each (CPU time: the steadier
on a shared machine). Per family at P = 10^5: ns per particle-step (one epoch per call, as the
per-flop line of bench/RESULTS.md), GFLOP/s, and time per flop against weightwise's. The profile
(new sources): the same epoch with 20 epochs per call (the genomes stay in registers, so memory
traffic is left out: the in-register time), the bytes a particle-step moves (its genome in and out
and its loss) and the copy bandwidth measured at that working set: the memory floor.
"""
import json
import os
import subprocess
import sys

CHILD = r'''
import json, sys, time, torch
torch.set_num_threads(1)
sys.path.insert(0, BENCH)
import ceiling
from nsr.replicators import Weightwise, Aggregating, Recurrent
from nsr.training import self_train
P = 10**5
def best(f, calls, rounds=5):
    f(); out = []
    for _ in range(rounds):
        c = time.process_time()
        for _ in range(calls): f()
        out.append((time.process_time() - c) / calls)
    return min(out)
res = {}
for name, rep in (("weightwise", Weightwise()), ("aggregating", Aggregating()), ("recurrent", Recurrent())):
    w = rep.init(P, generator=torch.Generator().manual_seed(0))
    res[name] = {"flops": ceiling.train_flops(rep),
                 "ns": 1e9 * best(lambda: self_train(rep, w, epochs=1, lr=0.01, batch_size=None), 10) / P}
    if PROFILE:
        res[name]["ns_in_registers"] = 1e9 * best(lambda: self_train(rep, w, epochs=20, lr=0.01, batch_size=None), 1) / P / 20
        W = rep.num_weights
        a, b = torch.randn(P, W), torch.empty(P, W)
        res[name]["bytes"] = 4 * (2 * W + 1)  # genome in, genome out, loss
        res[name]["copy_GBps"] = 2 * a.numel() * 4 / best(lambda: b.copy_(a), 20) / 1e9  # read + written
print(json.dumps(res))
'''


def run(src: str, profile: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    code = f"BENCH = {os.path.dirname(os.path.abspath(__file__))!r}; PROFILE = {profile}\n" + CHILD
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    if p.returncode:
        raise RuntimeError(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> int:
    before, after = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    res = {"before": [], "after": []}
    for r in range(rounds):
        for label, src in (("before", before), ("after", after)):
            res[label].append(run(src, profile=label == "after"))
            print(label, r, {k: round(v["ns"], 1) for k, v in res[label][-1].items()}, flush=True)
    best = {label: {k: min(x[k]["ns"] for x in runs) for k in runs[0]} for label, runs in res.items()}
    flops = res["after"][0]
    print("\n| family | flops | before ns | after ns | ratio | before GFLOP/s | after GFLOP/s | "
          "before x weightwise | after x weightwise |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in best["after"]:
        f = flops[k]["flops"]
        g = {label: f / best[label][k] for label in best}
        ww = {label: (best[label][k] / f) / (best[label]["weightwise"] / flops["weightwise"]["flops"]) for label in best}
        print(f"| {k} | {f} | {best['before'][k]:.1f} | {best['after'][k]:.1f} | {best['before'][k] / best['after'][k]:.2f} | "
              f"{g['before']:.1f} | {g['after']:.1f} | x{ww['before']:.2f} | x{ww['after']:.2f} |")
    print("\nprofile (after; best of the rounds): per particle-step")
    for k in best["after"]:
        ns_reg = min(x[k]["ns_in_registers"] for x in res["after"])
        bw = max(x[k]["copy_GBps"] for x in res["after"])
        nbytes = flops[k]["bytes"]
        floor = nbytes / bw
        print(f"  {k}: {best['after'][k]:.1f} ns; in registers (20 epochs a call) {ns_reg:.1f} ns "
              f"({flops[k]['flops'] / ns_reg:.1f} GFLOP/s); {nbytes} bytes at {bw:.1f} GB/s (copy at this working set) "
              f"= memory floor {floor:.1f} ns; in registers + floor {ns_reg + floor:.1f} ns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
