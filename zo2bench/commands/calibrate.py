"""`zo2bench calibrate`: measure this machine's transfer, memory and matmul floors in one run.

    zo2bench calibrate                          # stored as results/calibration/<machine_id>/calibration-<UTC>.json
    zo2bench calibrate --out cal.json           # to this file instead of the store
    zo2bench calibrate --device cpu --matmul-n 2048 --repeats 5

Sizes fit the device unless given: 1 GiB copies, 8192^3 matmuls and 5 repeats on CUDA (about 40 s on an
H100); 0.25 GiB, 1024^3 and 3 repeats on the CPU (seconds). Progress goes to stderr, one line per figure,
and the table to stdout. `bench-step` finds a stored calibration of the same machine and device by itself.
"""
from __future__ import annotations

import sys

from zo2bench.bench.calibrate import CPU_SIZES, GPU_SIZES, calibrate, format_table, store_calibration
from zo2bench.paths import deliver, save_record, usable_dir, writable_file


def register(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="measure host<->device bandwidth, memory bandwidth and matmul rates",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--out", metavar="FILE.json",
                   help="write the record to this file instead (default: store it under --results-dir)")
    p.add_argument("--results-dir", default="results",
                   help="the store: records go to RESULTS_DIR/calibration/<machine_id>/ unless --out is given")
    p.add_argument("--size-gib", type=float, default=None,
                   help=f"bytes per copy, in GiB (2**30) (default: {GPU_SIZES.size_gib:g} on CUDA, "
                        f"{CPU_SIZES.size_gib:g} on the CPU)")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"timed repeats per figure, after one warm-up (default: {GPU_SIZES.repeats} on CUDA, "
                        f"{CPU_SIZES.repeats} on the CPU)")
    p.add_argument("--device", default="auto", help="auto (CUDA if there is a GPU, else cpu) | cpu | cuda | cuda:N")
    p.add_argument("--matmul-n", type=int, default=None,
                   help=f"matmul size n for n x n x n (default: {GPU_SIZES.matmul_n} on CUDA, "
                        f"{CPU_SIZES.matmul_n} on the CPU)")
    p.set_defaults(func=run)


def run(args) -> int:
    writable_file(args.out, "--out")
    if not args.out:
        usable_dir(args.results_dir, "--results-dir")
    record = calibrate(device=args.device, size_gib=args.size_gib, repeats=args.repeats, matmul_n=args.matmul_n)
    if args.out:
        return deliver(record, args.out, format_table(record))
    print(format_table(record), flush=True)
    try:
        path = store_calibration(record, args.results_dir)
    except OSError as e:  # measured is measured: the record goes to stdout rather than nowhere
        print(f"zo2bench: error: --results-dir {args.results_dir}: cannot store the calibration "
              f"({e.strerror or e}); the record follows on stdout", file=sys.stderr, flush=True)
        save_record(record, "-")
        return 1
    print(f"stored {path}", file=sys.stderr)
    return 0
