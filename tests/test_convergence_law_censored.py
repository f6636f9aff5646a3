"""Formula 4.1 fitted with the runs that never reached their target as right-censored observations: the
likelihood's derivatives, a likelihood without a maximum said so instead of given a number, a known law
recovered where least squares on the reached runs is biased, and the report's table with both fits."""
import contextlib
import io
import math

import numpy as np
import pandas as pd
import pytest
from synthetic_results import MACHINE, _fingerprint, write
from test_convergence import _row

from zo2bench import results
from zo2bench.analysis import censored
from zo2bench.analysis import convergence as cv
from zo2bench.analysis import convergence_law as law
from zo2bench.analysis import verdicts as V
from zo2bench.cli import main
from zo2bench.convergence import ladder

SERIES = "convergence_scaling"
def test_the_analytic_gradient_and_hessian_are_the_likelihoods():
    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(40), rng.normal(size=40), rng.normal(size=40)])
    y = X @ [1.0, 0.5, -1.0] + 0.3 * rng.normal(size=40)
    cens = y > 1.2
    y = np.where(cens, 1.2, y)
    theta, h = np.array([0.9, 0.4, -0.8, math.log(0.35)]), 1e-6
    nll, grad, H = censored._parts(theta, X, y, cens)
    step = lambda i, k: (censored._parts(theta + h * np.eye(4)[i], X, y, cens)[k]
                         - censored._parts(theta - h * np.eye(4)[i], X, y, cens)[k]) / (2 * h)
    assert cens.sum() > 5
    np.testing.assert_allclose(grad, [step(i, 0) for i in range(4)], atol=1e-6)
    np.testing.assert_allclose(H, np.array([step(i, 1) for i in range(4)]), atol=1e-5)

def test_a_likelihood_without_a_top_gives_no_numbers():
    """One reached run, a censored one beside it with a lower bound below it: sigma -> 0 pays without end."""
    X = np.column_stack([np.ones(3), [0.0, 1.0, 1.0]])
    r = censored.fit(X, [1.0, 2.0, 1.5], [False, False, True], ["c", "x"])
    assert not r.identified and "sigma goes to 0" in r.notes[0]
    r = censored.fit(X, [1.0, 2.0, 2.5], [False, False, True], ["c", "x"])    # the bound above the reached run
    assert r.identified and r.cov is not None and r.sigma > 0

