"""The convergence section's figures, from the frames of analysis/convergence.tables (they fit nothing).

    from zo2bench.analysis import convergence as cv
    from zo2bench.report import convergence_figures as cf, figures
    t = cv.tables("results")
    figures.svg(cf.dev_curves, t, "h100-80gb-hbm3", "classification", 16)   # curves per size, each mode
    figures.svg(cf.steps_to_target, t, "h100-80gb-hbm3")                    # the law: measured, fitted, 4.1's
    figures.svg(cf.parity, t)                                                # zo2 against mezo, the same curve

Conventions as figures.py: a colour per mode; the chosen lr's seeds as thin lines, their mean thick; the
target dashed; the document's table hollow squares; the fit solid over the sizes it saw, dashed beyond.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from zo2bench.report.figures import MODE_COLORS, new_figure


def _profile(df, profile):
    return df[df["profile"] == profile] if profile is not None and len(df) else df


def dev_curves(t: dict, machine: str, task: str, k: int, x: str = "step", profile: str | None = None) -> Figure:
    """Dev metric against steps (x="step") or training seconds (x="train_s"), one panel per model."""
    c = _profile(t["curves"], profile)
    c = c[(c["machine_id"] == machine) & (c["task"] == task) & (c["k"] == k)] if len(c) else c
    models = list(c.sort_values("n_params")["model"].unique()) if len(c) else []
    fig, axes = new_figure(3.4 * max(len(models), 1), 3.6, ncols=max(len(models), 1), sharey=True)
    tg = _profile(t["targets"], profile)
    for ax, model in zip(axes[0], models):
        m = c[c["model"] == model]
        for mode, g in m.groupby("mode"):
            for _, run in g.groupby("seed"):
                ax.plot(run[x], run["value"], color=MODE_COLORS.get(mode, "black"), lw=0.6, alpha=0.4)
            mean = g.groupby(x if x == "step" else "step")["value"].mean()
            xs = mean.index if x == "step" else g.groupby("step")[x].mean().loc[mean.index]
            ax.plot(xs, mean.values, color=MODE_COLORS.get(mode, "black"), lw=1.8,
                    label=f"{mode} (lr {g['lr'].iloc[0]:g})")
        target = tg[(tg["machine_id"] == machine) & (tg["model"] == model) & (tg["task"] == task) & (tg["k"] == k)]
        if len(target) and target["target"].iloc[0] == target["target"].iloc[0]:
            ax.axhline(target["target"].iloc[0], color="0.3", ls="--", lw=1, label="target")
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(left=0)
        ax.set_title(f"{model} ({_millions(m['n_params'].iloc[0])})")
        ax.set_xlabel("step" if x == "step" else "training time, s")
    if models:
        axes[0][0].set_ylabel(f"dev {c['metric'].iloc[0]} ({task}, k={k})")
        axes[0][0].legend(loc="lower right")
    return fig


def steps_to_target(t: dict, machine: str, profile: str | None = None) -> Figure:
    """Zeroth-order steps to target against parameters, per lr: the runs, the fitted law, 4.1's table."""
    from zo2bench.analysis import convergence_law as law

    tt, cens, _ = law.runs(t["to_target"], machine, profile)   # the runs the fits read, reached and not
    fig, axes = new_figure(6.5, 4.6)
    ax = axes[0][0]
    fit = _profile(t["fit"], profile)
    fit = fit[(fit["machine_id"] == machine) & fit["used"] & fit["identified"]] if len(fit) else fit
    if len(fit) and fit["profile"].nunique() > 1:  # one law per figure: the profile with the most runs
        fit = fit[fit["profile"] == fit.groupby("profile")["runs"].max().idxmax()]
        tt, cens = (d[d["profile"] == fit["profile"].iloc[0]] for d in (tt, cens))
    method = fit["method"].iloc[0] if len(fit) else None
    fit = fit.set_index("term") if len(fit) else fit
    doc = law.document_check()
    lrs = sorted(set(tt["lr"]) | set(cens["lr"])) if len(tt) or len(cens) else []
    cmap = [plt_color(i, len(lrs)) for i in range(len(lrs))]
    for lr, color in zip(lrs, cmap):
        g, c = tt[tt["lr"] == lr], cens[cens["lr"] == lr]
        if len(g):
            ax.scatter(g["n_params"], g["steps_to_target"], color=color, s=18, label=f"measured, lr {lr:g}")
        if len(c):
            ax.scatter(c["n_params"], c["last_step"], marker="^", facecolor="none", edgecolor=color, s=30,
                       label=f"not reached by the last step, lr {lr:g}")
        if len(fit) and "log_n" in fit.index:
            seen = tt["n_params"] if method == law.OLS else pd.concat([tt["n_params"], cens["n_params"]])
            lo, hi = seen.min(), seen.max()
            ns = np.logspace(np.log10(lo), np.log10(hi), 20)
            y = np.exp(fit.loc["const", "estimate"] + fit.loc["log_n", "estimate"] * np.log(ns)
                       + (fit.loc["log_lr", "estimate"] * np.log(lr) if "log_lr" in fit.index else 0.0))
            ax.plot(ns, y, color=color, lw=1.2)
    ax.scatter(doc["n_params"], doc["simple"], marker="s", facecolor="none", edgecolor="black", s=40,
               label="002 4.1 table (simple task)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("steps to target")
    if len(fit) and "log_n" in fit.index:
        r = fit.loc["log_n"]
        ax.set_title(f"exponent of n ({method}): {r['estimate']:.2f} [{r['ci_lo']:.2f}, {r['ci_hi']:.2f}] "
                     "(4.1: 0.5)")
    ax.legend(loc="upper left")
    return fig


def parity(t: dict) -> Figure:
    """zo2 against mezo at the same point and seed: how many runs had the same curve and final weights, and
    zo2's training time over mezo's for those same steps (the price of offloading), per model."""
    p = t["parity"]
    fig, axes = new_figure(5.0, 3.8)
    ax = axes[0][0]
    same = int(p[["same_train_loss", "same_dev_curve", "same_final_weights"]].all(axis=1).sum()) if len(p) else 0
    ax.set_title(f"zo2 = mezo (curve and final weights): {same} of {len(p)} runs")
    if len(p):
        n = t["runs"].drop_duplicates("model").set_index("model")["n_params"]
        g = p.groupby("model")["time_ratio_zo2_over_mezo"].median().sort_index(key=lambda m: m.map(n))
        ax.bar([f"{m}\n{_millions(n[m])}" for m in g.index], g.values, color=MODE_COLORS["zo2"])
        ax.axhline(1.0, color="0.3", lw=1)
    ax.set_ylabel("training time, zo2 / mezo (median)")
    return fig


def zo2_and_mezo(t: dict, machine: str, profile: str | None, task: str, k: int) -> Figure:
    """zo2 (solid) and mezo (dashed, drawn on top) dev curves at the points and seeds both ran, one panel per
    model: where the two coincide there is one visible curve."""
    c = _profile(t["parity_curves"], profile)
    c = c[(c["machine_id"] == machine) & (c["task"] == task) & (c["k"] == k)] if len(c) else c
    models = list(c.sort_values("n_params")["model"].unique()) if len(c) else []
    fig, axes = new_figure(3.4 * max(len(models), 1), 3.4, ncols=max(len(models), 1), sharey=True)
    for ax, model in zip(axes[0], models):
        m = c[c["model"] == model]
        for (lr, _eps, seed), g in m.groupby(["lr", "eps", "seed"]):
            for mode, style, width in (("zo2", "-", 2.4), ("mezo", "--", 1.0)):
                run = g[g["mode"] == mode].sort_values("step")
                ax.plot(run["step"], run["value"], ls=style, lw=width, color=MODE_COLORS.get(mode, "black"),
                        label=f"{mode}, lr {lr:g}, seed {seed}" if len(ax.lines) < 4 else None)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(left=0)
        ax.set_title(f"{model} ({_millions(m['n_params'].iloc[0])})")
        ax.set_xlabel("step")
    if models:
        axes[0][0].set_ylabel(f"dev {c['metric'].iloc[0]} ({task}, k={k})")
        axes[0][0].legend(loc="lower right", fontsize=7)
    return fig


def _millions(n) -> str:
    return f"{n / 1e6:.3g} M"


def plt_color(i: int, n: int):
    import matplotlib

    return matplotlib.colormaps["viridis"](0.15 + 0.7 * i / max(n - 1, 1))
