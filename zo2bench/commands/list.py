"""`zo2bench list models|experiments`: what the suite knows."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("list", help="list the models or the experiment series")
    p.add_argument("what", choices=["models", "experiments"])
    p.add_argument("--dir", default="experiments", help="where experiment files live (for 'experiments')")
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

    for e in describe_experiments(args.dir):
        if e.get("error"):  # a broken file is listed with what is wrong, so the others still show
            print(f"{e['name']:<20} {e['file']:<40} error: {e['error']}")
            continue
        cells = ", ".join(f"{p}: {n} cells" for p, n in e["cells"].items())
        print(f"{e['name']:<20} {e['file']:<40} {cells}  {e.get('description') or ''}")
    return 0
