"""`zo2bench bench-step`: step time, floors and where the time goes, for one configuration.

    zo2bench bench-step --model opt-1.3b-untied --mode zo2 --dtype fp16 --batch 1 --seq 2048 --out b.json
"""
from __future__ import annotations

from zo2bench.commands.run import add_run_options, config_from_args
from zo2bench.config import RunConfig
from zo2bench.errors import GPUOutOfMemory, NonFiniteLoss, UserError


def register(sub) -> None:
    p = sub.add_parser("bench-step", help="time steps against the machine's transfer and compute floors")
    add_run_options(p, RunConfig(model="opt-1.3b-untied", warmup=3, steps=10))
    p.add_argument("--calibration", help="a calibration JSON to use (default: a stored one for this machine)")
    p.add_argument("--results-dir", default="results", help="where stored calibrations are looked for")
    p.add_argument("--out", help="write the JSON record here")
    p.set_defaults(func=main)


def main(args) -> int:
    from zo2bench.bench.step import bench_step, table
    from zo2bench.results import write_json_atomic

    try:
        b = bench_step(config_from_args(args), args.calibration, args.results_dir)
    except (GPUOutOfMemory, NonFiniteLoss) as e:
        raise UserError(str(e)) from None
    print(table(b))
    if args.out:
        write_json_atomic(args.out, b)
    return 0
