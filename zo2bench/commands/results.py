"""`zo2bench results`: the rows that sweeps recorded, listed or exported as one flat table.

    zo2bench results list                                            # sweep files: series, machine, rows
    zo2bench results export --series memory_scaling --out memory.csv
    zo2bench results export --machine h100-80gb-hbm3 --format parquet --out all.parquet   # needs pyarrow
    zo2bench results export --all                                    # every row, not only each cell's latest

One row per cell (the latest, when --force ran a cell again), nested fields as dotted columns
(step_time_s.median, memory.views.measured.host_rss_peak_bytes, ...), per-step lists as JSON text.
Without --out the CSV goes to stdout.
"""
from __future__ import annotations

import importlib.util
import sys

from zo2bench.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("results", help="list or export the rows recorded by sweeps")
    what = p.add_subparsers(dest="action", required=True, parser_class=type(p))  # the CLI's one-line errors
    for name, helptext in (("list", "the sweep files under the results directory"),
                           ("export", "one flat table (CSV or Parquet), one row per cell")):
        q = what.add_parser(name, help=helptext)
        q.add_argument("--results-dir", default="results")
        q.add_argument("--series", help="only this series (e.g. memory_scaling)")
        q.add_argument("--machine", help="only this machine id (a directory under results/<series>/)")
        if name == "export":
            q.add_argument("--format", choices=["csv", "parquet"], default="csv")
            q.add_argument("--out", help="output file (default: CSV to stdout)")
            q.add_argument("--all", action="store_true", help="every row, also those a --force re-run superseded")
        q.set_defaults(func=main)


def _rows(args) -> tuple[list, list]:
    from zo2bench import results

    files = results.sweep_files(args.results_dir, args.series, args.machine)
    if not files:
        where = "/".join([args.results_dir, args.series or "*", args.machine or "*"])
        raise UserError(f"no sweep results under {where}/*.jsonl; run `zo2bench sweep experiments/NAME.toml` first")
    return files, [row for f in files for row in results.read_rows(f)]


def main(args) -> int:
    from zo2bench import results

    files, rows = _rows(args)
    if args.action == "list":
        for f in files:  # _rows has read (and warned about) each file once
            n = len(results.read_rows(f, warn=False))
            print(f"{f.parent.parent.name:<20} {f.parent.name:<32} {n:>5} rows  {f}")
        return 0
    if not args.all:
        rows = results.latest_rows(rows)
    df = results.table(rows)
    if args.format == "parquet":
        if not args.out:
            raise UserError("--format parquet writes a binary file: give --out FILE.parquet")
        if not any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet")):
            raise UserError("Parquet export needs pyarrow (pip install pyarrow), which is not installed; "
                            "CSV works without it: --format csv")
        df.to_parquet(args.out, index=False)
    elif args.out:
        df.to_csv(args.out, index=False)
    else:
        df.to_csv(sys.stdout, index=False)
    if args.out:
        print(f"wrote {len(df)} rows x {len(df.columns)} columns from {len(files)} file(s) to {args.out}",
              file=sys.stderr)
    return 0
