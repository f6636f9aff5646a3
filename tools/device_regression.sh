#!/usr/bin/env bash
# Issue 10 on the GPU machine (device tool): the GPU tier, a stored baseline, a real regression caught,
# reruns of unchanged code; each step's outputs packed into $OUT/regression.tgz, a summary printed last.
#   ZO2BENCH_GIT_COMMIT=$(git rev-parse HEAD) bash tools/device_regression.sh SECONDS STEP...
# STEP: tier | baseline | slow (prefetching off: the engine's streaming made serial) | rerun-N
# A step starts only if SECONDS have not passed; a baseline must already be under results/baselines/
# (committed) for slow and rerun-N.
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1 ZO2BENCH_GIT_DIRTY=${ZO2BENCH_GIT_DIRTY:-0}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT/r"
start=$(date +%s); deadline=$(( start + $1 )); shift
S="python3 -m zo2bench.regression.session"
pack() { tar czf "$OUT/regression.tgz" -C "$OUT" r && rm -rf "$OUT/r"; }
for step in "$@"; do
  # a series run takes about 200 s on the H100: start one only if it can end before the deadline
  left=$(( deadline - $(date +%s) - 10 ))
  [ "$left" -gt 190 ] || { echo "$step: not started (time)"; continue; }
  S="timeout -s INT $left python3 -m zo2bench.regression.session"  # ends in time for pack, whatever happens
  t0=$(date +%s)
  case "$step" in
    tier) python3 -m pytest -q -p no:cacheprovider -m gpu -rs > "$OUT/r/gpu-tier.log" 2>&1; rc=$?
          tail -1 "$OUT/r/gpu-tier.log" ;;
    baseline) $S --update-baseline --out "$OUT/r/baseline" > "$OUT/r/baseline.log" 2>&1; rc=$?
              cp -r results/baselines "$OUT/r/" ;;
    slow) cp zo2bench/engine/offload.py /tmp/offload.py
          sed -i 's/self.prefetch = max(0, min(prefetch, len(self.streamed) - 1))/self.prefetch = 0/' zo2bench/engine/offload.py
          grep -q "self.prefetch = 0$" zo2bench/engine/offload.py || echo "slow: the change did not apply"
          ZO2BENCH_GIT_DIRTY=1 $S --out "$OUT/r/slow" > "$OUT/r/slow.log" 2>&1; rc=$?
          cp /tmp/offload.py zo2bench/engine/offload.py ;;
    rerun-*) $S --out "$OUT/r/$step" > "$OUT/r/$step.log" 2>&1; rc=$? ;;
    *) echo "unknown step $step"; continue ;;
  esac
  echo "== $step: exit $rc in $(( $(date +%s) - t0 )) s"
  [ -f "$OUT/r/$step.log" ] && grep -E "worse|regress|verdict|baseline|exit|same|better" "$OUT/r/$step.log" | tail -6
done
pack
