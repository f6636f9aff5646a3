#!/usr/bin/env bash
# Series re-run on the GPU machine (device tool), joined across calls by the sweep's resumption.
#   ZO2BENCH_GIT_COMMIT=<sha, written out> bash tools/device_series.sh SECONDS [--gpu-tests] SERIES...
# Runs the GPU test tier first if asked, then each series' gpu profile until SECONDS have passed (a cell
# cut off leaves no row and runs again next time), and packs the series' rows into $OUT/results.tgz.
set -uo pipefail
source tools/device_commit.sh  # the commit the rows name: a carried bundle, or the sha written out
export PYTHONPATH=. PYTHONUNBUFFERED=1 ZO2BENCH_GIT_DIRTY=${ZO2BENCH_GIT_DIRTY:-0}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
deadline=$(( $(date +%s) + $1 )); shift
nvidia-smi -L
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
if [ "${1:-}" = "--gpu-tests" ]; then
  shift
  python3 -m pytest -m gpu -q -p no:cacheprovider -rs tests > "$OUT/gpu-tests.log" 2>&1
  grep -E "passed|failed|error" "$OUT/gpu-tests.log" | tail -3
fi
for series in "$@"; do
  left=$(( deadline - $(date +%s) ))
  [ "$left" -gt 30 ] || break
  timeout -s INT "$left" python3 -m zo2bench sweep "experiments/$series.toml" --profile gpu > "$OUT/$series.log" 2>&1
  echo "$series: exit $?"; tr '\r' '\n' < "$OUT/$series.log" | grep -v '^\s*$' | tail -4
done
tar czf "$OUT/results.tgz" results/memory_scaling results/throughput_scaling 2>/dev/null
