"""Formula 4.1 fitted to the convergence series: log(steps to target) = c + alpha log(n) + beta log(lr)
(+ log(eps) and task terms), one machine and profile at a time, two ways.

    from zo2bench.analysis import convergence_fit as cf   # convergence_law re-exports all of it
    cf.fit(tt, machine, profile)           # "ols-reached": least squares over the runs that reached the target
    cf.fit_censored(tt, machine, profile)  # "censored-ml": every run, the others right-censored
    cf.best(tt, machine, profile)          # the censored fit where it gives intervals and censored something
    cf.fit_table(f)                        # estimates with 95% intervals beside the document's

Runs: every zeroth-order run (zo2; mezo where a point has no zo2 run, never both: their curves are the
same), all grid points and seeds. Left out, and said so: runs with no target (no reference run) and runs at
the target before training (step 0: no log, no law). A term whose variable takes one value only (one lr,
one task) is left out and said so.

ols-reached fits the runs that reached the target; the others are only counted (censored), so it leans to
fast runs: where the budget cuts off the slow runs of the large sizes and small lrs, alpha comes out low and
beta towards 0. Intervals are t-distributed; k in the document's form (below) is a mean of logs with a
t-interval.

censored-ml (analysis/censored.py) counts a run that never reached the target as one that needed more
steps than its last evaluation (the column last_step): maximum likelihood with normal errors in log steps,
95% Wald intervals from the inverse Hessian. It gives no numbers where the likelihood has no maximum (no
run reached the target; the censored runs bound a term from one side only: the notes say which way) and
none where one size alone reached the target (alpha then rests on inequalities alone), and no intervals
where the Hessian is singular. With no run censored it is the OLS fit with z- for t-intervals, so best()
keeps OLS then. Reached steps are exact to the run's eval_every in both (the first evaluation at or above
the target, not the crossing).

Both: the leave-one-model-out error says how well a size the fit did not see is predicted; k in the
document's form: with its exponents (n^0.5, lr^-1) and task complexity 1 for classification and 2 for
generation and QA, k = steps x lr / (sqrt(n) x complexity).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from zo2bench.analysis import censored, formulas

# the document names no tasks: "simple" and "complex" are read so
COMPLEXITY = {"classification": 1.0, "generation": 2.0, "qa": 2.0}
OLS, CENSORED = "ols-reached", "censored-ml"


@dataclass(frozen=True)
class Fit:
    machine_id: str | None
    profile: str | None
    n_runs: int                           # ols-reached: the reached runs fitted; censored-ml: every run, censored too
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
    method: str = OLS
    identified: bool = True               # False: the terms are named, their numbers are NaN (notes say why)

    def value(self, term: str) -> float | None:
        return self.estimate[self.terms.index(term)] if term in self.terms and self.identified else None

    def predict(self, n: float, lr: float, task: str = "classification", eps: float = 1e-3):
        """(steps, lo, hi): the fitted law at (n, lr, task), with a 95% prediction interval (NaN without one)."""
        if not self.terms or not self.identified:
            return None
        x = np.array([_x(t, n, lr, task, eps) for t in self.terms])
        y = float(x @ np.array(self.estimate))
        if not self.cov:
            return math.exp(y), float("nan"), float("nan")
        var = float(x @ np.array(self.cov) @ x) + (self.residual_sd or 0.0) ** 2
        q = censored.Z95 if self.method == CENSORED else _t(self.dof)
        half = q * math.sqrt(var) if q == q else float("nan")
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


def _runs(tt: pd.DataFrame, machine_id, profile) -> tuple[pd.DataFrame, list[str]]:
    """One machine's and profile's zeroth-order runs that can say something about iterations, and notes on
    the others."""
    zo = zo_runs(tt)
    if machine_id is not None and len(zo):
        zo = zo[zo["machine_id"] == machine_id]
    if profile is not None and len(zo):
        zo = zo[zo["profile"] == profile]
    notes = []
    if len(zo) and "target" in zo and zo["target"].isna().any():   # no reference run: not censored, unjudged
        notes.append(f"{int(zo['target'].isna().sum())} run(s) have no target (no reference run): left out")
        zo = zo[zo["target"].notna()]
    at_start = zo["reached"] & (zo["steps_to_target"] == 0) if len(zo) else None
    if at_start is not None and at_start.any():   # at the target before training: no log, no law
        notes.append(f"{int(at_start.sum())} run(s) were at the target before training (step 0): left out")
        zo = zo[~at_start]
    return zo, notes


def runs(tt: pd.DataFrame, machine_id=None, profile=None) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """What the fits read: the runs that reached the target after step 0, the runs that never reached it but
    were evaluated after step 0 (each a lower bound), and notes on the runs left out."""
    zo, notes = _runs(tt, machine_id, profile)
    if not len(zo):
        return zo, zo, notes
    return zo[zo["reached"]], zo[~zo["reached"].astype(bool) & (zo["last_step"].astype(float) > 0)], notes


def _design(df: pd.DataFrame) -> tuple[list[str], np.ndarray, list[str]]:
    """The terms (a variable with one value only is left out, and said so) and their columns."""
    terms, cols, notes = ["const"], [np.ones(len(df))], []
    for term, col in (("log_n", np.log(df["n_params"].astype(float))), ("log_lr", np.log(df["lr"].astype(float))),
                      ("log_eps", np.log(df["eps"].astype(float)))):
        if col.nunique() > 1:
            terms.append(term)
            cols.append(col.to_numpy())
        elif term != "log_eps":
            notes.append(f"{term} not fitted: one value only ({math.exp(col.iloc[0]):g})")
    tasks = sorted(df["task"].unique())
    for task in tasks[1:] if "classification" not in tasks else [t for t in tasks if t != "classification"]:
        terms.append(f"task[{task}]")
        cols.append((df["task"] == task).to_numpy(float))
    return terms, np.column_stack(cols), notes


def _log_k(df: pd.DataFrame, y: np.ndarray) -> np.ndarray:
    """log k in the document's form: log(steps x lr / (sqrt(n) x complexity))."""
    return (y + np.log(df["lr"].astype(float)) - 0.5 * np.log(df["n_params"].astype(float))
            - np.log(df["task"].map(COMPLEXITY).astype(float))).to_numpy()


