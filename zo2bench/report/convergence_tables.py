"""The convergence page's tables, from the frames of analysis/convergence.tables (they compute nothing new).

    ct.summary_table(ct.pick(t["summary"], machine, profile), docs)   # steps / time / energy to target, test
    ct.selection_table(...), ct.targets_table(...), ct.parity_table(...), ct.fit_table(...),
    ct.predictions_table(...), ct.document_table(t["document_check"])

Wording: a value that was not measured says so ("n/m": no GPU energy counter; "not reached": censored runs,
never given a number); metrics are in [0, 1] and shown as percentages.
"""
from __future__ import annotations

import math

import pandas as pd

from zo2bench.report.fmt import params_text, sig
from zo2bench.report.table import Cell, Table, row


def pick(df: pd.DataFrame, machine, profile) -> pd.DataFrame:
    if not len(df) or "machine_id" not in df:
        return df
    return df[(df["machine_id"] == machine) & (df["profile"] == profile)]


def _ok(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _pct(v) -> str:
    if not _ok(v):
        return "–"
    return "diverged" if math.isinf(v) else f"{100 * v:.1f}%"


def _pm(mean, std) -> str:
    if not _ok(mean):
        return "–"
    return _pct(mean) + (f" ± {100 * std:.1f}" if _ok(std) else "")


def _lr(v) -> str:
    return f"{v:g}" if _ok(v) else "–"


def trust_note(runs: pd.DataFrame) -> str:
    states = runs["provenance"].map(lambda p: p.flag).value_counts().to_dict() if len(runs) else {}
    bad = sum(n for s, n in states.items() if s != "clean")
    return (f"{bad} of {len(runs)} runs come from a dirty checkout or an unrecorded commit: the code that produced "
            "them is not exactly known." if bad else "Every run names a clean commit.")


def has_parity(t: dict, machine, profile, task, k) -> bool:
    p = pick(t["parity"], machine, profile)
    return bool(len(p)) and bool(((p["task"] == task) & (p["k"] == k)).any())


def targets_table(tg: pd.DataFrame) -> Table:
    body = tuple(row(r["model"], r["task"], r["k"], r["metric"], r["reference"], _pct(r["reference_zero_shot"]),
                     _pct(r["reference_dev"]), "yes" if r["reference_learned"] else "no",
                     f"{r['fraction']:g} × = {_pct(r['target'])}" if _ok(r["target"]) else "–")
                 for _, r in tg.iterrows())
    return Table("Targets: a fraction of the reference's dev metric at its chosen point",
                 ("model", "task", "k", "metric", "reference", "before training", "after (dev mean)", "learned",
                  "target"), body,
                 ("learned: the reference's dev mean beats its before-training value by more than 1/sqrt(dev "
                  "examples); where it does not, the target may lie at or below where every run starts, and the "
                  "claims leave that model and task out.",),
                 (False, False, True, False, False, True, True, False, True))


def unlearned(tg: pd.DataFrame) -> frozenset:
    """(model, task, k) whose reference learned nothing: their target says nothing (see targets_table)."""
    return frozenset((r["model"], r["task"], r["k"]) for _, r in tg.iterrows() if not r["reference_learned"])


def summary_table(s: pd.DataFrame, docs=None, no_target: frozenset = frozenset()) -> Table:
    body = []
    for _, r in s.iterrows():
        energy = (f"{r['energy_to_target_j']:,.0f}" if _ok(r["energy_to_target_j"])
                  else "n/m" if r["reached"].split("/")[0] != "0" else "–")
        reached, steps, secs = (r["reached"], sig(r["steps_to_target"]) if _ok(r["steps_to_target"])
                                else "not reached", sig(r["time_to_target_s"]) if _ok(r["time_to_target_s"]) else "–")
        if (r["model"], r["task"], r["k"]) in no_target:   # a target of "as good as before training" is met at 0
            reached, steps, secs, energy = "–", "no target: the reference learned nothing", "–", "–"
        body.append(row(r["model"], params_text(r["n_params"]), r["task"], r["k"], r["mode"], _lr(r["lr"]),
                        _lr(r["eps"]), r["seeds"], _pct(r["zero_shot"]), _pm(r["test_mean"], r["test_std"]),
                        reached, steps, secs, energy, r["max_steps"]))
    return Table("Each method at its chosen grid point: steps, training time and GPU energy to the target, and test",
                 ("model", "params", "task", "k", "mode", "lr", "eps", "seeds", "before", "test (mean ± std)",
                  "reached", "steps to target", "time to target, s", "GPU energy to target, J", "steps run"),
                 tuple(body),
                 ("Steps, time and energy to target: medians over the seeds that reached it (reached: how many); "
                  "step resolution is the run's eval_every. Time: training wall time, evaluation excluded. Energy: "
                  "the GPU's NVML counter over the same intervals; n/m without a GPU. test: the task's primary "
                  "metric on the test split with the final weights, std over seeds.",),
                 (False, True, False, True, False, True, True, True, True, True, True, True, True, True, True))


def selection_table(sel: pd.DataFrame) -> Table:
    body = tuple(row(r["model"], r["task"], r["k"], r["mode"], _lr(r["lr"]), _lr(r["eps"]), r["seeds"],
                     _pm(r["dev_mean"], r["dev_std"]), int(r["diverged"]), "chosen" if r["chosen"] else "")
                 for _, r in sel.iterrows())
    return Table("The grid: final dev metric per point (mean ± std over seeds) and the point chosen on dev",
                 ("model", "task", "k", "mode", "lr", "eps", "seeds", "dev (mean ± std)", "diverged", ""), body,
                 ("A diverged run counts as -inf in its point's mean, so a point with one never wins.",),
                 (False, False, True, False, True, True, True, True, True, False))


def parity_table(p: pd.DataFrame) -> Table:
    """zo2 against mezo per model, task and k (the section shows a line instead where there are no pairs)."""
    g = p.groupby(["model", "task", "k"], sort=False)
    body = tuple(row(m, task, k, len(x), int(x["same_train_loss"].sum()), int(x["same_dev_curve"].sum()),
                     int(x["same_final_weights"].sum()), sig(x["time_ratio_zo2_over_mezo"].median()))
                 for (m, task, k), x in g)
    return Table("zo2 against mezo at the same lr, eps and seed", ("model", "task", "k", "pairs",
                 "same train loss", "same dev curve", "same final weights", "training time zo2 / mezo (median)"),
                 body, ("same: equal at every step (train loss), every evaluation (dev metrics) and bitwise "
                        "(final weights' sha256).",), (False, False, True, True, True, True, True, True))


METHODS = {"ols-reached": "least squares over the runs that reached their target after step 0; runs: those, "
                          "censored: the runs left out because they never reached it, so this fit leans to fast "
                          "runs; t-intervals",
           "censored-ml": "maximum likelihood over every run, one that never reached its target counting as one "
                          "that needed more steps than its last evaluation (right-censored); runs: all of them, "
                          "censored: how many of those; Wald intervals from the inverse Hessian"}


def fit_table(fit: pd.DataFrame) -> Table:
    """Both fits of a profile, the one the predictions and verdicts use first; notes say why a term is missing
    or has no number."""
    def est(r):
        return sig(r["estimate"]) if _ok(r["estimate"]) else "not identified"

    def ci(r):
        return f"[{sig(r['ci_lo'])}, {sig(r['ci_hi'])}]" if _ok(r["ci_lo"]) and _ok(r["ci_hi"]) else "–"

    body = tuple(row(r["term"], r["method"], est(r), ci(r), sig(r["document"]) if _ok(r["document"]) else "–",
                     r["runs"], r["censored"]) for _, r in fit.iterrows())
    methods = list(dict.fromkeys(fit["method"]))
    used = fit[fit["used"]]["method"].unique()
    notes = [f"{m}: {METHODS.get(m, m)}." for m in methods]
    notes.append(f"The predictions, the figure and the verdicts use {used[0]}." if len(used) else
                 "Neither fit gives the law here: no predictions, and no verdict on 4.1's k.")
    notes += [f"{m}: {n}." for m, n in fit.groupby("method", sort=False)["notes"].first().items() if n]
    notes.append("Zeroth-order runs: zo2; mezo where no zo2 ran the point.")
    if (fit["term"] == "k (document's form)").any():
        notes[-1] += (" k in the document's form: steps × lr / (sqrt(n) × complexity), averaged in logs"
                      + (" (censored-ml: its maximum-likelihood mean)." if "censored-ml" in methods else "."))
    return Table("log(steps to target) = const + a·log(n) + b·log(lr) (+ task terms): the fit beside formula 4.1",
                 ("term", "method", "estimate", "95% CI", "4.1", "runs", "censored"), body, tuple(notes),
                 (False, False, True, True, True, True, True))


def predictions_table(pr: pd.DataFrame) -> Table:
    body = tuple(row(r["model"], params_text(r["n_params"]), _lr(r["lr"]), sig(r["table"]),
                     Cell(sig(r["predicted"]) + (f" [{sig(r['pi_lo'])}, {sig(r['pi_hi'])}]" if _ok(r["pi_lo"])
                                                 else ""), kind="projection" if r["extrapolated"] else ""))
                 for _, r in pr.iterrows() if _ok(r["predicted"]))
    return Table("The fitted law at the 4.1 table's sizes and lr, beside the table",
                 ("model", "params", "lr", "4.1 table (simple)", "fitted law [95% PI]"), body,
                 ("The ladder's models are at most OPT-125M's shape on a synthetic language: beyond it, and at an "
                  "lr below the grid's, the law is an extrapolation.",), (False, True, True, True, True))


def document_table(doc: pd.DataFrame) -> Table:
    body = tuple(row(r["model"], params_text(r["n_params"]), sig(r["simple"]), sig(r["complex"]),
                     f"{r['formula']:.3g}", f"{r['formula_over_table']:.2g}", sig(r["implied_k_over_lr"]),
                     sig(r["complex_over_simple"]))
                 for _, r in doc.iterrows())
    return Table("Formula 4.1 with its constants against its own table",
                 ("model", "params", "table: simple", "table: complex", "formula (k 1000, lr 1e-7)",
                  "formula / table", "k/lr the row implies", "complex / simple"), body,
                 ("No measurement: the document's formula evaluated with its stated constants.",),
                 (False, True, True, True, True, True, True, True))


def fit_notes(t: dict, machine, profile) -> str:
    from zo2bench.analysis.convergence_fit import zo_runs  # the runs the fits take (mezo only where no zo2)

    tt = pick(t["to_target"], machine, profile)
    zo = zo_runs(tt) if len(tt) else tt
    if not len(zo):
        return "(no zeroth-order runs)"
    reached = zo[zo["reached"]]
    at0 = int((reached["steps_to_target"] == 0).sum())
    return (f"({len(reached)} of {len(zo)} zeroth-order runs reached it, {at0} of them at step 0, before "
            "training: a target the models start at says nothing about iterations)")
