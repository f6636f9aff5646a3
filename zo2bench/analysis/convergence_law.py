"""Formula 4.1 against the convergence series: the document checked against its own table, the law fitted to
the measured ladder with intervals, and verdicts on sections 4.1, 4.2 and 2.2.

    from zo2bench.analysis import convergence as cv, convergence_law as law
    t = cv.tables("results"); tt, summ = t["to_target"], t["summary"]
    law.document_check()                 # the 4.1 table against formula 4.1 with its stated constants
    f = law.fit(tt, machine, profile)    # log(steps) = c + alpha log(n) + beta log(lr) + task terms (OLS)
    law.fit_table(f), law.predictions(f) # estimates with 95% intervals; the table's sizes, extrapolated
    law.judge(summ, tt)                  # list[verdicts.Verdict], one per claim, machine and profile

The fit uses every zeroth-order run that reached its target (zo2; mezo where a point has no zo2 run, never
both: their curves are the same), all grid points and seeds, one machine and profile at a time. A term whose variable
takes one value only (one lr, one task) is left out and said so. Intervals are OLS's, t-distributed; the
leave-one-model-out error says how well a size it did not see is predicted; prediction intervals for the
document's sizes (up to 175 B from a ladder of at most 87 M) are extrapolations and labelled so. Runs that
never reached the target are left out of the fit and counted (censored): the fit is biased towards fast runs.

Formula-form k: with the document's exponents (n^0.5, lr^-1) and task complexity 1 for classification and
2 for generation and QA (the document names no tasks: "simple" and "complex" are read so),
k = steps x lr / (sqrt(n) x complexity), averaged in logs with a t-interval.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from zo2bench.analysis import claims as claims_mod
from zo2bench.analysis import formulas, units
from zo2bench.analysis import verdicts as V
from zo2bench.analysis.matching import Measured

COMPLEXITY = {"classification": 1.0, "generation": 2.0, "qa": 2.0}
# The 4.1 table's rows and the n each stands for, as the document names them ("OPT-1.3B" = 1.3e9).
TABLE_ROWS = {"opt-125m": 125e6, "opt-1.3b": 1.3e9, "opt-6.7b": 6.7e9, "opt-13b": 13e9, "opt-30b": 30e9,
              "opt-175b": 175e9}
SHAPE_OF = {"opt-125m": "ladder-768x12"}   # the one document size the ladder has the shape of


@dataclass(frozen=True)
class Fit:
    machine_id: str | None
    profile: str | None
    n_runs: int
    n_censored: int
    terms: tuple[str, ...]                # "const", "log_n", "log_lr", "log_eps", "task[qa]", ...
    estimate: tuple[float, ...]
    ci_lo: tuple[float, ...]
    ci_hi: tuple[float, ...]
    dof: int
    residual_sd: float | None
    k_formula: float | None               # the document's form: steps x lr / (sqrt(n) x complexity)
    k_ci: tuple[float, float] | None
    loo_log_error: float | None           # median |log(predicted / measured)| leaving each model out
    ranges: dict = field(default_factory=dict)   # n and lr seen
    notes: tuple[str, ...] = ()
    cov: tuple = ()                       # the estimate's covariance, for prediction intervals

    def value(self, term: str) -> float | None:
        return self.estimate[self.terms.index(term)] if term in self.terms else None

    def predict(self, n: float, lr: float, task: str = "classification", eps: float = 1e-3):
        """(steps, lo, hi): the fitted law at (n, lr, task), with a 95% prediction interval."""
        if not self.terms:
            return None
        x = np.array([_x(t, n, lr, task, eps) for t in self.terms])
        y = float(x @ np.array(self.estimate))
        var = float(x @ np.array(self.cov) @ x) + (self.residual_sd or 0.0) ** 2
        t = _t(self.dof)
        half = t * math.sqrt(var) if self.dof > 0 else float("nan")
        return math.exp(y), math.exp(y - half), math.exp(y + half)


def _x(term: str, n, lr, task, eps) -> float:
    if term == "const":
        return 1.0
    if term == "log_n":
        return math.log(n)
    if term == "log_lr":
        return math.log(lr)
    if term == "log_eps":
        return math.log(eps)
    return float(term == f"task[{task}]")


def _t(dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, dof)) if dof > 0 else float("nan")


def zo_runs(tt: pd.DataFrame) -> pd.DataFrame:
    """The zeroth-order runs, zo2 where a point has one, mezo otherwise (never both)."""
    if not len(tt):
        return tt
    zo = tt[tt["mode"].isin(["zo2", "mezo"])]
    key = ["machine_id", "profile", "model", "task", "k", "lr", "eps", "seed"]
    has_zo2 = set(map(tuple, zo[zo["mode"] == "zo2"][key].astype(str).values))
    keep = (zo["mode"] == "zo2") | ~zo[key].astype(str).apply(tuple, axis=1).isin(has_zo2)
    return zo[keep]


def _ols(X: np.ndarray, y: np.ndarray):
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    dof = len(y) - X.shape[1]
    resid = y - X @ beta
    s2 = float(resid @ resid / dof) if dof > 0 else float("nan")
    cov = s2 * np.linalg.pinv(X.T @ X) if dof > 0 else np.full((X.shape[1],) * 2, np.nan)
    return beta, cov, dof, s2


def fit(tt: pd.DataFrame, machine_id: str | None = None, profile: str | None = None) -> Fit:
    zo = zo_runs(tt)
    if machine_id is not None and len(zo):
        zo = zo[zo["machine_id"] == machine_id]
    if profile is not None and len(zo):
        zo = zo[zo["profile"] == profile]
    ok = zo[zo["reached"]] if len(zo) else zo
    censored = int(len(zo) - len(ok))
    at_start = int((ok["steps_to_target"] == 0).sum()) if len(ok) else 0
    ok = ok[ok["steps_to_target"] > 0] if len(ok) else ok  # at the target before training: no log, no law
    if len(ok) < 2:
        return Fit(machine_id, profile, len(ok), censored, (), (), (), (), 0, None, None, None, None,
                   notes=(f"{len(ok)} zeroth-order run(s) reached their target after step 0: nothing to fit",))
    terms, cols, notes = ["const"], [np.ones(len(ok))], []
    for term, col in (("log_n", np.log(ok["n_params"].astype(float))), ("log_lr", np.log(ok["lr"].astype(float))),
                      ("log_eps", np.log(ok["eps"].astype(float)))):
        if col.nunique() > 1:
            terms.append(term)
            cols.append(col.to_numpy())
        elif term != "log_eps":
            notes.append(f"{term} not fitted: one value only ({math.exp(col.iloc[0]):g})")
    tasks = sorted(ok["task"].unique())
    for task in tasks[1:] if "classification" not in tasks else [t for t in tasks if t != "classification"]:
        terms.append(f"task[{task}]")
        cols.append((ok["task"] == task).to_numpy(float))
    if at_start:
        notes.append(f"{at_start} run(s) were at the target before training (step 0): left out")
    X, y = np.column_stack(cols), np.log(ok["steps_to_target"].astype(float).to_numpy())
    beta, cov, dof, s2 = _ols(X, y)
    t = _t(dof)
    se = np.sqrt(np.diag(cov))
    logk = (y + np.log(ok["lr"].astype(float)) - 0.5 * np.log(ok["n_params"].astype(float))
            - np.log(ok["task"].map(COMPLEXITY).astype(float))).to_numpy()
    k_half = _t(len(logk) - 1) * logk.std(ddof=1) / math.sqrt(len(logk)) if len(logk) > 1 else float("nan")
    loo = []
    models = ok["model"].unique()
    if len(models) > 2 and "log_n" in terms:
        for m in models:
            tr, te = ok["model"] != m, ok["model"] == m
            b, *_ = np.linalg.lstsq(X[tr.to_numpy()], y[tr.to_numpy()], rcond=None)
            loo += list(np.abs(X[te.to_numpy()] @ b - y[te.to_numpy()]))
    return Fit(machine_id, profile, len(ok), censored, tuple(terms), tuple(map(float, beta)),
               tuple(map(float, beta - t * se)), tuple(map(float, beta + t * se)), dof,
               math.sqrt(s2) if s2 == s2 else None, float(math.exp(logk.mean())),
               (float(math.exp(logk.mean() - k_half)), float(math.exp(logk.mean() + k_half))) if k_half == k_half
               else None, float(np.median(loo)) if loo else None,
               {"n": (float(ok["n_params"].min()), float(ok["n_params"].max())),
                "lr": (float(ok["lr"].min()), float(ok["lr"].max()))}, tuple(notes), tuple(map(tuple, cov)))


DOCUMENT = {"log_n": 0.5, "log_lr": -1.0}


def fit_table(f: Fit) -> pd.DataFrame:
    """The fitted terms with their 95% intervals beside the document's (exponents of n and lr, k)."""
    rows = [{"machine_id": f.machine_id, "profile": f.profile, "term": t, "estimate": e, "ci_lo": lo, "ci_hi": hi,
             "document": DOCUMENT.get(t), "runs": f.n_runs, "censored": f.n_censored}
            for t, e, lo, hi in zip(f.terms, f.estimate, f.ci_lo, f.ci_hi)]
    if f.k_formula is not None:
        rows.append({"machine_id": f.machine_id, "profile": f.profile, "term": "k (document's form)",
                     "estimate": f.k_formula,
                     "ci_lo": f.k_ci[0] if f.k_ci else None, "ci_hi": f.k_ci[1] if f.k_ci else None,
                     "document": formulas.ITERATIONS_K, "runs": f.n_runs, "censored": f.n_censored})
    return pd.DataFrame(rows)


