"""Every fit of one machine's rows: memory per view and mode, step time, crossover, energy.

    res = load.load("results")
    a = analyse(res, "h100-80gb-hbm3")
    a.memory[("nvml_process", "zo2")]     # (physical fit, document-form fit)
    a.time["overlap"], a.time_compare     # step-time fits of zo2 and mezo rows together, best first
    a.crossovers                          # analysis.crossover.Crossover per model
    a.projections                         # analysis.scaling.Projection per (model, mode): marked as projections

Only rows of one machine go into a fit (rows of different machines are never mixed), both series together
(the memory series varies the model size; the throughput series varies batch and sequence length, which the
activation term needs). Only the latest row of each cell is used (load.Results.rows). Only rows of the
documents' family (models.DOCUMENT_FAMILY, OPT) go into the fits: the formulas and every projected model are
OPT-shaped, so Llama-style rows (the throughput series' gpu-llama profile) are in the tables but move no
coefficient.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from zo2bench.analysis import crossover as xo
from zo2bench.analysis.fit import Fit, Point, Prediction, compare, fit_model
from zo2bench.analysis.models import (
    DOCUMENT_FAMILY,
    FIRST_ORDER_TIME,
    PROJECTION_MODELS,
    TIME_MODELS,
    VIEWS,
    Shape,
    memory_models,
    spec_of,
)
from zo2bench.errors import UserError

MEMORY_MODES = ("zo2", "mezo", "fo-adamw")
PLAN_VIEW = "nvml_process"        # what a GPU must supply a process: its CUDA context included
PROJECT_AT = {"batch": 1, "seq": 2048, "dtype": "fp16"}   # the documents' setting


@dataclass(frozen=True)
class Projection:
    model: str
    mode: str
    n_params: int
    gpu: Prediction | None           # bytes, PLAN_VIEW
    host: Prediction | None          # bytes, host RSS
    step: Prediction | None          # seconds
    tokens_per_s: Prediction | None


@dataclass(frozen=True)
class MachineAnalysis:
    machine: str
    rows: tuple = field(compare=False)           # load.Row, ok rows of this machine on a GPU
    calibration: object = None                   # load.Row or None
    memory: dict = field(default_factory=dict)   # (view, mode) -> tuple[Fit, ...], physical first
    time: dict = field(default_factory=dict)     # model name -> Fit (zo2 and mezo rows together)
    time_compare: tuple = ()                     # fit.compare rows of the time fits, best first
    first_order_time: Fit | None = None
    crossovers: tuple = ()
    projections: tuple = ()
    notes: tuple[str, ...] = ()

    def best_time(self) -> Fit | None:
        return self.time_compare[0]["fit"] if self.time_compare else None

    def memory_fit(self, view: str, mode: str) -> Fit | None:
        fits = self.memory.get((view, mode)) or ()
        return fits[0] if fits else None


def memory_value(row, view: str) -> float | None:
    """The run's peak in one view: the largest over its phases (build, warm-up, measured)."""
    key = VIEWS[view][0]
    vals = [p.get(key) for p in (row.get("memory", "views") or {}).values() if isinstance(p, dict)]
    vals = [v for v in vals if isinstance(v, (int, float))]
    return float(max(vals)) if vals else None


def step_time(row) -> float | None:
    v = row.get("step_time_s", "median")
    return float(v) if isinstance(v, (int, float)) and v > 0 else None


def energy_per_token(row) -> float | None:
    """NVML energy of the measured phase over the tokens it processed (J/token); None where not measured."""
    e = row.get("probes", "phases", "measured", "energy_j")
    n = row.get("step_time_s", "n")
    cell = row.get("cell") or {}
    if not isinstance(e, (int, float)) or not n or e <= 0:
        return None
    return float(e) / (n * cell.get("batch", 1) * cell.get("seq", 1))


def at_setting(row) -> bool:
    """Whether a row ran at the documents' setting (PROJECT_AT)."""
    return all((row.get("cell") or {}).get(k) == v for k, v in PROJECT_AT.items())


def setting_rows(rows, series="memory_scaling"):
    """Rows at the documents' setting, from `series` where it has any (a cell the throughput grid repeats
    at the same setting is then not shown twice)."""
    at = [r for r in rows if at_setting(r)]
    own = [r for r in at if r.data.get("series") == series]
    return own or at


def on_gpu(row) -> bool:
    return str(row.get("config", "device") or "").startswith("cuda")


