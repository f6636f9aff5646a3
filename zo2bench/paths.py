"""Checks of the paths a command is given, made before the work starts, and a record that is never lost.

    out = writable_file(args.out, "--out")              # UserError now, not a traceback after the run
    cal = readable_file(args.calibration, "--calibration")
    d = existing_dir(args.dir, "--dir")
    usable_dir(args.results_dir, "--results-dir")       # exists and takes files, or can be created
    save_record(record, args.out, "--out")              # writes; if that fails, the record goes to stdout
    return deliver(record, args.out, summary(record))   # the record, and the summary on the screen

Each check raises UserError with one line that names the option, so the CLI exits with status 2 before a
minute of measurement is spent. "-" as an output file means stdout.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from zo2bench.errors import UserError


def writable_file(path: str | None, option: str) -> str | None:
    """`path` if a file can be written there: not a directory, its folder exists and takes a new file."""
    if path is None or path == "-":
        return path
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{option} {path} is a directory; give a file name, e.g. {p / 'record.json'}")
    folder = p.parent
    if not folder.exists():
        raise UserError(f"{option} {path}: the folder {folder} does not exist (create it with mkdir -p {folder})")
    if not folder.is_dir():
        raise UserError(f"{option} {path}: {folder} is not a folder")
    _takes_files(folder, option, path)
    return path


def _takes_files(folder: Path, option: str, path: str) -> None:
    # Records are written to a temporary file beside the target and renamed into place, so what matters
    # is whether the folder takes a new file; trying it is the only test that holds for root and for
    # read-only file systems alike (os.access says yes to root).
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".zo2bench-", suffix=".probe")
    except OSError as e:
        raise UserError(f"{option} {path}: cannot write in {folder} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


def readable_file(path: str | None, option: str) -> str | None:
    """`path` if it is a file that can be opened for reading."""
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        raise UserError(f"{option} {path}: no such file")
    if p.is_dir():
        raise UserError(f"{option} {path} is a directory; give a file")
    try:
        with open(p, "rb"):
            pass
    except OSError as e:
        raise UserError(f"{option} {path}: cannot read it ({e.strerror or e})") from None
    return path


def existing_dir(path: str, option: str) -> str:
    """`path` if it is an existing directory."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{option} {path}: no such folder")
    if not p.is_dir():
        raise UserError(f"{option} {path} is a file, not a folder")
    return path


def usable_dir(path: str, option: str) -> str:
    """`path` if it is a directory that takes new files, or can become one (missing folders are created
    when the first record is written): its nearest existing ancestor must be a folder that takes files."""
    p = Path(path)
    existing = next(q for q in (p, *p.parents) if q.exists())
    if not existing.is_dir():
        raise UserError(f"{option} {path}: {existing} is a file, not a folder")
    _takes_files(existing, option, path)
    return path


def save_record(record: dict, path: str, option: str = "--out") -> bool:
    """Write `record` as JSON to `path` ("-": stdout). If writing fails (the place changed since the
    check, the disk filled up), print the error and then the record on stdout, so the run is not lost.
    Returns True when the record went where it was asked to go."""
    from zo2bench.results import write_json_atomic

    if path == "-":
        print(json.dumps(record, indent=1, default=str), flush=True)
        return True
    try:
        write_json_atomic(path, record)
        return True
    except OSError as e:
        print(f"zo2bench: error: {option} {path}: cannot write the record ({e.strerror or e}); "
              f"it follows on stdout instead", file=sys.stderr, flush=True)
        print(json.dumps(record, indent=1, default=str), flush=True)
        return False


def deliver(record: dict, out: str | None, text: str, option: str = "--out") -> int:
    """A command's ending: the record to `out` (a file, "-" for stdout, None for nowhere) and `text`, its
    human summary, to stdout, or to stderr where the record takes stdout. Returns the exit status: 0, or 1
    when the record could not be written where asked (it went to stdout instead)."""
    if not out:
        print(text, flush=True)
        return 0
    saved = save_record(record, out, option)
    to_file = saved and out != "-"
    print(text, file=sys.stdout if to_file else sys.stderr, flush=True)
    if to_file:
        print(f"wrote {out}", file=sys.stderr)
    return 0 if saved else 1
