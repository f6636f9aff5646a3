#!/usr/bin/env bash
# Issue 13 on one H100 (device tool, one call of at most 570 s): deferred write-back side by side with K = 1.
#   ZO2BENCH_GIT_COMMIT=<sha, written out> bash tools/device_speed.sh      (writes under $OUT)
# One calibration, then bench-step for OPT-1.3B (untied head) fp16 T 2048: zo2 batch 1 with K = 1, the K that
# the K = 1 record suggests (bench/writeback.py: calibrated link, replay cost measured in that run) and K = 4;
# zo2 batch 8 with K = 1 and 4; mezo batch 1; zo2 batch 1 K = 1 again (drift within the run). Then the GPU
# test tier of the engine (parity, no drift, K = 1 vs 4 bitwise), then profiles and Llama-style shapes
# (llama3.2-1b, qwen2.5-0.5b) while time is left.
# Every phase is bounded by the deadline and the records are packed into $OUT/speed.tgz after each one, so
# whatever finished comes back even if the call is cut short. Expected: ~4 min of benches, ~3 min of tests.
set -uo pipefail
source tools/device_commit.sh  # the commit the rows name: a carried bundle, or the sha written out
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT/speed"
D="$OUT/speed"
DEADLINE=$((SECONDS + ${SPEED_BUDGET_S:-540}))
left() { echo $((DEADLINE - SECONDS)); }
pack() { tar -czf "$OUT/speed.tgz.part" -C "$OUT" speed && mv "$OUT/speed.tgz.part" "$OUT/speed.tgz"; }
bounded() {  # bounded SECONDS_MIN cmd...: run cmd if that much time is left, killed 20 s before the deadline
  local need=$1; shift
  local t=$(( $(left) - 20 ))
  if (( t < need )); then echo "speed: skipped (only $(left) s left): $*"; return 124; fi
  timeout "$t" "$@"
}
echo "speed: commit ${ZO2BENCH_GIT_COMMIT:-unset}"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())" | tee "$D/versions.txt"
bounded 30 python3 -m zo2bench calibrate --out "$D/calibration.json" 2>&1 | tail -6
pack

# SPEED_MODEL/SPEED_DEVICE/SPEED_SEQ only to try the script's plumbing on a CPU (opt-tiny, cpu, 16)
B="python3 -m zo2bench bench-step --model ${SPEED_MODEL:-opt-1.3b-untied} --dtype ${SPEED_DTYPE:-fp16} --seq ${SPEED_SEQ:-2048}"
B="$B --device ${SPEED_DEVICE:-cuda} --calibration $D/calibration.json"
bench() {  # bench NAME ARGS...: one record, its table on stdout
  echo "== $1"
  local name=$1; shift
  bounded 40 $B "$@" --out "$D/bench-$name.json" 2>"$D/bench-$name.err" | grep -E "step time|step /|floor|busy|write-back|peak alloc"
  pack
}
bench zo2-b1-k1 --mode zo2 --batch 1 --writeback-every 1
K=$(python3 -c "import json; print(json.load(open('$D/bench-zo2-b1-k1.json'))['writeback']['suggested']['every'])" 2>/dev/null || echo 2)
(( K < 2 )) && K=2   # the comparison needs a K > 1 even where the estimate sees nothing to win
echo "speed: suggested K from the K = 1 record: $K" | tee "$D/chosen-k.txt"
[[ $K != 4 ]] && bench "zo2-b1-k$K" --mode zo2 --batch 1 --writeback-every "$K"
bench zo2-b1-k4 --mode zo2 --batch 1 --writeback-every 4
bench zo2-b8-k1 --mode zo2 --batch 8 --writeback-every 1
bench zo2-b8-k4 --mode zo2 --batch 8 --writeback-every 4
bench mezo-b1 --mode mezo --batch 1
bench zo2-b1-k1-again --mode zo2 --batch 1 --writeback-every 1

echo "== GPU test tier (engine)"
bounded 60 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_writeback.py tests/test_engine.py 2>&1 \
  | tee "$D/pytest-gpu.txt" | grep -E "passed|failed|skipped|error|FAILED" | tail -15
pack

for spec in "mezo 1 1" "zo2 1 $K"; do set -- $spec
  echo "== profile $1 b$2 K$3"
  bounded 60 python3 tools/profile_step.py --mode "$1" --batch "$2" --writeback-every "$3" --rows 30 \
    > "$D/profile-$1-b$2-k$3.txt" 2>&1; tail -3 "$D/profile-$1-b$2-k$3.txt"
  pack
done
# Llama-style shapes while time is left (issue 13's last section: not measured before)
bench llama3.2-1b-zo2-b1-k1 --model llama3.2-1b --mode zo2 --batch 1 --writeback-every 1
bench "llama3.2-1b-zo2-b1-k$K" --model llama3.2-1b --mode zo2 --batch 1 --writeback-every "$K"
bench llama3.2-1b-mezo-b1 --model llama3.2-1b --mode mezo --batch 1
bench qwen2.5-0.5b-zo2-b1-k1 --model qwen2.5-0.5b --mode zo2 --batch 1 --writeback-every 1
echo "speed: done with $(left) s to spare"; ls -la "$OUT/speed.tgz"
