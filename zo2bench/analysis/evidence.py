"""Stored results as one flat table of measurements, each value with the row it came from.

    from zo2bench.analysis import evidence
    ev = evidence.load("results")        # warnings (damaged files, unknown schemas) printed and kept
    ev.table                              # pandas DataFrame, one measured value per line (COLUMNS)
    ev.select(quantity="gpu_memory", view="nvml_process", model="opt-1.3b", mode="zo2")
    ev.machines()                         # ["h100-80gb-hbm3"]
    ev.warnings                           # ["zo2bench: warning: results/x.jsonl:3: ...", ...]
    provenance(ev.table.iloc[0]).cite()   # "results/memory_scaling/<machine>/<stamp>.jsonl:4 [<key>] @c53f8e3 (dirty)"

Read: sweep rows (results/<series>/<machine>/*.jsonl), bench-step records (results/bench-step/<machine>/
*.json) and calibrations (results/calibration/<machine>/*.json). Anything under an `archive/` folder is
skipped. A line or file that does not parse, or a record of another schema_version, is named in a warning
and left out. Every value carries file, line (1-based; 0 for a whole-file record), cell key, machine,
commit and a flag: "clean", "dirty" (uncommitted changes when it ran) or "unknown" (no commit recorded).
`variant` names a setting beyond model, mode, dtype, batch and seq (a GPU budget that keeps blocks
resident); claims are matched to plain runs only. `latest` marks the last row of each (machine, key),
as results.latest_rows does: a re-run supersedes.

Quantities and their units (values are in base units: bytes, seconds, ...):
    gpu_memory [bytes]       views torch_allocated, torch_reserved, nvml_process, nvml_device, and
                             outside_allocator (NVML process − torch reserved: CUDA context, cuBLAS); phases
                             build, warmup, measured (sweeps); phase "run" for bench-step (allocator only)
    host_memory [bytes]      views host_rss, pinned
    step_time [s]            median of the measured steps (n, q1, q3 beside it); bench-step lanes as
                             views upload/compute/offload, its floors as floor/compute_floor/transfer_floor
    tokens_per_s, it_per_s   from the median step; q1/q3 from the step quartiles
    energy_per_token [J/token]  NVML energy of the measured phase / (measured steps × batch × seq)
    gpu_power [W]            mean NVML power over the measured phase
    offloaded_blocks, resident_blocks [blocks], params [params]
    fits [bool]              1 for a cell that ran, 0 for one out of memory or infeasible (reason kept)
    link_bandwidth [bytes/s] calibration views h2d_pinned, d2h_pinned, both_directions_pinned, ...
    matmul_flops [flop/s]    calibration views fp16, bf16, fp32
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from zo2bench.results import SCHEMA_VERSION

COLUMNS = ["machine_id", "gpu", "series", "source", "file", "line", "key", "run_id", "model", "mode", "dtype",
           "batch", "seq", "variant", "n_params", "status", "quantity", "view", "phase", "value", "unit", "n", "q1",
           "q3", "commit", "dirty", "flag", "latest", "reason"]

# memory view -> (quantity, field of memory.views.<phase> in a sweep row)
VIEWS = {
    "torch_allocated": ("gpu_memory", "torch_peak_allocated_bytes"),
    "torch_reserved": ("gpu_memory", "torch_peak_reserved_bytes"),
    "nvml_process": ("gpu_memory", "nvml_process_peak_bytes"),
    "nvml_device": ("gpu_memory", "nvml_device_peak_bytes"),
    "outside_allocator": ("gpu_memory", "outside_torch_allocator_bytes"),   # NVML process − torch reserved
    "host_rss": ("host_memory", "host_rss_peak_bytes"),
    "pinned": ("host_memory", "pinned_peak_bytes"),
}
GB = 1e9   # calibration records write GB/s and TFLOP/s as powers of ten (bench/calibrate.py)


@dataclass(frozen=True)
class Provenance:
    file: str
    line: int            # 1-based line of a JSON-lines row; 0 for a whole-file JSON record
    key: str
    machine_id: str
    commit: str | None
    dirty: bool | None
    flag: str            # clean | dirty | unknown

    def cite(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        commit = (self.commit or "unknown commit")[:7] if self.commit else "unknown commit"
        mark = "" if self.flag == "clean" else f" ({self.flag})"
        return f"{where} [{self.key}] @{commit}{mark}"


def provenance(row) -> Provenance:
    """The provenance of one line of Evidence.table (a Series or a dict)."""
    g = row.get if hasattr(row, "get") else row.__getitem__
    dirty = g("dirty")
    return Provenance(str(g("file")), int(g("line")), str(g("key")), str(g("machine_id")),
                      g("commit") if isinstance(g("commit"), str) else None,
                      None if dirty is None or dirty != dirty else bool(dirty), str(g("flag")))


@dataclass
class Evidence:
    table: object                         # pandas.DataFrame with COLUMNS
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def machines(self) -> list[str]:
        return sorted(set(self.table["machine_id"].dropna())) if len(self.table) else []

    def select(self, *, latest: bool = True, **where):
        """Lines whose columns equal the given values (a None value is not a condition)."""
        t = self.table
        if not len(t):
            return t
        mask = t["latest"].astype(bool) if latest else t["latest"] | ~t["latest"]
        for k, v in where.items():
            if v is None:
                continue
            mask = mask & (t[k].isin(v) if isinstance(v, (list, tuple, set)) else t[k] == v)
        return t[mask]


def _flag(commit, dirty) -> str:
    if not commit or dirty is None:
        return "unknown"
    return "dirty" if dirty else "clean"


def _variant(config: dict) -> str | None:
    """What sets a run apart from the plain mode, e.g. "gpu_budget_gib=12" (some blocks kept resident),
    "nproc_per_node=2" (a distributed run: not one GPU's figures) or "cuda_graphs" (replayed steps)."""
    if (config.get("nproc_per_node") or 1) > 1:
        return f"nproc_per_node={config['nproc_per_node']}"
    if config.get("cuda_graphs"):
        return "cuda_graphs"
    return f"gpu_budget_gib={config['gpu_budget_gib']:g}" if config.get("gpu_budget_gib") is not None else None


def _head(path: Path, line: int, rec: dict, machine: str, series: str, source: str, key: str) -> dict:
    fp = rec.get("fingerprint") or {}
    cfg = rec.get("cell") or rec.get("config") or {}
    commit, dirty = fp.get("git_commit"), fp.get("git_dirty")
    return {"machine_id": rec.get("machine_id") or machine, "gpu": fp.get("gpu"), "series": series,
            "source": source, "file": str(path), "line": line, "key": key, "run_id": rec.get("run_id"),
            "model": cfg.get("model"), "mode": cfg.get("mode"), "dtype": cfg.get("dtype"),
            "batch": cfg.get("batch"), "seq": cfg.get("seq"), "variant": _variant(rec.get("config") or {}),
            "n_params": rec.get("n_params") or (rec.get("model") or {}).get("n_params"),
            "status": rec.get("status", "ok"), "commit": commit, "dirty": dirty, "flag": _flag(commit, dirty),
            "reason": rec.get("reason")}


def _v(out: list, head: dict, quantity: str, value, unit: str, view=None, phase=None, **extra) -> None:
    if value is None:
        return
    out.append({**head, "quantity": quantity, "view": view, "phase": phase, "value": float(value), "unit": unit,
                **extra})


def _sweep_values(rec: dict, head: dict) -> list[dict]:
    out: list[dict] = []
    status = rec.get("status")
    if status in ("oom", "infeasible"):
        _v(out, head, "fits", 0, "bool")
        return out
    if status != "ok":
        return out
    _v(out, head, "fits", 1, "bool")
    _v(out, head, "params", rec.get("n_params"), "params")
    for phase, views in ((rec.get("memory") or {}).get("views") or {}).items():
        for view, (quantity, name) in VIEWS.items():
            _v(out, head, quantity, views.get(name), "bytes", view=view, phase=phase)
    st = rec.get("step_time_s") or {}
    if st.get("median"):
        tokens = (head["batch"] or 0) * (head["seq"] or 0)
        q = {"n": st.get("n"), "q1": st.get("q1"), "q3": st.get("q3")}
        _v(out, head, "step_time", st["median"], "s", **q)
        inv = {"n": st.get("n"), "q1": 1 / st["q3"] if st.get("q3") else None,
               "q3": 1 / st["q1"] if st.get("q1") else None}
        _v(out, head, "it_per_s", 1 / st["median"], "1/s", **inv)
        if tokens:
            _v(out, head, "tokens_per_s", tokens / st["median"], "tokens/s",
               **{k: (v * tokens if k != "n" and v else v) for k, v in inv.items()})
        measured = ((rec.get("probes") or {}).get("phases") or {}).get("measured") or {}
        if measured.get("energy_j") and tokens and st.get("n"):
            _v(out, head, "energy_per_token", measured["energy_j"] / (st["n"] * tokens), "J/token",
               phase="measured")
        _v(out, head, "gpu_power", (measured.get("power_w") or {}).get("mean"), "W", phase="measured")
    model, offload = rec.get("model") or {}, rec.get("offload") or {}
    if head["mode"] == "zo2" and model.get("n_blocks") is not None and offload.get("resident_blocks") is not None:
        _v(out, head, "offloaded_blocks", model["n_blocks"] - offload["resident_blocks"], "blocks")
        _v(out, head, "resident_blocks", offload["resident_blocks"], "blocks")
    return out


def _bench_values(rec: dict, head: dict) -> list[dict]:
    out: list[dict] = []
    cfg = rec.get("config") or {}
    tokens = (cfg.get("batch") or 0) * (cfg.get("seq") or 0)
    st = rec.get("step_s") or {}
    if st.get("median"):
        q = {"n": st.get("n"), "q1": st.get("q1"), "q3": st.get("q3")}
        _v(out, head, "step_time", st["median"], "s", **q)
        _v(out, head, "it_per_s", 1 / st["median"], "1/s", n=st.get("n"))
        if tokens:
            _v(out, head, "tokens_per_s", tokens / st["median"], "tokens/s", n=st.get("n"))
    for lane, s in (rec.get("lanes_ms") or {}).items():
        if isinstance(s, dict) and s.get("median") is not None:
            _v(out, head, "step_time", s["median"] / 1e3, "s", view=lane, n=s.get("n"))
    floors = rec.get("floors") or {}
    for name, view in (("floor_s", "floor"), ("compute_s", "compute_floor"), ("transfer_s", "transfer_floor")):
        _v(out, head, "step_time", floors.get(name), "s", view=view)
    mem = rec.get("memory") or {}
    _v(out, head, "gpu_memory", mem.get("torch_peak_allocated_bytes"), "bytes", view="torch_allocated", phase="run")
    _v(out, head, "gpu_memory", mem.get("torch_peak_reserved_bytes"), "bytes", view="torch_reserved", phase="run")
    _v(out, head, "resident_blocks", rec.get("resident_blocks"), "blocks")
    _v(out, head, "offloaded_blocks", rec.get("streamed_blocks"), "blocks")
    return out


def _calibration_values(rec: dict, head: dict) -> list[dict]:
    out: list[dict] = []
    for name, s in (rec.get("figures") or {}).items():
        if not isinstance(s, dict) or s.get("median") is None:
            continue
        extra = {"n": s.get("repeats") or s.get("n"), "q1": s.get("q1"), "q3": s.get("q3")}
        if name.endswith("_gb_per_s"):
            extra = {k: (v * GB if k != "n" and v is not None else v) for k, v in extra.items()}
            _v(out, head, "link_bandwidth", s["median"] * GB, "bytes/s", view=name[: -len("_gb_per_s")], **extra)
        elif name.endswith("_tflop_per_s"):
            extra = {k: (v * 1e12 if k != "n" and v is not None else v) for k, v in extra.items()}
            view = name[: -len("_tflop_per_s")].removeprefix("matmul_")
            _v(out, head, "matmul_flops", s["median"] * 1e12, "flop/s", view=view, **extra)
    return out


def _files(results_dir: Path) -> list[Path]:
    found = [p for p in results_dir.rglob("*") if p.suffix in (".jsonl", ".json") and p.is_file()]
    found = [p for p in found if "archive" not in p.relative_to(results_dir).parts and not p.name.startswith(".")]
    return sorted(found, key=lambda p: p.relative_to(results_dir).parts)


def load(results_dir: str | Path = "results", *, quiet: bool = False) -> Evidence:
    """Every measured value under results_dir (see the module docstring); warnings go to stderr unless quiet."""
    import pandas as pd

    root = Path(results_dir)
    warnings: list[str] = []
    lines: list[dict] = []
    order = 0
    files = _files(root) if root.is_dir() else []

    def warn(msg: str) -> None:
        warnings.append(f"zo2bench: warning: {msg}")
        if not quiet:
            print(warnings[-1], file=sys.stderr)

    for path in files:
        rel = path.relative_to(root).parts
        series = rel[0] if len(rel) > 1 else ""
        machine = rel[-2] if len(rel) > 2 else ""
        if path.suffix == ".jsonl":
            records = []
            with open(path, "rb") as f:
                for n, raw in enumerate(f, 1):
                    if not raw.strip():
                        continue
                    try:
                        records.append((n, json.loads(raw)))
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        warn(f"{path}:{n}: skipping a line that is not JSON (damaged or torn)")
        else:
            try:
                records = [(0, json.loads(path.read_bytes()))]
            except (json.JSONDecodeError, UnicodeDecodeError):
                warn(f"{path}: skipping a file that is not JSON (damaged)")
                continue
        for n, rec in records:
            where = f"{path}:{n}" if n else str(path)
            if not isinstance(rec, dict):
                warn(f"{where}: skipping a record that is not an object")
                continue
            if rec.get("schema_version") != SCHEMA_VERSION:
                warn(f"{where}: skipping a record of schema_version {rec.get('schema_version')!r} "
                     f"(this version reads {SCHEMA_VERSION})")
                continue
            kind = rec.get("kind")
            order += 1
            start = len(lines)
            if kind == "sweep_cell":
                head = _head(path, n, rec, machine, rec.get("series") or series, "sweep", rec.get("key") or where)
                lines.extend(_sweep_values(rec, head))
            elif kind == "bench-step":
                lines.extend(_bench_values(rec, _head(path, n, rec, machine, "bench-step", "bench-step", path.stem)))
            elif kind == "calibration":
                head = _head(path, n, rec, machine, "calibration", "calibration", f"calibration:{machine}")
                lines.extend(_calibration_values(rec, head))
            else:
                warn(f"{where}: skipping a record of kind {kind!r} (read: sweep_cell, bench-step, calibration)")
            for line in lines[start:]:
                line["order"] = order
    table = pd.DataFrame(lines, columns=COLUMNS + ["order"])
    # The last record of each (machine, key) in file order wins, as results.latest_rows does: a re-run
    # supersedes, even one that now fails (its lines alone are latest).
    last = table.groupby(["machine_id", "key"], sort=False)["order"].transform("max")
    table["latest"] = table["order"] == last
    return Evidence(table.drop(columns="order"), warnings, files)
