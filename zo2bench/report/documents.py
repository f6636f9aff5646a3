"""The design documents' stated values as the reports need them: points for the figures, cells for the
measured-against-projected tables, and the verdicts of the claims section.

    docs = documents.load()
    docs.points("gpu_memory", mode="zo2")     # [(n_params, bytes, "002 §1.2 (zo2), stated"), ...]
    docs.stated(("gpu_memory", "host_memory", "tokens_per_s"))   # claims with a model and one value
    docs.verdicts(results, machine)           # analysis.verdicts' judgement of every claim on that machine

It reads analysis.claims (the claims as data) and analysis.units (the documents' GB read as GB = 10^9 bytes
unless a claim says otherwise). Where those modules are missing the reports are still made, without the
documents' points and the claims section, and the index says so.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


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

    def points(self, quantity, mode=None) -> list[tuple[int, float, str]]:
        out = []
        for c in self.stated((quantity,), mode):
            n, v = self.n_params(c), self.base(c)
            if n and v:
                label = f"{c.document} §{c.section} ({c.mode or 'any mode'}), stated for {c.hardware}"
                out.append((n, v, label))
        return sorted(out, key=lambda p: (p[2], p[0]))

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

    def verdicts(self, results, machine):
        """The claims helper's verdicts for one machine, or None where that module is missing."""
        try:
            verdicts = importlib.import_module("zo2bench.analysis.verdicts")
        except ImportError:
            return None
        return verdicts.judge_all(results, machine) if hasattr(verdicts, "judge_all") else None


def _count(n: float) -> str:
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if n >= div:
            return f"{n / div:g}{suf}"
    return f"{n:g}"


def load() -> Documents:
    try:
        claims = importlib.import_module("zo2bench.analysis.claims")
        importlib.import_module("zo2bench.analysis.units")
    except ImportError as e:
        return Documents((), f"the documents' claims are not in this version ({e.name} is missing)")
    return Documents(tuple(claims.load()))
