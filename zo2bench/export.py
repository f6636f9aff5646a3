"""Sweep rows as a flat table for people and spreadsheets: readable columns, units in their names.

    from zo2bench.export import COLUMNS, export_table
    df = export_table(rows)                                        # the default columns (COLUMNS)
    df = export_table(rows, columns=["model", "mode", "tokens_per_s", "memory.views.measured.pinned_peak_bytes"])
    df = export_table(rows, all_columns=True)                      # COLUMNS, then every field of the rows

The default columns: what a cell is (series, machine, model, mode, dtype, batch, seq), how it ended
(status, reason), what it measured, and which code measured it. Memory columns are the peaks of the
measured phase (the steps after warm-up) in MiB = 2**20 bytes, each view under its own name: torch's
allocator, NVML's per-process and whole-device figures, host RSS and pinned host memory. git_state is
"clean", "dirty" (uncommitted changes in the tree that ran) or "unknown" (no commit recorded), so rows
of unreviewable code stand out.

Every other field is a dotted column (e.g. memory.views.build.host_rss_peak_bytes, in the record's own
units). No cell holds JSON text: a list of names becomes "a, b"; a list of numbers (per-step losses,
probe samples) becomes NAME.n, NAME.first and NAME.last; a list of records (per-step rows) becomes
NAME.n. The JSON-lines files keep every value whole.
"""
from __future__ import annotations

from collections.abc import Callable

from zo2bench.errors import UserError

MIB = 2**20


def _get(row: dict, path: str):
    """row["a"]["b"]... for "a.b...", None where any part is missing or null."""
    value = row
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _scaled(path: str, factor: float, digits: int) -> Callable[[dict], float | None]:
    def get(row):
        v = _get(row, path)
        return None if v is None else round(v * factor, digits)
    return get


def _git_state(row: dict) -> str:
    fp = row.get("fingerprint") or {}
    if not fp.get("git_commit") or fp.get("git_dirty") is None:
        return "unknown"
    return "dirty" if fp["git_dirty"] else "clean"


def git_mark(row: dict) -> str:
    """The commit a row was measured at, short, with "*" when the tree was dirty and "?" when unknown."""
    fp = row.get("fingerprint") or {}
    commit = (fp.get("git_commit") or "")[:7]
    state = _git_state(row)
    return "?" if not commit else commit + {"clean": "", "dirty": "*", "unknown": "?"}[state]


