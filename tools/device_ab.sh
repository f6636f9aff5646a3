#!/usr/bin/env bash
# Issue 13 on one H100 (device tool, one call): the code before a change beside the code after it, config by
# config, in one process order on one machine (these machines drift; issue 13 asks for both in one run).
#   BASE=<sha in the bundle> AB_BUDGET_S=560 bash tools/device_ab.sh        (carry .regression/repo.bundle)
#   AB_SIDES=new AB_CONFIGS="..." bash tools/device_ab.sh                    (main alone: no BASE)
# AB_CONFIGS: lines "NAME bench-step args" (fp16, T 2048 unless they say otherwise); the default is the
# Llama-style set. Each config runs BASE then main.
# First the GPU test tier named by AB_TESTS (skipped if empty), then one calibration, then the pairs; the
# records go to $OUT/ab/{base,new}/bench-NAME.json and are packed into $OUT/ab.tgz after each one.
set -uo pipefail
source tools/device_commit.sh  # main from the bundle: the rows name it
export PYTHONUNBUFFERED=1
NEW=$ZO2BENCH_GIT_COMMIT
SIDES=${AB_SIDES:-base new}
OUT=${OUT:-/tmp/out}; D="$OUT/ab"; mkdir -p "$D/base" "$D/new"
DEADLINE=$((SECONDS + ${AB_BUDGET_S:-560}))
left() { echo $((DEADLINE - SECONDS)); }
pack() { tar -czf "$OUT/ab.tgz.part" -C "$OUT" ab && mv "$OUT/ab.tgz.part" "$OUT/ab.tgz"; }
if [[ $SIDES == *base* ]]; then
  BASE=$(git rev-parse "${BASE:?BASE=<commit> of the code before}")
  git worktree add -f -q /tmp/base "$BASE" && echo "ab: base $BASE, new $NEW"
fi
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())" | tee "$D/versions.txt"
if [[ -n "${AB_TESTS:-}" ]]; then
  echo "== GPU test tier: $AB_TESTS"
  PYTHONPATH=. timeout $(( $(left) - 60 )) python3 -m pytest -q -p no:cacheprovider -m gpu $AB_TESTS 2>&1 \
    | tee "$D/pytest-gpu.txt" | grep -E "passed|failed|skipped|error|FAILED" | tail -12
  pack
fi
PYTHONPATH=. timeout 90 python3 -m zo2bench calibrate --out "$D/calibration.json" 2>&1 | tail -3
pack
CONFIGS=${AB_CONFIGS:-"llama-mezo-b1 --model llama3.2-1b --mode mezo --batch 1
llama-zo2-b1 --model llama3.2-1b --mode zo2 --batch 1
llama-zo2-b8 --model llama3.2-1b --mode zo2 --batch 8
qwen-mezo-b1 --model qwen2.5-0.5b --mode mezo --batch 1
qwen-zo2-b1 --model qwen2.5-0.5b --mode zo2 --batch 1
opt-zo2-b8 --model opt-1.3b-untied --mode zo2 --batch 8"}
while read -r name args; do
  [[ -z "$name" ]] && continue
  for side in $SIDES; do
    (( $(left) < 50 )) && { echo "ab: skipped $name $side (only $(left) s left)"; continue; }
    dir=$PWD; commit=$NEW; [[ $side == base ]] && { dir=/tmp/base; commit=$BASE; }
    ( cd "$dir" && PYTHONPATH="$dir" ZO2BENCH_GIT_COMMIT=$commit timeout $(( $(left) - 20 )) python3 -m zo2bench bench-step \
        --dtype fp16 --seq 2048 $args --device cuda --calibration "$D/calibration.json" --out "$D/$side/bench-$name.json" \
        2>"$D/$side/bench-$name.err" | grep -E "step time|step /|peak alloc" | sed "s/^/$name $side: /" )
    pack
  done
done <<< "$CONFIGS"
echo "ab: done with $(left) s to spare"
