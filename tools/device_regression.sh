#!/usr/bin/env bash
# Issue 10 on the GPU machine (device tool): the GPU tier,
# a stored baseline, a real regression caught, reruns of unchanged code; each step's outputs packed into
# $OUT/regression.tgz, a summary printed last.
#   bash tools/device_regression.sh SECONDS STEP...        (carry: [".regression/repo.bundle"])
# STEP: tier | baseline | memory (the memory series again, all cells, into results/) |
#       slow-ab (branch regress/slow-prefetch0, the engine's streaming made serial: the session's default
#       A/B against the baseline's commit, then its rows against the stored baseline, time gated) |
#       rerun-N (the session as CI runs it: an A/B of HEAD against the baseline's commit)
# A step starts only if it can end before SECONDS; slow-ab and rerun-N need a committed baseline.
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1 ZO2BENCH_GIT_DIRTY=${ZO2BENCH_GIT_DIRTY:-0}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT/r"
# An A/B checks commits out: carry a bundle of main and the branches it needs (tools/device_commit.sh)
source tools/device_commit.sh
start=$(date +%s); deadline=$(( start + $1 )); shift
pack() { tar czf "$OUT/regression.tgz" -C "$OUT" r && rm -rf "$OUT/r"; }
need() { case "$1" in tier) echo 150;; memory) echo 230;; baseline) echo 200;; *) echo 420;; esac; }
for step in "$@"; do
  left=$(( deadline - $(date +%s) - 10 ))
  [ "$left" -gt "$(need "$step")" ] || { echo "$step: not started ($left s left)"; continue; }
  S="timeout -s INT $left python3 -m zo2bench.regression.session"  # ends in time for pack, whatever happens
  t0=$(date +%s)
  case "$step" in
    tier) python3 -m pytest -q -p no:cacheprovider -m gpu -rs > "$OUT/r/gpu-tier.log" 2>&1; rc=$?
          tail -1 "$OUT/r/gpu-tier.log" ;;
    baseline) $S --update-baseline --out "$OUT/r/baseline" > "$OUT/r/baseline.log" 2>&1; rc=$?
              cp -r results/baselines "$OUT/r/" ;;
    memory) mkdir -p "$OUT/r/memory_scaling"
            timeout -s INT "$left" python3 -m zo2bench sweep experiments/memory_scaling.toml --profile gpu --force \
              --results-dir "$OUT/r/memory_scaling" > "$OUT/r/memory.log" 2>&1; rc=$?
            tr '\r' '\n' < "$OUT/r/memory.log" | grep -v '^\s*$' | tail -3 ;;
    slow-ab) git checkout -q regress/slow-prefetch0 && git log --oneline -1
             ZO2BENCH_GIT_COMMIT=$(git rev-parse HEAD) $S --out "$OUT/r/slow-ab" > "$OUT/r/slow-ab.log" 2>&1; rc=$?
             bdir=$(python3 -c 'from zo2bench.regression import baseline, hwclass, session
print(baseline.baseline_dir("results/baselines", hwclass.hardware_class(session.this_machine())))')
             python3 -m zo2bench compare "$bdir" "$OUT/r/slow-ab/ab/head" --format markdown \
               > "$OUT/r/slow-ab/head-against-stored-baseline.md" 2> "$OUT/r/slow-ab/compare.err"
             echo "head rows against the stored baseline, time gated: exit $?"
             git checkout -q - ;;
    rerun-*) $S --out "$OUT/r/$step" > "$OUT/r/$step.log" 2>&1; rc=$? ;;
    *) echo "unknown step $step"; continue ;;
  esac
  echo "== $step: exit $rc in $(( $(date +%s) - t0 )) s"
  [ -f "$OUT/r/$step.log" ] && grep -E "worse|regress|REGRESSION|verdict|baseline|A/B|exit" "$OUT/r/$step.log" | tail -6
done
pack
