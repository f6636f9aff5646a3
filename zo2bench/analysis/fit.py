"""Least-squares fits of a model (analysis.models) to measured points, with the uncertainty they admit.

    pts = [Point(shape, measured_value, source), ...]
    f = fit_model(models.memory_models("zo2", "torch_allocated")[0], pts, target="torch", unit="bytes", machine="h100")
    f.params            # (Estimate(name, unit, value, se, low, high), ...): 95% confidence intervals
    f.r2, f.rms_rel     # R² on the measured scale; root-mean-square relative error
    f.predict(shape)    # Prediction(value, ci, pi, projection): pi, for a new measurement, is wider than ci
    f.loo               # leave-one-model-size-out: every held-out point predicted from the other sizes

Errors are taken as relative (a weighted least squares with weights 1/measured): memory and time both span
two to three decades over the model sizes, and a fit in absolute units would be decided by the largest model
alone. The residual scatter s (relative) sets the intervals: confidence intervals come from the parameters'
covariance s²(JᵀJ)⁻¹ (J the Jacobian of the relative residuals) with Student's t at the residual degrees of
freedom; a prediction interval adds a new measurement's scatter (s x prediction) to that. Where a model is not
linear (the max() of the time models) the intervals come from its linearisation at the fit (delta method).
A fit with no degrees of freedom left has no intervals (None), and says so.

A Fit is frozen: figures and tables read it and never fit again.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

from zo2bench.analysis.models import Model, Shape

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Point:
    shape: Shape
    y: float
    source: object = field(default=None, compare=False)   # load.Source of the row


@dataclass(frozen=True)
class Estimate:
    name: str
    unit: str
    value: float
    se: float | None
    low: float | None
    high: float | None
    text: str = ""
    at_bound: bool = False     # pinned at a bound (e.g. a byte count's multiple at 0): held fixed, no interval


@dataclass(frozen=True)
class Prediction:
    value: float
    ci: tuple[float, float] | None      # where the mean lies (95%)
    pi: tuple[float, float] | None      # where a new measurement would lie (95%)
    projection: bool                    # outside the sizes measured: an extrapolation


@dataclass(frozen=True)
class Held:
    """One point predicted by the fit made without its model size."""

    point: Point
    predicted: float | None             # None where too few sizes were left to fit
    pi: tuple[float, float] | None

    @property
    def error_rel(self) -> float | None:
        return None if self.predicted is None else (self.predicted - self.point.y) / self.point.y


@dataclass(frozen=True)
class Fit:
    model: Model
    target: str                         # what was fitted: a memory view, "step_time_s", ...
    unit: str
    machine: str
    points: tuple[Point, ...]
    params: tuple[Estimate, ...]
    cov: tuple[tuple[float, ...], ...] | None
    s_rel: float | None                 # residual standard deviation, relative
    dof: int
    r2: float | None
    rms_rel: float
    fitted: tuple[float, ...]
    calibration: dict | None = field(default=None, compare=False)
    loo: tuple[Held, ...] = ()
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.points)

    @property
    def residuals_rel(self) -> tuple[float, ...]:
        return tuple((f - p.y) / p.y for f, p in zip(self.fitted, self.points))

    @property
    def sizes(self) -> tuple[int, int]:
        ns = [p.shape.n_params for p in self.points]
        return min(ns), max(ns)

    @property
    def loo_max_abs(self) -> float | None:
        errs = [abs(h.error_rel) for h in self.loo if h.error_rel is not None]
        return max(errs) if errs else None

    def value(self, name: str) -> float:
        return next(e.value for e in self.params if e.name == name)

    def predict(self, shape: Shape, calibration: dict | None = None) -> Prediction:
        """The model at `shape` with intervals; calibration replaces the fitted machine's (a what-if)."""
        cal = calibration if calibration is not None else self.calibration
        p = np.array([e.value for e in self.params])
        x = self.model.x([shape], cal)
        y = float(self.model.f(x, p)[0])
        lo, hi = self.sizes
        projection = not lo <= shape.n_params <= hi
        if self.cov is None or self.s_rel is None:
            return Prediction(y, None, None, projection)
        g = _jacobian(self.model, x, p)[0]
        var_mean = float(g @ np.array(self.cov) @ g)
        t = stats.t.ppf(0.5 + CONFIDENCE / 2, self.dof)
        half_ci = t * math.sqrt(max(var_mean, 0.0))
        half_pi = t * math.sqrt(max(var_mean, 0.0) + (self.s_rel * y) ** 2)
        # bytes and seconds are never negative: a band reaching below 0 is cut there
        return Prediction(y, (max(y - half_ci, 0.0), y + half_ci), (max(y - half_pi, 0.0), y + half_pi), projection)


def _jacobian(model: Model, X: np.ndarray, p: np.ndarray) -> np.ndarray:
    """d prediction / d parameter by central differences, steps scaled to each parameter."""
    J = np.empty((X.shape[0], len(p)))
    for i in range(len(p)):
        h = 1e-6 * max(abs(p[i]), 1e-3)
        up, dn = p.copy(), p.copy()
        up[i] += h
        dn[i] -= h
        J[:, i] = (model.f(X, up) - model.f(X, dn)) / (2 * h)
    return J


