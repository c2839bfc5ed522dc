"""Before and after, side by side: the same measurements with two source trees of nsr, in
alternating fresh processes (one thread), several rounds, the best of each.

    git archive <old commit> src | tar -x -C /tmp/before      # the old sources
    python bench/before_after.py /tmp/before/src src 3        # old, new, rounds

Measures a weightwise soup generation (attack 0.1, learn_from 0.1 x 1, train 1, respawn) at
P = 10^4, 10^5, 10^6 and one full-batch self-training epoch of each family at P = 10^5; prints
wall and CPU seconds of both and their ratios (CPU time is the steadier on a shared machine).
"""
import json, os, subprocess, sys
CHILD = r'''
import json, sys, time, torch
torch.set_num_threads(1)
from nsr import soup
from nsr.replicators import Weightwise, Aggregating, Recurrent
from nsr.training import self_train
def best(f, n):
    f(); w, c = [], []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.process_time(); f(); w.append(time.perf_counter() - t0); c.append(time.process_time() - c0)
    return min(w), min(c)
out = {}
SOUP = dict(attacking_rate=0.1, learn_from_rate=0.1, learn_from_severity=1, train=1)
for P in (10**4, 10**5, 10**6):
    rep = Weightwise(); st = soup.initial_state(rep, P, seed=0); st = soup.generation_step(rep, st, seed=0, **SOUP)[0]
    out[f"soup {P}"] = best(lambda: soup.generation_step(rep, st, seed=0, **SOUP), 3)
for name, rep in (("weightwise", Weightwise()), ("aggregating", Aggregating()), ("recurrent", Recurrent())):
    w = rep.init(10**5, generator=torch.Generator().manual_seed(0))
    def f():
        for _ in range(10): self_train(rep, w, epochs=1, lr=0.01, batch_size=None)
    wall, cpu = best(f, 3)
    out[f"train_full {name} 1e5"] = (wall / 10, cpu / 10)
print(json.dumps(out))
'''
base, new = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
res = {"before": [], "after": []}
for r in range(rounds):
    for label, src in (("before", base), ("after", new)):
        env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
        p = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=900)
        res[label].append(json.loads(p.stdout.strip().splitlines()[-1]))
        print(label, r, res[label][-1], flush=True)
keys = res["before"][0].keys()
print(f"\n| measurement | before wall s | after wall s | ratio | before CPU s | after CPU s | ratio |")
print("|---|---|---|---|---|---|---|")
for k in keys:
    bw = min(x[k][0] for x in res["before"]); aw = min(x[k][0] for x in res["after"])
    bc = min(x[k][1] for x in res["before"]); ac = min(x[k][1] for x in res["after"])
    print(f"| {k} | {bw:.4f} | {aw:.4f} | {bw / aw:.2f} | {bc:.4f} | {ac:.4f} | {bc / ac:.2f} |")
