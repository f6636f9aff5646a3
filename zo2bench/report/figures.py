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

from zo2bench.analysis import crossover as xo
from zo2bench.analysis.models import PROJECTION_MODELS, VIEWS, Shape, spec_of
from zo2bench.analysis.scaling import (
    PLAN_VIEW,
    PROJECT_AT,
    energy_per_token,
    memory_value,
    setting_rows,
    step_time,
)
from zo2bench.bench import floors as fl

GIB = 2.0**30
MODE_COLORS = {"zo2": "#1f77b4", "mezo": "#ff7f0e", "fo-adamw": "#2ca02c", "fo-sgd": "#9467bd"}
SEQ_MARKERS = {512: "v", 1024: "s", 2048: "o", 4096: "D"}
DOC_STYLE = {"marker": "s", "facecolor": "none", "edgecolor": "black", "s": 42, "linewidths": 1.1, "zorder": 4}
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


def _fig(w=9.0, h=5.0, ncols=1, nrows=1, **kw):
    fig = Figure(figsize=(w, h), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def _params_axis(ax, lo=1e8, hi=1.2e12):
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ticks = [1e8, 1e9, 1e10, 1e11, 1e12]
    ax.xaxis.set_major_locator(FixedLocator([t for t in ticks if lo <= t <= hi]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _count(v)))
    ax.set_xlabel("parameters")


def _count(v: float) -> str:
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if v >= div:
            return f"{v / div:g}{suf}"
    return f"{v:g}"


def _gib_axis(ax):
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _curve(ax, fit, mode, color, xs_names, label, to=lambda v: v / GIB, **at):
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


def _sweep_names(a, extra=PROJECTION_MODELS):
    """Model names for a fitted curve: every measured size and the projection sizes, smallest first."""
    names = {p.shape.spec.name for f in a.memory.values() for p in f[0].points}
    names |= set(extra)
    return sorted(names, key=lambda n: spec_of(n).n_params())


def _shade_projection(ax, a):
    hi = max((p.shape.n_params for fits in a.memory.values() for p in fits[0].points), default=None)
    if hi:
        ax.axvspan(hi * 1.05, ax.get_xlim()[1], color="0.5", alpha=0.07, lw=0)
        ax.text(hi * 1.15, 0.98, "projection (not measured)", transform=ax.get_xaxis_transform(), va="top",
                fontsize=8.5, color="0.3")


def _memory_rows(a, mode):
    """Rows of a mode at the documents' setting, from the memory series where it has them."""
    return setting_rows([r for r in a.rows if (r.get("cell") or {}).get("mode") == mode])


def memory_vs_params(a, where: str, doc_points=()) -> Figure:
    """GPU (NVML process view) or host (RSS) peak memory against parameters, every mode, fits to 1T.

    doc_points: (n_params, bytes, label) of the documents' stated values, drawn as hollow squares.
    """
    view = PLAN_VIEW if where == "gpu" else "host_rss"
    fig, axes = _fig(9.5, 5.6)
    ax = axes[0][0]
    names = _sweep_names(a)
    for mode, color in MODE_COLORS.items():
        fits = a.memory.get((view, mode))
        if not fits:
            continue
        rows = _memory_rows(a, mode)
        xs = [spec_of(r.get("cell")["model"]).n_params() for r in rows]
        ys = [memory_value(r, view) / GIB for r in rows]
        ax.scatter(xs, ys, color=color, s=30, zorder=5, label=f"{mode}: measured")
        _curve(ax, fits[0], mode, color, names, f"{mode}: fit, 95% prediction band")
    labels = set()
    for n, b, label in doc_points:
        ax.scatter([n], [b / GIB], label=None if label in labels else label, **DOC_STYLE)
        labels.add(label)
    if a.rows:
        total = a.rows[0].get("fingerprint", "gpu_total_memory_bytes")
        if where == "gpu" and total:
            ax.axhline(total / GIB, color="0.35", lw=0.9, ls=":")
            ax.text(1.2e8, total / GIB * 1.08, f"this GPU: {total / GIB:.0f} GiB", fontsize=8.5, color="0.3")
    _params_axis(ax)
    _gib_axis(ax)
    _shade_projection(ax, a)
    ax.set_ylabel(f"peak {'GPU' if where == 'gpu' else 'host'} memory, GiB ({VIEWS[view][1]})")
    ax.set_title(f"{'GPU' if where == 'gpu' else 'Host'} memory against model size, fp16, batch 1, T 2048")
    ax.legend(loc="upper left", ncols=2)
    return fig


def memory_views(a, modes=("zo2", "mezo")) -> Figure:
    """Every memory view, measured (memory series setting) with its physical fit, one panel a view."""
    fig, axes = _fig(11, 6.2, ncols=3, nrows=2)
    names = sorted({p.shape.spec.name for f in a.memory.values() for p in f[0].points},
                   key=lambda n: spec_of(n).n_params())
    for ax, view in zip(axes.flat, VIEWS):
        for mode in modes:
            fits = a.memory.get((view, mode))
            rows = _memory_rows(a, mode)
            pts = [(spec_of(r.get("cell")["model"]).n_params(), memory_value(r, view)) for r in rows]
            pts = [(x, y / GIB) for x, y in pts if y]
            if pts:
                ax.scatter(*zip(*pts), color=MODE_COLORS[mode], s=18, zorder=5, label=mode)
            if fits:
                _curve(ax, fits[0], mode, MODE_COLORS[mode], names, None)
        _params_axis(ax, 1e8, 4e10)
        _gib_axis(ax)
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
    fig, axes = _fig(9, 3.6)
    ax = axes[0][0]
    for i, f in enumerate(fits):
        xs = [p.shape.n_params * (1 + 0.04 * (i - (len(fits) - 1) / 2)) for p in f.points]  # side by side
        ax.scatter(xs, [100 * r for r in f.residuals_rel], s=14, label=f"{f.model.title}", zorder=3)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _count(v)))
    ax.set_xlabel("parameters")
    ax.set_ylabel("residual, % of measured")
    ax.set_title(title)
    ax.legend(loc="best")
    return fig


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
    fig, axes = _fig(4.2 * max(len(models), 1), 4.6, ncols=max(len(models), 1), sharey=True)
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
    fig, axes = _fig(max(7.0, 0.62 * len(cols) + 2.5), 0.75 * len(models) + 2.0)
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
    fig, axes = _fig(9, 4.6)
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
    fig, axes = _fig(11, 4.6, ncols=2)
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
    _params_axis(bx)
    bx.set_yscale("log", base=2)
    bx.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1024:g}k"))
    bx.set_ylabel("crossover batch × seq (T 2048)")
    bx.set_title("Crossover: zo2 as fast as mezo from")
    bx.legend(loc="lower right")
    return fig


