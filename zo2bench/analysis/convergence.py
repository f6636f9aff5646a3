"""The convergence series (issue 11) as tables: choices on dev, targets, steps / time / energy to target, test.

    from zo2bench.analysis import convergence as cv
    runs = cv.load("results")                 # one line per fine-tuning run (latest row of each cell)
    sel = cv.selection(runs)                  # the lr (and eps) grid per method, mean dev per point, the choice
    tt = cv.to_target(runs, cv.targets(runs, sel))   # per run: steps, train seconds, GPU joules to the target
    cv.summary(runs, sel, tt)                 # per method at its chosen point: test mean ± std, to-target medians
    tables = cv.tables("results")             # every frame the report needs, the fit and verdicts included

Rules, stated once:
- metric: each task's primary dev metric (tasks.examples.PRIMARY_METRIC), in [0, 1];
- choice: per machine, profile, model, task, k and mode, the (lr, eps) with the best mean final dev metric over seeds
  (a diverged run counts as -inf); every grid point and its mean stay in `selection` (MeZO's users ask for it);
- target: `target_fraction` (0.9) of the reference mode's (fo-adamw) mean final dev metric at its chosen
  point, on the same machine, profile, model, task and k (both from the rows' settings);
- learned: whether the reference's mean final dev metric beats its own before training by more than
  1/sqrt(dev examples) (two standard errors of a mean of values in [0, 1]); where it does not, the target
  may lie below where the runs start (reached at step 0) and 4.2's ratio compares two guesses (left out);
- data: runs on different data (the rows' data digests: a new generator version of the synthetic data, another
  recipe, other files) are never mixed in one choice, target or fit. Where one machine and profile hold runs
  of more than one data version, each version's runs form a group of their own: its profile reads
  "gpu (data v4-<digest>)" (rows from before generator_version was recorded: the digest alone);
- to target: the first dev evaluation at or above the target: its step, the training wall time and GPU energy
  up to it (evaluation excluded; energy None without a GPU). A run that never gets there is censored
  (reached = False), never given a number; its last evaluated step (last_step) is what it is known to need
  more than. Step resolution is the run's eval_every.
convergence_law.py fits formula 4.1 to these rows and judges the claims of sections 4.1, 4.2 and 2.2.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from zo2bench import results
from zo2bench.analysis.evidence import Provenance

SERIES = "convergence_scaling"
GROUP = ["machine_id", "profile", "model", "task", "k"]   # profiles (and data versions: load()) never mixed
METHOD = GROUP + ["mode"]
POINT = METHOD + ["lr", "eps"]


def _primary(task: str) -> str:
    from zo2bench.tasks.examples import PRIMARY_METRIC

    return PRIMARY_METRIC[task]


def _rows(results_dir, series: str) -> list[tuple[dict, str, int]]:
    """(row, file, line) of every convergence row; the latest of each (machine, key) wins, as in the sweep."""
    out, order = {}, 0
    root = Path(results_dir) / series
    if not root.is_dir():
        return []
    for machine in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for f in results.sweep_files(results_dir, series, machine):
            with open(f, "rb") as fh:
                for n, raw in enumerate(fh, 1):
                    try:
                        row = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        continue  # a torn line: the sweep sets it aside on its next run
                    if isinstance(row, dict) and "convergence" in row:
                        order += 1
                        out[(row.get("machine_id"), row.get("key"), data_version(row))] = (row, str(f), n)
    return list(out.values())


def data_version(row: dict) -> str:
    """The data a row's run was made on: "v<generator version>-<digest, 8 hex>" for the synthetic data (the
    digest alone in rows that predate the recorded version), "files-<8 hex>" for data from files."""
    from zo2bench.tasks.cache import digest

    d = row.get("data") or {}
    if d.get("digest"):
        v = d.get("generator_version")
        return f"v{v}-{d['digest'][:8]}" if v is not None else d["digest"][:8]
    if d.get("files_sha256"):
        return "files-" + digest(d["files_sha256"])[:8]
    return "unknown"


def load(results_dir: str | Path = "results", series: str = SERIES) -> pd.DataFrame:
    """One line per fine-tuning run with status ok: its axes, its curve and its outcome."""
    lines = []
    for row, file, line in _rows(results_dir, series):
        if row.get("status") != "ok":
            continue
        cell, s, ft = row["cell"], row["convergence"], row.get("finetune") or {}
        metric = _primary(cell["task"])
        curve = ft.get("dev_curve") or []
        diverged = ft.get("diverged_at_step") is not None
        fp = row.get("fingerprint") or {}
        commit, dirty = fp.get("git_commit"), fp.get("git_dirty")
        lines.append({
            "machine_id": row.get("machine_id"), "gpu": fp.get("gpu"), "profile": row.get("profile"),
            "profile_name": row.get("profile"), "data": data_version(row),
            "key": row.get("key"), "model": cell["model"], "n_params": row.get("n_params"), "task": cell["task"],
            "k": cell["k"], "mode": cell["mode"], "lr": cell["lr"], "eps": cell.get("eps"),
            "seed": row["config"]["seed"], "dtype": cell["dtype"], "batch": cell["batch"], "metric": metric,
            "steps": row["config"]["steps"], "steps_run": ft.get("steps_run"), "diverged": diverged,
            "eval_every": s.get("eval_every"), "dev_examples": ft.get("dev_examples"),
            "zero_shot": curve[0].get(metric) if curve else None,
            "dev_final": -math.inf if diverged or not curve else curve[-1].get(metric),
            "test": (ft.get("test") or {}).get(metric) if not diverged else None,
            "test_metrics": ft.get("test"), "curve": curve, "train_loss": ft.get("train_loss") or [],
            "final_params_sha256": ft.get("final_params_sha256"),
            "pretrained_sha256": (row.get("pretrained") or {}).get("weights_sha256"),
            "target_fraction": s.get("target_fraction"), "target_reference": s.get("target_reference"),
            "provenance": Provenance(file, line, row.get("key"), row.get("machine_id"), commit, dirty,
                                     "unknown" if not commit or dirty is None else "dirty" if dirty else "clean"),
        })
    df = pd.DataFrame(lines)
    if len(df):
        df["eps"] = df["eps"].astype(float)  # NaN for backprop: a grouping value like any other
        # every choice, target, fit and report section is per (machine, profile): one data version in each
        mixed = df.groupby(["machine_id", "profile_name"])["data"].transform("nunique") > 1
        df["profile"] = df["profile_name"].where(~mixed, df["profile_name"] + " (data " + df["data"] + ")")
    return df


def _groupby(df: pd.DataFrame, cols):
    return df.groupby(cols, dropna=False, sort=True)


def selection(runs: pd.DataFrame) -> pd.DataFrame:
    """Every grid point per method: seeds, mean and std of the final dev metric, diverged runs, chosen."""
    if not len(runs):
        return pd.DataFrame(columns=POINT + ["seeds", "dev_mean", "dev_std", "diverged", "chosen"])
    g = _groupby(runs, POINT)
    sel = g.agg(seeds=("seed", "nunique"), dev_mean=("dev_final", "mean"), dev_std=("dev_final", "std"),
                diverged=("diverged", "sum")).reset_index()
    sel["chosen"] = False
    best = sel.groupby(METHOD, dropna=False)["dev_mean"].idxmax()
    sel.loc[best.values, "chosen"] = True
    return sel


def chosen_runs(runs: pd.DataFrame, sel: pd.DataFrame) -> pd.DataFrame:
    keep = sel[sel["chosen"]][POINT]
    return runs.merge(keep, on=POINT, how="inner") if len(runs) else runs


def targets(runs: pd.DataFrame, sel: pd.DataFrame) -> pd.DataFrame:
    """Per machine, model, task and k: the reference mode's chosen mean dev metric and the target."""
    out = []
    for keys, grp in _groupby(runs, GROUP) if len(runs) else []:
        ref, frac = grp["target_reference"].iloc[0], grp["target_fraction"].iloc[0]
        r = sel[(sel[GROUP] == pd.Series(keys, index=GROUP)).all(axis=1) & (sel["mode"] == ref) & sel["chosen"]]
        ref_dev = float(r["dev_mean"].iloc[0]) if len(r) and np.isfinite(r["dev_mean"].iloc[0]) else None
        ref_runs = grp[(grp["mode"] == ref) & (grp["lr"] == r["lr"].iloc[0])] if len(r) else grp.iloc[0:0]
        zero = float(ref_runs["zero_shot"].mean()) if len(ref_runs) else None
        n_dev = grp["dev_examples"].max()
        margin = 1 / math.sqrt(n_dev) if n_dev == n_dev and n_dev else 0.0  # 2 s.e. of a mean of values in [0, 1]
        out.append({**dict(zip(GROUP, keys)), "metric": grp["metric"].iloc[0], "reference": ref,
                    "reference_dev": ref_dev, "reference_zero_shot": zero,
                    "reference_learned": ref_dev is not None and zero is not None and ref_dev > zero + margin,
                    "fraction": frac, "target": None if ref_dev is None else frac * ref_dev})
    return pd.DataFrame(out, columns=GROUP + ["metric", "reference", "reference_dev", "reference_zero_shot",
                                              "reference_learned", "fraction", "target"])


