"""The `zo2bench` command: each subcommand lives in zo2bench/commands/<name>.py and stays thin.

    zo2bench list models
    zo2bench run --model opt-125m --mode zo2 --steps 5 --seq 64 --device cpu --out run.json

Bad input ends with one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from zo2bench.errors import UserError

# Each module defines register(subparsers); the parser it adds sets `func` (args -> exit status).
COMMANDS = ["list", "run", "calibrate", "sweep", "results", "bench-step"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own exit is 2 as well; keep its one-line form
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="zo2bench", description="Benchmarks and scaling analysis for zeroth-order fine-tuning with offloading (ZO2).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"zo2bench.commands.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"zo2bench: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("zo2bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
