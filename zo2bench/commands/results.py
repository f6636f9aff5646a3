"""`zo2bench results`: the rows that sweeps recorded, listed or exported as one flat table.

    zo2bench results list                                            # files: series, machine, rows, commits
    zo2bench results export --series memory_scaling --out memory.csv
    zo2bench results export --format table | less -S                 # aligned text, to read on the screen
    zo2bench results export --columns model,mode,tokens_per_s,host_rss_peak_mib
    zo2bench results export --all --format parquet --out all.parquet  # every field (Parquet needs pyarrow)
    zo2bench results export --all-rows                               # also rows a --force re-run superseded

The default columns are readable, with units in their names (see zo2bench/export.py for each); --columns
takes any of them or any dotted field that --all shows. One row per cell (its latest). Commits with
uncommitted changes (dirty) or unknown ones are marked: git_state in the export, "*" and "?" in the list.
Without --out the table goes to stdout.
"""
from __future__ import annotations

import importlib.util
import sys
from contextlib import nullcontext

from zo2bench.errors import UserError
from zo2bench.export import COLUMNS
from zo2bench.paths import writable_file


def register(sub) -> None:
    p = sub.add_parser("results", help="list or export the rows recorded by sweeps",
                       description=__doc__.split("\n\n")[0])
    what = p.add_subparsers(dest="action", required=True, metavar="ACTION",
                            parser_class=type(p))  # the CLI's one-line errors and help with defaults
    for name, helptext in (("list", "the sweep files under the results directory, with their commits"),
                           ("export", "one flat table (CSV, text or Parquet), one row per cell")):
        q = what.add_parser(name, help=helptext, description=helptext)
        q.add_argument("--results-dir", default="results", help="where the sweeps wrote their rows")
        q.add_argument("--series", help="only this series, e.g. memory_scaling (default: every series)")
        q.add_argument("--machine", help="only this machine id, a folder under results/<series>/ (default: every one)")
        if name == "export":
            q.add_argument("--format", choices=["csv", "table", "parquet"], default="csv",
                           help="csv, an aligned text table, or parquet (needs pyarrow and --out)")
            q.add_argument("--out", metavar="FILE", help="output file (default: stdout)")
            q.add_argument("--columns", metavar="A,B,...",
                           help="these columns, in this order: any of the default ones or a dotted field that "
                                f"--all shows (default: {', '.join(COLUMNS)})")
            q.add_argument("--all", action="store_true", dest="all_columns",
                           help="every field: the readable columns, then every dotted field of the rows")
            q.add_argument("--all-rows", action="store_true",
                           help="every row, also those a --force re-run superseded (default: each cell's latest)")
        q.set_defaults(func=main)


def _files_and_rows(args) -> list[tuple]:
    from zo2bench import results

    files = results.sweep_files(args.results_dir, args.series, args.machine)
    if not files:
        where = "/".join([args.results_dir, args.series or "*", args.machine or "*"])
        raise UserError(f"no sweep results under {where}/*.jsonl; run `zo2bench sweep experiments/NAME.toml` first")
    return [(f, results.read_rows(f)) for f in files]  # each file read once: its warnings show once


def _list(found: list[tuple]) -> int:
    from zo2bench.export import git_mark

    print(f"{'series':<20} {'machine':<32} {'rows':>5}  {'commits':<18} file")
    flagged = False
    for f, rows in found:
        marks = sorted({git_mark(r) for r in rows})
        flagged |= any(m.endswith(("*", "?")) for m in marks)
        print(f"{f.parent.parent.name:<20} {f.parent.name:<32} {len(rows):>5}  {' '.join(marks):<18} {f}")
    if flagged:
        print("commits: * = measured with uncommitted changes (dirty tree), ? = commit unknown")
    return 0


def main(args) -> int:
    if args.action == "export":
        writable_file(args.out, "--out")  # before reading every file, not after
    found = _files_and_rows(args)
    if args.action == "list":
        return _list(found)

    from zo2bench import results
    from zo2bench.export import as_text, export_table

    rows = [row for _, rows in found for row in rows]
    if not args.all_rows:
        rows = results.latest_rows(rows)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    df = export_table(rows, columns=columns, all_columns=args.all_columns)
    out = None if args.out in (None, "-") else args.out
    if args.format == "parquet":
        if not out:
            raise UserError("--format parquet writes a binary file: give --out FILE.parquet")
        if not any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet")):
            raise UserError("Parquet export needs pyarrow (pip install pyarrow), which is not installed; "
                            "CSV works without it: --format csv")
    try:
        if args.format == "parquet":
            df.to_parquet(out, index=False)
        elif args.format == "table":
            with open(out, "w") if out else nullcontext(sys.stdout) as f:
                f.write(as_text(df))
        else:
            df.to_csv(out or sys.stdout, index=False)
    except OSError as e:
        if out is None:
            raise  # stdout itself: a closed pipe ends quietly in the CLI
        raise UserError(f"--out {out}: cannot write ({e.strerror or e}); the rows are still in {args.results_dir}/") \
            from None
    if out:
        print(f"wrote {len(df)} rows x {len(df.columns)} columns from {len(found)} file(s) to {out}",
              file=sys.stderr)
    return 0

