#!/usr/bin/env bash
# Engine checks on the GPU machine (device tool): parity and no-drift tests, build time, sane speed.
#   bash tools/device_engine.sh     (writes under $OUT)
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
python3 -m pytest -q tests/test_engine.py -k "gpu" -p no:cacheprovider 2>&1 | tail -15
Z="python3 -m zo2bench run --device cuda --dtype fp16"
$Z --model opt-6.7b --mode zo2 --steps 2 --seq 512 --out "$OUT/build-opt-6.7b-zo2.json" && python3 -c "import json;r=json.load(open('$OUT/build-opt-6.7b-zo2.json'));print('opt-6.7b zo2 build s', r['build']['seconds'])"
$Z --model opt-6.7b --mode mezo --steps 2 --seq 512 --out "$OUT/build-opt-6.7b-mezo.json" && python3 -c "import json;r=json.load(open('$OUT/build-opt-6.7b-mezo.json'));print('opt-6.7b mezo build s', r['build']['seconds'])"
for spec in "zo2 1" "mezo 1" "zo2 8"; do set -- $spec
  $Z --model opt-1.3b-untied --mode $1 --batch $2 --seq 2048 --warmup 2 --steps 6
done
python3 -m zo2bench calibrate --out "$OUT/calibration.json" 2>&1 | tail -3
