#!/usr/bin/env bash
# Issue 3 on the GPU machine: calibration, bench-step for the targets, microbenchmarks (writes under $OUT).
#   bash tools/device_bench.sh
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m zo2bench calibrate --out "$OUT/calibration.json" 2>&1 | tail -2
B="python3 -m zo2bench bench-step --model opt-1.3b-untied --dtype fp16 --seq 2048 --device cuda --calibration $OUT/calibration.json"
$B --mode zo2 --batch 1 --out "$OUT/bench-zo2-b1.json" 2>/dev/null
$B --mode zo2 --batch 8 --out "$OUT/bench-zo2-b8.json" 2>/dev/null
$B --mode mezo --batch 1 --out "$OUT/bench-mezo-b1.json" 2>/dev/null
$B --mode zo2 --batch 1 --gpu-budget 12 --out "$OUT/bench-zo2-b1-budget12.json" 2>/dev/null
python3 -m pytest -q -p no:cacheprovider benchmarks/test_microbench.py --benchmark-columns=median,iqr,rounds 2>&1 | grep -E "test_|passed|failed"
