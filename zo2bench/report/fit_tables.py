"""The tables of one machine's analysis: measured memory and time, fitted models, leave-one-out errors,
projections, crossovers, energy, and the documents' stated values against what was measured.

    t = fit_tables.memory_measured(analysis)    # a table.Table; every measured number linked to its row

Units: memory in GiB (2^30 bytes), times in ms or s as the header says, bandwidth in GB/s (10^9 B/s),
energy in mJ per token. Intervals are 95%; "[lo, hi]" after a fitted value.
"""
from __future__ import annotations

from zo2bench.analysis import crossover as xo
from zo2bench.analysis.models import VIEWS, Shape, spec_of
from zo2bench.analysis.scaling import PLAN_VIEW, energy_per_token, memory_value, setting_rows, step_time
from zo2bench.bench import floors as fl
from zo2bench.report.fmt import band, by_size, cell_of, est_text, gib, params_text, pct, row_cell, sig
from zo2bench.report.table import Cell, Table, row

# -- memory ----------------------------------------------------------------------------------------------------

def memory_measured(a) -> Table:
    rows = setting_rows(by_size(a.rows))
    body = []
    for r in rows:
        c = cell_of(r)
        body.append(row(c["model"], params_text(spec_of(c["model"]).n_params()), c["mode"],
                        *[Cell(gib(memory_value(r, v)), source=r.source) for v in VIEWS], row_cell(r)))
    return Table(f"Peak memory measured on {a.machine} (fp16, batch 1, T 2048), GiB",
                 ("model", "params", "mode", *[f"{VIEWS[v][1]} GiB" for v in VIEWS], "row"), tuple(body),
                 ("Peaks over the whole run (build, warm-up and measured steps). GiB = 2^30 bytes.",),
                 (False, True, False, True, True, True, True, True, False))


def memory_fits(a) -> Table:
    body = []
    for (view, mode), fits in a.memory.items():
        for f in fits:
            body.append(row(VIEWS[view][1], mode, f.model.title, f.model.formula,
                            "; ".join(est_text(e) for e in f.params), f.n, sig(f.r2, 4),
                            pct(f.rms_rel, False), pct(f.loo_max_abs, False)))
    return Table(f"Memory models fitted on {a.machine}", ("view", "mode", "model", "form", "fitted constants [95% CI]",
                 "points", "R²", "RMS error", "worst leave-one-size-out"), tuple(body),
                 ("Relative least squares over every ok row of the machine (both series). W: weight bytes, "
                  "B·T·H: batch x seq x hidden. Coefficients are multiples of the byte count they scale.",),
                 (False, False, False, False, False, True, True, True, True))


def loo(f, what: str) -> Table:
    """Every leave-one-size-out error of one fit."""
    to = (lambda v: gib(v)) if f.unit == "bytes" else (lambda v: "–" if v is None else f"{v * 1e3:.1f}")
    unit = "GiB" if f.unit == "bytes" else "ms"
    body = []
    for h in f.loo:
        s = h.point.shape
        body.append(row(s.spec.name, s.mode, s.batch, s.seq, Cell(to(h.point.y), source=h.point.source),
                        to(h.predicted), to(h.pi[0]) + "–" + to(h.pi[1]) if h.pi else "–",
                        Cell(pct(h.error_rel), kind="bad" if h.error_rel and abs(h.error_rel) > 0.2 else "")))
    return Table(f"Leave one size out: {what} ({f.model.title})",
                 ("held-out model", "mode", "batch", "seq", f"measured {unit}", f"predicted {unit}",
                  "95% prediction", "error"), tuple(body),
                 ("Each size predicted by the same model fitted to the other sizes only. "
                  "– : too few sizes left to fit.",), (False, False, True, True, True, True, True, True))