def first_reach(curve: list[dict], metric: str, target: float) -> dict | None:
    for p in curve:
        v = p.get(metric)
        if v is not None and v >= target:
            return p
    return None


def to_target(runs: pd.DataFrame, tg: pd.DataFrame) -> pd.DataFrame:
    """Per run (every grid point): reached, steps, train_s and energy_j at the first dev point >= target, and
    the last evaluated step (a censored run's bound)."""
    if not len(runs):
        return pd.DataFrame()
    df = runs.merge(tg[GROUP + ["target"]], on=GROUP, how="left")
    out = []
    for _, r in df.iterrows():
        t = r["target"]
        p = first_reach(r["curve"], r["metric"], t) if t is not None and t == t else None
        out.append({"reached": p is not None, "steps_to_target": p["step"] if p else None,
                    "last_step": r["curve"][-1]["step"] if r["curve"] else None,
                    "time_to_target_s": p["train_s"] if p else None,
                    "energy_to_target_j": p.get("energy_j") if p else None})
    return pd.concat([df.drop(columns=["curve", "train_loss", "test_metrics"]), pd.DataFrame(out, index=df.index)],
                     axis=1)


def _median(s: pd.Series):
    s = s.dropna()
    return float(s.median()) if len(s) else None


def summary(runs: pd.DataFrame, sel: pd.DataFrame, tt: pd.DataFrame) -> pd.DataFrame:
    """Per method at its chosen point: test mean and std over seeds, and the medians to target over the seeds
    that reached it (with how many did)."""
    if not len(runs):
        return pd.DataFrame()
    ch = chosen_runs(tt, sel)
    out = []
    for keys, grp in _groupby(ch, POINT):
        reached = grp[grp["reached"]]
        out.append({**dict(zip(POINT, keys)), "n_params": grp["n_params"].iloc[0], "metric": grp["metric"].iloc[0],
                    "seeds": len(grp), "zero_shot": grp["zero_shot"].mean(), "dev_mean": grp["dev_final"].mean(),
                    "test_mean": grp["test"].mean(), "test_std": grp["test"].std(),
                    "reached": f"{len(reached)}/{len(grp)}", "steps_to_target": _median(reached["steps_to_target"]),
                    "time_to_target_s": _median(reached["time_to_target_s"]),
                    "energy_to_target_j": _median(reached["energy_to_target_j"]),
                    "max_steps": int(grp["steps"].max())})
    return pd.DataFrame(out).sort_values(["machine_id", "profile", "n_params", "task", "k", "mode"]).reset_index(
        drop=True)


