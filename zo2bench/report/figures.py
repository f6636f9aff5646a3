"""The reports' figures: one function per figure, each taking a MachineAnalysis and returning a Figure.

    from zo2bench.report import figures
    fig = figures.memory_vs_params(analysis, "gpu", doc_points)    # matplotlib.figure.Figure
    figures.svg(figures.memory_vs_params, analysis, "gpu")        # drawn in the reports' style: SVG text

Figures only read the frozen fits (analysis.fit.Fit) and rows; they fit nothing. Conventions: a colour per
mode (MODE_COLORS); measurements are filled markers; the documents' projections are hollow black-edged
squares; a fit is a solid line over the sizes it was fitted on and dashed beyond them, where it is a
projection (shaded band: 95% prediction interval, hatched where projected). Sizes in GiB (2^30 bytes).
"""
from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

from zo2bench.analysis.models import PROJECTION_MODELS, VIEWS, Shape, spec_of
from zo2bench.analysis.scaling import (
    PLAN_VIEW,
    PROJECT_AT,
    energy_per_token,
    memory_value,
    setting_rows,
)

GIB = 2.0**30
MODE_COLORS = {"zo2": "#1f77b4", "mezo": "#ff7f0e", "fo-adamw": "#2ca02c", "fo-sgd": "#9467bd"}
SEQ_MARKERS = {512: "v", 1024: "s", 2048: "o", 4096: "D"}
DOC_MARKERS = {"000": "D", "002": "s"}   # 000: its measurements (other hardware); 002: its projections
RC = {"svg.hashsalt": "zo2bench", "svg.fonttype": "none", "font.size": 10, "axes.titlesize": 11,
      "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 8.5, "legend.framealpha": 0.9}


def svg(fn, *args, **kw) -> str:
    """Draw fn(*args, **kw) under the reports' style and return SVG text: the same bytes for the same
    inputs (no date, ids from a fixed salt, text kept as text)."""
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = fn(*args, **kw)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return buf.getvalue()


def new_figure(w=9.0, h=5.0, ncols=1, nrows=1, **kw):
    fig = Figure(figsize=(w, h), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def draw_doc_points(ax, doc_points, to=lambda v: v):
    """The documents' stated values: hollow markers edged in the mode's colour (a diamond for document 000's
    measurements on its own hardware, a square for document 002's projections), never filled like ours."""
    seen = set()
    for n, v, label, mode in doc_points:
        ax.scatter([n], [to(v)], marker=DOC_MARKERS.get(label[:3], "s"), facecolor="none",
                   edgecolor=MODE_COLORS.get(mode, "black"), s=46, linewidths=1.3, zorder=4,
                   label=None if label in seen else label)
        seen.add(label)


def params_axis(ax, lo=1e8, hi=1.2e12):
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ticks = [1e8, 1e9, 1e10, 1e11, 1e12]
    ax.xaxis.set_major_locator(FixedLocator([t for t in ticks if lo <= t <= hi]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: count_text(v)))
    ax.set_xlabel("parameters")


def count_text(v: float) -> str:
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if v >= div:
            return f"{v / div:g}{suf}"
    return f"{v:g}"


def gib_axis(ax):
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def curve(ax, fit, mode, color, xs_names, label, to=lambda v: v / GIB, **at):
    """Fit line and band: solid over the fitted sizes, dashed (hatched band) beyond them."""
    shapes = [Shape(spec_of(n), mode, **{**PROJECT_AT, **at}) for n in xs_names]
    preds = [fit.predict(s) for s in shapes]
    x = np.array([s.n_params for s in shapes], float)
    y = np.array([to(p.value) for p in preds])
    lo = np.array([to(p.pi[0]) if p.pi else np.nan for p in preds])
    hi = np.array([to(p.pi[1]) if p.pi else np.nan for p in preds])
    inside = np.array([not p.projection for p in preds])
    last_in = int(np.nonzero(inside)[0].max()) if inside.any() else 0
    a, b = slice(0, last_in + 1), slice(last_in, None)
    lo = np.maximum(lo, y / 10)     # a band reaching 0 on a log axis: drawn to a tenth of the value
    ax.plot(x[a], y[a], "-", color=color, lw=1.6, label=label)
    ax.fill_between(x[a], lo[a], hi[a], color=color, alpha=0.15, lw=0)
    if b.start < len(x) - 1:
        ax.plot(x[b], y[b], "--", color=color, lw=1.4)
        ax.fill_between(x[b], lo[b], hi[b], facecolor="none", edgecolor=color, alpha=0.35, hatch="///", lw=0)


def sweep_names(a, extra=PROJECTION_MODELS):
    """Model names for a fitted curve: every measured size and the projection sizes, smallest first."""
    names = {p.shape.spec.name for f in a.memory.values() for p in f[0].points}
    names |= set(extra)
    return sorted(names, key=lambda n: spec_of(n).n_params())


def shade_projection(ax, a):
    hi = max((p.shape.n_params for fits in a.memory.values() for p in fits[0].points), default=None)
    if hi:
        ax.axvspan(hi * 1.05, ax.get_xlim()[1], color="0.5", alpha=0.07, lw=0)
        ax.text(hi * 1.15, 0.98, "projection (not measured)", transform=ax.get_xaxis_transform(), va="top",
                fontsize=8.5, color="0.3")


def memory_rows(a, mode):
    """Rows of a mode at the documents' setting, from the memory series where it has them."""
    return setting_rows([r for r in a.rows if (r.get("cell") or {}).get("mode") == mode])


def memory_vs_params(a, where: str, doc_points=()) -> Figure:
    """GPU (NVML process view) or host (RSS) peak memory against parameters, every mode, fits to 1T.

    doc_points: (n_params, bytes, label) of the documents' stated values, drawn as hollow squares.
    """
    view = PLAN_VIEW if where == "gpu" else "host_rss"
    fig, axes = new_figure(9.5, 6.6)
    ax = axes[0][0]
    names = sweep_names(a)
    for mode, color in MODE_COLORS.items():
        fits = a.memory.get((view, mode))
        if not fits:
            continue
        rows = memory_rows(a, mode)
        xs = [spec_of(r.get("cell")["model"]).n_params() for r in rows]
        ys = [memory_value(r, view) / GIB for r in rows]
        ax.scatter(xs, ys, color=color, s=30, zorder=5, label=f"{mode}: measured")
        curve(ax, fits[0], mode, color, names, f"{mode}: fit, 95% prediction band")
    draw_doc_points(ax, doc_points, lambda v: v / GIB)
    if a.rows:
        total = a.rows[0].get("fingerprint", "gpu_total_memory_bytes")
        if where == "gpu" and total:
            ax.axhline(total / GIB, color="0.35", lw=0.9, ls=":")
            ax.text(1.2e8, total / GIB * 1.08, f"this GPU: {total / GIB:.0f} GiB", fontsize=8.5, color="0.3")
    params_axis(ax)
    gib_axis(ax)
    shade_projection(ax, a)
    ax.set_ylabel(f"peak {'GPU' if where == 'gpu' else 'host'} memory, GiB ({VIEWS[view][1]})")
    ax.set_title(f"{'GPU' if where == 'gpu' else 'Host'} memory against model size, fp16, batch 1, T 2048")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8)
    return fig


def memory_views(a, modes=("zo2", "mezo")) -> Figure:
    """Every memory view, measured (memory series setting) with its physical fit, one panel a view."""
    fig, axes = new_figure(11, 6.2, ncols=3, nrows=2)
    names = sorted({p.shape.spec.name for f in a.memory.values() for p in f[0].points},
                   key=lambda n: spec_of(n).n_params())
    for ax, view in zip(axes.flat, VIEWS):
        for mode in modes:
            fits = a.memory.get((view, mode))
            rows = memory_rows(a, mode)
            pts = [(spec_of(r.get("cell")["model"]).n_params(), memory_value(r, view)) for r in rows]
            pts = [(x, y / GIB) for x, y in pts if y]
            if pts:
                ax.scatter(*zip(*pts), color=MODE_COLORS[mode], s=18, zorder=5, label=mode)
            if fits:
                curve(ax, fits[0], mode, MODE_COLORS[mode], names, None)
        params_axis(ax, 1e8, 4e10)
        gib_axis(ax)
        ax.set_title(VIEWS[view][1])
        ax.set_ylabel("GiB")
    axes.flat[0].legend(loc="upper left")
    axes.flat[-1].axis("off")
    axes.flat[-1].text(0, 0.95, "torch allocated: live tensors (allocator peak)\nNVML process: what the GPU gives\n"
                       "  this process (CUDA context included)\nNVML device: the whole GPU's used memory\n"
                       "host RSS: resident host memory\npinned host: page-locked buffers\n\n"
                       "lines: the physical fit (analysis/models.py)", va="top", fontsize=9, family="monospace")
    fig.suptitle("Peak memory in each view (batch 1, T 2048): measured and the physical fit")
    return fig


def residuals(fits, title: str) -> Figure:
    """Relative residuals (fit − measured) / measured of each fit against parameters."""
    fig, axes = new_figure(9, 3.6)
    ax = axes[0][0]
    for i, f in enumerate(fits):
        xs = [p.shape.n_params * (1 + 0.04 * (i - (len(fits) - 1) / 2)) for p in f.points]  # side by side
        ax.scatter(xs, [100 * r for r in f.residuals_rel], s=14, label=f"{f.model.title}", zorder=3)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: count_text(v)))
    ax.set_xlabel("parameters")
    ax.set_ylabel("residual, % of measured")
    ax.set_title(title)
    ax.legend(loc="best")
    return fig


def energy(a) -> Figure:
    """NVML energy per token against parameters (memory series setting) for each mode."""
    fig, axes = new_figure(9, 4.6)
    ax = axes[0][0]
    any_ = False
    for mode, color in MODE_COLORS.items():
        pts = sorted((spec_of(r.get("cell")["model"]).n_params(), energy_per_token(r)) for r in memory_rows(a, mode))
        pts = [(x, y * 1e3) for x, y in pts if y]
        if pts:
            any_ = True
            ax.plot(*zip(*pts), marker="o", ms=5, lw=1.2, color=color, label=mode)
    params_axis(ax, 1e8, 4e10)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_ylabel("GPU energy per token, mJ (NVML counter)")
    ax.set_title("Energy per token, fp16, batch 1, T 2048 (GPU only: host power is not measured)")
    if any_:
        ax.legend()
    return fig
