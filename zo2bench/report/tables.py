"""The reports' tables, each a function of one machine's analysis (or of all results) returning a table.Table.

    t = tables.memory_measured(analysis)       # measured peaks, every number linked to its row
    TABLES["memory"](results, "h100")          # the tables `zo2bench report tables` can place in README/docs

TABLES maps a name to (what it shows, function(results, machine) -> Table); a marker in a Markdown file
names one as `<!-- zo2bench:table NAME -->` or `<!-- zo2bench:table NAME:MACHINE -->` (MACHINE: a machine id,
or a prefix of exactly one; without it the results must hold a single machine). See report.markers.

Units: memory in GiB (2^30 bytes), times in ms or s as the header says, bandwidth in GB/s (10^9 B/s),
energy in mJ per token. Intervals are 95%; "[lo, hi]" after a fitted value.
"""
from __future__ import annotations

import math

from zo2bench.analysis import crossover as xo
from zo2bench.analysis.models import VIEWS, Shape, spec_of
from zo2bench.analysis.scaling import (
    PLAN_VIEW,
    energy_per_token,
    memory_value,
    setting_rows,
    step_time,
)
from zo2bench.bench import floors as fl
from zo2bench.report.table import Cell, Table, row

GIB = 2.0**30


def params_text(n: float) -> str:
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if n >= div:
            return f"{n / div:.3g}{suf}"
    return f"{n:,.0f}"


def gib(v) -> str:
    return "–" if v is None else f"{v / GIB:.2f}"


def sig(v, n=3) -> str:
    if v is None or math.isnan(v):
        return "–"
    if math.isinf(v):
        return "∞"
    if v == 0:
        return "0"
    return f"{v:.{n}g}" if abs(v) < 1e5 else f"{v:,.0f}"


def pct(v, signed=True) -> str:
    return "–" if v is None else (f"{100 * v:+.1f}%" if signed else f"{100 * v:.1f}%")


def band(iv, fmt) -> str:
    return "" if iv is None else f" [{fmt(iv[0])}, {fmt(iv[1])}]"


def est_text(e) -> str:
    """A fitted parameter in its unit: bytes in GiB, seconds in ms, multiples as they are."""
    fmt = {"bytes": lambda v: f"{v / GIB:.3g} GiB", "s": lambda v: f"{v * 1e3:.3g} ms"}.get(e.unit, lambda v: sig(v))
    if e.at_bound:
        return f"{e.name} = {fmt(e.value)} (at its bound)"
    ci = "" if e.low is None else f" [{fmt(e.low)}, {fmt(e.high)}]"
    return f"{e.name} = {fmt(e.value)}{ci}"


def _cell_of(r):
    return r.get("cell") or {}


def _by_size(rows):
    order = {"zo2": 0, "mezo": 1, "fo-adamw": 2, "fo-sgd": 3}
    return sorted(rows, key=lambda r: (spec_of(_cell_of(r)["model"]).n_params(), order.get(_cell_of(r)["mode"], 9),
                                       _cell_of(r)["batch"], _cell_of(r)["seq"]))


def row_cell(r) -> Cell:
    """The row a line of a table came from: file name and line, linked."""
    return Cell(r.source.where.rsplit("/", 1)[-1], source=r.source)


# -- memory ----------------------------------------------------------------------------------------------------