def energy(a) -> Figure:
    """NVML energy per token against parameters (memory series setting) for each mode."""
    fig, axes = _fig(9, 4.6)
    ax = axes[0][0]
    any_ = False
    for mode, color in MODE_COLORS.items():
        pts = sorted((spec_of(r.get("cell")["model"]).n_params(), energy_per_token(r)) for r in _memory_rows(a, mode))
        pts = [(x, y * 1e3) for x, y in pts if y]
        if pts:
            any_ = True
            ax.plot(*zip(*pts), marker="o", ms=5, lw=1.2, color=color, label=mode)
    _params_axis(ax, 1e8, 4e10)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_ylabel("GPU energy per token, mJ (NVML counter)")
    ax.set_title("Energy per token, fp16, batch 1, T 2048 (GPU only: host power is not measured)")
    if any_:
        ax.legend()
    return fig


def step_projection(a, doc_points=()) -> Figure:
    """Tokens/s against parameters at batch 1, T 2048: measured, the fits to 1T, the document's table 2.2."""
    fig, axes = _fig(9.5, 5.2)
    ax = axes[0][0]
    names = _sweep_names(a)
    for mode in ("zo2", "mezo", "fo-adamw"):
        fit = a.first_order_time if mode.startswith("fo-") else a.best_time()
        rows = [r for r in _memory_rows(a, mode) if step_time(r)]
        if rows:
            ax.scatter([spec_of(r.get("cell")["model"]).n_params() for r in rows],
                       [2048 / step_time(r) for r in rows], color=MODE_COLORS[mode], s=30, zorder=5,
                       label=f"{mode}: measured")
        if fit:
            _curve(ax, fit, mode, MODE_COLORS[mode], names, f"{mode}: fit, 95% prediction band",
                   to=lambda v: 2048 / v if v > 0 else np.nan)
    labels = set()
    for n, v, label in doc_points:
        ax.scatter([n], [v], label=None if label in labels else label, **DOC_STYLE)
        labels.add(label)
    _params_axis(ax)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    _shade_projection(ax, a)
    ax.set_ylabel("tokens/s (batch 1 × T 2048 / step)")
    ax.set_title("Training speed against model size (fp16, batch 1, T 2048)")
    ax.legend(loc="lower left", ncols=2)
    return fig
