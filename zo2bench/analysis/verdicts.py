"""A verdict for every claim: per machine with evidence, against the catalog, or against the document.

    from zo2bench.analysis import claims, evidence, verdicts
    ev = evidence.load("results")
    vs = verdicts.judge_all(ev)                       # list[Verdict]
    verdicts.frame(vs)                                # pandas DataFrame, one line per verdict
    verdicts.judge(claims.get("002-2.3-lt1b-efficiency"), ev, predict=my_fit)   # one claim

A verdict is HOLDS, FAILS ("does not hold"), PARTIAL ("holds in part": some of the values that test it
hold, some do not, or the evidence covers only part of the claim) or UNTESTED ("not tested here", with
the run that would test it). RULES is the one table of rules: which claims a rule decides, its
tolerance, and the rule in words. Each verdict carries its rule, the claimed value in base units, the
measured values with their provenance, the ratio measured/claimed, and, where reading GB as GiB
(units.py) changes the verdict, the verdict under that reading too.

Bases: "measured" (rows of one machine), "predicted" (a fitted model's value for a size or setting not
measured, from the optional `predict` callable; always labelled), "catalog" (exact parameter counts),
"document" (the document's own arithmetic, claims.check_document).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from zo2bench.analysis import claims as claims_mod
from zo2bench.analysis import matching, units
from zo2bench.analysis.claims import Claim
from zo2bench.analysis.evidence import Evidence
from zo2bench.analysis.matching import Measured

HOLDS, FAILS, PARTIAL, UNTESTED = "holds", "does not hold", "holds in part", "not tested here"
VERDICTS = (HOLDS, FAILS, PARTIAL, UNTESTED)


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str            # ceiling | floor | point | range | exact
    tolerance: float     # relative
    quantities: tuple[str, ...]
    senses: tuple[str, ...]
    text: str            # the rule in words, as a report prints it


_MEM = ("gpu_memory", "host_memory", "component_size", "storage")
_SPEED = ("tokens_per_s", "it_per_s")
_RATIO = ("reduction", "memory_ratio", "memory_saving", "slowdown_vs_backprop", "growth_per_b_params",
          "dtype_memory_ratio", "energy_savings", "power_change", "model_size_ratio", "max_model_size",
          "bandwidth_gain", "pcie_bandwidth", "step_time", "time_per_epoch", "training_time", "iterations",
          "epochs", "accuracy_ratio", "cost", "cost_rate", "savings", "budget", "formula_constant",
          "energy_per_token")
# The one table of rules. The first rule whose quantities and senses match a claim decides it.
RULES: dict[str, Rule] = {r.name: r for r in [
    Rule("memory-ceiling", "ceiling", 0.10, _MEM, ("ceiling",),
         "a memory requirement or limit: holds if measured ≤ claimed × 1.10"),
    Rule("memory-point", "point", 0.15, _MEM, ("point",),
         "a memory figure stated as measured: holds if measured is within ±15% of claimed"),
    Rule("memory-range", "range", 0.10, _MEM, ("range",),
         "a memory band: holds if measured lies in [lo × 0.90, hi × 1.10]"),
    Rule("speed-floor", "floor", 0.10, _SPEED, ("floor",),
         "a projected speed: holds if measured ≥ claimed × 0.90"),
    Rule("speed-point", "point", 0.20, _SPEED, ("point",),
         "a speed stated as measured: holds if within ±20% of claimed, judged only on the GPU it names"),
    Rule("efficiency-band", "range", 0.02, ("efficiency",), ("range", "point"),
         "efficiency (mezo step time / zo2 step time, same cell): holds if in [lo × 0.98, hi × 1.02]"),
    Rule("ratio-point", "point", 0.20, _RATIO, ("point",),
         "a ratio, difference, slope or time: holds if within ±20% of claimed"),
    Rule("ratio-floor", "floor", 0.10, _RATIO, ("floor",),
         "a benefit stated as at least: holds if measured ≥ claimed × 0.90"),
    Rule("ratio-ceiling", "ceiling", 0.10, _RATIO, ("ceiling",),
         "a cost or limit stated as at most: holds if measured ≤ claimed × 1.10"),
    Rule("ratio-range", "range", 0.05, _RATIO, ("range",),
         "a band: holds if measured lies in [lo × 0.95, hi × 1.05]"),
    Rule("count-nominal", "point", 0.10, ("params",), ("point", "exact"),
         "a parameter count as the document names it: holds if within ±10% of the exact count"),
    Rule("count-exact", "exact", 0.0, ("layers", "offloaded_blocks"), ("exact", "point"),
         "a count of layers or blocks: holds if equal"),
    Rule("fits", "exact", 0.0, ("fits",), ("exact", "point"),
         "whether a model trains (1) or not (0): holds if the measured outcome is the same"),
]}
DOCUMENT_RULE = Rule("document", "point", claims_mod.DOCUMENT_RTOL, (), (),
                     f"the document's own arithmetic: holds if recomputed within ±{claims_mod.DOCUMENT_RTOL:.0%} "
                     "of the stated figure, or equal at its stated rounding")
# Quantities whose value depends on the GPU: a claim that names a GPU is judged on that GPU only.
HARDWARE_BOUND = {"tokens_per_s", "it_per_s", "step_time", "efficiency", "slowdown_vs_backprop", "pcie_bandwidth",
                  "energy_per_token", "energy_savings", "power_change", "time_per_epoch", "training_time"}
# Claims about the document's own arithmetic alone: their document check is their only verdict.
ARITHMETIC_ONLY = {"component_share"}
# What would test claims of a quantity that no stored series measures (a claim's own `test` wins).
NEEDS = {
    "iterations": "the convergence series (issue 11): steps to a target loss per model and task",
    "epochs": "the convergence series (issue 11)",
    "accuracy_ratio": "the convergence series (issue 11): final accuracy of zo2 and fo-adamw per task",
    "formula_constant": "the convergence series (issue 11), fitted to formula 4.1",
    "time_per_epoch": "a named dataset and its size in tokens (the document names neither)",
    "training_time": "a convergence run of the model to its target",
    "cost": "cloud prices and a convergence run; not a measurement of this suite",
    "cost_rate": "cloud price lists; not a measurement of this suite",
    "savings": "cloud prices and convergence runs of both methods",
    "budget": "hardware price lists; not a measurement of this suite",
    "storage": "checkpoint and dataset sizes on disk; not measured by this suite",
    "component_size": "the fitted memory model (analysis/fit.py) separating the terms; pass it as predict",
    "pcie_bandwidth": "a host with that PCIe generation, and the calibration (zo2bench calibrate)",
    "bandwidth_gain": "hosts of both PCIe generations, each calibrated (zo2bench calibrate)",
}


def rules_frame():
    """The rules as a table for a report: name, kind, tolerance, the quantities and senses, the rule in words."""
    import pandas as pd

    return pd.DataFrame([{"rule": r.name, "kind": r.kind, "tolerance": r.tolerance,
                          "quantities": ", ".join(r.quantities), "senses": ", ".join(r.senses), "text": r.text}
                         for r in (*RULES.values(), DOCUMENT_RULE)])


def rule_for(claim: Claim) -> Rule | None:
    """The rule that decides a claim against measurements (None: nothing decides it but the document)."""
    for r in RULES.values():
        if claim.quantity in r.quantities and claim.sense in r.senses:
            return r
    return None


@dataclass(frozen=True)
class Prediction:
    """A fitted model's value for a claim on one machine, in the claim's base unit."""

    value: float
    lo: float | None = None
    hi: float | None = None
    label: str = "fit"                   # e.g. "memory fit (nvml_process), 95% prediction interval"


Predict = Callable[[Claim, str], "Prediction | None"]


@dataclass(frozen=True)
class Verdict:
    claim_id: str
    machine_id: str | None               # None for the catalog and document bases
    basis: str                           # measured | predicted | catalog | document | none
    verdict: str                         # VERDICTS
    rule: Rule | None
    reading: str | None                  # how GB was read (None where the unit has no reading)
    claimed: float | tuple[float, float]  # the claim's value in base units under `reading`
    unit: str                            # the base unit
    measured: tuple[Measured, ...] = ()
    predicted: Prediction | None = None
    ratio: float | None = None           # median measured (or predicted) / claimed
    other_reading: tuple[str, str] | None = None   # (reading, verdict) where that reading flips it
    needs: str | None = None             # for UNTESTED: what run would test it
    note: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


# -- comparing --------------------------------------------------------------------------------------
def _mid(c) -> float:
    return (c[0] + c[1]) / 2 if isinstance(c, tuple) else c


def compare(rule: Rule, value: float, claimed) -> bool:
    """One measured value against a claimed value (or (lo, hi)) under a rule."""
    t = rule.tolerance
    if isinstance(claimed, tuple) or rule.kind == "range":
        lo, hi = claimed if isinstance(claimed, tuple) else (claimed, claimed)
        if rule.kind == "ceiling":
            return value <= hi * (1 + t)
        if rule.kind == "floor":
            return value >= lo * (1 - t)
        return lo * (1 - t) <= value <= hi * (1 + t)
    if rule.kind == "ceiling":
        return value <= claimed * (1 + t)
    if rule.kind == "floor":
        return value >= claimed * (1 - t)
    if rule.kind == "exact":
        return round(value) == round(claimed)
    return abs(value - claimed) <= t * abs(claimed)


def _aggregate(oks: list[bool]) -> str:
    if not oks:
        return UNTESTED
    return HOLDS if all(oks) else FAILS if not any(oks) else PARTIAL


def side(rule: Rule, value: float, claimed) -> str:
    """Where a value lies against the claim's tolerance band: below, within or above."""
    lo, hi = claimed if isinstance(claimed, tuple) else (claimed, claimed)
    t = rule.tolerance
    lo_t, hi_t = (lo * (1 - t), hi * (1 + t)) if lo >= 0 else (lo * (1 + t), hi * (1 - t))
    return "below" if value < lo_t else "above" if value > hi_t else "within"


