"""`zo2bench compare`: two sets of sweep results, cell by cell, with a verdict per metric.

    zo2bench compare results/baselines/<class> .regression/run          # folders or *.jsonl files
    zo2bench compare BASE.jsonl NEW.jsonl --format markdown >> "$GITHUB_STEP_SUMMARY"
    zo2bench compare A B --time-pct 10 --gates status,memory            # looser time, no time or digest gate
    zo2bench compare A B --allow-different-hardware                     # every row is marked

Exit status: 0 when nothing got worse, 1 when something did, 2 for unusable input (no rows, a hardware
class that differs without --allow-different-hardware, bad options). The gates are in
zo2bench/regression/compare.py and docs/regression.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

from zo2bench.errors import UserError


def add_gate_arguments(p) -> None:
    from zo2bench.regression.compare import CHECKS, Gates
    from zo2bench.regression.render import FORMATS

    g = Gates()
    p.add_argument("--format", choices=FORMATS, default="text", help="output format")
    p.add_argument("--out", help="write the comparison to this file (default: stdout)")
    p.add_argument("--memory-pct", type=float, default=g.memory_pct,
                   help="memory: worse past this %% above the baseline ...")
    p.add_argument("--memory-floor-mib", type=float, default=g.memory_floor_mib,
                   help="... or this many MiB, whichever is larger")
    p.add_argument("--time-pct", type=float, default=g.time_pct,
                   help="step time: worse past this %% slower, when outside the noise")
    p.add_argument("--confidence", type=float, default=g.confidence,
                   help="of the step-time intervals, for the whole comparison (shared over its cells)")
    p.add_argument("--gates", default=",".join(CHECKS), help="the gates applied, comma-separated")
    p.add_argument("--allow-different-hardware", action="store_true",
                   help="compare results of different hardware classes (every row is marked)")


def gates_from(args):
    from zo2bench.regression.compare import Gates

    checks = tuple(c.strip() for c in args.gates.split(",") if c.strip())
    return Gates(memory_pct=args.memory_pct, memory_floor_mib=args.memory_floor_mib, time_pct=args.time_pct,
                 confidence=args.confidence, checks=checks)


def emit(report: dict, args) -> int:
    from zo2bench.regression.render import render

    out = render(report, args.format)
    if args.out:
        try:
            Path(args.out).write_text(out)
        except OSError as e:
            raise UserError(f"--out {args.out}: cannot write: {e.strerror}") from None
        print(f"zo2bench compare: {report['counts']['worse']} worse; written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(out)
    return report["exit_status"]


def register(sub) -> None:
    p = sub.add_parser("compare", help="compare two sets of sweep results cell by cell (exit 1 on a regression)")
    p.add_argument("baseline", help="a sweep file (*.jsonl) or a folder of them, e.g. results/baselines/<class>")
    p.add_argument("candidate", help="the results to check against the baseline")
    add_gate_arguments(p)
    p.set_defaults(func=main)


def main(args) -> int:
    from zo2bench.regression.compare import compare, load_side

    gates = gates_from(args)  # bad options fail before any file is read
    report = compare(load_side(args.baseline), load_side(args.candidate), gates,
                     allow_different_hardware=args.allow_different_hardware)
    return emit(report, args)