def _points(rows, value, notes) -> list[Point]:
    pts, other = [], 0
    for r in rows:
        y = value(r)
        if y is None or y <= 0:
            continue
        try:
            shape = Shape.from_row(r)
        except (UserError, TypeError, ValueError) as e:
            notes.append(f"{r.source.where}: {e}; left out of the fits")
            continue
        if shape.spec.family != DOCUMENT_FAMILY:
            other += 1
            continue
        pts.append(Point(shape, y, r.source))
    if other:
        notes.append(f"rows of families other than {DOCUMENT_FAMILY.upper()} (Llama-style) are left out of the fits, "
                     f"whose formulas and projected models are {DOCUMENT_FAMILY.upper()}-shaped; the tables show them")
    return pts


def _fit_all(models, pts, target, unit, machine, calibration=None) -> tuple[Fit, ...]:
    out = []
    for m in models:
        if len(pts) > len(m.params) and len({p.shape.spec.name for p in pts}) >= 2:
            out.append(fit_model(m, pts, target, unit, machine, calibration))
    return tuple(out)


def analyse(results, machine: str) -> MachineAnalysis:
    notes: list[str] = []
    # one-GPU fits: a distributed cell's step is not one GPU's (analysis/gpu_scaling.py reads those), and
    # a convergence cell's models are the ladder's, not the catalog's (analysis/convergence.py reads those)
    rows = tuple(r for r in results.rows(machine=machine, status="ok")
                 if on_gpu(r) and (r.get("config", "nproc_per_node") or 1) <= 1 and not r.get("convergence"))
    memory = {}
    for view in VIEWS:
        for mode in MEMORY_MODES:
            pts = _points([r for r in rows if (r.get("cell") or {}).get("mode") == mode],
                          lambda r, v=view: memory_value(r, v), notes)
            fits = _fit_all(memory_models(mode, view), pts, view, "bytes", machine)
            if fits:
                memory[(view, mode)] = fits
    cal_row = results.calibration(machine)
    time, cmp, fo, crossovers = {}, (), None, ()
    if cal_row is None:
        notes.append(f"no calibration of {machine} under calibration/: step times are not fitted "
                     f"(run `zo2bench calibrate --out results/calibration/{machine}/calibration-<UTC>.json`)")
    else:
        cal = cal_row.data
        zo_rows = [r for r in rows if (r.get("cell") or {}).get("mode") in ("zo2", "mezo")]
        deferred = [r for r in zo_rows if (r.get("config", "writeback_every") or 1) > 1]
        if deferred:  # the time models' transfer term is every block both ways, every step
            notes.append(f"{len(deferred)} zo2 row(s) with deferred write-back (writeback_every > 1) are left out of "
                         "the step-time fits, whose transfer term moves every block both ways every step")
            zo_rows = [r for r in zo_rows if r not in deferred]
        pts = _points(zo_rows, step_time, notes)
        for m in TIME_MODELS.values():
            f = _fit_all([m], pts, "step_time_s", "s", machine, cal)
            if f:
                time[m.name] = f[0]
        cmp = tuple(compare(time.values()))
        fo_pts = _points([r for r in rows if (r.get("cell") or {}).get("mode", "").startswith("fo-")],
                         step_time, notes)
        fo_fits = _fit_all([FIRST_ORDER_TIME], fo_pts, "step_time_s", "s", machine, cal)
        fo = fo_fits[0] if fo_fits else None
        best = cmp[0]["fit"] if cmp else None
        crossovers = xo.crossovers(rows, best)
    a = MachineAnalysis(machine, rows, cal_row, memory, time, cmp, fo, crossovers, (), tuple(dict.fromkeys(notes)))
    return MachineAnalysis(**{**a.__dict__, "projections": project(a)})


def _per_second(step: Prediction, tokens: int) -> Prediction:
    """Tokens/s from a step-time prediction: the bands invert (a band reaching 0 s has no upper bound)."""
    inv = lambda iv: None if iv is None else (tokens / iv[1], tokens / iv[0] if iv[0] > 0 else math.inf)
    return Prediction(tokens / step.value, inv(step.ci), inv(step.pi), step.projection)


def project(a: MachineAnalysis, names=PROJECTION_MODELS, modes=MEMORY_MODES) -> tuple[Projection, ...]:
    """The fits carried to sizes not measured, at the documents' setting (fp16, batch 1, T 2048)."""
    out = []
    for name in names:
        for mode in modes:
            shape = Shape(spec_of(name), mode, **PROJECT_AT)
            gpu_fit, host_fit = a.memory_fit(PLAN_VIEW, mode), a.memory_fit("host_rss", mode)
            tfit = a.first_order_time if mode.startswith("fo-") else a.best_time()
            step = tfit.predict(shape) if tfit else None
            tps = _per_second(step, shape.tokens) if step and step.value > 0 else None
            out.append(Projection(name, mode, shape.n_params, gpu_fit.predict(shape) if gpu_fit else None,
                                  host_fit.predict(shape) if host_fit else None, step, tps))
    return tuple(out)