def document_check() -> pd.DataFrame:
    """Each row of the 4.1 table: formula 4.1 with k = 1000 and lr = 1e-7, the k/lr the row implies, and the
    table's own exponent of n (least squares over its rows)."""
    rows = []
    for m, n in TABLE_ROWS.items():
        simple, complex_ = claims_mod.get(f"002-4.1-{m}-simple"), claims_mod.get(f"002-4.1-{m}-complex")
        rows.append({"model": m, "n_params": n, "simple": simple.value, "complex": complex_.value,
                     "formula": formulas.iterations(n), "formula_over_table": formulas.iterations(n) / simple.value,
                     "implied_k_over_lr": formulas.implied_iterations_constant(simple.value, n),
                     "complex_over_simple": complex_.value / simple.value})
    df = pd.DataFrame(rows)
    df.attrs["table_exponent_of_n"] = float(np.polyfit(np.log(df["n_params"]), np.log(df["simple"]), 1)[0])
    return df


def predictions(f: Fit, lr: float = formulas.ZO_LR) -> pd.DataFrame:
    """The fitted law at the 4.1 table's sizes and the document's lr (1e-7), beside the table."""
    doc = document_check()
    rows = []
    for _, r in doc.iterrows():
        p = f.predict(r["n_params"], lr)
        lo_n, hi_n = f.ranges.get("n", (None, None))
        rows.append({"machine_id": f.machine_id, "profile": f.profile, "model": r["model"],
                     "n_params": r["n_params"], "lr": lr,
                     "table": r["simple"], "predicted": p[0] if p else None, "pi_lo": p[1] if p else None,
                     "pi_hi": p[2] if p else None,
                     "extrapolated": bool(hi_n is None or r["n_params"] > hi_n or lr < f.ranges["lr"][0])})
    return pd.DataFrame(rows)


