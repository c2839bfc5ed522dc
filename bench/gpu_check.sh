#!/usr/bin/env bash
# The GPU check: the CUDA tests and the GPU rows of the bench, in under 8 minutes on one GPU,
# results as JSON.
#
#   bash bench/gpu_check.sh                      # writes bench/gpu_check.json
#   bash bench/gpu_check.sh /tmp/gpu.json        # elsewhere
#   NSR_GPU_CHECK_DEVICE=cpu bash bench/gpu_check.sh /tmp/cpu.json   # the same steps on the CPU, small
#
# Steps (each under its own time limit, all together at most 7.5 minutes):
#   1. tests/test_devices.py: keyed streams, training, learn_from, self-application and a soup
#      generation on the GPU against the native CPU kernels (bits, or float rounding)   <= 150 s
#   2. bench/bench.py --device cuda: weightwise self-application and full-batch self-training at
#      P = 10^6 and 10^7 (target: >= 10^9 particle-steps/s at 10^7)                      <= 180 s
#   3. bench/soup_phases.py --device cuda: a soup generation of 10^6 and 10^7 weightwise
#      particles by phase (target: 10^7 in under a second)                               <= 120 s
# Without a GPU (torch sees none) it runs the same steps on the CPU at small sizes, so the script
# itself is tested anywhere; the JSON then says "gpu": "not measured".
set -u
cd "$(dirname "$0")/.."
OUT=${1:-bench/gpu_check.json}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

DEVICE=${NSR_GPU_CHECK_DEVICE:-$(python -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
if [ "$DEVICE" = cuda ]; then
    SIZES="1000000 10000000"; SOUP_SIZES="1000000 10000000"; THREADS=1
else
    SIZES="10000 100000"; SOUP_SIZES="10000 100000"; THREADS=1
    export OMP_NUM_THREADS=1
fi
echo "gpu_check: device $DEVICE"
START=$(date +%s)

timeout 150 python -m pytest -q tests/test_devices.py --junitxml="$TMP/tests.xml" > "$TMP/tests.txt" 2>&1
TESTS_RC=$?
tail -3 "$TMP/tests.txt"

timeout 180 python bench/bench.py --quick --device "$DEVICE" --threads $THREADS --sizes $SIZES --archs weightwise \
    --ops apply train_full --repeats 3 --soup-sizes 0 --no-fit --json "$TMP/bench.json" > "$TMP/bench.txt" 2>&1
BENCH_RC=$?
grep -E "weightwise/(apply|train_full) " "$TMP/bench.txt"

timeout 120 python bench/soup_phases.py --device "$DEVICE" --sizes $SOUP_SIZES --repeats 3 --no-torch-hash \
    --json "$TMP/soup.json" > "$TMP/soup.txt" 2>&1
SOUP_RC=$?
cat "$TMP/soup.txt" | tail -4

python - "$OUT" "$DEVICE" "$TMP" "$TESTS_RC" "$BENCH_RC" "$SOUP_RC" "$(( $(date +%s) - START ))" <<'EOF'
import json, os, sys
import torch

out, device, tmp, tests_rc, bench_rc, soup_rc, seconds = sys.argv[1:]
def load(name):
    try:
        with open(os.path.join(tmp, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
def tail(name, n=2000):
    try:
        with open(os.path.join(tmp, name)) as f:
            return f.read()[-n:]
    except OSError:
        return ""
bench, soups = load("bench.json"), load("soup.json")
rows = bench["rows"] if bench else []
gpu = device == "cuda"
train = [r for r in rows if r["case"] == "weightwise/train_full"]
big_train = max(train, key=lambda r: r["P"]) if train else None
big_soup = max(soups, key=lambda r: r["P"]) if soups else None
result = {
    "device": device,
    "gpu": torch.cuda.get_device_name(0) if gpu else "not measured",
    "seconds": int(seconds),
    "tests": {"exit_status": int(tests_rc), "summary": tail("tests.txt", 300).strip().splitlines()[-1:]},
    "bench": {"exit_status": int(bench_rc), "rows": rows, "output": "" if bench else tail("bench.txt")},
    "soup_phases": {"exit_status": int(soup_rc), "rows": soups or [], "output": "" if soups else tail("soup.txt")},
    "targets": {
        "weightwise_train_full_particle_steps_per_s": {
            "P": big_train["P"] if big_train else None,
            "measured": big_train["particle_steps_per_s"] if big_train else None,
            "target": 1e9 if gpu else None,
            "met": (big_train["particle_steps_per_s"] >= 1e9) if gpu and big_train and big_train["P"] >= 10**7 else None},
        "soup_generation_seconds": {
            "P": big_soup["P"] if big_soup else None,
            "measured": big_soup["seconds"]["total"] if big_soup else None,
            "target": 1.0 if gpu else None,
            "met": (big_soup["seconds"]["total"] < 1.0) if gpu and big_soup and big_soup["P"] >= 10**7 else None},
    },
}
with open(out, "w") as f:
    json.dump(result, f, indent=1, default=float)
print(f"gpu_check: wrote {out} ({result['seconds']} s; tests exit {tests_rc}, bench {bench_rc}, soup {soup_rc})")
EOF
[ "$TESTS_RC" = 0 ] && [ "$BENCH_RC" = 0 ] && [ "$SOUP_RC" = 0 ]
