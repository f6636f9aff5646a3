#!/usr/bin/env bash
# The convergence series (issue 11) on the GPU machine (device tool), joined across calls by the sweep's
# resumption: commit the rows each call brings back before the next, so that the next call skips them.
#   ZO2BENCH_GIT_COMMIT=<the caller's HEAD, 40 hex digits> bash tools/device_convergence.sh SECONDS PROFILE
# The commit must be written out by the caller (a `$(git rev-parse HEAD)` in the command would run on the
# device, whose .git, if any, is stale) and the tree must be that commit, clean: the rows say so.
# The machine is bare every call: the ladder's pretrained models are rebuilt (into $ZO2BENCH_CACHE, on the
# machine's disk) by the first cell of each size that this call runs. The sweep is interrupted 30 s before
# SECONDS (a cell cut off leaves no row and runs again next time), its rows are packed into
# $OUT/convergence.tgz (extract at the repository root) and a short summary is printed last.
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1 ZO2BENCH_GIT_DIRTY=${ZO2BENCH_GIT_DIRTY:-0}
export ZO2BENCH_CACHE=${ZO2BENCH_CACHE:-/tmp/zo2bench-cache}
[ $# -eq 2 ] || { echo "usage: $0 SECONDS PROFILE" >&2; exit 2; }
source tools/device_commit.sh  # the commit the rows name: a carried bundle, or the sha written out
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
start=$(date +%s); budget=$(( $1 - 30 )); profile=$2
[ "$budget" -gt 0 ] || { echo "SECONDS must exceed 30" >&2; exit 2; }
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
log="$OUT/convergence-$profile.log"
timeout -s INT "$budget" python3 -m zo2bench sweep experiments/convergence_scaling.toml --profile "$profile" \
  > "$log" 2>&1
rc=$?
tar czf "$OUT/convergence.tgz" results/convergence_scaling 2>/dev/null || echo "no rows to pack"
echo "== sweep exit $rc after $(( $(date +%s) - start )) s (124 or 130: stopped at the deadline; rerun to resume)"
# each size's last pretraining line, the sweep's last cells and its closing lines, and where it stopped
tr '\r' '\n' < "$log" | grep -oE "pretraining ladder-[0-9x]+: step [0-9]+/[0-9]+, loss [0-9.]+" \
  | awk '{split($4, a, "/"); if (a[1] == a[2]) print}' | sort -u
tr '\r' '\n' < "$log" | grep -v '^\s*$' | grep -v '^\[' | tail -8 | cut -c1-200
tr '\r' '\n' < "$log" | grep '^\[' | tail -1 | cut -c1-200
python3 - <<'PY' 2>/dev/null
import json, pathlib
rows = {}
for f in pathlib.Path("results/convergence_scaling").rglob("*.jsonl"):
    for line in f.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "convergence" in r:
            rows[(r.get("machine_id"), r.get("key"))] = r
st = {}
for r in rows.values():
    st[r.get("status")] = st.get(r.get("status"), 0) + 1
print("cells recorded (all calls):", len(rows), st)
PY