# -- verdicts -----------------------------------------------------------------------------------------------
def _verdict(claim_id: str, machine: str, ms: list[Measured], note: str = "", notes=(), needs=None) -> V.Verdict:
    c = claims_mod.get(claim_id)
    rule = V.rule_for(c)
    claimed = units.to_base(c.value, c.unit)
    base = units.base_unit(c.unit)
    if not ms:
        return V.Verdict(claim_id, machine, "measured", V.UNTESTED, rule, None, claimed, base, needs=needs,
                         note=note, notes=tuple(notes))
    mid = (claimed[0] + claimed[1]) / 2 if isinstance(claimed, tuple) else claimed
    judged = [Measured(m.value, m.unit, m.cell, m.provenance, V.HOLDS if V.compare(rule, m.value, claimed) else V.FAILS,
                       m.value / mid if mid else None, partial=m.partial, side=V.side(rule, m.value, claimed))
              for m in ms]
    oks = [m.verdict == V.HOLDS for m in judged]
    v = V.HOLDS if all(oks) else V.FAILS if not any(oks) else V.PARTIAL
    if v == V.HOLDS and any(m.partial for m in judged):
        v = V.PARTIAL
    held = f"{sum(oks)} of {len(oks)} values hold" if len(oks) > 1 else ""
    return V.Verdict(claim_id, machine, "measured", v, rule, None, claimed, base, tuple(judged),
                     ratio=float(np.median([m.value for m in judged])) / mid if mid else None,
                     note=note, notes=tuple(x for x in (*notes, held) if x))


