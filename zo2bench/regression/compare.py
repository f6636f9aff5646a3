"""Two sets of sweep rows compared cell by cell: the gates and their verdicts.

    base, cand = load_side("results/baselines/<class>"), load_side(".regression/run")
    report = compare(base, cand, Gates())   # UserError (exit 2) when the hardware classes differ
    report["counts"]                        # {"worse": 1, "not comparable": 0, "better": 0, "same": 41}
    report["rows"]                          # worse first: {"cell", "metric", "baseline", "candidate", "change",
                                            #               "verdict", "note", "detail", ...}

A side is every sweep row under its path (a file, or a folder searched for *.jsonl at any depth). Within
one file the last row of a cell key counts (as after a --force re-run); rows of one cell from several
files (the rounds of an A/B) are further runs of it. A cell is its series and grid point (model, mode,
dtype, batch, seq); its runs are its repeats. The gates, per cell:

- status: a cell missing from the candidate, or ok in the baseline and not ok (oom, error, nonfinite,
  skipped, infeasible) in any candidate run, is worse; the reverse is better.
- memory, per view (torch allocated and reserved, NVML process, host RSS, pinned host), the peak over
  the build, warm-up and measured phases, median over runs: worse when the candidate is more than
  max(memory_pct of the baseline, memory_floor_mib) above it, better when as far below.
- time: each run (process) reduced to its median measured step; with two or more runs a side, the
  ratio of the geometric means of those medians and Welch's t interval on their logarithms
  (stats.ratio_ci_welch), at 1 - (1 - confidence)/m for m cells compared (Bonferroni); with one run a
  side, a bootstrap of the steps. Worse when the ratio is above 1 + time_pct and the whole interval is
  above 1; a change the interval cannot tell from no change is "same", whatever its size.
- digest: final_params_sha256 for the same seed and configuration. Worse when it changed (the training
  trajectory changed) or the candidate's runs disagree with each other; not comparable when the
  baseline's own runs disagree (the path is not deterministic on this machine) or the configs differ.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from zo2bench import results, stats
from zo2bench.config import RunConfig
from zo2bench.errors import UserError
from zo2bench.regression import hwclass

VERDICTS = ("worse", "not comparable", "better", "same", "not gated")  # the order rows are shown in
CHECKS = ("status", "memory", "time", "digest")
MiB = 2**20
# memory.views[phase] fields gated, with their labels; the derived gaps between them are not gated
VIEWS = {"torch_peak_allocated_bytes": "memory: torch allocated", "torch_peak_reserved_bytes": "memory: torch reserved",
         "nvml_process_peak_bytes": "memory: GPU process (NVML)", "host_rss_peak_bytes": "memory: host RSS",
         "pinned_peak_bytes": "memory: pinned host"}
MIN_TIME_SAMPLES = 3  # measured steps per side, all runs together, below which no interval is drawn


@dataclass(frozen=True)
class Gates:
    memory_pct: float = 2.0        # a memory view is worse past this share of the baseline ...
    memory_floor_mib: float = 64.0  # ... or this many MiB, whichever is larger (allocator rounding, sampling)
    time_pct: float = 5.0          # step time: the smallest slowdown reported, when outside the noise
    confidence: float = 0.95       # of the step-time intervals of the whole comparison: with m cells each
                                   # is at 1 - (1 - confidence)/m (Bonferroni), so that 12 unchanged cells
                                   # raise a false alarm in under 1 comparison in 20, not in 1 in 5
    n_boot: int = 2000             # bootstrap replicates, one run a side (seeded: same rows, same verdict)
    checks: tuple = CHECKS         # the gates applied; rows of the others say "not gated"

    def __post_init__(self):
        unknown = [c for c in self.checks if c not in CHECKS]
        if unknown:
            raise UserError(f"unknown gate '{unknown[0]}'; expected some of: {', '.join(CHECKS)}")
        if self.memory_pct < 0 or self.memory_floor_mib < 0 or self.time_pct < 0:
            raise UserError("gate thresholds must be >= 0")
        if not 0 < self.confidence < 1:
            raise UserError(f"confidence must be between 0 and 1, got {self.confidence}")


@dataclass
class Side:
    label: str
    files: list = field(default_factory=list)
    rows: list = field(default_factory=list)


def load_side(path, label: str | None = None) -> Side:
    """Every sweep row under a file or folder; UserError when there is none."""
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(path.rglob("*.jsonl"))
    else:
        raise UserError(f"{path}: no such file or folder")
    side = Side(label or str(path))
    for f in files:
        rows = [r for r in results.read_rows(f) if r.get("kind") == "sweep_cell"]
        if rows:
            side.files.append(f)
            side.rows += results.latest_rows(rows)
    if not side.rows:
        raise UserError(f"{path}: no sweep rows (*.jsonl written by `zo2bench sweep`) there")
    return side


def cell_id(row: dict) -> tuple:
    c = row.get("cell") or {}
    return (row.get("series"), c.get("model"), c.get("mode"), c.get("dtype"), c.get("batch"), c.get("seq"))


def cell_label(ident: tuple, with_series: bool = False) -> str:
    series, model, mode, dtype, batch, seq = ident
    return (f"{series}: " if with_series else "") + f"{model} {mode} {dtype} b{batch} s{seq}"


def side_class(side: Side, what: str) -> dict:
    classes = {}
    for row in side.rows:
        cls = hwclass.hardware_class(row.get("fingerprint") or {})
        classes.setdefault(hwclass.class_name(cls), cls)
    if len(classes) > 1:
        raise UserError(f"{what} {side.label} holds rows of {len(classes)} hardware classes ({', '.join(classes)}); "
                        f"compare one class at a time")
    return next(iter(classes.values()))


def side_info(side: Side, cls: dict) -> dict:
    commits: dict = {}
    for row in side.rows:
        fp = row.get("fingerprint") or {}
        k = (fp.get("git_commit"), fp.get("git_dirty"))
        commits[k] = commits.get(k, 0) + 1
    return {"label": side.label, "files": len(side.files), "rows": len(side.rows),
            "commits": [{"commit": c, "dirty": d, "rows": n} for (c, d), n in commits.items()],
            "hardware_class": hwclass.class_name(cls), "class_fields": cls}


def compare(base: Side, cand: Side, gates: Gates = Gates(), allow_different_hardware: bool = False) -> dict:
    base_cls, cand_cls = side_class(base, "baseline"), side_class(cand, "candidate")
    diffs = hwclass.differences(base_cls, cand_cls)
    if diffs and not allow_different_hardware:
        shown = "; ".join(f"{hwclass.LABELS.get(k, k)} {a!r} vs {b!r}" for k, a, b in diffs)
        raise UserError(f"the baseline and the candidate are of different hardware classes ({shown}); "
                        f"their times and memory are not comparable (--allow-different-hardware compares anyway)")
    b_cells, c_cells = _cells(base.rows), _cells(cand.rows)
    series = {k[0] for k in [*b_cells, *c_cells]}
    ok = lambda rows: any(r.get("status") == "ok" for r in rows)
    m = sum(ok(b_cells[k]) and ok(c_cells.get(k, [])) for k in b_cells)
    per_cell = 1 - (1 - gates.confidence) / max(m, 1)
    out = []
    for ident in dict.fromkeys([*b_cells, *c_cells]):
        label = cell_label(ident, with_series=len(series) > 1)
        rows = _compare_cell(b_cells.get(ident, []), c_cells.get(ident, []), gates, per_cell)
        for r in rows:
            r["cell"] = label
            r["cell_id"] = dict(zip(("series", "model", "mode", "dtype", "batch", "seq"), ident))
            if diffs:
                r["different_hardware"] = True
                r["note"] = "[different hardware] " + r["note"]
            r["check"] = _check_of(r["metric"])
            if r["check"] not in gates.checks:
                r["note"] = f"(would be {r['verdict']}) {r['note']}".rstrip()
                r["verdict"] = "not gated"
        out += rows
    order = {v: i for i, v in enumerate(VERDICTS)}
    out = [r for _, r in sorted(enumerate(out), key=lambda ir: (order[ir[1]["verdict"]], ir[0]))]
    counts = {v: sum(r["verdict"] == v for r in out) for v in VERDICTS}
    notes = [f"{what} mixes rows of {len(info['commits'])} commits" for what, info in
             (("baseline", side_info(base, base_cls)), ("candidate", side_info(cand, cand_cls)))
             if len(info["commits"]) > 1]
    return {"kind": "zo2bench_comparison", "schema_version": 1,
            "baseline": side_info(base, base_cls), "candidate": side_info(cand, cand_cls),
            "hardware": {"same_class": not diffs, "differences": [list(d) for d in diffs]},
            "gates": {**dataclasses.asdict(gates), "cells_timed": m, "per_cell_confidence": per_cell},
            "counts": counts, "notes": notes, "rows": out,
            "exit_status": 1 if counts["worse"] else 0}


def _check_of(metric: str) -> str:
    return {"cell": "status", "status": "status", "step time": "time", "params digest": "digest"}.get(metric, "memory")


def _cells(rows: list[dict]) -> dict:
    cells: dict = {}
    for row in rows:
        cells.setdefault(cell_id(row), []).append(row)
    return cells


def _row(metric, baseline, candidate, verdict, note="", change=None, unit=None, detail=None) -> dict:
    return {"metric": metric, "unit": unit, "baseline": baseline, "candidate": candidate, "change": change,
            "verdict": verdict, "note": note, "detail": detail or {}}


def _status_text(rows: list[dict]) -> str:
    counts: dict = {}
    for r in rows:
        counts[r.get("status")] = counts.get(r.get("status"), 0) + 1
    return ", ".join(f"{s} x{n}" for s, n in counts.items())


def _config_diff(b_rows: list[dict], c_rows: list[dict]) -> list[str]:
    """Config fields (other than the device) whose values differ between the sides: "prefetch 1 -> 0".
    A field a row lacks (recorded before the field existed) reads as RunConfig's default."""
    defaults = RunConfig().as_dict()

    def values(rows, k):
        return sorted({repr((r.get("config") or {}).get(k, defaults.get(k))) for r in rows})

    keys = dict.fromkeys(k for r in b_rows + c_rows for k in (r.get("config") or {}) if k != "device")
    return [f"{k} {', '.join(values(b_rows, k))} -> {', '.join(values(c_rows, k))}" for k in keys
            if values(b_rows, k) != values(c_rows, k)]