def _decide(rule: Rule, measured: list[Measured], claimed) -> tuple[str, list[Measured]]:
    out, oks, partial, lower_fail = [], [], False, False
    for m in measured:
        ok = compare(rule, m.value, claimed)
        if m.bound == "lower" and not ok and rule.kind in ("floor", "range", "point"):
            lower_fail = True   # a lower bound below the claim says nothing against it
        mid = _mid(claimed)
        out.append(Measured(m.value, m.unit, m.cell, m.provenance, HOLDS if ok else FAILS,
                            m.value / mid if mid else None, m.bound, m.partial, side(rule, m.value, claimed)))
        oks.append(ok)
        partial = partial or bool(m.partial)
    v = _aggregate(oks)
    if lower_fail and v != HOLDS:
        v = UNTESTED
    elif partial and v == HOLDS:
        v = PARTIAL
    return v, out


def _summary(ms: list[Measured]) -> tuple[str, ...]:
    """"12 of 29 values hold; 15 above the band, 2 below" where several values decide a verdict."""
    if len(ms) < 2:
        return ()
    held = sum(m.verdict == HOLDS for m in ms)
    sides = [f"{n} {s}" for s in ("above", "below") if (n := sum(m.side == s for m in ms))]
    return (f"{held} of {len(ms)} values hold" + (f"; {', '.join(sides)} the claim with its tolerance" if sides
                                                   else ""),)


