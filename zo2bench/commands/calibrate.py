"""`zo2bench calibrate`: measure this machine's transfer, memory and matmul floors in one run.

    zo2bench calibrate --out results/calibration-h100.json
    zo2bench calibrate --size-gib 0.25 --repeats 3          # prints a table, writes nothing
    zo2bench calibrate --device cpu --matmul-n 1024

Progress goes to stderr, one line per figure. See zo2bench/bench/calibrate.py for the record.
"""
from __future__ import annotations

from zo2bench.bench.calibrate import calibrate, format_table
from zo2bench.results import write_json_atomic


def register(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="measure host<->device bandwidth, memory bandwidth and matmul rates",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--out", metavar="FILE.json", help="write the calibration record here (default: print a table)")
    p.add_argument("--size-gib", type=float, default=1.0, help="bytes per copy, in GiB (2**30); default 1.0")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per figure, after one warm-up; default 5")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N; default auto")
    p.add_argument("--matmul-n", type=int, default=None,
                   help="matmul size n for n x n x n; default 8192 on CUDA, 2048 on the CPU")
    p.set_defaults(func=run)


def run(args) -> int:
    record = calibrate(device=args.device, size_gib=args.size_gib, repeats=args.repeats, matmul_n=args.matmul_n)
    if args.out:
        write_json_atomic(args.out, record)
        print(f"wrote {args.out}")
    else:
        print(format_table(record))
    return 0