def _compare_cell(b_rows: list[dict], c_rows: list[dict], g: Gates, confidence: float) -> list[dict]:
    if not c_rows:
        return [_row("cell", _status_text(b_rows), "missing", "worse", "the cell is not in the candidate")]
    if not b_rows:
        return [_row("cell", "missing", _status_text(c_rows), "not comparable", "a new cell: no baseline")]
    b_ok = [r for r in b_rows if r.get("status") == "ok"]
    c_ok = [r for r in c_rows if r.get("status") == "ok"]
    out = []
    if len(b_ok) < len(b_rows) or len(c_ok) < len(c_rows):
        bs, cs = _status_text(b_rows), _status_text(c_rows)
        if len(b_ok) == len(b_rows):
            reasons = sorted({(r.get("reason") or "").splitlines()[0][:120] for r in c_rows if r not in c_ok} - {""})
            out.append(_row("status", bs, cs, "worse", "; ".join(reasons)))
        elif len(c_ok) == len(c_rows):
            out.append(_row("status", bs, cs, "better"))
        else:
            same = {r.get("status") for r in b_rows} == {r.get("status") for r in c_rows}
            out.append(_row("status", bs, cs, "same" if same else "not comparable"))
    if not b_ok or not c_ok:
        return out
    config = _config_diff(b_ok, c_ok)
    cells = [_time(b_ok, c_ok, g, confidence), *_memory(b_ok, c_ok, g), _digest(b_ok, c_ok, config)]
    for r in cells:
        if r is not None:
            if config and r["metric"] != "params digest":
                r["note"] = (r["note"] + "; " if r["note"] else "") + "config differs: " + ", ".join(config)
            out.append(r)
    return out