def _ratio(measured: list[Measured], claimed) -> float | None:
    mid = _mid(claimed)
    return float(np.median([m.value for m in measured])) / mid if measured and mid else None


# -- judging ----------------------------------------------------------------------------------------
def judge(claim: Claim, ev: Evidence, *, reading: str = units.DEFAULT_READING,
          predict: Predict | None = None) -> list[Verdict]:
    """Every verdict on one claim: its document check, its catalog check, one per machine with evidence."""
    out = []
    base = units.base_unit(claim.unit)
    claimed = units.to_base(claim.value, claim.unit, reading)
    has_reading = units.reading_matters(claim.unit)
    doc = claims_mod.check_document(claim)
    if doc is not None:
        out.append(Verdict(claim.id, None, "document", HOLDS if doc.holds else FAILS, DOCUMENT_RULE, None,
                           claim.value, claim.unit, ratio=doc.recomputed / _mid(claim.value) if _mid(claim.value)
                           else None, note=f"{doc.expression} = {doc.recomputed:.6g}"))
    rule = rule_for(claim)
    cat = matching.from_catalog(claim)
    if cat and rule is not None:
        v, ms = _decide(rule, cat, claimed)
        other = None
        if has_reading:
            alt = units.BINARY if reading == units.DECIMAL else units.DECIMAL
            alt_v, _ = _decide(rule, cat, units.to_base(claim.value, claim.unit, alt))
            other = (alt, alt_v) if alt_v != v else None
        out.append(Verdict(claim.id, None, "catalog", v, rule, reading if has_reading else None, claimed, base,
                           tuple(ms), ratio=_ratio(ms, claimed), other_reading=other))
        if not matching.measurable(claim):
            return out
    if rule is None or not matching.measurable(claim):
        if not (doc is not None and claim.quantity in ARITHMETIC_ONLY):
            out.append(Verdict(claim.id, None, "none", UNTESTED, rule, reading if has_reading else None, claimed, base,
                               needs=claim.test or NEEDS.get(claim.quantity, "no stored series measures this")))
        return out
    machines = ev.machines()
    if not machines:
        out.append(Verdict(claim.id, None, "none", UNTESTED, rule, reading if has_reading else None, claimed, base,
                           needs=claim.test or matching.needs(claim)))
    for machine in machines:
        out.append(_judge_machine(claim, ev, machine, rule, reading, predict))
    return out


