#!/usr/bin/env bash
# Distributed ZO2 on one host of N GPUs (device tool: nvidia-h100-x2 with N=2, nvidia-h100-x4 with N=4):
# the gpu2 tests, exactness at opt-125m fp32 (1 GPU against N), then one GPU against N GPUs per strategy
# (zo2 fp16, T 2048, batch 8, the same global batch), with a table of step times and peaks.
#   ZO2BENCH_GIT_COMMIT=$(git rev-parse HEAD) bash tools/device_dist.sh 2            # about 6 min
#   ZO2BENCH_GIT_COMMIT=$(git rev-parse HEAD) MODELS="opt-1.3b opt-13b" bash tools/device_dist.sh 4
set -uo pipefail
N=${1:-2}
MODELS=${MODELS:-opt-1.3b}
export PYTHONPATH=. PYTHONUNBUFFERED=1 ZO2BENCH_GIT_DIRTY=${ZO2BENCH_GIT_DIRTY:-0}
# NVLink multicast stays off on these machines (KINDS.md); the ranks inherit this environment.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=index,name,memory.total,pci.bus_id --format=csv,noheader; nvidia-smi topo -m | head -8
python3 -c 'import torch; print("torch", torch.__version__, "gpus", torch.cuda.device_count())'
Z="python3 -m zo2bench run"

# 1. the GPU tier: two GPUs against one (pert and shards bitwise; dp within 1e-6 on the losses)
python3 -m pytest -q -p no:cacheprovider -rs -m gpu tests/test_distributed.py 2>&1 | tail -4

# 2. exactness at a real model size, fp32: every strategy against one GPU
E="--model opt-125m --mode zo2 --dtype fp32 --batch 8 --seq 256 --steps 4 --lr 1e-3 --seed 1"
$Z $E --out "$OUT/exact-1.json" > /dev/null 2>&1
if [ "$N" = 2 ]; then STRATS="--pert=2_--weight-shard=1 --pert=2 --dp=2_--pert=1 --mode=mezo_--pert=2_--weight-shard=2"
else STRATS="--pert=2_--weight-shard=1 --dp=2_--pert=2 --dp=4_--pert=1 --mode=mezo_--weight-shard=4"; fi
for s in $STRATS; do
  tag=$(echo "$s" | tr -d -- '-=_')
  $Z $E --nproc-per-node "$N" ${s//_/ } --out "$OUT/exact-$tag.json" > "$OUT/exact-$tag.log" 2>&1 \
    || tail -3 "$OUT/exact-$tag.log"
done
python3 - "$OUT" <<'PY'
import glob, json, sys
ref = json.load(open(f"{sys.argv[1]}/exact-1.json"))
key = lambda r: [(s["loss_plus"], s["loss_minus"], s["projected_grad"]) for s in r["steps"]]
for f in sorted(glob.glob(f"{sys.argv[1]}/exact-*.json")):
    r = json.load(open(f))
    if "distributed" not in r:
        continue
    rel = max(abs(a - b) / abs(b) for x, y in zip(key(r), key(ref)) for a, b in zip(x, y))
    print(f"exact {r['config']['mode']:>4} {r['distributed']['strategy']:>18} bitwise={key(r) == key(ref)} "
          f"digest={r['final_params_sha256'] == ref['final_params_sha256']} max_rel={rel:.2e}")
PY

# 3. speed: one GPU against N, the same global batch, per strategy (W1: every rank streams whole blocks)
for m in $MODELS; do
  S="--model $m --mode zo2 --dtype fp16 --batch 8 --seq 2048 --warmup 2 --steps 4"
  $Z $S --out "$OUT/speed-$m-1.json" > "$OUT/speed-$m-1.log" 2>&1 || tail -3 "$OUT/speed-$m-1.log"
  for s in default --weight-shard=1 --pert=1 --mode=mezo_--weight-shard=$N; do
    tag=$(echo "$s" | tr -d -- '-=_'); args=${s//_/ }; [ "$s" = default ] && args=""
    $Z $S --nproc-per-node "$N" $args --out "$OUT/speed-$m-$N-$tag.json" > "$OUT/speed-$m-$N-$tag.log" 2>&1 \
      || tail -3 "$OUT/speed-$m-$N-$tag.log"
  done
done
python3 - "$OUT" <<'PY'
import glob, json, statistics, sys
rows = {}
for f in sorted(glob.glob(f"{sys.argv[1]}/speed-*.json")):
    r = json.load(open(f)); c = r["config"]
    med = statistics.median(s["seconds"] for s in r["steps"] if not s["warmup"])
    d = r.get("distributed") or {"strategy": "1 GPU", "world_size": 1}
    peak = (r["memory"].get("measured") or {}).get("torch_peak_allocated_bytes") or 0
    rows.setdefault(c["model"], []).append((d["world_size"], c["mode"], d["strategy"], med, peak))
for model, rs in rows.items():
    base = next((m for n, _, _, m, _ in rs if n == 1), None)
    for n, mode, strat, med, peak in sorted(rs):
        print(f"{model:>9} {n} GPU {mode:>4} {strat:>18} step {med:7.3f} s  {8 * 2048 / med:9,.0f} tok/s  "
              f"x{(base / med if base else float('nan')):.2f}  peak {peak / 2**30:6.2f} GiB")
PY