def _step_runs(rows: list[dict]) -> list[list[float]]:
    runs = [[s["seconds"] for s in r.get("steps") or [] if not s.get("warmup") and s.get("seconds") is not None]
            for r in rows]
    return [r for r in runs if r]


def _noise(runs: list[list[float]]) -> dict:
    """How noisy one side was: IQR / median of its steps, and how much its runs' medians vary."""
    pooled = [v for r in runs for v in r]
    s = stats.summarize(pooled)
    medians = [stats.median(r) for r in runs]
    cv = stats.summarize(medians)["stdev"]
    return {"median_s": s["median"], "steps": len(pooled), "runs": len(runs), "run_medians_s": medians,
            "steps_iqr_pct": 100 * s["iqr"] / s["median"],
            "runs_cv_pct": None if cv is None else 100 * cv / (sum(medians) / len(medians))}


def _time(b_rows, c_rows, g: Gates, confidence: float) -> dict | None:
    """Two or more runs a side: Welch's t on the logs of the run medians; one run: a bootstrap of its steps."""
    b_runs, c_runs = _step_runs(b_rows), _step_runs(c_rows)
    if not b_runs and not c_runs:
        return None
    n_b, n_c = sum(map(len, b_runs)), sum(map(len, c_runs))
    if n_b < MIN_TIME_SAMPLES or n_c < MIN_TIME_SAMPLES or min(v for r in b_runs + c_runs for v in r) <= 0:
        return _row("step time", stats.median([v for r in b_runs for v in r]) if b_runs else None,
                    stats.median([v for r in c_runs for v in r]) if c_runs else None, "not comparable",
                    f"too few measured steps for an interval ({n_b} vs {n_c}; need {MIN_TIME_SAMPLES} a side)",
                    unit="s")
    nb, nc = _noise(b_runs), _noise(c_runs)
    if len(b_runs) >= 2 and len(c_runs) >= 2:
        ci = stats.ratio_ci_welch(nc["run_medians_s"], nb["run_medians_s"], confidence=confidence)
        how, shown = "Welch t over runs", [stats.geomean(nb["run_medians_s"]), stats.geomean(nc["run_medians_s"])]
    else:  # one process a side: what varies between processes is not measured, the interval is too narrow
        ci = stats.ratio_ci([v for r in c_runs for v in r], [v for r in b_runs for v in r], confidence=confidence,
                            n_boot=g.n_boot)
        how, shown = "bootstrap of steps, one run a side: blind to run-to-run noise", [nb["median_s"], nc["median_s"]]
    limit = 1 + g.time_pct / 100
    if ci["ratio"] > limit and ci["low"] > 1:
        verdict, why = "worse", ""
    elif ci["ratio"] < 1 / limit and ci["high"] < 1:
        verdict, why = "better", ""
    else:
        verdict, why = "same", "inside the noise; " if abs(ci["ratio"] - 1) * 100 > g.time_pct else ""
    noise = lambda n: (f"steps {n['steps_iqr_pct']:.1f}%" + ("" if n["runs_cv_pct"] is None else
                       f", runs {n['runs_cv_pct']:.1f}%") + f" ({n['runs']} x {n['steps'] // n['runs']})")
    note = (f"{why}{100 * confidence:.3g}% CI {_pct(ci['low'] - 1)}..{_pct(ci['high'] - 1)} ({how}); "
            f"noise (step IQR/median, run CV): baseline {noise(nb)}, candidate {noise(nc)}")
    return _row("step time", shown[0], shown[1], verdict, note, change=ci["ratio"] - 1, unit="s",
                detail={"ratio_ci": ci, "method": how, "baseline_noise": nb, "candidate_noise": nc})


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def _peak(row: dict, view: str):
    vals = [v.get(view) for v in ((row.get("memory") or {}).get("views") or {}).values() if isinstance(v, dict)]
    vals = [v for v in vals if isinstance(v, (int, float))]
    return max(vals) if vals else None


