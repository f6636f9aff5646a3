"""Normal linear regression with right-censored observations (a Tobit model), fitted by maximum likelihood.

    r = censored.fit(X, y, cens)   # y: the observed value, or the last value seen where cens is True
    r.identified, r.beta, r.cov, r.sigma, r.loglik, r.notes, r.runs_off

y_i = x_i·b + sigma·e_i, e_i ~ N(0, 1). An observed y_i contributes the normal density; a censored one,
known only to exceed y_i, contributes P(y > y_i) = 1 - Phi((y_i - x_i·b) / sigma). The optimum is sought
over (b, log sigma) from least squares on the observed rows, with the analytic gradient and Hessian; the 95%
Wald intervals come from the inverse Hessian of the negative log-likelihood at the optimum.

Whether there is an optimum at all is decided first, exactly, by two linear programs (the Tobit likelihood
is concave in Olsen's parameters b/sigma, 1/sigma, so it has a maximum unless it keeps rising along a ray):
- b runs off along d when X_obs·d = 0 and X_cens·d >= 0, one > 0: the observed rows do not see the move,
  and every censored row becomes a surer "not yet": only bounds from below (or above) on those terms;
- sigma runs to 0 when some b fits every observed row exactly and lies at or above every censored one.
Either way no estimate is given (its number would be wherever the optimizer stopped); the notes say which
terms run off and which way. A singular or ill-conditioned Hessian, or an optimizer that did not converge,
gives an estimate but no intervals rather than wrong ones. The notes speak of runs, as the convergence fit
reads the rows: an observed row is a run that reached its target, a censored one a run that had not by its
last evaluation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
MAX_COND = 1e10       # of the Hessian scaled to unit diagonal: beyond it the inverse is noise


@dataclass(frozen=True)
class Result:
    beta: np.ndarray | None       # None where not identified
    cov: np.ndarray | None        # of beta (sigma profiled in through the full Hessian); None: no intervals
    sigma: float | None
    loglik: float | None
    n_obs: int
    n_censored: int
    notes: tuple[str, ...] = ()
    runs_off: dict | None = None  # term -> "up", "down" or "either": the likelihood rises without end that way

    @property
    def identified(self) -> bool:
        return self.beta is not None


def _parts(theta, X, y, cens, hess=True):
    """Negative log-likelihood, its gradient and (optionally) Hessian in (b, s = log sigma)."""
    from scipy.special import log_ndtr

    b, s = theta[:-1], theta[-1]
    sigma = math.exp(s)
    z = (y - X @ b) / sigma
    obs = ~cens
    logsurv = log_ndtr(-z[cens])
    nll = float(np.sum(0.5 * z[obs] ** 2 + LOG_SQRT_2PI + s) - np.sum(logsurv))
    # d nll / dz per row, and d2 nll / dz2: z and 1 where observed; the hazard lam and lam (lam - z) where censored
    g1, g2 = np.where(obs, z, 0.0), np.where(obs, 1.0, 0.0)
    lam = np.exp(-0.5 * z[cens] ** 2 - LOG_SQRT_2PI - logsurv)
    g1[cens], g2[cens] = lam, lam * (lam - z[cens])
    grad = np.append(-X.T @ g1 / sigma, np.sum(obs) - np.sum(g1 * z))
    if not hess:
        return nll, grad
    H = np.empty((len(theta), len(theta)))
    H[:-1, :-1] = (X * g2[:, None]).T @ X / sigma ** 2
    H[:-1, -1] = H[-1, :-1] = X.T @ (g2 * z + g1) / sigma
    H[-1, -1] = float(np.sum(g2 * z ** 2 + g1 * z))
    return nll, grad, H


def _runs_off(X, cens, names) -> dict:
    """Per term, the ways b can move forever raising the likelihood (X_obs·d = 0, X_cens·d >= 0, one > 0)."""
    from scipy.optimize import linprog

    Xo, Xc = X[~cens], X[cens]
    p = X.shape[1]
    A_eq = np.vstack([Xo, Xc.sum(0)]) if len(Xo) else Xc.sum(0)[None, :]
    b_eq = np.append(np.zeros(len(Xo)), 1.0)
    kw = dict(A_ub=-Xc if len(Xc) else None, b_ub=np.zeros(len(Xc)) if len(Xc) else None, A_eq=A_eq, b_eq=b_eq,
              bounds=[(-1e6, 1e6)] * p, method="highs")
    if not len(Xc) or linprog(np.zeros(p), **kw).status != 0:
        return {}
    out = {}
    for j, name in enumerate(names):
        ways = [w for w, sign in (("up", -1.0), ("down", 1.0))
                if (r := linprog(sign * np.eye(p)[j], **kw)).status == 0 and -sign * r.x[j] > 1e-7]
        if ways:
            out[name] = ways[0] if len(ways) == 1 else "either"
    return out


def _sigma_to_zero(X, y, cens) -> bool:
    """Some b fits every observed row exactly and lies at or above every censored one: sigma -> 0 pays."""
    from scipy.optimize import linprog

    Xo, Xc = X[~cens], X[cens]
    r = linprog(np.zeros(X.shape[1]), A_ub=-Xc if len(Xc) else None, b_ub=-y[cens] if len(Xc) else None,
                A_eq=Xo, b_eq=y[~cens], bounds=[(None, None)] * X.shape[1], method="highs")
    return r.status == 0


def fit(X, y, cens, names=None) -> Result:
    from scipy.optimize import minimize

    X, y, cens = np.asarray(X, float), np.asarray(y, float), np.asarray(cens, bool)
    n, p = X.shape
    names = list(names or [f"x{j}" for j in range(p)])
    n_obs, n_cens = int((~cens).sum()), int(cens.sum())
    none = lambda *notes, runs_off=None: Result(None, None, None, None, n_obs, n_cens, tuple(notes), runs_off)
    if n_obs == 0:
        return none("not identified: no run reached its target, so every run gives only a lower bound")
    if np.linalg.matrix_rank(X) < p:
        return none("not identified: the terms are collinear over these runs")
    scale = np.sqrt((X ** 2).mean(0))  # unit-RMS columns: the LPs' tolerance and the Hessian's condition are scale-free
    Xs = X / scale
    off = _runs_off(Xs, cens, names)
    if off:
        ways = {"up": "grows", "down": "falls", "either": "moves"}
        # the intercept moves with any slope that runs off: naming it too says nothing
        flat = {t for j, t in enumerate(names) if np.ptp(X[:, j]) == 0}
        named = {t: w for t, w in off.items() if t not in flat} or off
        return none("not identified: the likelihood keeps rising as "
                    + ", as ".join(f"{t} {ways[w]}" for t, w in named.items())
                    + " (the censored runs bound these from one side only)", runs_off=off)
    if _sigma_to_zero(Xs, y, cens):
        return none(f"not identified: the {n_obs} reached run(s) are fitted exactly and every censored run is "
                    "consistent with that, so the likelihood grows without end as sigma goes to 0")
    Xo = Xs[~cens]
    b0, *_ = np.linalg.lstsq(Xo if n_obs >= p else Xs, y[~cens] if n_obs >= p else y, rcond=None)
    r0 = y[~cens] - Xo @ b0
    s0 = math.log(max(float(np.sqrt(np.mean(r0 ** 2))), 1e-3 * (float(np.std(y)) or 1.0)))
    f = lambda th: _parts(th, Xs, y, cens, hess=False)
    opt = minimize(f, np.append(b0, s0), jac=True, method="trust-exact",
                   hess=lambda th: _parts(th, Xs, y, cens)[2], options={"gtol": 1e-9, "maxiter": 500})
    nll, grad, H = _parts(opt.x, Xs, y, cens)
    notes = []
    beta_s, sigma = opt.x[:-1], math.exp(opt.x[-1])
    beta = beta_s / scale
    if not opt.success and np.abs(grad).max() > 1e-5:
        notes.append(f"the optimizer stopped short ({opt.message}): no intervals")
        return Result(beta, None, sigma, -nll, n_obs, n_cens, tuple(notes))
    d = np.sqrt(np.abs(np.diag(H)))
    try:
        np.linalg.cholesky(H)
        cond = np.linalg.cond(H / np.outer(d, d))
    except np.linalg.LinAlgError:
        cond = math.inf
    if not cond < MAX_COND:
        notes.append("the Hessian is singular or near it (condition "
                     f"{cond:.2g} after scaling): an estimate but no intervals")
        return Result(beta, None, sigma, -nll, n_obs, n_cens, tuple(notes))
    cov = np.linalg.inv(H)[:-1, :-1] / np.outer(scale, scale)
    return Result(beta, cov, sigma, -nll, n_obs, n_cens, tuple(notes))
