#!/usr/bin/env bash
# --device cuda:N on a machine of several GPUs (device tool, nvidia-h100-x2): the GPU tier's two-GPU test,
# and run / bench-step / calibrate / a sweep cell on cuda:1, each record checked for the GPU it names.
#   ZO2BENCH_GIT_COMMIT=<sha, written out> bash tools/device_two_gpus.sh
set -uo pipefail
source tools/device_commit.sh  # the commit the rows name: a carried bundle, or the sha written out
export PYTHONPATH=. PYTHONUNBUFFERED=1 ZO2BENCH_GIT_DIRTY=${ZO2BENCH_GIT_DIRTY:-0}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=index,name,uuid,pci.bus_id --format=csv,noheader
python3 -m pytest -q -p no:cacheprovider -rs -m gpu tests/test_engine.py -k "second_gpu" 2>&1 | tail -3
Z="python3 -m zo2bench"
$Z run --device cuda:1 --model opt-125m --mode zo2 --dtype fp16 --seq 512 --steps 3 --out "$OUT/run-cuda1.json" 2>&1 | tail -2
$Z bench-step --device cuda:1 --model opt-125m --mode zo2 --dtype fp16 --seq 512 --batch 1 --warmup 1 --steps 3 \
   --out "$OUT/bench-step-cuda1.json" > "$OUT/bench-step.log" 2>&1; echo "bench-step exit $?"
$Z calibrate --device cuda:1 --size-gib 0.25 --repeats 2 --out "$OUT/calibration-cuda1.json" > "$OUT/calibrate.log" 2>&1
echo "calibrate exit $?"
mkdir -p /tmp/exp && sed -e 's/^device = "cuda"/device = "cuda:1"/' experiments/smoke.toml > /tmp/exp/smoke_cuda1.toml
$Z sweep /tmp/exp/smoke_cuda1.toml --profile gpu --results-dir /tmp/res > "$OUT/sweep.log" 2>&1
echo "sweep exit $?"; tail -8 "$OUT/sweep.log"; cat /tmp/res/*/*/*.jsonl > "$OUT/sweep-cuda1.jsonl" 2>/dev/null
# kill -9 of a sweep mid-cell: nothing of it may stay on the GPU or write a row afterwards
$Z sweep experiments/smoke.toml --profile gpu --results-dir /tmp/kill > /dev/null 2>&1 &
sleep 25; kill -9 $!; sleep 5
rows_then=$(cat /tmp/kill/*/*/*.jsonl 2>/dev/null | wc -l)
echo "after kill -9: GPU processes: [$(nvidia-smi --query-compute-apps=pid --format=csv,noheader | tr '\n' ' ')]" \
     "zygote/cell processes: [$(pgrep -f 'zo2bench.experiments' | tr '\n' ' ')] rows $rows_then"
sleep 20; echo "20 s later: rows $(cat /tmp/kill/*/*/*.jsonl 2>/dev/null | wc -l)"
python3 - "$OUT" <<'PY'
import glob, json, sys
out = sys.argv[1]
for f in sorted(glob.glob(f"{out}/*.json")) + sorted(glob.glob(f"{out}/*.jsonl")):
    recs = [json.loads(l) for l in open(f)] if f.endswith(".jsonl") else [json.load(open(f))]
    for r in recs:
        fp = r.get("fingerprint") or {}
        dev = (r.get("config") or {}).get("device") or (r.get("settings") or {}).get("device")
        print(f.rsplit("/", 1)[1], r.get("status", r.get("kind")), "device", dev, "gpu", fp.get("gpu_uuid"),
              fp.get("gpu_bus_id"), fp.get("gpu_matched_by"), "commit", fp.get("git_commit", "")[:7], fp.get("git_dirty"))
PY
