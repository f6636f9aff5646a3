"""What a machine can fine-tune, and how fast: the fits of one measured machine put to a given budget.

    a = scaling.analyse(load.load("results"), "h100-80gb-hbm3")
    b = Budget(gpu_bytes=24 * 2**30, host_bytes=256 * 2**30, link_gb_per_s=25.0)
    for p in plan(a, b):            # one PlanRow per model and mode
        p.verdict, p.batch, p.seq, p.step, p.tokens_per_s     # predictions, never measurements

A configuration fits when the upper end of its 95% prediction interval fits: the NVML process view (what the
GPU must give the process, CUDA context included) within the GPU memory, and host RSS within the host memory.
"marginal": the central prediction fits but the upper end does not. The largest batch x seq is searched over
batches 1, 2, 4, ... 1024 and sequence lengths 512, 1024, 2048 (up to the model's positions); a batch x seq
beyond the largest the fit's rows measured is flagged (beyond_tokens), and a mode whose rows never varied
batch x seq (fo-adamw in the memory series) is planned at its measured setting only.

Speed: the best step-time fit of the measured machine, with that machine's calibrated floors, or with the
link replaced (link_gb_per_s: each direction at that rate, both at once at the measured machine's ratio of
both-ways to one-way), or with another calibration record (its link, matmul and device-memory rates). The
fitted efficiencies (a, d, c, b) are assumed to carry over: another GPU's kernels may run nearer to or
farther from its floors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from zo2bench.analysis.fit import Prediction
from zo2bench.analysis.models import Shape, spec_of
from zo2bench.analysis.scaling import PLAN_VIEW, MachineAnalysis
from zo2bench.bench import floors as fl

PLAN_MODELS = ("opt-125m", "opt-350m", "opt-1.3b", "opt-2.7b", "opt-6.7b", "opt-13b", "opt-30b", "opt-66b",
               "opt-175b", "mt-nlg-530b", "1t")
PLAN_MODES = ("zo2", "mezo", "fo-adamw")
BATCHES = tuple(2**i for i in range(11))
SEQS = (512, 1024, 2048)
FITS, MARGINAL, NO, UNKNOWN = "fits", "marginal", "does not fit", "no fit for this mode"


@dataclass(frozen=True)
class Budget:
    gpu_bytes: float
    host_bytes: float
    link_gb_per_s: float | None = None      # one direction, GB/s (10^9 B/s)
    calibration: dict | None = None          # a calibration record replacing the measured machine's


@dataclass(frozen=True)
class PlanRow:
    model: str
    mode: str
    n_params: int
    verdict: str                  # FITS | MARGINAL | NO | UNKNOWN
    reason: str
    batch: int | None             # the largest batch x seq that fits (at the upper prediction bound)
    seq: int | None
    gpu: Prediction | None        # bytes at (batch, seq), or at batch 1 x 512 when nothing fits
    host: Prediction | None
    step: Prediction | None       # seconds
    tokens_per_s: Prediction | None
    projection: bool              # a size no run measured
    beyond_tokens: bool = False   # batch x seq beyond any the fit saw: the activation term is extrapolated


def calibration_for(a: MachineAnalysis, budget: Budget) -> dict | None:
    """The figures the time model runs on for this budget (see the module docstring)."""
    if budget.calibration is not None:
        return budget.calibration
    if a.calibration is None:
        return None
    base = {k: fl.figure(a.calibration.data, k) for k in (a.calibration.data.get("figures") or {})}
    if budget.link_gb_per_s:
        one = fl.figure(a.calibration.data, fl.H2D_KEY)
        both = fl.figure(a.calibration.data, fl.BOTH_DIRECTIONS_KEY)
        ratio = both / one if both and one else 1.0
        base.update({fl.H2D_KEY: budget.link_gb_per_s, fl.D2H_KEY: budget.link_gb_per_s,
                     fl.BOTH_DIRECTIONS_KEY: budget.link_gb_per_s * ratio})
    return {"figures": base}


def _upper(p: Prediction | None) -> float | None:
    if p is None:
        return None
    return p.pi[1] if p.pi else p.value


def _check(gpu: Prediction, host: Prediction | None, budget: Budget) -> str:
    if _upper(gpu) <= budget.gpu_bytes and (host is None or _upper(host) <= budget.host_bytes):
        return FITS
    if gpu.value <= budget.gpu_bytes and (host is None or host.value <= budget.host_bytes):
        return MARGINAL
    return NO


def _per_second(step: Prediction | None, tokens: int) -> Prediction | None:
    if step is None or step.value <= 0:
        return None
    inv = (lambda iv: None if iv is None else (tokens / iv[1], tokens / iv[0] if iv[0] > 0 else math.inf))
    return Prediction(tokens / step.value, inv(step.ci), inv(step.pi), step.projection)


def plan_one(a: MachineAnalysis, budget: Budget, model: str, mode: str) -> PlanRow:
    spec = spec_of(model)
    gfit, hfit = a.memory_fit(PLAN_VIEW, mode), a.memory_fit("host_rss", mode)
    tfit = a.first_order_time if mode.startswith("fo-") else a.best_time()
    measured = {p.shape.spec.name for p in (gfit.points if gfit else ())}
    projection = model not in measured
    if gfit is None:
        return PlanRow(model, mode, spec.n_params(), UNKNOWN, f"no {mode} rows to fit GPU memory on {a.machine}",
                       None, None, None, None, None, None, projection)
    # a fit whose rows never varied batch x seq knows nothing of activations: only its measured setting is planned
    seen = {p.shape.tokens for p in gfit.points}
    only = max(seen) if len(seen) == 1 else None
    best, best_verdict = None, NO
    for seq in (s for s in SEQS if s <= spec.positions):
        for batch in BATCHES:
            if only is not None and batch * seq != only:
                continue
            shape = Shape(spec, mode, "fp16", batch, seq)
            gpu, host = gfit.predict(shape), hfit.predict(shape) if hfit else None
            verdict = _check(gpu, host, budget)
            if verdict == NO:
                break
            key = (verdict == FITS, batch * seq, seq)
            if best is None or key > best[0]:
                best, best_verdict = (key, shape, gpu, host), verdict
    cal = calibration_for(a, budget)
    if best is None:
        shape = Shape(spec, mode, "fp16", 1, SEQS[0])
        gpu, host = gfit.predict(shape), hfit.predict(shape) if hfit else None
        over = [w for w, p, cap in (("GPU", gpu, budget.gpu_bytes), ("host", host, budget.host_bytes))
                if p is not None and p.value > cap]
        reason = f"needs more {' and '.join(over) or 'GPU'} memory than given even at batch 1 x {SEQS[0]}"
        return PlanRow(model, mode, spec.n_params(), NO, reason, None, None, gpu, host, None, None, projection)
    _, shape, gpu, host = best
    step = tfit.predict(shape, cal) if tfit and cal else None
    reason = "at the upper 95% prediction bound" if best_verdict == FITS else \
        "fits at the central prediction only, not at its upper 95% bound"
    if hfit is None:
        reason += "; host memory not fitted for this mode"
    if only is not None:
        reason += f"; {mode} was measured at {only} tokens per step only, so no other batch x seq is planned"
    beyond = shape.tokens > max(seen)
    if beyond:
        reason += f"; beyond the {max(seen)} tokens per step measured: activations extrapolated"
    return PlanRow(model, mode, spec.n_params(), best_verdict, reason, shape.batch, shape.seq, gpu, host, step,
                   _per_second(step, shape.tokens), projection, beyond)


def plan(a: MachineAnalysis, budget: Budget, models=PLAN_MODELS, modes=PLAN_MODES) -> list[PlanRow]:
    return [plan_one(a, budget, m, mode) for m in models for mode in modes]


@dataclass(frozen=True)
class BandCheck:
    verdict: str
    model: str | None             # the largest known model inside the band
    gpu: Prediction | None        # at batch 1, T 2048, fp16
    host: Prediction | None


def size_band_check(a: MachineAnalysis, params_range: tuple[float, float], gpu_bytes: float, host_bytes: float,
                    mode: str = "zo2") -> BandCheck:
    """Document 002 section 3.1: does the largest known model of a size band fit the stated GPU and host
    memory at the documents' setting (fp16, batch 1, T 2048)?"""
    lo, hi = params_range
    inside = [m for m in PLAN_MODELS if lo <= spec_of(m).n_params() <= hi * 1.02]   # "13B - 30B" holds opt-30b
    if not inside:
        return BandCheck(UNKNOWN, None, None, None)
    model = max(inside, key=lambda m: spec_of(m).n_params())
    gfit, hfit = a.memory_fit(PLAN_VIEW, mode), a.memory_fit("host_rss", mode)
    if gfit is None:
        return BandCheck(UNKNOWN, model, None, None)
    shape = Shape(spec_of(model), mode, "fp16", 1, 2048)
    gpu, host = gfit.predict(shape), hfit.predict(shape) if hfit else None
    return BandCheck(_check(gpu, host, Budget(gpu_bytes, host_bytes)), model, gpu, host)
