"""The design documents' stated values as the reports need them: points for the figures, cells for the
measured-against-projected tables, and the verdicts of the claims section.

    docs = documents.load("results", analyses)   # analyses: {machine: scaling.MachineAnalysis}, for predictions
    docs.points("gpu_memory", mode="zo2")     # [(n_params, bytes, "002 §1.2 (zo2), stated"), ...]
    docs.stated(("gpu_memory", "host_memory", "tokens_per_s"))   # claims with a model and one value
    docs.for_machine("h100-80gb-hbm3")        # analysis.verdicts' verdicts on that machine
    docs.general()                            # verdicts against the documents' own arithmetic and the catalog

It reads analysis.claims (the claims as data), analysis.units (the documents' GB read as GB = 10^9 bytes unless
a claim says otherwise) and analysis.verdicts, which judges each claim on the measurements and, where a claim's
size or setting was not measured, on the fits' predictions (predictor(), always labelled as predictions).
Where those modules are missing the reports are still made, without the documents' points and the claims
section, and the index says so.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

FIGURE_SECTIONS = ("1.2", "2.2")   # document 002's per-model projection tables, drawn beside the measurements


@dataclass(frozen=True)
class Band:
    """One row of document 002's section 3.1: a size band with its minimum GPU and CPU RAM."""

    label: str
    params_range: tuple[float, float]
    gpu_text: str
    host_text: str
    budgets: tuple[tuple[str, float, float], ...]   # (reading, GPU bytes, host bytes): decimal first
    claim_ids: str


@dataclass(frozen=True)
class Documents:
    claims: tuple = ()
    missing: str = ""          # why the documents' data could not be read ("" when it could)
    verdicts: tuple = ()       # analysis.verdicts.Verdict, claim order
    results_root: str = ""
    no_verdicts: str = ""      # why there are no verdicts ("" when they were made)

    def claim(self, claim_id):
        return next(c for c in self.claims if c.id == claim_id)

    def for_machine(self, machine: str) -> list:
        return [v for v in self.verdicts if v.machine_id == machine]

    def general(self) -> list:
        return [v for v in self.verdicts if v.machine_id is None]

    def verdict_of(self, claim_id: str, machine: str):
        return next((v for v in self.verdicts if v.claim_id == claim_id and v.machine_id == machine), None)

    def source(self, prov):
        """An evidence Provenance as a load.Source, so that tables link it like every other number."""
        from zo2bench.analysis.load import Source

        file = os.path.relpath(prov.file, self.results_root).replace(os.sep, "/") if self.results_root else prov.file
        return Source(file, prov.line or None, prov.key, prov.commit, prov.dirty)

    @property
    def available(self) -> bool:
        return not self.missing

    def base(self, claim) -> float | None:
        """A one-valued claim in base units (bytes, tokens/s, ...) under the default reading."""
        if isinstance(claim.value, tuple):
            return None
        units = importlib.import_module("zo2bench.analysis.units")
        return float(units.to_base(claim.value, claim.unit))

    def n_params(self, claim) -> int | None:
        from zo2bench.analysis.models import spec_of

        try:
            return spec_of(claim.model).n_params() if claim.model else None
        except Exception:  # a document shape unknown to this version: the point is left out of the figure
            return None

    def stated(self, quantities, mode=None, document=None) -> list:
        return [c for c in self.claims if c.quantity in quantities and c.model and not isinstance(c.value, tuple)
                and (mode is None or c.mode == mode) and (document is None or c.document == document)]

    def points(self, quantity, mode=None) -> list[tuple[int, float, str, str]]:
        """(n_params, base value, label, mode) of the documents' per-model tables for a figure: document 002's
        projections (sections 1.2 and 2.2) and document 000's measurements (on its own hardware)."""
        out = []
        for c in self.stated((quantity,), mode):
            if not (c.document == "000" or c.section in FIGURE_SECTIONS):
                continue
            n, v = self.n_params(c), self.base(c)
            if n and v:
                what = "000 measured on 4x RTX 3090" if c.document == "000" else f"002 §{c.section} projected"
                out.append((n, v, f"{what} ({c.mode or 'any mode'})", c.mode or ""))
        return sorted(set(out), key=lambda p: (p[2], p[0]))

    def hardware_bands(self) -> list[Band]:
        """Section 3.1's rows (GPU (Min) and CPU RAM), under both readings of GB."""
        units = importlib.import_module("zo2bench.analysis.units")
        by = {}
        for c in self.claims:
            if c.document == "002" and c.section == "3.1" and c.params_range and c.column in ("GPU (Min)", "CPU RAM"):
                by.setdefault(tuple(c.params_range), {})[c.column] = c
        out = []
        for rng, cols in sorted(by.items()):
            g, h = cols.get("GPU (Min)"), cols.get("CPU RAM")
            if not g or not h:
                continue
            readings = (units.DEFAULT_READING, *[r for r in units.READINGS if r != units.DEFAULT_READING])
            budgets = tuple((rd, float(units.to_base(g.value, g.unit, rd)), float(units.to_base(h.value, h.unit, rd)))
                            for rd in readings)
            label = f"{_count(rng[0])}–{_count(rng[1])}" if rng[1] < 1e14 else f"> {_count(rng[0])}"
            out.append(Band(label, rng, g.hardware, f"{h.value:g} {h.unit}", budgets, f"{g.id}, {h.id}"))
        return out



