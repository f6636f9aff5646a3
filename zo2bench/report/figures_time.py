"""The reports' figures of step time: roofline, efficiency, bandwidth, crossover and speed against size.

    from zo2bench.report import figures, figures_time
    figures.svg(figures_time.roofline, analysis)      # SVG text, drawn in the reports' style

The conventions are figures.py's (colours by mode, hollow markers for the documents, dashed projections).
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from zo2bench.analysis import crossover as xo
from zo2bench.analysis.models import PROJECTION_MODELS, Shape, spec_of
from zo2bench.analysis.scaling import step_time
from zo2bench.bench import floors as fl
from zo2bench.report.figures import (
    MODE_COLORS,
    SEQ_MARKERS,
    curve,
    draw_doc_points,
    memory_rows,
    new_figure,
    params_axis,
    shade_projection,
    sweep_names,
)


def _zo_rows(a, model):
    return [r for r in a.rows if (r.get("cell") or {}).get("model") == model
            and (r.get("cell") or {}).get("mode") in ("zo2", "mezo") and step_time(r)]


def _grid_models(a):
    """Models measured at more than one batch x seq (the throughput grid), smallest first."""
    seen = {}
    for r in a.rows:
        c = r.get("cell") or {}
        if c.get("mode") in ("zo2", "mezo") and step_time(r):
            seen.setdefault(c["model"], set()).add((c["batch"], c["seq"]))
    return sorted((m for m, cells in seen.items() if len(cells) > 1), key=lambda n: spec_of(n).n_params())


def _bs(tokens):
    """(batch, seq) for a token count: one sequence up to T 2048, then batches of 2048 (fractional batches
    stand for the continuum between grid cells)."""
    return [(1, int(t)) if t <= 2048 else (t / 2048, 2048) for t in tokens]


def roofline(a) -> Figure:
    """Step time against batch x seq per model: measured zo2 and mezo, the calibrated floors, the best fit."""
    models = _grid_models(a)
    fig, axes = new_figure(4.2 * max(len(models), 1), 4.6, ncols=max(len(models), 1), sharey=True)
    cal = a.calibration.data if a.calibration else None
    fit = a.best_time()
    toks = np.logspace(np.log10(256), np.log10(65536), 60)
    for ax, model in zip(axes[0], models):
        spec = spec_of(model)
        for r in _zo_rows(a, model):
            c = r.get("cell")
            ax.scatter(c["batch"] * c["seq"], step_time(r), color=MODE_COLORS[c["mode"]],
                       marker=SEQ_MARKERS.get(c["seq"], "o"), s=26, zorder=5)
        if cal:
            comp = [fl.floors(spec, b, s, "mezo", "fp16", cal)["compute_s"] for b, s in _bs(toks)]
            ax.plot(toks, comp, color="0.25", lw=1, ls="-.", label="compute floor")
            ax.axhline(fl.floors(spec, 1, 2048, "zo2", "fp16", cal)["transfer_s"], color="0.25", lw=1, ls=":",
                       label="transfer floor (zo2)")
        if fit:
            for mode in ("zo2", "mezo"):
                ys = [fit.predict(Shape(spec, mode, "fp16", b, s)).value for b, s in _bs(toks)]
                ax.plot(toks, ys, color=MODE_COLORS[mode], lw=1.3, alpha=0.8, label=f"{mode}: fit ({fit.model.name})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1024:g}k"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v * 1e3:g}"))
        ax.set_title(model)
        ax.set_xlabel("batch × seq (tokens per step)")
    axes[0][0].set_ylabel("step time, ms (median)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    for seq, m in SEQ_MARKERS.items():
        if any((r.get("cell") or {}).get("seq") == seq for r in a.rows):
            handles.append(axes[0][0].scatter([], [], marker=m, color="0.4", s=26))
            labels.append(f"measured, T {seq}")
    fig.legend(handles, labels, loc="outside lower center", ncols=4)
    fig.suptitle("Step time against tokens per step, with the calibrated floors (zo2 blue, mezo orange)")
    return fig


def efficiency_heatmap(a) -> Figure:
    """mezo time / zo2 time per model and batch x seq: 1 means offloading costs nothing."""
    cells = xo.measured_cells(a.rows)
    models = [m for m in _grid_models(a) if m in cells]
    cols = sorted({(c.batch, c.seq) for m in models for c in cells[m]}, key=lambda bs: (bs[0] * bs[1], bs[1]))
    grid = np.full((len(models), len(cols)), np.nan)
    for i, m in enumerate(models):
        for c in cells[m]:
            grid[i, cols.index((c.batch, c.seq))] = 1.0 / c.ratio
    fig, axes = new_figure(max(7.0, 0.62 * len(cols) + 2.5), 0.75 * len(models) + 2.0)
    ax = axes[0][0]
    ax.grid(False)
    im = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.1, aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8.5, color="white" if v < 0.6 else "black")
    ax.set_xticks(range(len(cols)), [f"{b}×{s}" for b, s in cols], rotation=45, ha="right")
    ax.set_yticks(range(len(models)), models)
    ax.set_xlabel("batch × seq")
    fig.colorbar(im, ax=ax, label="efficiency: mezo step / zo2 step")
    ax.set_title("Efficiency of offloading (002 §2.3's T_compute / (T_compute + T_transfer), measured)")
    return fig


def bandwidth(a) -> Figure:
    """Bytes moved per zo2 step (both ways) over its time, against the calibrated floor."""
    fig, axes = new_figure(9, 4.6)
    ax = axes[0][0]
    cal = a.calibration.data if a.calibration else None
    models = _grid_models(a) or sorted({(r.get("cell") or {}).get("model") for r in a.rows})
    for k, model in enumerate(models):
        rows = [r for r in _zo_rows(a, model) if r.get("cell")["mode"] == "zo2"]
        if not rows:
            continue
        xs, ys = [], []
        for r in rows:
            s = Shape.from_row(r)
            xs.append(s.tokens)
            ys.append(2 * s.streamed_bytes / step_time(r) / 1e9)
        ax.plot(*zip(*sorted(zip(xs, ys))), marker="o", ms=4, lw=1, color=f"C{k}", label=model)
    if cal:
        for key, label, ls in ((fl.BOTH_DIRECTIONS_KEY, "both directions at once (calibrated)", "--"),
                               (fl.H2D_KEY, "one direction (calibrated)", ":")):
            v = fl.figure(cal, key)
            if v:
                ax.axhline(v, color="0.3", ls=ls, lw=1)
                ax.text(0.99, v, f"{label}: {v:.1f} GB/s", transform=ax.get_yaxis_transform(), ha="right",
                        va="bottom", fontsize=8.5, color="0.25")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1024:g}k"))
    ax.set_xlabel("batch × seq (tokens per step)")
    ax.set_ylabel("achieved host↔device GB/s (10^9 B/s)")
    ax.set_ylim(0, None)
    ax.set_title("zo2: weight bytes moved both ways per step / step time")
    ax.legend(loc="lower left", title="model")
    return fig


def crossover(a) -> Figure:
    """Left: zo2 / mezo against tokens per model (1.05: the crossover rule). Right: crossover tokens by size."""
    fig, axes = new_figure(11, 4.6, ncols=2)
    ax, bx = axes[0]
    for k, x in enumerate(a.crossovers):
        if len(x.cells) < 2:
            continue
        for seq in sorted({c.seq for c in x.cells}):
            cs = sorted((c for c in x.cells if c.seq == seq), key=lambda c: c.batch)
            ax.plot([c.batch * seq for c in cs], [c.ratio for c in cs], marker=SEQ_MARKERS.get(seq, "o"), ms=4,
                    lw=0.9, color=f"C{k}", label=f"{x.model}, T {seq}")
    ax.axhline(1 + xo.TOLERANCE, color="0.3", ls="--", lw=1)
    ax.text(0.99, 0.1, f"dashed: zo2 within {xo.TOLERANCE:.0%} of mezo", fontsize=8.5, ha="right",
            transform=ax.transAxes)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1024:g}k"))
    ax.set_xlabel("batch × seq")
    ax.set_ylabel("zo2 step / mezo step")
    ax.set_title("Measured: what offloading costs")
    ax.legend(fontsize=7.5, ncols=2)
    for x in a.crossovers:
        at = {seq: (t, lo, hi) for seq, t, lo, hi in x.fitted}
        if 2048 in at and at[2048][0]:
            t, lo, hi = at[2048]
            proj = x.model in PROJECTION_MODELS
            err = [[t - (lo or t)], [((hi or t) - t)]]
            bx.errorbar([x.n_params], [t], yerr=err, fmt="o", mfc="white" if proj else "C0", color="C0", capsize=3,
                        label=None)
        after, first = x.measured_at.get(2048, (None, None))
        if first:
            lo = after or first / 2
            bx.plot([x.n_params] * 2, [lo, first], color="C3", lw=5, alpha=0.45, solid_capstyle="butt", zorder=4)
        elif after:
            bx.scatter([x.n_params], [after], marker="^", s=60, color="C3", alpha=0.7, zorder=4)
    bx.plot([], [], color="C3", lw=5, alpha=0.45, label="measured: between the grid's cells (T 2048)")
    bx.scatter([], [], marker="^", s=60, color="C3", alpha=0.7, label="measured: above the largest cell")
    bx.errorbar([], [], fmt="o", color="C0", label="fitted, 95% band (hollow: projected size)")
    params_axis(bx)
    bx.set_yscale("log", base=2)
    bx.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1024:g}k"))
    bx.set_ylabel("crossover batch × seq (T 2048)")
    bx.set_title("Crossover: zo2 as fast as mezo from")
    bx.legend(loc="lower right")
    return fig


def step_projection(a, doc_points=()) -> Figure:
    """Tokens/s against parameters at batch 1, T 2048: measured, the fits to 1T, the document's table 2.2."""
    fig, axes = new_figure(9.5, 6.4)
    ax = axes[0][0]
    names = sweep_names(a)
    for mode in ("zo2", "mezo", "fo-adamw"):
        fit = a.first_order_time if mode.startswith("fo-") else a.best_time()
        rows = [r for r in memory_rows(a, mode) if step_time(r)]
        if rows:
            ax.scatter([spec_of(r.get("cell")["model"]).n_params() for r in rows],
                       [2048 / step_time(r) for r in rows], color=MODE_COLORS[mode], s=30, zorder=5,
                       label=f"{mode}: measured")
        if fit:
            curve(ax, fit, mode, MODE_COLORS[mode], names, f"{mode}: fit, 95% prediction band",
                   to=lambda v: 2048 / v if v > 0 else np.nan)
    draw_doc_points(ax, doc_points)
    params_axis(ax)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    shade_projection(ax, a)
    ax.set_ylabel("tokens/s (batch 1 × T 2048 / step)")
    ax.set_title("Training speed against model size (fp16, batch 1, T 2048)")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8)
    return fig
