"""`zo2bench sweep`: run an experiment series, one subprocess per cell, resuming what is already recorded.

    zo2bench sweep experiments/memory_scaling.toml                  # profile "gpu" with CUDA, else "cpu"
    zo2bench sweep experiments/throughput_scaling.toml --profile cpu --only-models opt-tiny
    zo2bench sweep experiments/smoke.toml --dry-run                 # the cells and what would happen to each
    zo2bench sweep experiments/smoke.toml --force                   # run again cells already recorded
    zo2bench sweep experiments/smoke.toml --redo-before 2026-11-23T10:00:00Z   # ...those recorded before then,
                                                                    # resumable like a first run
    zo2bench sweep experiments/memory_scaling.toml --allow-dirty    # uncommitted code; rows say allow_dirty

A re-run resumes: cells recorded on this machine are not run again, except failures (error, timeout,
nonfinite), which are retried unless --no-retry. A series other than `smoke` runs only from committed code
(git status of zo2bench/ and experiments/, or ZO2BENCH_GIT_COMMIT with ZO2BENCH_GIT_DIRTY=0 for a copy
without .git), so that every row names the code that made it. One sweep at a time per results folder.

Exit status: 0 when the latest row of every cell of the series (on this machine, this run's or earlier) is
an outcome (ok, oom, skipped, infeasible are results), 1 when one is a failure (error, timeout, nonfinite),
2 on bad input or a results folder held by another sweep (before anything runs), 130 when interrupted.
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run an experiment series (experiments/*.toml), a subprocess per cell")
    p.add_argument("file", help="an experiment file, e.g. experiments/memory_scaling.toml")
    p.add_argument("--profile", help="a [profiles.NAME] of the file (default: gpu with CUDA, else cpu)")
    p.add_argument("--force", action="store_true", help="run again the cells already recorded on this machine")
    p.add_argument("--redo-before", metavar="UTC", type=_utc_time,
                   help="run again the cells recorded before this UTC time (YYYY-MM-DDTHH:MM:SSZ); resumable")
    p.add_argument("--no-retry", action="store_true",
                   help="keep failed cells (error, timeout, nonfinite) as recorded instead of running them again")
    p.add_argument("--allow-dirty", action="store_true",
                   help="run a series with uncommitted changes in zo2bench/ or experiments/; rows get allow_dirty")
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

    experiment = load(args.file)
    # --only-models a,b works as well as --only-models a b
    only = [m for arg in args.only_models for m in arg.split(",") if m] if args.only_models else None
    dirty_code = "ignore" if experiment.name == "smoke" else "allow" if args.allow_dirty else "refuse"
    summary = sweep(experiment, profile=args.profile, results_dir=args.results_dir, force=args.force,
                    only_models=only, dry_run=args.dry_run, redo_before=args.redo_before,
                    retry_failed=not args.no_retry, dirty_code=dirty_code)
    return 1 if summary["failed"] and not args.dry_run else 0