def _count(n: float) -> str:
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if n >= div:
            return f"{n / div:g}{suf}"
    return f"{n:g}"


MAX_HALF_WIDTH = 0.5    # a prediction whose 95% interval is wider than ±50% of its value decides no claim


def predictor(analyses: dict):
    """analysis.verdicts' `predict`: a fit's value for a claim at a size or setting not measured, with its 95%
    prediction interval, labelled as a prediction (and as a projection beyond the sizes measured). A fit too
    uncertain there (interval wider than ±MAX_HALF_WIDTH) predicts nothing."""
    from zo2bench.analysis.models import VIEWS, Shape, spec_of

    verdicts = importlib.import_module("zo2bench.analysis.verdicts")

    def predict(claim, machine):
        a = analyses.get(machine)
        if a is None or isinstance(claim.value, tuple):
            return None
        if claim.quantity == "component_size":
            return _component(claim, a, machine, verdicts)
        if not claim.model:
            return None
        mode = claim.mode or "zo2"
        try:
            shape = Shape(spec_of(claim.model), mode, claim.dtype or "fp16", claim.batch or 1, claim.seq or 2048)
        except Exception:  # a model shape this version cannot build: no prediction
            return None
        q = claim.quantity
        if q in ("gpu_memory", "host_memory"):
            view = claim.view if claim.view in VIEWS else ("nvml_process" if q == "gpu_memory" else "host_rss")
            f = a.memory_fit(view, mode)
            what = f"{VIEWS[view][1]} memory fit"
            to = lambda v: v
        elif q in ("tokens_per_s", "it_per_s", "step_time") and not claim.component:
            f = a.first_order_time if mode.startswith("fo-") else a.best_time()
            what = "step-time fit"
            to = {"tokens_per_s": lambda v: shape.tokens / v if v > 0 else float("inf"),
                  "it_per_s": lambda v: 1 / v if v > 0 else float("inf"), "step_time": lambda v: v}[q]
        else:
            return None
        if f is None:
            return None
        p = f.predict(shape)
        if p.pi is None or p.pi[1] - p.pi[0] > p.value * 2 * MAX_HALF_WIDTH:
            return None     # too uncertain to decide anything: the claim stays "not tested here"
        lo, hi = sorted((to(p.pi[0]), to(p.pi[1])))
        label = (f"{what} ({f.model.title}) of {machine}, 95% prediction interval"
                 + ("; a projection beyond the sizes measured" if p.projection else ""))
        return verdicts.Prediction(to(p.value), lo, hi, label)

    return predict


# a component of formula 1.1 / section 1.4 -> (coefficient of the physical zo2 GPU fit, bytes it multiplies)
COMPONENT_TERMS = {
    "embeddings": ("c_w", lambda s: s.spec.embed_params() * s.bpp),
    "head": ("c_w", lambda s: s.spec.head_params() * s.bpp),
    "workspace": ("c_a", lambda s: s.activation_bytes),
    "overhead": ("fixed", lambda s: 1.0),
}


def _component(claim, a, machine, verdicts):
    """A term of the physical GPU-memory fit of zo2 (NVML process view) standing for one component the
    document names, with the 95% confidence interval of its coefficient. Components the physical model has no
    term for (the perturbation: regenerated in place, no buffer) and per-parameter fractions predict nothing."""
    from zo2bench.analysis.models import Shape, spec_of

    if claim.component not in COMPONENT_TERMS or claim.unit.endswith("/param"):
        return None
    name, term = COMPONENT_TERMS[claim.component]
    if name != "fixed" and not claim.model:
        return None
    f = a.memory_fit("nvml_process", "zo2")
    if f is None or f.model.source != "physical":
        return None
    e = next((e for e in f.params if e.name == name), None)
    if e is None:
        return None
    try:
        shape = Shape(spec_of(claim.model or "opt-125m"), "zo2", claim.dtype or "fp16", claim.batch or 1,
                      claim.seq or 2048)
    except Exception:  # a shape this version cannot build
        return None
    x = term(shape)
    lo, hi = (None, None) if e.low is None else (max(e.low, 0.0) * x, e.high * x)
    return verdicts.Prediction(e.value * x, lo, hi, f"the {name} term of the physical zo2 GPU-memory fit (NVML "
                               f"process) of {machine}, 95% confidence interval of its coefficient; a fit term, "
                               "not a measurement")


def load(results_dir=None, analyses: dict | None = None) -> Documents:
    """The claims, and (given a results folder) every verdict on it, predictions from `analyses` included."""
    try:
        claims = importlib.import_module("zo2bench.analysis.claims")
        importlib.import_module("zo2bench.analysis.units")
    except ImportError as e:
        return Documents((), f"the documents' claims are not in this version ({e.name} is missing)")
    all_claims = tuple(claims.load())
    if results_dir is None:
        return Documents(all_claims)
    try:
        evidence = importlib.import_module("zo2bench.analysis.evidence")
        verdicts = importlib.import_module("zo2bench.analysis.verdicts")
    except ImportError as e:
        return Documents(all_claims, no_verdicts=f"no verdicts in this version ({e.name} is missing)")
    ev = evidence.load(results_dir, quiet=True)     # its warnings are the loader's, printed once already
    vs = verdicts.judge_all(ev, list(all_claims), predict=predictor(analyses or {}))
    return Documents(all_claims, "", tuple(vs), str(results_dir))