def _law_frame(seed=0, budget=1000, sigma=0.5, seeds=24, sizes=6):
    """steps = 1e-4 x sqrt(n) / lr x exp(sigma e): every run evaluated to `budget` steps, censored beyond it
    (about 40% of them, most at the large sizes and small lrs)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, n in enumerate(np.geomspace(2.8e5, 8.5e7, sizes)):
        for lr in (1e-4, 3e-4, 1e-3):
            for s in range(seeds):
                step = math.ceil(1e-4 * math.sqrt(n) / lr * math.exp(sigma * rng.standard_normal()))
                rows.append({"machine_id": "m", "profile": "p", "model": f"m{i}", "task": "classification", "k": 16,
                             "lr": lr, "eps": 1e-3, "seed": s, "mode": "zo2", "n_params": int(n), "target": 0.81,
                             "reached": step <= budget, "steps_to_target": step if step <= budget else None,
                             "last_step": budget})
    return pd.DataFrame(rows)


def _term(f, term):
    i = f.terms.index(term)
    return f.estimate[i], f.ci_lo[i], f.ci_hi[i]


def test_the_censored_fit_recovers_the_law_that_least_squares_on_reached_runs_underestimates():
    tt = _law_frame()
    assert 0.3 < (~tt["reached"]).mean() < 0.5
    ols, ml = law.fit(tt), law.fit_censored(tt)
    assert ml.method == "censored-ml" and ml.identified and ml.n_runs == len(tt)
    assert ml.n_censored == ols.n_censored == int((~tt["reached"]).sum())
    for term, true in (("log_n", 0.5), ("log_lr", -1.0)):
        est, lo, hi = _term(ml, term)
        assert lo <= true <= hi and hi - lo < 0.2
    assert ml.residual_sd == pytest.approx(0.5, rel=0.15)
    assert ml.k_ci[0] <= 1e-4 <= ml.k_ci[1]
    # the slow runs are the censored ones, most at large n and small lr: least squares flattens both slopes
    a_ols, _, a_hi = _term(ols, "log_n")
    b_ols, b_lo, _ = _term(ols, "log_lr")
    assert a_ols < _term(ml, "log_n")[0] and a_hi < 0.5       # alpha low, its interval misses the truth
    assert b_ols > _term(ml, "log_lr")[0] and b_lo > -1.0     # beta towards 0
    assert law.preferred(ols, ml) is ml
    steps, lo, hi = ml.predict(1e8, 1e-4)
    assert lo < 1e-4 * math.sqrt(1e8) / 1e-4 < hi and lo < steps < hi


def test_with_nothing_censored_the_two_fits_agree_and_least_squares_is_kept():
    tt = _law_frame(budget=10 ** 9, seeds=3)
    ols, ml = law.fit(tt), law.fit_censored(tt)
    assert ml.n_censored == 0 and np.allclose(ols.estimate, ml.estimate)
    assert law.preferred(ols, ml) is ols   # its t-intervals are the exact ones


def test_all_censored_is_not_identified_and_says_so():
    tt = _law_frame(budget=1, seeds=2)
    assert not tt["reached"].any()
    ml = law.fit_censored(tt)
    assert not ml.identified and ml.predict(1e8, 1e-4) is None and ml.value("log_n") is None
    assert any("no run reached its target" in n for n in ml.notes)
    assert all(math.isnan(e) for e in ml.estimate) and ml.terms == ("const", "log_n", "log_lr")
    assert law.preferred(law.fit(tt), ml).method == "ols-reached"
    table = law.fit_table(ml)
    assert table["estimate"].isna().all() and not table["identified"].any()


def test_one_size_reaching_its_target_leaves_the_exponent_of_n_unidentified():
    """Only the smallest size reaches the target: the larger, censored ones say alpha is large, never how
    large: the likelihood keeps rising with alpha."""
    tt = _law_frame(sizes=3, seeds=4)
    tt = tt[(tt["model"] == "m0") | ~tt["reached"]]
    ml = law.fit_censored(tt)
    assert not ml.identified and ml.n_censored > 0
    assert any("keeps rising as" in n and "log_n grows" in n for n in ml.notes)
    # censored sizes on both sides of the one that reached: a top to the likelihood, but through inequalities only
    tt = _law_frame(sizes=3, seeds=4)
    small = tt["model"] == "m0"
    tt = pd.concat([tt[~small & ((tt["model"] == "m1") | ~tt["reached"])],
                    tt[small].assign(reached=False, steps_to_target=None, last_step=20)])
    assert law.fit_censored(tt[tt["model"] != "m0"]).notes != law.fit_censored(tt).notes
    ml = law.fit_censored(tt)
    assert not ml.identified and any("one size only has a run that reached" in n for n in ml.notes)

def _conv_rows(results_dir, budget):
    """zo2 reaches 0.81 (90% of fo-adamw's 0.9) at 1e-4 x sqrt(n) / lr steps (times a fixed scatter), and runs
    out of steps at `budget` before that on the largest size at the smaller lr."""
    f = results_dir / SERIES / MACHINE / "20260101T020000Z.jsonl"
    rng = np.random.default_rng(1)
    for model in ("ladder-64x2", "ladder-256x6", "ladder-768x12"):
        n = ladder.get(model).n_params()
        for seed in (0, 1):
            rows = [_row(model, "fo-adamw", lr, seed, _rise(50, 100, 0.01), 0.9) for lr in (1e-4, 1e-3)]
            for lr in (1e-4, 1e-3):
                reach = max(2, round(1e-4 * math.sqrt(n) / lr * math.exp(0.15 * rng.standard_normal())))
                rows.append(_row(model, "zo2", lr, seed, _rise(reach, min(budget, 2 * reach), 1e-3), 0.85, 1e-3))
            for r in rows:
                r.update(series=SERIES, machine_id=MACHINE, key=r["key"].replace("conv:", f"{SERIES}:"),
                         fingerprint=_fingerprint())
                results.append_row(f, r)


def _rise(reach, last, seconds_per_step):
    """Dev accuracy from 0.5, crossing 0.81 at step `reach`, evaluated at 0, reach - 1, reach and `last`."""
    v = lambda s: 0.5 + 0.31 * s / reach if s <= reach else min(0.9, 0.81 + 0.09 * (s - reach) / reach)
    return [{"step": s, "train_s": s * seconds_per_step, "energy_j": None, "accuracy": v(s)}
            for s in sorted({0, min(reach - 1, last), min(reach, last), last})]


def _render(root):
    out, err = root / "reports", io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["report", "--results", str(root / "results"), "--out", str(out)]) == 0, err.getvalue()
    return (out / f"{SERIES}.md").read_text(), out


def test_the_report_shows_the_censored_fit_beside_least_squares(tmp_path):
    write(tmp_path / "results", grid=False)
    _conv_rows(tmp_path / "results", budget=3000)
    t = cv.tables(tmp_path / "results")
    tt = law.zo_runs(t["to_target"])
    assert (~tt["reached"]).sum() == 2 and set(tt[~tt["reached"]]["last_step"]) == {3000}
    md, out = _render(tmp_path)
    fit = md.split("formula 4.1 fitted")[1].split("The fitted law at")[0]
    assert "| log_n | censored-ml | 0.5" in fit and "| log_n | ols-reached |" in fit
    assert "| 12 | 2 |" in fit and "| 10 | 2 |" in fit           # runs and censored, per method
    assert "The predictions, the figure and the verdicts use censored-ml." in fit
    assert (out / "figures" / f"{SERIES}-{MACHINE}-gpu-law.svg").is_file()
    assert "not reached by the last step" in (out / "figures" / f"{SERIES}-{MACHINE}-gpu-law.svg").read_text()
    k = next(v for v in t["verdict_list"] if v.claim_id == "002-4.1-k")
    assert k.verdict == V.FAILS and "12 zo runs, 2 censored, censored-ml" in k.measured[0].cell


def test_the_report_says_not_identified_when_no_run_reached(tmp_path):
    write(tmp_path / "results", grid=False)
    _conv_rows(tmp_path / "results", budget=1)
    md, _ = _render(tmp_path)
    fit = md.split("formula 4.1 fitted")[1].split("##")[0]
    assert "No fit: fewer than two zeroth-order runs reached" in fit
    assert "| log_n | censored-ml | not identified | – | 0.5 | 12 | 12 |" in fit
    assert "no run reached its target" in fit
    t = cv.tables(tmp_path / "results")
    assert t["verdicts"].set_index("claim_id").loc["002-4.1-k", "verdict"] == V.UNTESTED
