"""What each page says, in order: lists of render.Block built from the analyses (no layout here).

    index_blocks(results, analyses, docs, figs)          # machines, warnings, calibrations, claims
    series_blocks("memory_scaling", results, analyses, docs, figs)

A series page has one section per machine that ran the series; fits use every ok row of that machine (both
series), and say so. A series this module does not know gets its measured table only.
"""
from __future__ import annotations

from zo2bench.analysis.models import VIEWS
from zo2bench.analysis.scaling import PLAN_VIEW
from zo2bench.report import claims_section, figures, figures_time, scaling_section, tables
from zo2bench.report import fit_tables as ft


def _b(kind, text="", **kw):
    from zo2bench.report.render import Block

    return Block(kind, text, **kw)


def _rows_note(a, results, series) -> str:
    rows = results.rows(machine=a.machine, series=series)
    ok = sum(r.data.get("status") == "ok" for r in rows)
    untrusted = sum(not r.source.trusted for r in rows)
    text = (f"{len(rows)} cells of {series} on {a.machine} ({ok} ok); the fits below use every ok GPU row of "
            f"this machine, {len(a.rows)} rows from all its series, and no row of any other machine.")
    if untrusted:
        text += (f" {untrusted} of these cells ran from a dirty checkout or an unrecorded commit (marked †): "
                 "the code that produced them is not exactly known.")
    if results.superseded:
        text += f" Rows superseded by a later run of the same cell ({results.superseded} in all) are not used."
    return text


def index_blocks(results, analyses, docs, figs) -> list:
    out = [_b("heading", "zo2bench report", level=1),
           _b("text", "Measured memory, time and energy of zeroth-order fine-tuning with and without offloading, "
                      "the models fitted to them, and the design documents' claims judged against them. Every "
                      "measured number links to the row of results/ it came from. Series reports: "
                      + ", ".join(sorted({s for m in results.machines() for s in results.series(m)})) + "."),
           _b("table", table=tables.machines(results))]
    if results.warnings:
        out.append(_b("heading", "Left out", level=2))
        out.append(_b("list", "These files or lines could not be read and are left out of every table and fit:",
                      items=tuple(results.warnings)))
    for m, a in analyses.items():
        out.append(_b("heading", f"Machine {m}", level=2))
        out.append(_b("table", table=tables.calibration(results, m)))
        if results.kind("bench-step", m):
            out.append(_b("table", table=tables.bench_steps(results, m)))
        if a.notes:
            out.append(_b("list", "Notes from the analysis:", items=a.notes))
        out.extend(claims_section.blocks(results, a, docs))
    out.extend(scaling_section.blocks(results))
    out.extend(claims_section.general_blocks(docs))
    return out


def series_blocks(series, results, analyses, docs, figs) -> list:
    out = [_b("heading", f"{series}", level=1)]
    for m, a in analyses.items():
        if not results.rows(machine=m, series=series):
            continue
        out.append(_b("heading", f"{series} on {m}", level=2))
        out.append(_b("text", _rows_note(a, results, series)))
        build = {"memory_scaling": _memory, "throughput_scaling": _throughput,
                 "gpu_scaling": lambda *args, m=m: _gpu_scaling(results, m, *args)}.get(series, _generic)
        out.extend(build(series, a, docs, _Sub(figs, m)))
    return out


class _Sub:
    """The page's figure store, with names made unique per machine."""

    def __init__(self, figs, machine):
        self.figs, self.machine = figs, machine

    def __call__(self, name, caption, fn, *args):
        return self.figs(f"{self.machine}-{name}", caption, fn, *args)


def _details(title, tabs) -> list:
    return [_b("details", title, blocks=[_b("table", table=t) for t in tabs])] if tabs else []