def _solve(model: Model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    p0 = np.array([q.p0 for q in model.params], dtype=float)
    lower = np.array([q.lower for q in model.params])
    upper = np.array([q.upper for q in model.params])
    p0 = np.clip(p0, np.where(np.isfinite(lower), lower + 1e-9, -np.inf), upper)
    # the parameters differ by many decades (a byte constant of 1e9 beside a multiple of 1): scale by p0
    scale = np.maximum(np.abs(p0), 1e-6)
    res = optimize.least_squares(lambda p: (model.f(X, p) - y) / y, p0, bounds=(lower, upper),
                                 x_scale=scale, method="trf", xtol=1e-10, ftol=1e-10, gtol=1e-10, max_nfev=2000)
    return res.x


def fit_model(model: Model, points, target: str, unit: str, machine: str, calibration: dict | None = None,
              loo: bool = True, note: str = "") -> Fit:
    """Fit `model` to `points` (relative least squares); with loo, refit once per model size left out."""
    pts = tuple(sorted(points, key=lambda q: (q.shape.n_params, q.shape.mode, q.shape.batch, q.shape.seq)))
    k = len(model.params)
    if len(pts) < k:
        raise ValueError(f"{model.name}: {len(pts)} points cannot fix {k} parameters")
    X = model.x([q.shape for q in pts], calibration)
    y = np.array([q.y for q in pts], dtype=float)
    p = _solve(model, X, y)
    fitted = model.f(X, p)
    rel = (fitted - y) / y
    dof = len(pts) - k
    cov, s = None, None
    # a parameter the fit pinned at its bound is held there: no interval, and the others' covariance without it
    bound = [q.lower if abs(p[i] - q.lower) <= 1e-9 * max(abs(q.p0), 1.0) else None for i, q in enumerate(model.params)]
    free = [i for i in range(k) if bound[i] is None]
    ests = []
    if dof > 0:
        s = math.sqrt(float(rel @ rel) / dof)
        # in units of each parameter's own size, so that a constant of 1e9 bytes beside a multiple of 1
        # does not make JᵀJ look singular to the inversion
        scale = np.maximum(np.abs(p), 1e-12)
        J = (_jacobian(model, X, p) / y[:, None] * scale[None, :])[:, free]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sub = np.linalg.pinv(J.T @ J) * s * s * np.outer(scale[free], scale[free])
        cov_m = np.zeros((k, k))
        cov_m[np.ix_(free, free)] = sub
        cov = tuple(tuple(float(v) for v in row) for row in cov_m)
        t = stats.t.ppf(0.5 + CONFIDENCE / 2, dof)
    for i, q in enumerate(model.params):
        at = bound[i] is not None
        value = float(q.lower) if at else float(p[i])
        se = math.sqrt(max(cov[i][i], 0.0)) if cov and not at else None
        ests.append(Estimate(q.name, q.unit, value, se, None if se is None else value - t * se,
                             None if se is None else value + t * se, q.text, at))
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((fitted - y) ** 2).sum()) / ss_tot if ss_tot > 0 else None
    result = Fit(model, target, unit, machine, pts, tuple(ests), cov, s, dof, r2,
                 math.sqrt(float((rel ** 2).mean())), tuple(float(v) for v in fitted), calibration, (), note)
    if loo:
        result = Fit(**{**result.__dict__, "loo": leave_one_size_out(model, pts, target, unit, machine, calibration)})
    return result


def leave_one_size_out(model: Model, points, target, unit, machine, calibration=None) -> tuple[Held, ...]:
    """Each model size's points predicted by a fit to the other sizes (None where too few were left)."""
    held = []
    for name in sorted({q.shape.spec.name for q in points}, key=lambda n: _size(points, n)):
        rest = [q for q in points if q.shape.spec.name != name]
        out = [q for q in points if q.shape.spec.name == name]
        if len(rest) <= len(model.params) or len({q.shape.spec.name for q in rest}) < 2:
            held.extend(Held(q, None, None) for q in out)
            continue
        f = fit_model(model, rest, target, unit, machine, calibration, loo=False)
        for q in out:
            pr = f.predict(q.shape)
            held.append(Held(q, pr.value, pr.pi))
    return tuple(held)


def _size(points, name) -> int:
    return next(q.shape.n_params for q in points if q.shape.spec.name == name)


def compare(fits) -> list[dict]:
    """Fits of one target side by side, best first (by leave-one-out error, then relative RMS)."""
    rows = []
    for f in fits:
        loo = f.loo_max_abs
        rows.append({"fit": f, "model": f.model.name, "k": len(f.params), "r2": f.r2, "rms_rel": f.rms_rel,
                     "loo_max_abs": loo, "aic": _aic(f)})
    return sorted(rows, key=lambda r: (r["loo_max_abs"] if r["loo_max_abs"] is not None else math.inf,
                                       r["rms_rel"], r["model"]))


def _aic(f: Fit) -> float | None:
    """Akaike's criterion on the relative residuals (lower is better; differences matter, not the value)."""
    rss = sum(r * r for r in f.residuals_rel)
    return None if rss <= 0 else f.n * math.log(rss / f.n) + 2 * len(f.params)
