"""Result records: their schema version, and writing them so that a crash never leaves half a file.

A run record (what `zo2bench run --out FILE.json` writes) looks like:

    {"schema_version": 1, "kind": "run", "status": "ok",
     "config": {...RunConfig...}, "model": {"name", "family", "n_params", "n_blocks", "block_params", ...},
     "fingerprint": {...probes.fingerprint...},
     "build": {"seconds", "torch_peak_allocated_bytes", ...},
     "steps": [{"step", "warmup", "loss_plus", "loss_minus", "projected_grad", "seconds"}],  # fo-*: "loss"
     "step_timing": "pipelined",  # how "seconds" is taken (engine/trainer.py's docstring); older records
                                  # lack the key: each of their steps began on an idle device
     "memory": {phase: {"torch_peak_allocated_bytes", "torch_peak_reserved_bytes"}},
     "final_params_sha256": "..."}

A sweep (`zo2bench sweep`) appends one row per cell, as each cell ends, to a JSON-lines file of its own:

    results/<series>/<machine_id>/<UTC timestamp>.jsonl
        e.g. results/memory_scaling/h100-80gb-hbm3/20250101T120000Z.jsonl

    {"schema_version": 1, "kind": "sweep_cell", "series", "profile", "key", "cell": {model, mode, dtype, batch,
     seq, repeat}, "repeats", "config": {...RunConfig...}, "n_params", "machine_id", "run_id",
     "allow_dirty": true (only where `sweep --allow-dirty` ran uncommitted code; the fingerprint has git_dirty),
     "status": "ok" | "oom" | "skipped" | "infeasible" | "error" | "nonfinite", "reason": "..." or null,
     "started_utc", "finished_utc", "wall_s", "fingerprint": {...},
     # where the cell ran (ok, and as far as it got otherwise):
     "step_time_s": {n, median, q1, q3, iqr, min, max, mean, stdev, repeat, repeats},   # measured steps only
     "tokens_per_s": batch * seq / median step seconds, "build_seconds",
     "losses": [per step: fo-* the loss, zo the mean of loss+ and loss-], "steps": [...as in a run record...],
     "probes": {...ProbeSet summary: per-phase peaks, "not_measured"...},
     "memory": {"torch": {phase: peaks}, "views": {phase: {...torch / NVML process / host RSS+pinned, gaps...}}},
     "oom": {...GPUOutOfMemory.as_dict()...}, "feasibility": {need_bytes, limit_bytes, where},
     "model": {...}, "build": {...}, "step_timing": "pipelined", "final_params_sha256": "..."}

    append_row(path, row)                       # one line, locked, flushed and fsynced: a crash loses no row
    read_rows(path), sweep_files("results", series="memory_scaling", machine="h100-80gb-hbm3")
    set_aside_torn(path)                        # a resumed sweep moves torn lines to <path>.torn-<UTC>
    latest_rows(rows)                           # the last row of each cell key (after a --force re-run)
    table(rows)                                 # pandas DataFrame, nested dicts as dotted columns
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

SCHEMA_VERSION = 1


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write JSON to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- sweep rows: JSON lines ------------------------------------------------------------------------

def sweep_row(header: dict, status: str, reason: str | None = None, **fields) -> dict:
    """A row's common head (from the runner) with its outcome; `fields` are whatever the cell measured."""
    return {"schema_version": SCHEMA_VERSION, "kind": "sweep_cell", **header, "status": status, "reason": reason,
            **fields}


def _finite(obj):
    """NaN and infinity are not JSON: they become null (a nonfinite row says which loss it was in its reason)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def append_row(path: str | os.PathLike, row: dict) -> None:
    """Append one JSON line under an exclusive lock, flushed and fsynced before returning.

    One write() of the whole line on an O_APPEND descriptor; the lock keeps the runner and a cell from
    interleaving, and a torn last line (a machine that died mid-write) is closed off before the next one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(_finite(row), separators=(",", ":"), default=str) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock


def read_rows(path: str | os.PathLike, warn: bool = True) -> list[dict]:
    """Every complete row of one file; a line that does not parse (torn by a crash) is skipped with a warning."""
    rows = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = _row_or_none(line)
            if row is not None:
                rows.append(row)
            elif warn:
                print(f"zo2bench: warning: {path}:{n}: skipping an incomplete row", file=sys.stderr)
    return rows