def projections(a) -> Table:
    body = []
    for p in a.projections:
        g = p.gpu
        body.append(row(p.model, params_text(p.n_params), p.mode,
                        Cell(gib(g.value) + band(g.pi, gib), kind="projection") if g else "–",
                        Cell(gib(p.host.value) + band(p.host.pi, gib), kind="projection") if p.host else "–",
                        Cell(sig(p.step.value) + band(p.step.pi, sig), kind="projection") if p.step else "–",
                        Cell(sig(p.tokens_per_s.value) + band(p.tokens_per_s.pi, sig), kind="projection")
                        if p.tokens_per_s else "–", "projection"))
    return Table(f"Projections from the fits of {a.machine} (fp16, batch 1, T 2048)",
                 ("model", "params", "mode", f"GPU GiB ({VIEWS[PLAN_VIEW][1]}) [95% PI]", "host RSS GiB [95% PI]",
                  "step s [95% PI]", "tokens/s [95% PI]", "basis"), tuple(body),
                 ("Prediction intervals (PI) bound a new measurement; they assume the fitted form holds beyond the "
                  "sizes measured, which nothing here tests. Step times assume this machine's calibrated link and "
                  "GPU; memory needs beyond this GPU's capacity are what the run would need, not what it could do.",),
                 (False, True, False, True, True, True, True, False))


def _measured_for(a, c):
    """The row and value measured for a stated claim (same model, mode and setting), or (None, None)."""
    want = {"model": c.model, "mode": c.mode or "zo2", "batch": c.batch or 1, "seq": c.seq or 2048,
            "dtype": c.dtype or "fp16"}
    for r in by_size(a.rows):
        if all(cell_of(r).get(k) == v for k, v in want.items()):
            return r, _quantity(r, c)
    return None, None


def _quantity(r, c):
    if c.quantity in ("gpu_memory", "host_memory"):
        return memory_value(r, _view(c))
    t = step_time(r)
    if t is None:
        return None
    return r.get("tokens_per_s") or (cell_of(r)["batch"] * cell_of(r)["seq"] / t) if c.quantity == "tokens_per_s" \
        else 1.0 / t


def _view(c) -> str:
    if c.view in VIEWS:
        return c.view
    return PLAN_VIEW if c.quantity == "gpu_memory" else "host_rss"


def _fitted_for(a, c):
    mode = c.mode or "zo2"
    try:
        shape = Shape(spec_of(c.model), mode, c.dtype or "fp16", c.batch or 1, c.seq or 2048)
    except Exception:  # a shape this version cannot build: nothing is projected
        return None
    if c.quantity in ("gpu_memory", "host_memory"):
        f = a.memory_fit(_view(c), mode)
        return f.predict(shape).value if f else None
    f = a.first_order_time if mode.startswith("fo-") else a.best_time()
    if f is None:
        return None
    t = f.predict(shape).value
    return None if t <= 0 else (shape.tokens / t if c.quantity == "tokens_per_s" else 1.0 / t)


def stated_vs_measured(a, docs, quantities) -> Table:
    """Every cell the documents state for these quantities: stated, measured here (or fitted), and the ratio."""
    fmt = {"gpu_memory": gib, "host_memory": gib}
    body = []
    for c in sorted(docs.stated(quantities), key=lambda c: (c.document, c.section, c.quantity, c.mode or "",
                                                             docs.n_params(c) or 0, c.id)):
        f = fmt.get(c.quantity, lambda v: sig(v, 4))
        stated = docs.base(c)
        r, v = _measured_for(a, c)
        kind, basis = "", "measured"
        if v is None:
            v, kind, basis = _fitted_for(a, c), "projection", "fit (projection)"
            if v is None:
                basis = "not measured"
        ratio = None if v is None or not stated else v / stated
        verdict = docs.verdict_of(c.id, a.machine) if docs.verdicts else None
        body.append(row(c.id, f"{c.document} §{c.section}", c.model, c.mode or "–", c.hardware,
                        f"{c.value:g} {c.unit}", Cell("–" if v is None else f(v), source=r.source if r else None,
                                                     kind=kind), basis,
                        Cell("–" if ratio is None else f"{ratio:.2f}", kind=kind),
                        verdict.verdict if verdict else "–"))
    unit = "GiB" if set(quantities) & {"gpu_memory", "host_memory"} else "per s"
    return Table(f"Stated by the documents against measured on {a.machine}: {', '.join(quantities)}",
                 ("claim", "where", "model", "mode", "stated for", "stated", f"here ({unit})", "basis",
                  "here / stated", "verdict"), tuple(body),
                 ((docs.missing,) if not docs.available else ()) + (
                  "Stated values in the document's unit; GB read as 10^9 bytes. Measured at batch 1, T 2048, fp16 "
                  "unless the claim says otherwise; memory in the NVML process view unless it names another. A "
                  "claim stated for other hardware (the stated-for column) is compared for scale, not judged. The "
                  "verdict (the index's claims section) applies the claim's own rule; a fit's value decides one only "
                  "where it is precise enough.",),
                 (False, False, False, False, False, True, True, False, True, False))


