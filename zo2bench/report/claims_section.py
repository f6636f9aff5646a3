"""The claims section of the index: every claim of the documents with its verdict on one machine.

    blocks(results, analysis, docs)     # [heading, summary, verdict table] as render.Block

The verdicts (holds / does not hold / holds in part / not tested here), their rules and their evidence are
analysis.verdicts'; this module only lays them out. Without that module the section says so.
"""
from __future__ import annotations


def _b(kind, text="", **kw):
    from zo2bench.report.render import Block

    return Block(kind, text, **kw)


def blocks(results, a, docs) -> list:
    out = [_b("heading", f"Claims on {a.machine}", level=3)]
    if not docs.available:
        return out + [_b("text", f"No claims section: {docs.missing}.")]
    verdicts = docs.verdicts(results, a.machine)
    if verdicts is None:
        return out + [_b("text", f"{len(docs.claims)} claims are recorded, but this version has no verdicts "
                                 "module (zo2bench.analysis.verdicts) to judge them.")]
    return out