def _judge_machine(claim: Claim, ev: Evidence, machine: str, rule: Rule, reading: str,
                   predict: Predict | None) -> Verdict:
    base = units.base_unit(claim.unit)
    claimed = units.to_base(claim.value, claim.unit, reading)
    has_reading = units.reading_matters(claim.unit)
    rd = reading if has_reading else None
    gpu = matching.machine_gpu(ev, machine)
    if claim.gpu and claim.quantity in HARDWARE_BOUND and claim.gpu.lower() not in (gpu or "").lower():
        ms = matching.values(claim, ev, machine)
        shown = tuple(Measured(m.value, m.unit, m.cell, m.provenance, "", m.value / _mid(claimed),
                               side=side(rule, m.value, claimed)) for m in ms)
        return Verdict(claim.id, machine, "measured", UNTESTED, rule, rd, claimed, base, shown,
                       ratio=_ratio(list(shown), claimed), needs=f"a run on {claim.hardware}",
                       note=f"stated for {claim.gpu}; this machine has {gpu}: values shown for reference")
    ms = matching.values(claim, ev, machine)
    notes = matching.notes(claim, gpu)
    if not ms:
        pred = predict(claim, machine) if predict else None
        if pred is not None:
            ok = compare(rule, pred.value, claimed)
            other = None
            if has_reading:
                alt = units.BINARY if reading == units.DECIMAL else units.DECIMAL
                alt_ok = compare(rule, pred.value, units.to_base(claim.value, claim.unit, alt))
                other = (alt, HOLDS if alt_ok else FAILS) if alt_ok != ok else None
            return Verdict(claim.id, machine, "predicted", HOLDS if ok else FAILS, rule, rd, claimed, base,
                           predicted=pred, ratio=pred.value / _mid(claimed) if _mid(claimed) else None,
                           other_reading=other, note=f"predicted, not measured: {pred.label}", notes=notes)
        failed = matching.did_not_fit(claim, ev, machine)
        if failed:
            notes += (f"{claim.model} {claim.mode} did not fit on this machine: {failed[-1].cite()}",)
        return Verdict(claim.id, machine, "measured", UNTESTED, rule, rd, claimed, base,
                       needs=claim.test or matching.needs(claim), notes=notes)
    v, judged = _decide(rule, ms, claimed)
    other = None
    if has_reading:
        alt = units.BINARY if reading == units.DECIMAL else units.DECIMAL
        alt_v, _ = _decide(rule, ms, units.to_base(claim.value, claim.unit, alt))
        other = (alt, alt_v) if alt_v != v else None
    needs = (claim.test or matching.needs(claim)) if v == UNTESTED else None
    partial = sorted({m.partial for m in judged if m.partial})
    return Verdict(claim.id, machine, "measured", v, rule, rd, claimed, base, tuple(judged),
                   ratio=_ratio(judged, claimed), other_reading=other, needs=needs,
                   note="; ".join(partial), notes=notes + _summary(judged))


def judge_all(ev: Evidence, claims: list[Claim] | None = None, *, reading: str = units.DEFAULT_READING,
              predict: Predict | None = None) -> list[Verdict]:
    """judge() over every claim (default: claims.load()), in claim order."""
    return [v for c in (claims if claims is not None else claims_mod.load())
            for v in judge(c, ev, reading=reading, predict=predict)]


def frame(verdicts: list[Verdict]):
    """One line per verdict: ids, verdict, rule, claimed, median measured, ratio, reading flip, needs."""
    import pandas as pd

    rows = []
    for v in verdicts:
        c = claims_mod.get(v.claim_id)
        rows.append({"claim_id": v.claim_id, "document": c.document, "section": c.section, "quantity": c.quantity,
                     "machine_id": v.machine_id, "basis": v.basis, "verdict": v.verdict,
                     "rule": v.rule.name if v.rule else None, "claimed": v.claimed, "unit": v.unit,
                     "measured": float(np.median([m.value for m in v.measured])) if v.measured else
                     (v.predicted.value if v.predicted else None),
                     "n_values": len(v.measured), "ratio": v.ratio,
                     "other_reading": f"{v.other_reading[0]}: {v.other_reading[1]}" if v.other_reading else None,
                     "needs": v.needs, "note": "; ".join(x for x in (v.note, *v.notes) if x)})
    return pd.DataFrame(rows)