def parity(runs: pd.DataFrame) -> pd.DataFrame:
    """zo2 against mezo at the same point and seed: the same train losses, dev curve and final weights?"""
    if not len(runs):
        return pd.DataFrame()
    z, m = runs[runs["mode"] == "zo2"], runs[runs["mode"] == "mezo"]
    on = GROUP + ["lr", "eps", "seed"]
    pairs = z.merge(m, on=on, suffixes=("_zo2", "_mezo"))
    strip = lambda c: [{k: v for k, v in p.items() if k not in ("train_s", "energy_j", "eval_s")} for p in c]
    rows = [{**{k: r[k] for k in on}, "steps": len(r["train_loss_zo2"]),
             "same_train_loss": r["train_loss_zo2"] == r["train_loss_mezo"],
             "same_dev_curve": strip(r["curve_zo2"]) == strip(r["curve_mezo"]),
             "same_final_weights": r["final_params_sha256_zo2"] == r["final_params_sha256_mezo"],
             "time_ratio_zo2_over_mezo": (r["curve_zo2"][-1]["train_s"] / r["curve_mezo"][-1]["train_s"]
                                          if r["curve_mezo"] and r["curve_mezo"][-1]["train_s"] else None)}
            for _, r in pairs.iterrows()]
    return pd.DataFrame(rows)


