"""`zo2bench plan`: what this GPU and host can fine-tune, and how fast, predicted from the stored fits.

    zo2bench plan --gpu-memory 24GiB --host-memory 256GiB                     # the fitted machine's link
    zo2bench plan --gpu-memory 24GiB --host-memory 256GiB --link-gbps 25      # a 25 GB/s link each way
    zo2bench plan --gpu-memory 80GiB --host-memory 1TiB --calibration my-calibration.json
    zo2bench plan ... --machine h100-80gb-hbm3 --results results/ --models opt-13b,opt-30b

Per model and mode: whether it fits (at the upper end of the 95% prediction interval), the largest batch x
seq that fits, and the predicted step time and tokens/s there, with their prediction intervals. Then document
002's section 3.1 (minimum hardware per model size) checked the same way. Every number is a prediction from
the fits of one measured machine (analysis.plan says what carries over and what does not).
Sizes: GiB/MiB/TiB are binary, GB/MB/TB decimal; a bare number is GiB.
"""
from __future__ import annotations

import json
import re
import sys

from zo2bench.errors import UserError

_UNITS = {"": 2**30, "gib": 2**30, "gb": 1e9, "g": 2**30, "mib": 2**20, "mb": 1e6, "tib": 2**40, "tb": 1e12,
          "t": 2**40}


def parse_size(text: str, what: str) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text or "")
    if not m or m.group(2).lower() not in _UNITS or float(m.group(1)) <= 0:
        raise UserError(f"{what}: '{text}' is not a size; write e.g. 24GiB, 80GB or 1TiB")
    return float(m.group(1)) * _UNITS[m.group(2).lower()]


def register(sub) -> None:
    p = sub.add_parser("plan", help="what fits a GPU and host memory, and how fast (predicted from the fits)")
    p.add_argument("--gpu-memory", required=True,
                   help="GPU memory, e.g. 24GiB (binary) or 24GB (decimal); required, no default")
    p.add_argument("--host-memory", required=True, help="host memory, e.g. 256GiB; required, no default")
    link = p.add_mutually_exclusive_group()
    link.add_argument("--link-gbps", type=float, help="host-device link, GB/s (10^9 B/s) each way "
                      "(default: the measured machine's calibrated link)")
    link.add_argument("--calibration", help="a `zo2bench calibrate` record of the target machine "
                      "(default: the measured machine's calibration)")
    p.add_argument("--results", default="results", help="results folder holding the measured rows")
    p.add_argument("--machine", help="the measured machine whose fits to use (default: the only one with rows)")
    p.add_argument("--models", help="comma-separated models (default: OPT-125M to the documents' 1T shape)")
    p.set_defaults(func=main)


def _machine(res, wanted):
    have = [m for m in res.machines() if res.rows(machine=m, status="ok")]
    if not have:
        raise UserError(f"no measured rows under {res.root} to fit: "
                        "run `zo2bench sweep experiments/memory_scaling.toml`")
    if wanted:
        hit = [m for m in have if m == wanted] or [m for m in have if m.startswith(wanted)]
        if len(hit) != 1:
            raise UserError(f"--machine {wanted}: {'ambiguous' if hit else 'no rows'}; machines: {', '.join(have)}")
        return hit[0]
    if len(have) > 1:
        raise UserError(f"rows of several machines ({', '.join(have)}): choose one with --machine")
    return have[0]


def _calibration(path):
    if path is None:
        return None
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"--calibration {path}: {e}") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("figures", rec), dict):
        raise UserError(f"--calibration {path}: not a calibration record (no 'figures')")
    return rec


def main(args) -> int:
    from zo2bench.analysis import load, scaling
    from zo2bench.analysis import plan as planner
    from zo2bench.analysis.models import spec_of
    from zo2bench.report import plan_text

    gpu, host = parse_size(args.gpu_memory, "--gpu-memory"), parse_size(args.host_memory, "--host-memory")
    if args.link_gbps is not None and args.link_gbps <= 0:
        raise UserError(f"--link-gbps must be positive, got {args.link_gbps}")
    models = planner.PLAN_MODELS
    if args.models:
        models = tuple(m.strip() for m in args.models.split(",") if m.strip())
        for m in models:
            spec_of(m)  # a UserError naming close matches
    budget = planner.Budget(gpu, host, args.link_gbps, _calibration(args.calibration))
    res = load.load(args.results)
    for w in res.warnings:
        print(f"zo2bench: warning: {w}", file=sys.stderr)
    machine = _machine(res, args.machine)
    a = scaling.analyse(res, machine)
    rows = planner.plan(a, budget, models)
    print(plan_text.render(a, budget, rows, args))
    return 0
