#!/usr/bin/env bash
# Distributed ZO2 on a 2-GPU machine in ONE device call of at most 570 s (device tool: nvidia-h100-x2):
# the gpu2 test tier, then the gpu_scaling series' gpu2 profile until the deadline, its rows packed into
# $OUT/gpu_scaling-rows.tgz every minute and once more at the end, before the call's limit (a call that
# overruns loses $OUT). A cell cut off by the deadline leaves no row; unpack the tgz into results/ here and
# call again: the sweep resumes where it stopped.
#   ZO2BENCH_GIT_COMMIT=<sha, written out> bash tools/device_dist.sh            # gpu2, 540 s
#   ZO2BENCH_GIT_COMMIT=... PROFILE=gpu4 SECONDS_LEFT=540 bash tools/device_dist.sh # the 4-GPU host
#   SKIP_TESTS=1 ...                                                                # the series alone
#   LARGE=opt-66b LARGE_S=240 ...   # before the series: the memory series' large profile for these models (one
#                                   # host of 256 GiB holds OPT-66B's blocks), at most LARGE_S seconds, its rows
#                                   # packed into $OUT/memory-large-rows.tgz
# Unpack on the workstation: tar xzf gpu_scaling-rows.tgz   (from the repository root: results/gpu_scaling/...)
set -uo pipefail
source tools/device_commit.sh  # the commit the rows name: a carried bundle, or the sha written out
START=$(date +%s)
BUDGET=${SECONDS_LEFT:-540}           # s from the start by which the last pack has happened (call limit 570)
PROFILE=${PROFILE:-gpu2}
export PYTHONPATH=. PYTHONUNBUFFERED=1 ZO2BENCH_GIT_DIRTY=${ZO2BENCH_GIT_DIRTY:-0}
# NVLink multicast stays off on these machines (KINDS.md); the ranks inherit this environment.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
[ -n "${ZO2BENCH_GIT_COMMIT:-}" ] || echo "warning: ZO2BENCH_GIT_COMMIT is not set: the sweep refuses an unknown commit"
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
log_tail() {  # log_tail FILE N: a sweep log's last N lines, progress-bar redraws left out
  tr '\r' '\n' < "$1" | grep -v '^\s*$' | grep -v '^\[' | tail -"$2" | cut -c1-240
}
pack() {  # atomically: a half-written tgz never replaces a whole one
  [ -d results/gpu_scaling ] || return 0
  tar czf "$OUT/.rows.tgz.part" results/gpu_scaling 2>/dev/null && mv -f "$OUT/.rows.tgz.part" "$OUT/gpu_scaling-rows.tgz"
}
nvidia-smi --query-gpu=index,name,memory.total,pci.bus_id --format=csv,noheader; nvidia-smi topo -m | head -4
python3 -c 'import torch, psutil; print("torch", torch.__version__, "gpus", torch.cuda.device_count(),
"host available GiB", round(psutil.virtual_memory().available / 2**30))'

# 0. this machine's calibration (stored under results/calibration/<machine>/, packed into $OUT/calibration.tgz):
# without one the scaling table has no compute floor (the first 2 x H200 run's rows had transfer floors only)
timeout 90 python3 -m zo2bench calibrate > "$OUT/calibrate.log" 2>&1; echo "calibrate: exit $?"
[ -d results/calibration ] && tar czf "$OUT/calibration.tgz" results/calibration

# 1. the gpu2 tier: two GPUs against one (pert and shards bitwise; dp within 1e-6), bench-step on 2 ranks
if [ -z "${SKIP_TESTS:-}" ]; then
  timeout -s INT 200 python3 -m pytest -q -p no:cacheprovider -rs -m gpu2 tests/test_distributed.py \
    tests/test_gpu_scaling.py > "$OUT/gpu2-tests.log" 2>&1
  echo "gpu2 tests: exit $? after $(( $(date +%s) - START )) s"; tail -4 "$OUT/gpu2-tests.log"
fi

# 1b. the largest models on one GPU (issue 12's first part), when asked: one build per cell, interrupted with its
# rows kept (SIGINT) before LARGE_S
if [ -n "${LARGE:-}" ]; then
  timeout -s INT -k 10 "${LARGE_S:-240}" python3 -m zo2bench sweep experiments/memory_scaling.toml --profile large \
    --only-models "$LARGE" > "$OUT/memory-large.log" 2>&1
  echo "memory large ($LARGE): exit $? after $(( $(date +%s) - START )) s"
  log_tail "$OUT/memory-large.log" 8
  [ -d results/memory_scaling ] && tar czf "$OUT/memory-large-rows.tgz" results/memory_scaling
fi

# 2. the series, packed every minute while it runs; stopped (SIGINT: rows kept) 20 s before the budget ends
# (the packer sleeps in 5 s steps and checks a stop file: an orphaned `sleep 60` would hold stdout open)
STOP="$OUT/.stop"; rm -f "$STOP"
( while [ ! -e "$STOP" ]; do for _ in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 5; [ -e "$STOP" ] && exit 0; done; pack; done
) > /dev/null 2>&1 & PACKER=$!
t=$(( $(left) - 20 ))
if [ "$t" -gt 30 ]; then
  timeout -s INT -k 10 "$t" python3 -m zo2bench sweep experiments/gpu_scaling.toml --profile "$PROFILE" \
    > "$OUT/gpu_scaling-$PROFILE.log" 2>&1
  echo "sweep: exit $? after $(( $(date +%s) - START )) s"
  log_tail "$OUT/gpu_scaling-$PROFILE.log" 16
else
  echo "sweep: not started, ${t} s left"
fi
touch "$STOP"; wait "$PACKER" 2>/dev/null; rm -f "$STOP"
pack; ls -la "$OUT"; echo "done after $(( $(date +%s) - START )) s"