def _memory(series, a, docs, fig) -> list:
    out = [fig("gpu-memory", f"Peak GPU memory ({VIEWS[PLAN_VIEW][1]} view) against parameters: measured (filled), "
               "document 002's projections of section 1.2 (hollow squares) and document 000's measurements on "
               "4x RTX 3090 (hollow diamonds), each edged in its mode's colour, and the physical fit with its 95% "
               "prediction band, dashed and hatched where it is a projection.", figures.memory_vs_params, a, "gpu",
               docs.points("gpu_memory")),
           fig("host-memory", "Peak host memory (RSS) against parameters, as above.", figures.memory_vs_params, a,
               "host", docs.points("host_memory")),
           _b("table", table=ft.memory_measured(a)),
           fig("memory-views", "Every memory view with the physical fit of zo2 and mezo.", figures.memory_views, a),
           _b("heading", "Memory models", level=3),
           _b("text", "The physical model adds byte counts of the exact shape (resident weights, streaming slots, "
                      "activations) with fitted multiples and a fixed context; the document's 1.1 form "
                      "(e·n + k·n/(4L) + constant) is fitted the same way. The one with the smaller "
                      "leave-one-size-out error explains the data better.")]
    out.append(_b("table", table=ft.memory_fits(a)))
    key = (PLAN_VIEW, "zo2")
    if key in a.memory:
        out.append(fig("memory-residuals", "Relative residuals of the zo2 GPU-memory fits "
                       f"({VIEWS[PLAN_VIEW][1]}): physical against the document's form.", figures.residuals,
                       a.memory[key], "zo2 GPU memory: (fit − measured) / measured"))
    out.append(_b("table", table=ft.stated_vs_measured(a, docs, ("gpu_memory", "host_memory"))))
    out.append(_b("table", table=ft.projections(a)))
    out.append(fig("energy", "GPU energy per token (NVML counter) at batch 1, T 2048.", figures.energy, a))
    out.append(_b("table", table=ft.energy(a)))
    fits = [(f"{VIEWS[v][1]}, {m}", f) for (v, m), fs in a.memory.items() for f in fs]
    out += _details("Leave one size out: every error of every memory fit", [ft.loo(f, w) for w, f in fits])
    return out


def _throughput(series, a, docs, fig) -> list:
    out = [fig("roofline", "Step time against batch × seq for each model: measured (marker: sequence length), the "
               "calibrated compute and transfer floors, and the best step-time fit.", figures_time.roofline, a),
           _b("table", table=ft.throughput_measured(a, series)),
           fig("efficiency", "Efficiency: mezo's step over zo2's, per model and batch × seq (1.00: offloading "
               "costs nothing).", figures_time.efficiency_heatmap, a),
           fig("bandwidth", "Achieved host↔device bandwidth of zo2 against the calibrated rates.",
               figures_time.bandwidth, a),
           _b("heading", "Step-time models", level=3),
           _b("text", "The document's 2.1 (upload and offload in series at one-way rates, less the compute) against "
                      "a model where both copy directions overlap each other and the GPU's work, so a step takes the "
                      "slower of transfer and compute; all with the machine's calibrated floors."),
           _b("table", table=ft.time_models(a))]
    if a.time:
        out.append(fig("time-residuals", "Relative residuals of the step-time models.", figures.residuals,
                       [c["fit"] for c in a.time_compare], "step time: (fit − measured) / measured"))
    out += [_b("heading", "Crossover", level=3),
            fig("crossover", "Left: zo2's step over mezo's as tokens per step grow. Right: the batch × seq from which "
                "zo2 is as fast as mezo, measured (between grid cells) and fitted (hollow: sizes not measured).",
                figures_time.crossover, a),
            _b("table", table=ft.crossovers(a)),
            fig("speed", "Tokens/s at batch 1, T 2048 against parameters: measured, the fits with their 95% "
                "prediction bands (dashed: projection), document 002's table 2.2 (hollow squares: projected for "
                "unstated hardware) and document 000's it/s on 4x RTX 3090 as tokens/s at T 2048 (hollow diamonds).",
                figures_time.step_projection, a, docs.points("tokens_per_s") + _it_as_tokens(docs)),
            _b("table", table=ft.stated_vs_measured(a, docs, ("tokens_per_s", "it_per_s"))),
            _b("table", table=ft.projections(a))]
    fits = [(c["fit"].model.title, c["fit"]) for c in a.time_compare]
    out += _details("Leave one size out: every error of every step-time fit",
                    [ft.loo(f, "step time") for _, f in fits])
    return out


def _it_as_tokens(docs) -> list:
    """Document 000's it/s as tokens/s at its T 2048, batch 1 (the setting the claims assume)."""
    return [(n, v * 2048, label, mode) for n, v, label, mode in docs.points("it_per_s")]


def _gpu_scaling(results, machine, series, a, docs, fig) -> list:
    t = scaling_section.scaling_table(results, machine)
    head = [_b("table", table=t)] if t is not None else [_b("text", "Speed-up against GPU count: "
                                                                   f"{scaling_section.NOT_MEASURED} (no ok cell).")]
    return head + _generic(series, a, docs, fig)


def _generic(series, a, docs, fig) -> list:
    return [_b("table", table=ft.throughput_measured(a, series))]