def _ranges(df: pd.DataFrame) -> dict:
    return {"n": (float(df["n_params"].min()), float(df["n_params"].max())),
            "lr": (float(df["lr"].min()), float(df["lr"].max()))}


def _ols(X: np.ndarray, y: np.ndarray):
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    dof = len(y) - X.shape[1]
    resid = y - X @ beta
    s2 = float(resid @ resid / dof) if dof > 0 else float("nan")
    cov = s2 * np.linalg.pinv(X.T @ X) if dof > 0 else np.full((X.shape[1],) * 2, np.nan)
    return beta, cov, dof, s2


def fit(tt: pd.DataFrame, machine_id: str | None = None, profile: str | None = None) -> Fit:
    """Least squares over the runs that reached their target ("ols-reached"); the others are only counted."""
    zo, left_out = _runs(tt, machine_id, profile)
    ok = zo[zo["reached"]] if len(zo) else zo
    censored_ = int(len(zo) - len(ok))
    if len(ok) < 2:
        return Fit(machine_id, profile, len(ok), censored_, (), (), (), (), 0, None, None, None, None,
                   notes=(f"{len(ok)} zeroth-order run(s) reached their target after step 0: nothing to fit",
                          *left_out))
    terms, X, notes = _design(ok)
    y = np.log(ok["steps_to_target"].astype(float).to_numpy())
    beta, cov, dof, s2 = _ols(X, y)
    t = _t(dof)
    se = np.sqrt(np.diag(cov))
    logk = _log_k(ok, y)
    k_half = _t(len(logk) - 1) * logk.std(ddof=1) / math.sqrt(len(logk)) if len(logk) > 1 else float("nan")
    loo = []
    models = ok["model"].unique()
    if len(models) > 2 and "log_n" in terms:
        for m in models:
            tr, te = ok["model"] != m, ok["model"] == m
            b, *_ = np.linalg.lstsq(X[tr.to_numpy()], y[tr.to_numpy()], rcond=None)
            loo += list(np.abs(X[te.to_numpy()] @ b - y[te.to_numpy()]))
    return Fit(machine_id, profile, len(ok), censored_, tuple(terms), tuple(map(float, beta)),
               tuple(map(float, beta - t * se)), tuple(map(float, beta + t * se)), dof,
               math.sqrt(s2) if s2 == s2 else None, float(math.exp(logk.mean())),
               (float(math.exp(logk.mean() - k_half)), float(math.exp(logk.mean() + k_half))) if k_half == k_half
               else None, float(np.median(loo)) if loo else None, _ranges(ok), tuple(notes + left_out),
               tuple(map(tuple, cov)))