def _row_or_none(line: bytes):
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return row if isinstance(row, dict) else None


def set_aside_torn(path: str | os.PathLike) -> dict | None:
    """Move the lines of `path` that are not rows (torn by a crash) to `<path>.torn-<UTC>`, leaving it whole.

    Under append_row's lock. The side file is written and fsynced first, so a crash in between loses nothing.
    Torn bytes at the end are cut off (ftruncate); a torn line that a later append closed off is removed by
    writing the rows to a temporary file renamed over the original. A last row that parses but lost its
    newline gets it. Returns {"side_file", "lines", "bytes"}, or None when the file was whole.
    """
    path = Path(path)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        good, bad, bad_lines, whole_prefix = [], [], [], 0  # whole_prefix: bytes before the first torn line
        for n, line in enumerate(data.splitlines(keepends=True), 1):
            if not line.strip() or _row_or_none(line) is not None:
                good.append(line if line.endswith(b"\n") else line + b"\n")
                whole_prefix += 0 if bad else len(line)
            else:
                bad.append(line)
                bad_lines.append(n)
        if not bad:
            if data and not data.endswith(b"\n"):
                os.pwrite(fd, b"\n", len(data))
                os.fsync(fd)
            return None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        side, n = path.with_name(f"{path.name}.torn-{stamp}"), 1
        while side.exists():
            n += 1
            side = path.with_name(f"{path.name}.torn-{stamp}-{n}")
        with open(side, "xb") as f:
            f.write(b"".join(bad))
            f.flush()
            os.fsync(f.fileno())
        if sum(map(len, good)) == whole_prefix:  # every row comes before the torn bytes
            os.ftruncate(fd, whole_prefix)
            os.fsync(fd)
        else:
            tmp_fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(tmp_fd, "wb") as f:
                f.write(b"".join(good))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return {"side_file": side, "lines": bad_lines, "bytes": sum(map(len, bad))}
    finally:
        os.close(fd)


def sweep_files(results_dir: str | os.PathLike = "results", series: str | None = None,
                machine: str | None = None) -> list[Path]:
    """The JSON-lines files of the sweeps under results_dir/<series>/<machine>/, oldest first."""
    files = Path(results_dir).glob(f"{series or '*'}/{machine or '*'}/*.jsonl")
    return sorted(files, key=_file_order)


def _file_order(p: Path) -> tuple:
    """By the UTC stamp in the name, then new_sweep_file's -2, -3 suffix (as text "-2" would sort before ".")."""
    stamp, _, n = p.stem.partition("-")
    return p.parent.parent.name, p.parent.name, stamp, int(n) if n.isdigit() else 0, p.name


def new_sweep_file(results_dir: str | os.PathLike, series: str, machine_id: str) -> Path:
    """A fresh file named by the UTC time; nothing is created until the first row is appended."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    d = Path(results_dir) / series / machine_id
    path, n = d / f"{stamp}.jsonl", 1
    while path.exists():
        n += 1
        path = d / f"{stamp}-{n}.jsonl"
    return path


def latest_rows(rows: list[dict]) -> list[dict]:
    """The last row of each (machine, key), in first-seen order: a --force re-run supersedes the earlier one."""
    last: dict = {}
    for row in rows:
        k = (row.get("machine_id"), row.get("key"))
        last.pop(k, None)
        last[k] = row
    return list(last.values())


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts become dotted columns; lists (per-step values) become JSON text in one column."""
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, name + "."))
        elif isinstance(v, (list, tuple, dict)):
            out[name] = json.dumps(v, default=str)
        else:
            out[name] = v
    return out


def table(rows: list[dict]):
    """A flat pandas DataFrame, one row per given row, the head columns first."""
    import pandas as pd

    df = pd.DataFrame([flatten(r) for r in rows])
    head = [c for c in ("series", "profile", "machine_id", "key", "status", "reason", "cell.model", "cell.mode",
                        "cell.dtype", "cell.batch", "cell.seq", "cell.repeat", "n_params", "tokens_per_s",
                        "step_time_s.median", "build_seconds") if c in df.columns]
    return df[head + [c for c in df.columns if c not in head]]
