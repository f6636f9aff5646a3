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

    def verdicts(self, results, machine):
        """The claims helper's verdicts for one machine, or None where that module is missing."""
        try:
            verdicts = importlib.import_module("zo2bench.analysis.verdicts")
        except ImportError:
            return None
        return verdicts.judge_all(results, machine) if hasattr(verdicts, "judge_all") else None


def load() -> Documents:
    try:
        claims = importlib.import_module("zo2bench.analysis.claims")
        importlib.import_module("zo2bench.analysis.units")
    except ImportError as e:
        return Documents((), f"the documents' claims are not in this version ({e.name} is missing)")
    return Documents(tuple(claims.load()))