def _memory(b_rows, c_rows, g: Gates) -> list[dict]:
    out = []
    for view, label in VIEWS.items():
        bv = [v for v in (_peak(r, view) for r in b_rows) if v is not None]
        cv = [v for v in (_peak(r, view) for r in c_rows) if v is not None]
        if not bv and not cv:
            continue
        if not bv or not cv:
            out.append(_row(label, stats.median(bv) if bv else None, stats.median(cv) if cv else None,
                            "not comparable", "measured on one side only", unit="bytes"))
            continue
        b, c = stats.median(bv), stats.median(cv)
        tol = max(g.memory_pct / 100 * b, g.memory_floor_mib * MiB)
        verdict = "worse" if c - b > tol else "better" if b - c > tol else "same"
        spread = [f"{what} runs span {(max(v) - min(v)) / MiB:.0f} MiB" for what, v in
                  (("baseline", bv), ("candidate", cv)) if max(v) - min(v) >= MiB]
        note = f"tolerance {tol / MiB:.0f} MiB" + ("; " + ", ".join(spread) if spread else "")
        out.append(_row(label, b, c, verdict, note, change=(c - b) / b if b else None, unit="bytes",
                        detail={"tolerance_bytes": tol, "baseline_runs": bv, "candidate_runs": cv}))
    return out


def _digest(b_rows, c_rows, config: list[str]) -> dict | None:
    bd = {r.get("final_params_sha256") for r in b_rows} - {None}
    cd = {r.get("final_params_sha256") for r in c_rows} - {None}
    if not bd and not cd:
        return None
    show = lambda d: ", ".join(sorted(x[:12] for x in d)) or "none"
    if config:
        return _row("params digest", show(bd), show(cd), "not comparable", "config differs: " + ", ".join(config))
    if not bd or not cd:
        return _row("params digest", show(bd), show(cd), "not comparable", "recorded on one side only")
    if len(bd) > 1:
        return _row("params digest", show(bd), show(cd), "not comparable",
                    "the baseline's own runs disagree: this path is not deterministic here")
    if len(cd) > 1:
        return _row("params digest", show(bd), show(cd), "worse", "the candidate's runs disagree with each other")
    if bd != cd:
        return _row("params digest", show(bd), show(cd), "worse",
                    "same seed and configuration, different final parameters: the training trajectory changed")
    return _row("params digest", show(bd), show(cd), "same")