def memory_measured(a) -> Table:
    rows = setting_rows(_by_size(a.rows))
    body = []
    for r in rows:
        c = _cell_of(r)
        body.append(row(c["model"], params_text(spec_of(c["model"]).n_params()), c["mode"],
                        *[Cell(gib(memory_value(r, v)), source=r.source) for v in VIEWS], row_cell(r)))
    return Table(f"Peak memory measured on {a.machine} (fp16, batch 1, T 2048), GiB",
                 ("model", "params", "mode", *[VIEWS[v][1] for v in VIEWS], "row"), tuple(body),
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
    for r in _by_size(a.rows):
        if all(_cell_of(r).get(k) == v for k, v in want.items()):
            return r, _quantity(r, c)
    return None, None


def _quantity(r, c):
    if c.quantity in ("gpu_memory", "host_memory"):
        return memory_value(r, _view(c))
    t = step_time(r)
    if t is None:
        return None
    return r.get("tokens_per_s") or (_cell_of(r)["batch"] * _cell_of(r)["seq"] / t) if c.quantity == "tokens_per_s" \
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
    for r in _by_size(a.rows):
        if series and r.data.get("series") != series:
            continue
        c = _cell_of(r)
        t = step_time(r)
        if t is None:
            continue
        s = Shape.from_row(r)
        floor = fl.floors(s.spec, s.batch, s.seq, s.mode, s.dtype, cal, s.resident_blocks) if cal else None
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
    for r in setting_rows(_by_size(a.rows)):
        e = energy_per_token(r)
        if e is not None:
            by.setdefault(_cell_of(r)["model"], {})[_cell_of(r)["mode"]] = (e, r)
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


# -- the results as a whole ------------------------------------------------------------------------------------

def machines(results) -> Table:
    body = []
    for m in results.machines():
        rows = results.rows(machine=m)
        fp = next((r.data.get("fingerprint") for r in rows + results.kind("calibration", m)
                   if r.data.get("fingerprint")), {}) or {}
        srcs = [r.source for r in rows]
        clean = sum(s.trusted for s in srcs)
        gpus = len({(r.data.get("fingerprint") or {}).get("gpu_uuid") for r in rows} - {None})
        body.append(row(m, fp.get("gpu") or "–", fp.get("gpu_driver_version") or "–", fp.get("torch") or "–",
                        f"gen {fp.get('pcie_gen_current')} x{fp.get('pcie_width_current')}"
                        if fp.get("pcie_gen_current") else "–",
                        gib(fp.get("host_memory_bytes")), ", ".join(results.series(m)) or "–",
                        f"{sum(r.data.get('status') == 'ok' for r in rows)} / {len(rows)}", gpus or "–",
                        f"{clean} clean, {len(srcs) - clean} dirty or unknown"))
    return Table("Machines", ("machine", "GPU", "driver", "torch", "PCIe", "host GiB", "series", "ok / cells",
                              "GPUs seen", "rows' code"), tuple(body),
                 ("Each machine's rows are analysed on their own: no fit or table mixes machines. "
                  "GPUs seen: distinct GPU UUIDs among the rows (cells may run on different cards of one kind).",),
                 (False, False, False, False, False, True, False, True, True, False))


CAL_FIGURES = (("h2d_pinned_gb_per_s", "host→device, pinned", "GB/s"),
               ("d2h_pinned_gb_per_s", "device→host, pinned", "GB/s"),
               ("both_directions_pinned_gb_per_s", "both directions at once, pinned (total)", "GB/s"),
               ("h2d_pageable_gb_per_s", "host→device, pageable", "GB/s"),
               ("device_mem_rw_gb_per_s", "device memory read+write", "GB/s"),
               ("matmul_fp16_tflop_per_s", "fp16 matmul 8192³", "TFLOP/s"),
               ("matmul_bf16_tflop_per_s", "bf16 matmul 8192³", "TFLOP/s"),
               ("matmul_fp32_tflop_per_s", "fp32 matmul (tf32 off)", "TFLOP/s"),
               ("host_mem_rw_gb_per_s", "host memory read+write", "GB/s"))


def calibration(results, machine: str) -> Table:
    cal = results.calibration(machine)
    body = []
    if cal:
        for key, label, unit in CAL_FIGURES:
            v = fl.figure(cal.data, key)
            if v is not None:
                body.append(row(label, Cell(f"{v:,.1f}", source=cal.source), unit))
    return Table(f"Calibrated floors of {machine}" + (f" ({cal.source.file})" if cal else ": none recorded"),
                 ("figure", "median", "unit"), tuple(body), ("GB = 10^9 bytes; TFLOP = 10^12 FLOP.",),
                 (False, True, False))


def bench_steps(results, machine: str) -> Table:
    body = []
    for r in sorted(results.kind("bench-step", machine), key=lambda r: r.source.file):
        c, st, f = r.data.get("config") or {}, r.data.get("step_s") or {}, r.data.get("floors") or {}
        mem = (r.data.get("memory") or {}).get("torch_peak_allocated_bytes")
        body.append(row(c.get("model"), c.get("mode"), c.get("batch"), c.get("seq"),
                        Cell(f"{st['median'] * 1e3:.1f}", source=r.source) if st.get("median") else "–",
                        f"{f['floor_s'] * 1e3:.1f} {f.get('binds')}" if f.get("floor_s") else "–",
                        f"{r.data['ratio_to_floor']:.2f}" if isinstance(r.data.get("ratio_to_floor"), float) else "–",
                        Cell(f"{mem / 2**20:,.0f}", source=r.source) if mem else "–", row_cell(r)))
    return Table(f"bench-step records of {machine}", ("model", "mode", "batch", "seq", "step ms", "floor ms (binds)",
                 "step / floor", "peak allocated MiB", "record"), tuple(body),
                 ("Each record's floors come from the calibration it names.",),
                 (False, False, True, True, True, True, True, True, False))


def _analysis(results, machine):
    from zo2bench.analysis.scaling import analyse

    key = (id(results), machine)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = analyse(results, machine)
    return _CACHE[key]


_CACHE: dict = {}

# name -> (what it shows, function(results, machine) -> Table); `zo2bench report tables` fills markers with them
TABLES = {
    "machines": ("the machines results exist for", lambda res, m: machines(res)),
    "calibration": ("a machine's calibrated floors", calibration),
    "bench-step": ("bench-step records against their floors", bench_steps),
    "memory": ("peak memory per model and mode, every view", lambda res, m: memory_measured(_analysis(res, m))),
    "memory-models": ("memory models fitted, with intervals", lambda res, m: memory_fits(_analysis(res, m))),
    "throughput": ("step time, tokens/s and floors of every cell",
                   lambda res, m: throughput_measured(_analysis(res, m))),
    "time-models": ("step-time models compared", lambda res, m: time_models(_analysis(res, m))),
    "crossover": ("where zo2 is as fast as mezo", lambda res, m: crossovers(_analysis(res, m))),
    "projections": ("fits carried to 66B-1T, marked as projections", lambda res, m: projections(_analysis(res, m))),
    "energy": ("GPU energy per token", lambda res, m: energy(_analysis(res, m))),
}
MACHINE_FREE = {"machines"}