def _prov(df: pd.DataFrame) -> tuple:
    return tuple(df["provenance"]) if "provenance" in df else ()


SHAPE_NOTE = ("the ladder's OPT-125M shape (768 wide, 12 blocks) on the synthetic language: not OPT-125M's "
              "weights, vocabulary or task")


def judge(summ: pd.DataFrame, tt: pd.DataFrame, fits: dict | None = None,
          targets: pd.DataFrame | None = None) -> list[V.Verdict]:
    """Verdicts per machine and profile on 4.1 (k, lr, complexity, the table's OPT-125M row), 4.2 and 2.2's
    OPT-125M slowdown read as time to target. `fits`: (machine, profile) -> Fit (default: fit(tt, ...))."""
    out: list[V.Verdict] = []
    pairs = sorted(set(zip(summ["machine_id"], summ["profile"]))) if len(summ) else []
    if not pairs:
        for cid in ("002-4.1-k", "002-4.2-accuracy", "002-2.2-opt-125m-slowdown"):
            out.append(_verdict(cid, None, [], needs="the convergence series (zo2bench sweep "
                                                     "experiments/convergence_scaling.toml)"))
        return out
    for m, profile in pairs:
        s = summ[(summ["machine_id"] == m) & (summ["profile"] == profile)]
        t = tt[(tt["machine_id"] == m) & (tt["profile"] == profile)]
        f = (fits or {}).get((m, profile)) or fit(tt, m, profile)
        n0 = len(out)
        zo = s[s["mode"] == "zo2"] if (s["mode"] == "zo2").any() else s[s["mode"] == "mezo"]
        runs = zo_runs(t)
        learned = {(r["model"], r["task"], r["k"]): r["reference_learned"] for _, r in
                   (targets[(targets["machine_id"] == m) & (targets["profile"] == profile)].iterrows()
                    if targets is not None else [])}
        idle = [f"{a} {b} k{c}" for (a, b, c), ok in learned.items() if not ok]
        zo = zo[[learned.get((r["model"], r["task"], r["k"]), True) for _, r in zo.iterrows()]] if len(zo) else zo
        # where fo-adamw learned nothing, the choice of lr and the ratio of 4.2 are noise: left out, and said
        left_out = (f"left out, fo-adamw ended no better than before training: {', '.join(idle)}",) if idle else ()
        # 4.1's k in the document's form
        ms = [] if f.k_formula is None else [Measured(f.k_formula, "ratio", f"steps x lr / (sqrt(n) x complexity), "
                                                                          f"{f.n_runs} zo runs (95% CI {f.k_ci})",
                                                      _prov(runs[runs["reached"]]))]
        out.append(_verdict("002-4.1-k", m, ms, notes=f.notes, needs="zo runs that reach their target"))
        # 4.1's "lr typically 1e-7": the lr the dev choice took
        ms = [Measured(r["lr"], "ratio", f"{r['model']} {r['task']} k{r['k']} ({r['mode']}, chosen on dev)",
                       _prov(t[(t["model"] == r["model"]) & (t["task"] == r["task"]) & (t["k"] == r["k"])
                               & (t["mode"] == r["mode"]) & (t["lr"] == r["lr"])]))
              for _, r in zo.iterrows()]
        out.append(_verdict("002-4.1-lr", m, ms, note="the best lr of the grid on dev: bounded by the grid",
                            notes=left_out))
        # 4.1's complexity: steps to target, generation or QA over classification, same model and k
        ms = []
        for (model, k), g in zo.groupby(["model", "k"]):
            base = g[g["task"] == "classification"]["steps_to_target"].dropna()
            for task in ("generation", "qa"):
                other = g[g["task"] == task]["steps_to_target"].dropna()
                if len(base) and len(other):
                    ms.append(Measured(float(other.iloc[0] / base.iloc[0]), "ratio",
                                       f"{model} k{k}: {task} / classification steps to target", ()))
        out.append(_verdict("002-4.1-complexity", m, ms, needs="zo runs of classification and of generation or QA "
                                                               "that reach their targets on one model"))
        # the table's OPT-125M row: the ladder model of its shape
        for kind, tasks in (("simple", ("classification",)), ("complex", ("generation", "qa"))):
            rows = zo[(zo["model"] == SHAPE_OF["opt-125m"]) & zo["task"].isin(tasks)]
            ms = [Measured(r["steps_to_target"], "iterations", f"{r['model']} {r['task']} k{r['k']} lr {r['lr']:g}",
                           (), partial=SHAPE_NOTE) for _, r in rows.iterrows() if r["steps_to_target"] is not None
                  and r["steps_to_target"] == r["steps_to_target"]]
            out.append(_verdict(f"002-4.1-opt-125m-{kind}", m, ms,
                                needs=f"zo runs of {SHAPE_OF['opt-125m']} on {' or '.join(tasks)} reaching the target"))
        # 4.2: test metric of zo over fo-adamw at each model, task and k; the trend over sizes in a note
        ms, trend = [], []
        fo = s[s["mode"] == "fo-adamw"].set_index(["model", "task", "k"])
        for _, r in zo.iterrows():
            key = (r["model"], r["task"], r["k"])
            if key in fo.index and fo.loc[key, "test_mean"]:
                ratio = r["test_mean"] / fo.loc[key, "test_mean"]
                ms.append(Measured(float(ratio), "ratio", f"{r['model']} {r['task']} k{r['k']}: {r['mode']} / fo-adamw "
                                                          f"test {r['metric']}", ()))
                trend.append((r["task"], r["k"], r["n_params"], ratio))
        out.append(_verdict("002-4.2-accuracy", m, ms, notes=_trend(trend) + left_out,
                            needs="zo and fo-adamw runs on the same models, fo-adamw learning the task"))
        # 2.2's slowdown, read as time to target: zo2 over fo-adamw on the OPT-125M shape
        ms, others = [], []
        for _, r in s[s["mode"] == "zo2"].iterrows():
            key = (r["model"], r["task"], r["k"])
            ref = fo.loc[key, "time_to_target_s"] if key in fo.index else None
            if r["time_to_target_s"] is not None and ref and r["time_to_target_s"] == r["time_to_target_s"]:
                value = r["time_to_target_s"] / ref
                if r["model"] == SHAPE_OF["opt-125m"]:
                    ms.append(Measured(float(value), "ratio", f"{r['model']} {r['task']} k{r['k']}: zo2 / fo-adamw "
                                                              f"time to target", (), partial=SHAPE_NOTE))
                else:
                    others.append(f"{r['model']} {r['task']} k{r['k']}: {value:.2f}x")
        out.append(_verdict("002-2.2-opt-125m-slowdown", m, ms,
                            note="read as time to target (the document's 2x is per-token throughput)",
                            notes=(f"other ladder sizes: {'; '.join(others)}",) if others else (),
                            needs=f"zo2 and fo-adamw runs of {SHAPE_OF['opt-125m']} that reach the target"))
        out[n0:] = [dataclasses.replace(v, notes=(f"profile {profile}", *v.notes)) for v in out[n0:]]
    return out


def _trend(points) -> tuple[str, ...]:
    """"4.2 says the ratio rises with size": Spearman's rho of ratio against n per task and k."""
    from scipy import stats

    notes = []
    df = pd.DataFrame(points, columns=["task", "k", "n", "ratio"])
    for (task, k), g in df.groupby(["task", "k"]):
        if g["n"].nunique() >= 3 and g["ratio"].nunique() > 1:
            rho = stats.spearmanr(g["n"], g["ratio"]).statistic
            notes.append(f"{task} k{k}: Spearman rho of the ratio against size = {rho:+.2f} over {len(g)} sizes "
                         f"(4.2: it rises with size)")
    return tuple(notes)


def verdicts_frame(vs: list[V.Verdict]) -> pd.DataFrame:
    return V.frame(vs)
