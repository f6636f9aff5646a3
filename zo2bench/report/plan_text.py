"""The text `zo2bench plan` prints: a table of predictions per model and mode, then document 002's 3.1 table.

    print(render(analysis, budget, plan_rows, args))
"""
from __future__ import annotations

import math

from zo2bench.analysis import plan as planner
from zo2bench.analysis.scaling import PLAN_VIEW

GIB = 2.0**30


def _g(p, lo_hi=True) -> str:
    if p is None:
        return "–"
    text = f"{p.value / GIB:.1f}"
    return text + (f" [{p.pi[0] / GIB:.1f}, {p.pi[1] / GIB:.1f}]" if lo_hi and p.pi else "")


def _n(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if math.isinf(v):
        return "∞"
    return f"{v:.3g}" if v < 1000 else f"{v:,.0f}"


def _t(p) -> str:
    return "–" if p is None else _n(p.value) + (f" [{_n(p.pi[0])}, {_n(p.pi[1])}]" if p.pi else "")


def _table(header, rows) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()
    return [fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


def _budget_line(a, budget) -> str:
    cal = planner.calibration_for(a, budget)
    if budget.calibration is not None:
        link = "link, matmul and device-memory rates from the given calibration"
    elif budget.link_gb_per_s:
        from zo2bench.bench import floors as fl

        both = fl.figure(cal, fl.BOTH_DIRECTIONS_KEY) if cal else None
        link = (f"link {budget.link_gb_per_s:g} GB/s each way ({both:.1f} GB/s both at once, scaled as measured); "
                f"compute at {a.machine}'s calibrated rates") if both else f"link {budget.link_gb_per_s:g} GB/s"
    else:
        link = f"link and compute at {a.machine}'s calibrated rates"
    return (f"GPU {budget.gpu_bytes / GIB:g} GiB, host {budget.host_bytes / GIB:g} GiB; {link}."
            + ("" if cal else " No calibration: step times are not predicted."))


def render(a, budget, rows, args=None) -> str:
    out = [f"zo2bench plan: PREDICTIONS from the fits of {a.machine} ({len(a.rows)} measured rows), not measurements",
           _budget_line(a, budget),
           f"fits: the upper end of the 95% prediction interval fits ({PLAN_VIEW.replace('_', ' ')} for the GPU, "
           "host RSS for the host); marginal: only the central prediction fits. * = a size no run measured; "
           "+ = more tokens per step than any measured (activations extrapolated).",
           ""]
    body = []
    for r in rows:
        where = (f"{r.batch} x {r.seq}" + (" +" if r.beyond_tokens else "")) if r.batch else "–"
        body.append([r.model + ("*" if r.projection else ""), r.mode, r.verdict, where, _g(r.gpu), _g(r.host),
                     _t(r.step), _t(r.tokens_per_s)])
    out += _table(["model", "mode", "verdict", "largest batch x seq", "GPU GiB [95% PI]", "host GiB [95% PI]",
                   "step s [95% PI]", "tokens/s [95% PI]"], body)
    notes = sorted({f"{r.mode}: {r.reason.split('; ', 1)[1]}" for r in rows if r.verdict != planner.NO
                    and "measured at" in r.reason})
    notes += [f"{r.model} {r.mode}: {r.reason}" for r in rows if r.verdict in (planner.NO, planner.UNKNOWN)]
    if notes:
        out += ["", *notes]
    out += ["", *hardware_table(a)]
    return "\n".join(out)


def hardware_table(a) -> list[str]:
    """Document 002 section 3.1 checked with the same fits: each size band's largest model on its minimum GPU
    and CPU RAM, zo2, fp16, batch 1, T 2048."""
    from zo2bench.report import documents

    docs = documents.load()
    title = "Document 002 §3.1, minimum hardware per model size (zo2, fp16, batch 1, T 2048), predicted:"
    if not docs.available:
        return [title, f"  not checked: {docs.missing}"]
    rows = docs.hardware_bands()
    if not rows:
        return [title, "  not checked: the claims data holds no section 3.1 table"]
    body = []
    for band in rows:
        verdicts = []
        for reading, gpu, host in band.budgets:
            chk = planner.size_band_check(a, band.params_range, gpu, host)
            verdicts.append((reading, chk))
        chk = verdicts[0][1]
        flips = [f"{rd}: {c.verdict}" for rd, c in verdicts[1:] if c.verdict != chk.verdict]
        body.append([band.label, band.gpu_text, band.host_text, chk.model or "–", _g(chk.gpu, False),
                     _g(chk.host, False), chk.verdict + (f" ({'; '.join(flips)})" if flips else ""), band.claim_ids])
    return [title, *_table(["size", "GPU (min)", "CPU RAM", "model checked", "GPU GiB", "host GiB", "verdict",
                            "claims"], body),
            "GB read as 10^9 bytes; where reading it as 2^30 bytes changes a verdict, the other reading is shown."]