def fit_censored(tt: pd.DataFrame, machine_id: str | None = None, profile: str | None = None) -> Fit:
    """Maximum likelihood over every run ("censored-ml"): a run that never reached its target counts as one
    that needed more steps than its last evaluation (right-censored; analysis/censored.py)."""
    reached, bounds, left_out = runs(tt, machine_id, profile)
    zo = pd.concat([reached, bounds]).sort_index()   # the rows' order, for sums that do not depend on it
    nan = float("nan")
    if not len(zo):
        return Fit(machine_id, profile, 0, 0, (), (), (), (), 0, None, None, None, None, method=CENSORED,
                   identified=False, notes=("no zeroth-order run with a target: nothing to fit", *left_out))
    cens = ~zo["reached"].to_numpy(bool)
    terms, X, notes = _design(zo)
    y = np.log(np.where(cens, zo["last_step"].astype(float), zo["steps_to_target"].astype(float)))
    r = censored.fit(X, y, cens, terms)
    sizes = zo[~cens]["n_params"].nunique()
    if r.identified and "log_n" in terms and sizes < 2:
        # censored sizes on both sides of the one that reached give the likelihood a top, but only through
        # inequalities: a Wald interval on that is not one to print
        r = censored.Result(None, None, None, None, r.n_obs, r.n_censored, (
            "log_n not identified: one size only has a run that reached its target; the other sizes only bound "
            "the exponent",))
    base = dict(machine_id=machine_id, profile=profile, n_runs=len(zo), n_censored=int(cens.sum()),
                terms=tuple(terms), dof=len(zo) - len(terms), ranges=_ranges(zo), method=CENSORED)
    if not r.identified:
        return Fit(**base, estimate=(nan,) * len(terms), ci_lo=(nan,) * len(terms), ci_hi=(nan,) * len(terms),
                   residual_sd=None, k_formula=None, k_ci=None, loo_log_error=None, identified=False,
                   notes=tuple(notes + list(r.notes) + left_out))
    half = censored.Z95 * np.sqrt(np.diag(r.cov)) if r.cov is not None else np.full(len(terms), nan)
    rk = censored.fit(np.ones((len(zo), 1)), _log_k(zo, y), cens, ["log k"])
    k_half = censored.Z95 * math.sqrt(rk.cov[0, 0]) if rk.cov is not None else nan
    loo = []
    models = zo["model"].unique()
    if len(models) > 2 and "log_n" in terms:
        for m in models:
            tr = (zo["model"] != m).to_numpy()
            rm = censored.fit(X[tr], y[tr], cens[tr], terms)
            te = ~tr & ~cens
            if rm.identified and te.any():
                loo += list(np.abs(X[te] @ rm.beta - y[te]))
    return Fit(**base, estimate=tuple(map(float, r.beta)), ci_lo=tuple(map(float, r.beta - half)),
               ci_hi=tuple(map(float, r.beta + half)), residual_sd=r.sigma,
               k_formula=float(math.exp(rk.beta[0])) if rk.identified else None,
               k_ci=(math.exp(rk.beta[0] - k_half), math.exp(rk.beta[0] + k_half)) if k_half == k_half else None,
               loo_log_error=float(np.median(loo)) if loo else None, notes=tuple(notes + list(r.notes) + left_out),
               cov=tuple(map(tuple, r.cov)) if r.cov is not None else ())


def preferred(ols: Fit, cml: Fit) -> Fit:
    """The censored fit where it gives estimates with intervals and some run was censored, the OLS fit
    otherwise (with nothing censored the two agree, and OLS's t-intervals are the exact ones)."""
    return cml if cml.identified and cml.terms and cml.cov and cml.n_censored else ols


def best(tt: pd.DataFrame, machine_id: str | None = None, profile: str | None = None) -> Fit:
    return preferred(fit(tt, machine_id, profile), fit_censored(tt, machine_id, profile))


DOCUMENT = {"log_n": 0.5, "log_lr": -1.0}


def fit_table(f: Fit, used: bool = True) -> pd.DataFrame:
    """The fitted terms with their 95% intervals beside the document's (exponents of n and lr, k); `used`: the
    fit the predictions and verdicts take (preferred())."""
    common = {"machine_id": f.machine_id, "profile": f.profile, "method": f.method, "runs": f.n_runs,
              "censored": f.n_censored, "identified": f.identified, "used": used, "notes": "; ".join(f.notes)}
    rows = [{**common, "term": t, "estimate": e, "ci_lo": lo, "ci_hi": hi, "document": DOCUMENT.get(t)}
            for t, e, lo, hi in zip(f.terms, f.estimate, f.ci_lo, f.ci_hi)]
    if f.k_formula is not None:
        rows.append({**common, "term": "k (document's form)", "estimate": f.k_formula,
                     "ci_lo": f.k_ci[0] if f.k_ci else None, "ci_hi": f.k_ci[1] if f.k_ci else None,
                     "document": formulas.ITERATIONS_K})
    return pd.DataFrame(rows)
