"""`zo2bench ab`: the regression series at two commits on this machine, interleaved, and compared.

    zo2bench ab --base origin/main                        # head: HEAD; profile: gpu with CUDA, else cpu
    zo2bench ab --base v0.1 --head my-branch --format markdown --out ab.md
    zo2bench ab --base HEAD                               # an A/A run: what the noise alone looks like
    zo2bench ab --base HEAD~1 --experiment experiments/smoke.toml --profile cpu --rounds 2

Both commits are checked out as git worktrees in a temporary folder; the rows stay under
--results-dir (default .regression/ab-<UTC>/base and .../head). Exit status as for `zo2bench compare`:
0 nothing got worse, 1 something did, 2 bad input (an unknown commit, a failed series run).
"""
from __future__ import annotations

import sys

from zo2bench.commands.compare import add_gate_arguments, emit, gates_from


def register(sub) -> None:
    p = sub.add_parser("ab", help="run the regression series at two commits, interleaved, and compare them")
    p.add_argument("--base", required=True,
                   help="the commit to compare against: a branch, tag or sha (no default: required)")
    p.add_argument("--head", default="HEAD", help="the commit under test (uncommitted changes are not part of it)")
    p.add_argument("--experiment", default="experiments/regression.toml", help="the series, as the head commit has it")
    p.add_argument("--profile", help="a profile of the experiment (default: gpu with CUDA, else cpu)")
    p.add_argument("--rounds", type=int, help="base/head rounds, one repeat each (default: the profile's repeats)")
    p.add_argument("--results-dir", help="where the rows go (default: .regression/ab-<UTC>)")
    p.add_argument("--keep-worktrees", action="store_true", help="leave the two worktrees in place (debugging)")
    add_gate_arguments(p)
    p.set_defaults(func=main)


def main(args) -> int:
    from zo2bench.regression.ab import run_ab
    from zo2bench.regression.compare import compare, load_side

    gates = gates_from(args)  # bad options fail before anything runs
    run = run_ab(".", args.base, args.head, experiment=args.experiment, profile=args.profile, rounds=args.rounds,
                 out_dir=args.results_dir, keep_worktrees=args.keep_worktrees)
    report = compare(load_side(run["base_dir"], f"base {args.base} ({run['plan']['base']['commit'][:12]})"),
                     load_side(run["head_dir"], f"head {args.head} ({run['plan']['head']['commit'][:12]})"), gates)
    report["ab"] = run["plan"]
    print(f"zo2bench ab: rows under {run['base_dir'].parent}", file=sys.stderr)
    return emit(report, args)