# -- time ------------------------------------------------------------------------------------------------------

def throughput_measured(a, series: str | None = None) -> Table:
    cal = a.calibration.data if a.calibration else None
    body = []
    for r in by_size(a.rows):
        if series and r.data.get("series") != series:
            continue
        c = cell_of(r)
        t = step_time(r)
        if t is None:
            continue
        s = Shape.from_row(r)
        floor = fl.floors(s.spec, s.batch, s.seq, s.mode, s.dtype, cal, s.resident_blocks,
                          writeback_every=s.writeback_every) if cal else None
        if floor and s.writeback_every > 1:  # the row ran deferred write-back: its floor is the deferred one
            floor = {**floor, "floor_s": floor["floor_deferred_s"], "binds": f"{floor['binds']}, write-back 1/"
                     f"{s.writeback_every}"}
        q1, q3 = r.get("step_time_s", "q1"), r.get("step_time_s", "q3")
        gbps = 2 * s.streamed_bytes / t / 1e9 if s.streamed_bytes else None
        e = energy_per_token(r)
        body.append(row(c["model"], c["mode"], c["batch"], c["seq"], Cell(f"{t * 1e3:.1f}", source=r.source),
                        f"{q1 * 1e3:.1f}–{q3 * 1e3:.1f}" if q1 and q3 else "–",
                        Cell(f"{r.get('tokens_per_s') or s.tokens / t:,.0f}", source=r.source),
                        f"{floor['floor_s'] * 1e3:.1f} {floor['binds']}" if floor and floor["floor_s"] else "–",
                        f"{t / floor['floor_s']:.2f}" if floor and floor["floor_s"] else "–",
                        "–" if gbps is None else f"{gbps:.1f}", "–" if e is None else f"{e * 1e3:.3f}", row_cell(r)))
    cal_src = f" Floors from {a.calibration.source.file}." if a.calibration else " No calibration: no floors."
    return Table(f"Step time and throughput measured on {a.machine}",
                 ("model", "mode", "batch", "seq", "step ms (median)", "q1–q3 ms", "tokens/s", "floor ms (binds)",
                  "step / floor", "achieved GB/s", "mJ/token", "row"), tuple(body),
                 ("Medians of the measured steps. The floor is the larger of the transfer floor (bytes both ways over "
                  "the calibrated both-directions rate) and the compute floor (FLOPs over the calibrated matmul "
                  "rate): zo2bench/bench/floors.py." + cal_src + " Energy: the NVML counter over the measured "
                  "steps (GPU only).",),
                 (False, False, True, True, True, True, True, True, True, True, True, False))


