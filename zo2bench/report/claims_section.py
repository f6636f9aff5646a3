"""The claims section of the index: every claim of the documents with its verdict, its rule and its evidence.

    blocks(results, analysis, docs)     # verdicts on one machine: summary, then one table per document
    general_blocks(docs)                # verdicts against the documents' own arithmetic and the catalog
    rules_block(docs)                   # the rules, each once

The verdicts (holds / does not hold / holds in part / not tested here) are analysis.verdicts'; this module lays
them out. A measured value links to its row; a predicted one says it is a prediction (a projection where the
size was not measured), with its 95% prediction interval.
"""
from __future__ import annotations

from collections import Counter

from zo2bench.report.table import Cell, Table, row

KINDS = {"holds": "good", "does not hold": "bad", "holds in part": "", "not tested here": "muted"}
ORDER = ("holds", "does not hold", "holds in part", "not tested here")


def _b(kind, text="", **kw):
    from zo2bench.report.render import Block

    return Block(kind, text, **kw)


def _num(v, unit: str) -> str:
    if v is None:
        return "–"
    if isinstance(v, tuple):
        return f"{_num(v[0], unit)}–{_num(v[1], unit)}"
    if unit == "bytes":
        return f"{v / 1e9:.3g} GB"
    if unit == "fraction":
        return f"{100 * v:.3g}%"
    if unit in ("s", "seconds"):
        return f"{v:.3g} s"
    unit = {"1/s": "it/s", "ratio": "x", "params": "params"}.get(unit, unit)
    return f"{v:,.0f} {unit}" if abs(v) >= 1e5 else f"{v:.3g} {unit}"


def _stated(c) -> str:
    v = c.value
    return (f"{v[0]:g}–{v[1]:g}" if isinstance(v, tuple) else f"{v:g}") + f" {c.unit}"


def _here(v, docs) -> Cell:
    if v.measured:
        vals = sorted(m.value for m in v.measured)
        mid = vals[len(vals) // 2]
        prov = v.measured[0].provenance[0] if v.measured[0].provenance else None
        text = _num(mid, v.unit) + (f" (median of {len(vals)})" if len(vals) > 1 else "")
        return Cell(text, source=docs.source(prov) if prov else None)
    if v.predicted is not None:
        p = v.predicted
        band = f" [{_num(p.lo, v.unit)}, {_num(p.hi, v.unit)}]" if p.lo is not None else ""
        return Cell(_num(p.value, v.unit) + band, kind="projection", title=p.label)
    return Cell("–")


def _why(v) -> list[str]:
    parts = [v.note] if v.note else []
    parts += list(v.notes)
    if v.needs:
        parts.append(f"would be tested by: {v.needs}")
    if v.other_reading:
        parts.append(f"reading GB as {'GiB' if v.other_reading[0] == 'binary' else '10^9 B'}: {v.other_reading[1]}")
    return [p for p in parts if p]


def _what(c) -> str:
    who = " ".join(x for x in (c.model, c.mode) if x)
    part = c.column or c.component or c.quantity.replace("_", " ")
    return f"{who}: {part}" if who else part


def verdict_table(title: str, verdicts, docs) -> Table:
    """One line per verdict; the notes, often the same for many lines, are numbered once below the table."""
    body, notes = [], {}
    for v in verdicts:
        c = docs.claim(v.claim_id)
        refs = "".join(f"[{notes.setdefault(n, len(notes) + 1)}]" for n in _why(v))
        body.append(row(v.claim_id, f"{c.document} §{c.section}", Cell(_what(c), title=c.text), _stated(c),
                        Cell(v.verdict, kind=KINDS.get(v.verdict, "")), v.basis, v.rule.name if v.rule else "–",
                        _here(v, docs), "–" if v.ratio is None else f"{v.ratio:.2f}", refs))
    return Table(title, ("claim", "where", "what", "stated", "verdict", "basis", "rule", "here", "here / stated",
                         "notes"), tuple(body),
                 ("basis: measured (this machine's rows), predicted (a fit, for a size or setting not measured), "
                  "catalog (exact parameter counts), document (its own arithmetic). The rules are listed below. "
                  "Hover a claim's 'what' for the document's words.",)
                 + tuple(f"[{i}] {n}" for n, i in notes.items()),
                 (False, False, False, True, False, False, False, True, True, False))


def summary_table(docs, machine: str) -> Table:
    """Verdict counts per document and section on one machine (the README's claims table)."""
    by: dict = {}
    for v in docs.for_machine(machine):
        c = docs.claim(v.claim_id)
        by.setdefault((c.document, c.section), Counter())[v.verdict] += 1
    body = tuple(row(d, s, *(str(n[k]) if n[k] else "–" for k in ORDER), str(sum(n.values())))
                 for (d, s), n in sorted(by.items()))
    notes = (docs.missing or docs.no_verdicts,) if (docs.missing or docs.no_verdicts) else ()
    return Table(f"The documents' claims judged on {machine}", ("document", "section", *ORDER, "claims"), body,
                 notes + ("Verdicts, rules and evidence of each claim: the report's index.",),
                 (False, False, True, True, True, True, True))


def _summary(verdicts) -> str:
    n = Counter(v.verdict for v in verdicts)
    by = Counter(v.basis for v in verdicts)
    return (", ".join(f"{n[k]} {k}" for k in ORDER if n[k]) + " (" +
            ", ".join(f"{c} {b}" for b, c in sorted(by.items())) + ").")


def blocks(results, a, docs) -> list:
    out = [_b("heading", f"Claims judged on {a.machine}", level=3)]
    if not docs.available:
        return out + [_b("text", f"No claims section: {docs.missing}.")]
    if docs.no_verdicts:
        return out + [_b("text", f"{len(docs.claims)} claims are recorded, but {docs.no_verdicts}.")]
    vs = docs.for_machine(a.machine)
    if not vs:
        return out + [_b("text", "No claim could be judged on this machine's rows.")]
    out.append(_b("text", f"{len(vs)} verdicts on this machine: {_summary(vs)} Predictions judge a claim only "
                          "where no row measures it, and are marked as such (italic, hatched)."))
    for doc in sorted({docs.claim(v.claim_id).document for v in vs}):
        mine = [v for v in vs if docs.claim(v.claim_id).document == doc]
        out.append(_b("table", table=verdict_table(f"Document {doc} on {a.machine}", mine, docs)))
    return out


def general_blocks(docs) -> list:
    if not docs.available or docs.no_verdicts:
        return []
    vs = docs.general()
    out = [_b("heading", "Claims against the documents' own arithmetic and the catalog", level=2),
           _b("text", f"{len(vs)} verdicts that no measurement decides: {_summary(vs)}")]
    return out + [_b("details", "Every such verdict", blocks=[_b("table", table=verdict_table(
        "The documents' arithmetic and parameter counts", vs, docs))]), rules_block(docs)]


def rules_block(docs):
    rules = {}
    for v in docs.verdicts:
        if v.rule is not None:
            rules[v.rule.name] = v.rule
    body = tuple(row(r.name, f"{100 * r.tolerance:g}%", r.text) for r in sorted(rules.values(), key=lambda r: r.name))
    t = Table("The rules that decide the verdicts", ("rule", "tolerance", "decides"), body, (), (False, True, False))
    return _b("table", table=t)
