"""`zo2bench bench-step`: step time, floors and where the time goes, for one configuration.

    zo2bench bench-step --model opt-1.3b-untied --mode zo2 --dtype fp16 --batch 1 --seq 2048 --out b.json
    zo2bench bench-step --model opt-tiny --device cpu --seq 64      # seconds on a CPU, calibration included

The floors come from --calibration, else from this machine's stored calibration for the device, else
from one measured now (sizes that fit the device) and stored under --results-dir for the next call.
Every path is checked before anything runs.
"""
from __future__ import annotations

import sys

from zo2bench.commands.run import add_run_options, config_from_args
from zo2bench.config import RunConfig
from zo2bench.errors import GPUOutOfMemory, NonFiniteLoss, UserError
from zo2bench.paths import deliver, readable_file, usable_dir, writable_file


def register(sub) -> None:
    p = sub.add_parser("bench-step", help="time steps against the machine's transfer and compute floors",
                       description=__doc__.split("\n\n")[0])
    add_run_options(p, RunConfig(model="opt-1.3b-untied", warmup=3, steps=10))
    p.add_argument("--calibration", metavar="FILE.json",
                   help="a calibration record to use (default: this machine's stored one, measured and stored "
                        "if there is none)")
    p.add_argument("--results-dir", default="results",
                   help="where stored calibrations are looked for, and a new one is stored")
    p.add_argument("--out", metavar="FILE.json", help="write the JSON record here; '-' prints it on stdout "
                                                      "(default: only the table)")
    p.set_defaults(func=main)


def main(args) -> int:
    from zo2bench.bench.calibrate import load_calibration

    if readable_file(args.calibration, "--calibration"):
        load_calibration(args.calibration)  # not a calibration record: say so now, not after the steps
    else:
        usable_dir(args.results_dir, "--results-dir")
    writable_file(args.out, "--out")
    print("bench-step: importing torch and transformers (a few seconds, about 10 s on some machines)",
          file=sys.stderr, flush=True)
    from zo2bench.bench.step import bench_step, table

    try:
        b = bench_step(config_from_args(args), args.calibration, args.results_dir)
    except (GPUOutOfMemory, NonFiniteLoss) as e:
        raise UserError(str(e)) from None
    return deliver(b, args.out, table(b))
