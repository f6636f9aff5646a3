"""`zo2bench report`: the reports, and the result tables kept in README.md and docs/*.md.

    zo2bench report [--results results/] [--out reports/]   # index + one page per series, HTML and Markdown
    zo2bench report tables [--check] [--root .]             # rewrite the marked tables; --check: exit 1 if stale
    zo2bench report tables --list                           # the table names a marker can use

Warnings name what could not be read (left out, the report is still made); no results at all exit 2.
"""
from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("report", help="render the reports, or regenerate the tables in README.md and docs/")
    p.add_argument("what", nargs="?", choices=["tables"], help="'tables': the marked tables of README.md and docs/")
    p.add_argument("--results", default="results", help="results folder")
    p.add_argument("--out", default="reports", help="where the reports go")
    p.add_argument("--check", action="store_true", help="with 'tables': change nothing, exit 1 if a table is stale")
    p.add_argument("--root", default=".", help="with 'tables': the folder holding README.md and docs/")
    p.add_argument("--list", action="store_true", help="with 'tables': list the table names and exit")
    p.set_defaults(func=main)


def main(args) -> int:
    from zo2bench.errors import UserError

    if args.what != "tables":
        if args.check or args.list:
            raise UserError("--check and --list go with `zo2bench report tables`")
        from zo2bench.report.render import render

        written = render(args.results, args.out)
        pages = [p for p in written if p.suffix in (".html", ".md")]
        print(f"wrote {len(pages)} pages and {len(written) - len(pages)} figures to {args.out}/ "
              f"(open {args.out}/index.html)", file=sys.stderr)
        return 0
    from zo2bench.report import markers, tables

    if args.list:
        for name, (what, _) in tables.TABLES.items():
            print(f"{name:<14} {what}")
        return 0
    n = markers.count(args.root)
    if n == 0:
        print(f"zo2bench: no <!-- zo2bench:table NAME --> markers in {args.root}/README.md or docs/*.md",
              file=sys.stderr)
        return 0
    from zo2bench.analysis import load

    res = load.load(args.results)
    for w in res.warnings:
        print(f"zo2bench: warning: {w}", file=sys.stderr)
    changed = markers.update(args.root, res, check=args.check)
    if args.check:
        if changed:
            print("zo2bench: stale tables (run `zo2bench report tables`): "
                  + ", ".join(f"{p}: {name}" for p, name in changed), file=sys.stderr)
            return 1
        print(f"zo2bench: {n} tables up to date", file=sys.stderr)
        return 0
    print(f"zo2bench: {len(changed)} of {n} tables rewritten"
          + (": " + ", ".join(f"{p}: {name}" for p, name in changed) if changed else ""), file=sys.stderr)
    return 0
