"""Stored baselines, one per hardware class, under results/baselines/<class>/; git keeps their history.

    d = baseline_dir("results/baselines", cls)     # results/baselines/h100-80gb-hbm3-x1-pcie5x16-...
    meta = load_meta(d)                             # None when this class has no baseline yet
    store(".regression/<UTC>/run", d, cls, source="nox -s regression")   # copies the run's rows, writes baseline.json

Layout of one class's folder:

    baseline.json                     class fields, the commit the rows came from, when, which rows
    rows/.../<UTC>.jsonl              the regression series' rows, byte for byte as the sweep wrote them
    microbench/<machine>/NNNN_*.json  pytest-benchmark's own files (--benchmark-storage points here)

The rows lie deeper than results/<series>/<machine>/*.jsonl, so `zo2bench results` does not list them as
a series. A baseline names one clean commit: rows from a working tree with uncommitted changes, or of
another hardware class, are refused.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from zo2bench import results
from zo2bench.errors import UserError
from zo2bench.regression import hwclass

META = "baseline.json"


def baseline_dir(root: str | Path, cls: dict) -> Path:
    return Path(root) / hwclass.class_name(cls)


def load_meta(d: str | Path) -> dict | None:
    """baseline.json of a class's folder, or None when there is no baseline (no rows) there."""
    import json

    d = Path(d)
    if not (d / META).is_file() or not any((d / "rows").rglob("*.jsonl")):
        return None
    try:
        return json.loads((d / META).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{d / META}: cannot read the baseline's description: {e}") from None


def microbench_dir(d: str | Path) -> Path:
    return Path(d) / "microbench"


def _run_rows(run_dir: Path) -> tuple[list[Path], list[dict]]:
    files = sorted(run_dir.rglob("*.jsonl"))
    rows = [r for f in files for r in results.read_rows(f) if r.get("kind") == "sweep_cell"]
    if not rows:
        raise UserError(f"{run_dir}: no sweep rows to store as a baseline")
    return files, rows


def check_storable(run_dir: str | Path, cls: dict) -> str:
    """The one clean commit the run's rows came from; UserError saying why they cannot be a baseline."""
    run_dir = Path(run_dir)
    _, rows = _run_rows(run_dir)
    commits = {((r.get("fingerprint") or {}).get("git_commit"), (r.get("fingerprint") or {}).get("git_dirty"))
               for r in rows}
    classes = {hwclass.class_name(hwclass.hardware_class(r.get("fingerprint") or {})) for r in rows}
    if classes != {hwclass.class_name(cls)}:
        raise UserError(f"{run_dir}: rows of hardware class {', '.join(sorted(classes))}, not "
                        f"{hwclass.class_name(cls)}: not stored as this class's baseline")
    if len(commits) != 1:
        raise UserError(f"{run_dir}: rows from {len(commits)} commits; a baseline comes from one")
    commit, dirty = next(iter(commits))
    if not commit:
        raise UserError(f"{run_dir}: the rows do not say which commit made them; a baseline names its commit")
    if dirty:
        raise UserError(f"{run_dir}: the rows come from a working tree with uncommitted changes (commit "
                        f"{commit[:12]}, dirty); a baseline names a commit that made it: commit, then run again")
    return commit


def store(run_dir: str | Path, d: str | Path, cls: dict, source: str = "") -> dict:
    """Replace the class's stored rows with the run's, as they are, and describe them in baseline.json."""
    run_dir, d = Path(run_dir), Path(d)
    commit = check_storable(run_dir, cls)
    files, rows = _run_rows(run_dir)
    if (d / "rows").exists():
        shutil.rmtree(d / "rows")  # the baseline before this one stays in git's history
    kept = []
    for f in files:
        rel = f.relative_to(run_dir)
        (d / "rows" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, d / "rows" / rel)
        kept.append(str(Path("rows") / rel))
    meta = {"schema_version": 1, "kind": "regression_baseline", "hardware_class": hwclass.class_name(cls),
            "class_fields": cls, "commit": commit, "stored_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "fingerprint": rows[0].get("fingerprint"),  # the machine and the clean commit (check_storable: one)
            "series": sorted({r.get("series") for r in rows}), "profiles": sorted({r.get("profile") for r in rows}),
            "rows": kept, "row_count": len(rows), "source": source}
    results.write_json_atomic(d / META, meta)
    return meta


def prune_microbench(d: str | Path) -> None:
    """Keep only the newest pytest-benchmark file per machine folder (pytest-benchmark numbers them)."""
    for machine in microbench_dir(d).glob("*"):
        files = sorted(machine.glob("[0-9][0-9][0-9][0-9]_*.json"))
        for f in files[:-1]:
            f.unlink()
