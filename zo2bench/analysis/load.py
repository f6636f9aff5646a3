"""Reading a results folder for the analysis: every sweep row, calibration and bench-step record, each with
where it came from, and a warning for whatever could not be read.

    res = load("results")                       # UserError (exit 2) when the folder holds no results at all
    res.machines()                              # ("h100-80gb-hbm3", ...)
    res.rows(machine="h100-80gb-hbm3", series="memory_scaling", status="ok")   # latest row of each cell
    res.calibration("h100-80gb-hbm3")           # the newest calibration of that machine, or None
    res.warnings                                # damaged files, torn lines, unknown schemas: named and left out

Layout read (see zo2bench.results): <results>/<series>/<machine>/*.jsonl for sweeps, one row a line;
<results>/calibration/<machine>/*.json and <results>/bench-step/<machine>/*.json for single records.
Folders named `archive` are skipped: they hold superseded files kept for the record.

Every row carries a Source (file relative to the results folder, line, cell key, commit, dirty flag) so that a
report can link each number to the row that produced it. A row whose key a later row repeats (a re-run of the
cell) is superseded: rows() returns only the last one, and `superseded` counts the others.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from zo2bench.errors import UserError
from zo2bench.results import SCHEMA_VERSION

KNOWN_KINDS = {"sweep_cell", "calibration", "bench-step"}
RECORD_FOLDERS = {"calibration": "calibration", "bench-step": "bench-step"}


@dataclass(frozen=True)
class Source:
    """Where one measured number came from."""

    file: str                  # relative to the results folder, e.g. "memory_scaling/h100-80gb-hbm3/X.jsonl"
    line: int | None           # 1-based line of a JSON-lines file; None for a single-record file
    key: str | None            # the sweep cell's key
    commit: str | None         # git commit of the code that produced it; None when not recorded
    dirty: bool | None         # uncommitted changes in that checkout; None when not recorded

    @property
    def trusted(self) -> bool:
        """False when the row does not name clean code: its commit is unknown or its checkout was dirty."""
        return bool(self.commit) and self.dirty is False

    @property
    def commit_label(self) -> str:
        if not self.commit:
            return "commit unknown"
        return f"{self.commit[:7]}{' dirty' if self.dirty else ''}{' dirty?' if self.dirty is None else ''}"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class Row:
    data: dict = field(compare=False)
    source: Source

    def get(self, *path, default=None):
        """A nested field: row.get("memory", "views", "measured") -> dict or default."""
        d = self.data
        for p in path:
            if not isinstance(d, dict) or p not in d:
                return default
            d = d[p]
        return d

    @property
    def machine(self) -> str:
        return self.data.get("machine_id") or "unknown-machine"


@dataclass(frozen=True)
class Results:
    root: str
    sweep_rows: tuple[Row, ...]          # latest row of each (machine, key), in file order
    records: tuple[Row, ...]             # calibration and bench-step records
    warnings: tuple[str, ...]
    superseded: int                      # sweep rows replaced by a later run of the same cell

    def machines(self) -> tuple[str, ...]:
        return tuple(sorted({r.machine for r in self.sweep_rows} | {r.machine for r in self.records}))

    def series(self, machine: str | None = None) -> tuple[str, ...]:
        return tuple(sorted({r.data.get("series") for r in self.sweep_rows
                             if machine in (None, r.machine) and r.data.get("series")}))

    def rows(self, machine: str | None = None, series: str | None = None, status: str | None = None) -> list[Row]:
        return [r for r in self.sweep_rows if machine in (None, r.machine)
                and series in (None, r.data.get("series")) and status in (None, r.data.get("status"))]

    def kind(self, kind: str, machine: str | None = None) -> list[Row]:
        return [r for r in self.records if r.data.get("kind") == kind and machine in (None, r.machine)]

    def calibration(self, machine: str) -> Row | None:
        """The newest calibration of the machine (files are named by UTC time, so the last name is newest)."""
        cals = sorted(self.kind("calibration", machine), key=lambda r: r.source.file)
        return cals[-1] if cals else None


def _machine_of(record: dict, path: Path) -> str:
    return record.get("machine_id") or path.parent.name


def _source(rel: str, line: int | None, record: dict) -> Source:
    fp = record.get("fingerprint") or {}
    return Source(rel, line, record.get("key"), fp.get("git_commit"), fp.get("git_dirty"))


def _known(record, where: str, warnings: list) -> bool:
    if not isinstance(record, dict):
        warnings.append(f"{where}: not a JSON object; left out")
        return False
    kind, version = record.get("kind"), record.get("schema_version")
    if kind not in KNOWN_KINDS or version != SCHEMA_VERSION:
        warnings.append(f"{where}: kind {kind!r} schema_version {version!r} is not one this version reads "
                        f"({', '.join(sorted(KNOWN_KINDS))} at {SCHEMA_VERSION}); left out")
        return False
    return True


def _read_lines(path: Path, rel: str, warnings: list) -> list[Row]:
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        warnings.append(f"{rel}: unreadable ({type(e).__name__}: {e}); left out")
        return []
    rows, bad = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad.append(n)
            continue
        if _known(rec, f"{rel}:{n}", warnings):
            rec.setdefault("machine_id", path.parent.name)
            rows.append(Row(rec, _source(rel, n, rec)))
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        warnings.append(f"{rel}: line{'s' if len(bad) > 1 else ''} {shown} not valid JSON (damaged or torn); left out")
    return rows


def _read_record(path: Path, rel: str, warnings: list) -> Row | None:
    try:
        rec = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        warnings.append(f"{rel}: damaged record ({type(e).__name__}); left out")
        return None
    if not _known(rec, rel, warnings):
        return None
    rec.setdefault("machine_id", _machine_of(rec, path))
    return Row(rec, _source(rel, None, rec))


def load(results_dir: str | Path = "results") -> Results:
    """Every readable record under results_dir; raises UserError when there is none at all."""
    root = Path(results_dir)
    if not root.is_dir():
        raise UserError(f"no results folder at {root}: run `zo2bench sweep experiments/NAME.toml` first, "
                        f"or point --results at one")
    warnings: list[str] = []
    sweep, records = [], []
    for path in sorted(p for p in root.glob("*/*/*") if p.is_file() and "archive" not in p.parts):
        rel = path.relative_to(root).as_posix()
        if path.suffix == ".jsonl":
            sweep.extend(_read_lines(path, rel, warnings))
        elif path.suffix == ".json" and path.parent.parent.name in RECORD_FOLDERS:
            row = _read_record(path, rel, warnings)
            if row is not None:
                records.append(row)
    # sweep files are named by UTC start time, so sorted order is run order: the last row of a key wins
    sweep.sort(key=lambda r: (r.data.get("series") or "", r.machine, r.source.file, r.source.line))
    latest: dict = {}
    for row in sweep:
        k = (row.machine, row.data.get("key") or row.source.where)
        latest.pop(k, None)
        latest[k] = row
    kept = tuple(latest.values())
    if not kept and not records:
        extra = f" ({len(warnings)} file(s) or line(s) could not be read)" if warnings else ""
        raise UserError(f"no results under {root}{extra}: run `zo2bench sweep experiments/NAME.toml` "
                        f"or `zo2bench calibrate` first")
    return Results(root.as_posix(), kept, tuple(records), tuple(warnings), len(sweep) - len(kept))