def time_models(a) -> Table:
    body = []
    best_aic = min((c["aic"] for c in a.time_compare if c["aic"] is not None), default=None)
    for c in a.time_compare:
        f = c["fit"]
        daic = None if c["aic"] is None or best_aic is None else c["aic"] - best_aic
        body.append(row(f.model.title, f.model.formula, "; ".join(est_text(e) for e in f.params), f.n,
                        sig(f.r2, 4), pct(f.rms_rel, False), pct(f.loo_max_abs, False),
                        "–" if daic is None else f"{daic:.1f}"))
    if a.first_order_time:
        f = a.first_order_time
        body.append(row(f.model.title + " (fo-adamw rows)", f.model.formula, "; ".join(est_text(e) for e in f.params),
                        f.n, sig(f.r2, 4), pct(f.rms_rel, False), pct(f.loo_max_abs, False), "–"))
    return Table(f"Step-time models fitted on {a.machine}, best first",
                 ("model", "form", "fitted constants [95% CI]", "points", "R²", "RMS error", "worst leave-one-size-out",
                  "ΔAIC"), tuple(body),
                 ("C: compute floor, M: one read and write of every weight at the calibrated device-memory rate, "
                  "X: bytes both ways at the calibrated both-directions rate, U + O: the same bytes one way after "
                  "the other at the one-way rates; G = a·C + d·M + c. zo2 and mezo rows fitted together "
                  "(mezo moves nothing: X = U = O = 0). ΔAIC: Akaike's criterion against the best (lower is better; "
                  "above 10 is decisively worse).",), (False, False, False, True, True, True, True, True))


def crossovers(a) -> Table:
    def tok(v):
        return "–" if v is None else f"{v / 1024:.3g}k"

    body = []
    for x in a.crossovers:
        meas = x.measured_at
        for seq, t, lo, hi in x.fitted or [(s, None, None, None) for s in meas]:
            after, first = meas.get(seq, (None, None))
            if seq not in meas:
                m = "not measured"
            elif first is None:
                m = f"> {tok(after)} (not reached)"
            else:
                m = f"≤ {tok(first)}" if after is None else f"{tok(after)} – {tok(first)}"
            kind = "projection" if not x.cells else ""
            if t is None:
                fitted = "never" if x.fitted else "–"
            elif t <= seq * 1.0001:       # already at batch 1: the crossover is at or below one sequence
                fitted = f"≤ {tok(seq)}"
            else:
                fitted = tok(t) + (f" [{tok(lo)}, {tok(hi) if hi else '∞'}]" if lo else "")
            body.append(row(x.model, params_text(x.n_params), seq, m, Cell(fitted, kind=kind),
                            "projection" if kind else ("measured" if first else "fitted")))
    return Table(f"Crossover on {a.machine}: batch × seq from which zo2 is as fast as mezo",
                 ("model", "params", "seq", "measured (between grid cells)", "fitted [95% band]", "basis"),
                 tuple(body),
                 (f"Rule: zo2's median step at most {1 + xo.TOLERANCE:.2f} x mezo's, at every larger batch. "
                  "Measured: the last grid cell that fails and the first from which all hold. Fitted: the best "
                  "step-time model over a continuous batch at that sequence length.",),
                 (False, True, True, False, False, False))


def energy(a) -> Table:
    body = []
    by = {}
    for r in setting_rows(by_size(a.rows)):
        e = energy_per_token(r)
        if e is not None:
            by.setdefault(cell_of(r)["model"], {})[cell_of(r)["mode"]] = (e, r)
    for model, m in by.items():
        for mode, (e, r) in m.items():
            ratio = e / m["fo-adamw"][0] if "fo-adamw" in m and mode != "fo-adamw" else None
            body.append(row(model, mode, Cell(f"{e * 1e3:.3f}", source=r.source),
                            "–" if ratio is None else f"{ratio:.2f}", row_cell(r)))
    return Table(f"GPU energy per token on {a.machine} (fp16, batch 1, T 2048)",
                 ("model", "mode", "mJ/token", "of fo-adamw's", "row"), tuple(body),
                 ("NVML total-energy counter over the measured steps / tokens processed. Host (CPU) power is not "
                  "measured, so document 002's P_CPU x T_transfer term is missing from every value.",),
                 (False, False, True, True, False))