def curves(runs: pd.DataFrame, chosen_only: bool = True, sel: pd.DataFrame | None = None) -> pd.DataFrame:
    """Dev curves as a long frame (one line per run and evaluation), for figures."""
    if not len(runs):
        return pd.DataFrame()
    df = chosen_runs(runs, sel if sel is not None else selection(runs)) if chosen_only else runs
    out = []
    for _, r in df.iterrows():
        for p in r["curve"]:
            out.append({**{k: r[k] for k in POINT + ["seed", "n_params", "metric"]}, "step": p["step"],
                        "value": p.get(r["metric"]), "loss": p.get("loss"), "train_s": p["train_s"],
                        "energy_j": p.get("energy_j")})
    return pd.DataFrame(out)


def parity_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """The dev curves of zo2 and mezo at every point and seed that both ran (long frame, as curves())."""
    if not len(runs):
        return pd.DataFrame()
    on = GROUP + ["lr", "eps", "seed"]
    both = runs[runs["mode"] == "zo2"][on].merge(runs[runs["mode"] == "mezo"][on], on=on)
    if not len(both):
        return pd.DataFrame()
    return curves(runs[runs["mode"].isin(["zo2", "mezo"])].merge(both, on=on), chosen_only=False)


def tables(results_dir: str | Path = "results", series: str = SERIES) -> dict:
    """Every frame of the report's convergence section: runs, selection, targets, to_target, summary,
    parity, curves, parity_curves, and from convergence_law: document_check, fit (the terms of both fits,
    ols-reached and censored-ml; column used: the one the predictions and verdicts take), predictions,
    verdicts (a frame) and verdict_list (the analysis.verdicts.Verdict objects, for the report's claims
    tables)."""
    from zo2bench.analysis import convergence_law as law

    runs = load(results_dir, series)
    sel = selection(runs)
    tg = targets(runs, sel)
    tt = to_target(runs, tg)
    summ = summary(runs, sel, tt)
    pairs = sorted(set(zip(tt["machine_id"], tt["profile"]))) if len(tt) else []
    both = {(m, p): (law.fit(tt, m, p), law.fit_censored(tt, m, p)) for m, p in pairs}
    fits = {pair: law.preferred(*b) for pair, b in both.items()}
    frames = lambda f: pd.concat([f(x) for x in fits.values()], ignore_index=True) if fits else pd.DataFrame()
    # both fits, the one used first, so the report shows what censoring changes (where nothing was censored
    # the censored fit is the OLS one with z- for t-intervals: left out)
    fit_rows = [law.fit_table(f, used=f is fits[pair]) for pair, b in both.items()
                for f in sorted(b, key=lambda f: f is not fits[pair]) if f.method == law.OLS or f.n_censored]
    verdicts = law.judge(summ, tt, fits, tg)
    return {"runs": runs.drop(columns=["curve", "train_loss"]) if len(runs) else runs, "selection": sel,
            "targets": tg, "to_target": tt, "summary": summ, "parity": parity(runs), "curves": curves(runs, sel=sel),
            "parity_curves": parity_curves(runs), "document_check": law.document_check(),
            "fit": pd.concat(fit_rows, ignore_index=True) if fit_rows else pd.DataFrame(),
            "predictions": frames(law.predictions),
            "verdicts": law.verdicts_frame(verdicts), "verdict_list": verdicts}
