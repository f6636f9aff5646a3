"""Result records: their schema version, and writing them so that a crash never leaves half a file.

A run record (what `zo2bench run --out FILE.json` writes) looks like:

    {"schema_version": 1, "kind": "run", "status": "ok",
     "config": {...RunConfig...}, "model": {"name", "family", "n_params", "n_blocks", "block_params", ...},
     "fingerprint": {...probes.fingerprint...},
     "build": {"seconds", "torch_peak_allocated_bytes", ...},
     "steps": [{"step", "warmup", "loss_plus", "loss_minus", "projected_grad", "seconds"}],  # fo-*: "loss"
     "memory": {phase: {"torch_peak_allocated_bytes", "torch_peak_reserved_bytes"}},
     "final_params_sha256": "..."}

A sweep (`zo2bench sweep`) appends one row per cell, as each cell ends, to a JSON-lines file of its own:

    results/<series>/<machine_id>/<UTC timestamp>.jsonl    e.g. results/memory_scaling/h100-80gb-hbm3/20250101T120000Z.jsonl

    {"schema_version": 1, "kind": "sweep_cell", "series", "profile", "key", "cell": {model, mode, dtype, batch,
     seq, repeat}, "repeats", "config": {...RunConfig...}, "n_params", "machine_id", "run_id",
     "status": "ok" | "oom" | "skipped" | "infeasible" | "error" | "nonfinite", "reason": "..." or null,
     "started_utc", "finished_utc", "wall_s", "fingerprint": {...},
     # where the cell ran (ok, and as far as it got otherwise):
     "step_time_s": {n, median, q1, q3, iqr, min, max, mean, stdev, repeat, repeats},   # measured steps only
     "tokens_per_s": batch * seq / median step seconds, "build_seconds",
     "losses": [per step: fo-* the loss, zo the mean of loss+ and loss-], "steps": [...as in a run record...],
     "probes": {...ProbeSet summary: per-phase peaks, "not_measured"...},
     "memory": {"torch": {phase: peaks}, "views": {phase: {...torch / NVML process / host RSS+pinned, gaps...}}},
     "oom": {...GPUOutOfMemory.as_dict()...}, "feasibility": {need_bytes, limit_bytes, where},
     "model": {...}, "build": {...}, "final_params_sha256": "..."}

    append_row(path, row)                       # one line, locked, flushed and fsynced: a crash loses no row
    read_rows(path), sweep_files("results", series="memory_scaling", machine="h100-80gb-hbm3")
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


def read_rows(path: str | os.PathLike) -> list[dict]:
    """Every complete row of one file; a line that does not parse (torn by a crash) is skipped with a warning."""
    rows = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                print(f"zo2bench: warning: {path}:{n}: skipping an incomplete row", file=sys.stderr)
    return rows


def sweep_files(results_dir: str | os.PathLike = "results", series: str | None = None,
                machine: str | None = None) -> list[Path]:
    """The JSON-lines files of the sweeps under results_dir/<series>/<machine>/, oldest first."""
    files = Path(results_dir).glob(f"{series or '*'}/{machine or '*'}/*.jsonl")
    return sorted(files, key=lambda p: (p.parent.parent.name, p.parent.name, p.name))


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
