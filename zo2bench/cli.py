"""The `zo2bench` command: each subcommand lives in zo2bench/commands/<name>.py and stays thin.

    zo2bench list models
    zo2bench run --model opt-125m --mode zo2 --steps 5 --seq 64 --device cpu --out run.json
    zo2bench --version

Bad input ends with one line on stderr and exit status 2, never a traceback. `zo2bench` alone prints the
help and exits with status 2 (no command is a usage error, so scripts notice). Output cut short by a
closed pipe (`zo2bench list models | head`) ends quietly with status 141, as Unix tools do.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from zo2bench import __version__
from zo2bench.errors import UserError

# Each module defines register(subparsers); the parser it adds sets `func` (args -> exit status).
COMMANDS = ["list", "run", "calibrate", "sweep", "results", "bench-step", "report", "plan", "compare", "ab"]
SIGPIPE_EXIT = 128 + 13  # what a shell reports for a process that a closed pipe ended


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends in its default; a help that explains its own default is left alone,
    and a flag (default False) or an option without a default says nothing more."""

    def _get_help_string(self, action):
        text = action.help or ""
        no_default = action.default is None or action.default is False or action.default is argparse.SUPPRESS
        if "default" in text or no_default or not action.option_strings:
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # argparse's own exit is 2 as well; keep its one-line form
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="zo2bench",
                     description="Benchmarks and scaling analysis for zeroth-order fine-tuning with offloading (ZO2).",
                     epilog="`zo2bench COMMAND --help` shows a command's options and their defaults.")
    parser.add_argument("--version", action="version", version=f"zo2bench {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"zo2bench.commands.{name.replace('-', '_')}").register(sub)
    return parser


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null, so the interpreter's final flush has nowhere to fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured): nothing to silence
        pass


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"zo2bench: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        _quiet_stdout()
        return SIGPIPE_EXIT
    except KeyboardInterrupt:
        print("zo2bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