_MEASURED = "memory.views.measured."
# name -> (how to read it from a row, what it is); the order is the column order.
COLUMNS: dict[str, tuple[Callable[[dict], object], str]] = {
    "series": (lambda r: r.get("series"), "the experiment series"),
    "machine_id": (lambda r: r.get("machine_id"), "the machine (results/<series>/<machine_id>/)"),
    "key": (lambda r: r.get("key"), "the cell's key, unique within a series"),
    "status": (lambda r: r.get("status"), "ok | oom | skipped | infeasible | error | nonfinite"),
    "reason": (lambda r: r.get("reason"), "why a cell did not end ok"),
    "model": (lambda r: _get(r, "cell.model"), "model name"),
    "mode": (lambda r: _get(r, "cell.mode"), "mezo | zo2 | fo-sgd | fo-adamw"),
    "dtype": (lambda r: _get(r, "cell.dtype"), "fp32 | fp16 | bf16"),
    "batch": (lambda r: _get(r, "cell.batch"), "examples per step"),
    "seq": (lambda r: _get(r, "cell.seq"), "tokens per example"),
    "repeat": (lambda r: _get(r, "cell.repeat"), "repeat index of the cell"),
    "n_params": (lambda r: r.get("n_params"), "exact parameter count"),
    "steps_measured": (lambda r: _get(r, "step_time_s.n"), "measured steps behind the step times"),
    "step_time_median_ms": (_scaled("step_time_s.median", 1e3, 3), "median step time, ms"),
    "step_time_iqr_ms": (_scaled("step_time_s.iqr", 1e3, 3), "interquartile range of the step times, ms"),
    "tokens_per_s": (_scaled("tokens_per_s", 1, 1), "batch * seq / median step time"),
    "torch_peak_allocated_mib": (_scaled(_MEASURED + "torch_peak_allocated_bytes", 1 / MIB, 1),
                                 "peak bytes allocated through torch, MiB"),
    "torch_peak_reserved_mib": (_scaled(_MEASURED + "torch_peak_reserved_bytes", 1 / MIB, 1),
                                "peak bytes torch's caching allocator held, MiB"),
    "nvml_process_peak_mib": (_scaled(_MEASURED + "nvml_process_peak_bytes", 1 / MIB, 1),
                              "peak GPU memory of the process (NVML: context, libraries, allocator), MiB"),
    "nvml_device_peak_mib": (_scaled(_MEASURED + "nvml_device_peak_bytes", 1 / MIB, 1),
                             "peak GPU memory in use on the whole device (NVML), MiB"),
    "host_rss_peak_mib": (_scaled(_MEASURED + "host_rss_peak_bytes", 1 / MIB, 1), "peak host RSS, MiB"),
    "pinned_host_peak_mib": (_scaled(_MEASURED + "pinned_peak_bytes", 1 / MIB, 1),
                             "peak page-locked host memory, MiB"),
    "build_s": (_scaled("build_seconds", 1, 3), "model build time, s (library import excluded)"),
    "wall_s": (lambda r: r.get("wall_s"), "the cell's wall time, s"),
    "finished_utc": (lambda r: r.get("finished_utc"), "when the cell ended"),
    "gpu": (lambda r: _get(r, "fingerprint.gpu"), "GPU model (empty without one)"),
    "torch_version": (lambda r: _get(r, "fingerprint.torch"), "torch version"),
    "git_commit": (lambda r: _get(r, "fingerprint.git_commit"), "commit of the code that ran"),
    "git_state": (_git_state, "clean | dirty (uncommitted changes) | unknown"),
}


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts as dotted columns, lists summarized (see the module docstring); no JSON text."""
    out: dict = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))  # an empty dict has no fields, so no columns
        elif isinstance(v, (list, tuple)):
            out.update(_summarize_list(name, v))
        else:
            out[name] = v
    return out


def _summarize_list(name: str, values) -> dict:
    if values and all(isinstance(x, str) for x in values):
        return {name: ", ".join(values)}
    if all(x is None or (isinstance(x, (int, float)) and not isinstance(x, bool)) for x in values):
        return {f"{name}.n": len(values), f"{name}.first": values[0] if values else None,
                f"{name}.last": values[-1] if values else None}
    return {f"{name}.n": len(values)}


def named_columns(rows: list[dict]) -> list[str]:
    """Every column name --columns accepts for these rows: COLUMNS, then the dotted fields."""
    seen: dict = dict.fromkeys(COLUMNS)
    for row in rows:
        seen.update(dict.fromkeys(flatten(row)))
    return list(seen)


def export_table(rows: list[dict], columns: list[str] | None = None, all_columns: bool = False):
    """A pandas DataFrame, one line per row: COLUMNS by default, the given `columns` (named or dotted), or
    with `all_columns` COLUMNS followed by every dotted field. UserError names an unknown column."""
    import pandas as pd

    if columns is not None:
        unknown = [c for c in columns if c not in COLUMNS]
        dotted = set()
        if unknown:
            for row in rows:
                dotted.update(flatten(row))
        bad = [c for c in unknown if c not in dotted]
        if bad:
            raise UserError(f"unknown column{'s' if len(bad) > 1 else ''} {', '.join(bad)} for --columns; "
                            f"the named columns are {', '.join(COLUMNS)}, and any dotted field of --all "
                            f"(e.g. memory.views.measured.host_rss_peak_bytes)")
    names = list(COLUMNS) if columns is None else columns
    records = []
    for row in rows:
        flat = flatten(row) if all_columns or any(c not in COLUMNS for c in names) else {}
        rec = {c: COLUMNS[c][0](row) if c in COLUMNS else flat.get(c) for c in names}
        if all_columns:
            rec.update({k: v for k, v in flat.items() if k not in rec})
        records.append(rec)
    if not records:
        return pd.DataFrame(columns=names)
    df = pd.DataFrame.from_records(records)
    for c in df.columns:  # counts stay integers where some row lacks them (5, not 5.0)
        values = [r.get(c) for r in records if r.get(c) is not None]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            df[c] = df[c].astype("Int64")
    return df[names + [c for c in df.columns if c not in names]]


def as_text(df, width: int = 48) -> str:
    """An aligned text table for the screen; text longer than `width` (a reason, a key) is cut with "..."."""
    shown = df.copy()
    for c in shown.columns:
        if shown[c].dtype == object:
            shown[c] = [v[: width - 3] + "..." if isinstance(v, str) and len(v) > width else v for v in shown[c]]
    return shown.to_string(index=False, na_rep="-") + "\n"
