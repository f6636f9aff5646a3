"""`zo2bench list models|experiments`: what the suite knows.

    zo2bench list models                       # every catalog model with its exact parameter count
    zo2bench list experiments --dir experiments
"""
from __future__ import annotations

from pathlib import Path

from zo2bench.errors import UserError
from zo2bench.paths import existing_dir


def register(sub) -> None:
    p = sub.add_parser("list", help="list the models or the experiment series", description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["models", "experiments"], help="what to list")
    p.add_argument("--dir", default="experiments", help="where experiment files (*.toml) live, for 'experiments'")
    p.set_defaults(func=main)


def main(args) -> int:
    if args.what == "models":
        from zo2bench.catalog import MODELS

        print(f"{'model':<16} {'family':<6} {'params':>17} {'layers':>6} {'hidden':>6} {'heads':>5} {'ffn':>6} "
              f"{'vocab':>6} {'positions':>9}  head")
        for s in MODELS.values():
            print(f"{s.name:<16} {s.family:<6} {s.n_params():>17,} {s.layers:>6} {s.hidden:>6} {s.heads:>5} "
                  f"{s.ffn:>6} {s.vocab:>6} {s.positions:>9}  {'tied' if s.tied else 'untied'}")
        return 0
    from zo2bench.experiments.spec import describe_experiments

    existing_dir(args.dir, "--dir")
    found = describe_experiments(args.dir)
    if not found:
        raise UserError(f"--dir {args.dir}: no experiment files (*.toml) in {Path(args.dir).resolve()}")
    for e in found:
        if e.get("error"):  # a broken file is listed with what is wrong, so the others still show
            print(f"{e['name']:<20} {e['file']:<40} error: {e['error']}")
            continue
        cells = ", ".join(f"{p}: {n} cells" for p, n in e["cells"].items())
        print(f"{e['name']:<20} {e['file']:<40} {cells}  {e.get('description') or ''}")
    return 0
