"""`zo2bench sweep`: run an experiment series, one subprocess per cell, resuming what is already recorded.

    zo2bench sweep experiments/memory_scaling.toml                  # profile "gpu" with CUDA, else "cpu"
    zo2bench sweep experiments/throughput_scaling.toml --profile cpu --only-models opt-tiny
    zo2bench sweep experiments/smoke.toml --dry-run                 # the cells and what would happen to each
    zo2bench sweep experiments/smoke.toml --force                   # run again cells already recorded
    zo2bench sweep experiments/smoke.toml --redo-before 2026-11-23T10:00:00Z   # ...those recorded before then,
                                                                    # resumable like a first run

Exit status: 0 when every cell ended with an outcome (ok, oom, skipped, infeasible, nonfinite are results),
1 when a cell crashed (`error`), 2 on bad input (before anything runs), 130 when interrupted.
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run an experiment series (experiments/*.toml), a subprocess per cell")
    p.add_argument("file", help="an experiment file, e.g. experiments/memory_scaling.toml")
    p.add_argument("--profile", help="a [profiles.NAME] of the file (default: gpu with CUDA, else cpu)")
    p.add_argument("--force", action="store_true", help="run again the cells already recorded on this machine")
    p.add_argument("--redo-before", metavar="UTC", type=_utc_time,
                   help="run again the cells recorded before this UTC time (YYYY-MM-DDTHH:MM:SSZ); resumable")
    p.add_argument("--results-dir", default="results", help="rows go to RESULTS_DIR/<series>/<machine_id>/")
    p.add_argument("--only-models", nargs="+", metavar="MODEL", help="run only these models of the grid")
    p.add_argument("--dry-run", action="store_true", help="list the cells and what would happen; run nothing")
    p.set_defaults(func=main)


def _utc_time(text: str) -> str:
    import argparse
    import time

    try:
        time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a UTC time like 2026-11-23T10:00:00Z") from None
    return text


def main(args) -> int:
    from zo2bench.experiments.runner import sweep
    from zo2bench.experiments.spec import load

    # --only-models a,b works as well as --only-models a b
    only = [m for arg in args.only_models for m in arg.split(",") if m] if args.only_models else None
    summary = sweep(load(args.file), profile=args.profile, results_dir=args.results_dir, force=args.force,
                    only_models=only, dry_run=args.dry_run, redo_before=args.redo_before)
    return 1 if summary["counts"].get("error") else 0
