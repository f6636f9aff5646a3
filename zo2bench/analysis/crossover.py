"""The crossover: from which batch x sequence on offloading costs nothing (zo2 as fast as mezo).

    xs = crossovers(rows, time_fit)     # one Crossover per model, measured and fitted
    xs[0].measured                      # ((seq, after, from), ...): the crossover lies in (after, from] tokens
    xs[0].fitted                        # ((seq, tokens, low, high), ...): from the time fit, 95% band

"As fast as" means zo2's median step within TOLERANCE of mezo's (a ratio of at most 1.05), the rule stated in
every report. Measured: at each sequence length, the smallest batch of the grid from which every larger batch
holds ("from", in tokens) and the cell before it, which does not ("after"): the crossover lies between them.
"after" is None where the smallest cell already holds, "from" None where no cell of the grid holds.
Fitted: the same question asked of the step-time fit over a continuous batch at that sequence length (compute
grows linearly with batch at a fixed length; the transfer and weight-pass floors do not change), with its
band from 400 draws of the fitted parameters (fixed seed, so a report is the same twice).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zo2bench.analysis.models import PROJECTION_MODELS, Shape, spec_of

TOLERANCE = 0.05
BATCHES = np.logspace(0, 6, 1201)      # batch 1 to 10^6 at a fixed sequence length
DRAWS = 400


@dataclass(frozen=True)
class Cell:
    batch: int
    seq: int
    zo2_s: float
    mezo_s: float
    zo2_source: object
    mezo_source: object

    @property
    def ratio(self) -> float:
        return self.zo2_s / self.mezo_s

    @property
    def holds(self) -> bool:
        return self.ratio <= 1 + TOLERANCE


@dataclass(frozen=True)
class Crossover:
    model: str
    n_params: int
    cells: tuple[Cell, ...]
    measured: tuple[tuple[int, int | None, int | None], ...]        # (seq, after, from) tokens
    fitted: tuple[tuple[int, float | None, float | None, float | None], ...]   # (seq, tokens, low, high)

    @property
    def measured_at(self) -> dict:
        """seq -> (after, from) tokens."""
        return {seq: (lo, hi) for seq, lo, hi in self.measured}


def _pairs(rows) -> dict:
    by = {}
    for r in rows:
        c = r.get("cell") or {}
        t = r.get("step_time_s", "median")
        if c.get("mode") in ("zo2", "mezo") and isinstance(t, (int, float)):
            by.setdefault((c["model"], c["dtype"], c["batch"], c["seq"]), {})[c["mode"]] = (float(t), r.source)
    return by


def measured_cells(rows) -> dict[str, list[Cell]]:
    out: dict[str, list[Cell]] = {}
    for (model, _dtype, batch, seq), m in sorted(_pairs(rows).items()):
        if "zo2" in m and "mezo" in m:
            out.setdefault(model, []).append(Cell(batch, seq, m["zo2"][0], m["mezo"][0], m["zo2"][1], m["mezo"][1]))
    return out


def _measured(cells: list[Cell]) -> tuple:
    out = []
    for seq in sorted({c.seq for c in cells}):
        at = sorted((c for c in cells if c.seq == seq), key=lambda c: c.batch)
        after, first = at[-1].batch * seq, None
        for i, c in enumerate(at):
            if all(d.holds for d in at[i:]):
                first, after = c.batch * seq, (at[i - 1].batch * seq if i else None)
                break
        out.append((seq, after, first))
    return tuple(out)


def _first_holding(ratio: np.ndarray) -> float | None:
    ok = ratio <= 1 + TOLERANCE
    if not ok[-1]:
        return None
    bad = np.nonzero(~ok)[0]
    return float(BATCHES[0] if bad.size == 0 else BATCHES[min(bad[-1] + 1, len(BATCHES) - 1)])


def _inputs(fit, spec, seq, dtype):
    """The time model's inputs for zo2 and mezo over BATCHES at this length: column 0 (the compute floor) is
    linear in batch at a fixed length, the other floors do not depend on it."""
    out = []
    for mode in ("zo2", "mezo"):
        X = np.repeat(fit.model.x([Shape(spec, mode, dtype, 1, seq)], fit.calibration), len(BATCHES), 0)
        X[:, 0] *= BATCHES
        out.append(X)
    return out


def fitted_tokens(fit, spec, seq: int, dtype: str = "fp16", params=None, inputs=None) -> float | None:
    """Tokens (batch x seq) from which the fit puts zo2 within the tolerance of mezo at this length."""
    p = np.array([e.value for e in fit.params]) if params is None else params
    Z, M = inputs or _inputs(fit, spec, seq, dtype)
    with np.errstate(divide="ignore", invalid="ignore"):   # a draw may put a step at 0: never holds there
        b = _first_holding(np.nan_to_num(fit.model.f(Z, p) / fit.model.f(M, p), nan=np.inf))
    return None if b is None else b * seq


def _band(fit, spec, seq, dtype) -> tuple[float | None, float | None]:
    if fit.cov is None:
        return None, None
    rng = np.random.default_rng(0)
    mean = np.array([e.value for e in fit.params])
    draws = rng.multivariate_normal(mean, np.array(fit.cov), size=DRAWS, method="eigh")
    inputs = _inputs(fit, spec, seq, dtype)
    got = [fitted_tokens(fit, spec, seq, dtype, d, inputs) for d in draws]
    vals = np.array([np.inf if g is None else g for g in got])
    lo, hi = np.percentile(vals, [2.5, 97.5], method="inverted_cdf")   # no interpolation with an infinite draw
    return (float(lo) if np.isfinite(lo) else None), (float(hi) if np.isfinite(hi) else None)


def crossovers(rows, fit, extra=PROJECTION_MODELS, seq_default: int = 2048) -> tuple[Crossover, ...]:
    """A Crossover for every model with zo2 and mezo rows, and for the projection sizes (fitted only)."""
    cells = measured_cells(rows)
    names = sorted(cells, key=lambda n: spec_of(n).n_params()) + [n for n in extra if n not in cells]
    out = []
    for name in names:
        spec = spec_of(name)
        own = cells.get(name, [])
        seqs = sorted({c.seq for c in own} | {seq_default})
        fitted = []
        if fit is not None:
            for seq in seqs:
                tok = fitted_tokens(fit, spec, seq)
                lo, hi = _band(fit, spec, seq, "fp16")
                fitted.append((seq, tok, lo, hi))
        out.append(Crossover(name, spec.n_params(), tuple(own), _measured(own), tuple(fitted)))
    return tuple(out)
