"""The right-censored normal regression (analysis/censored.py): its derivatives, and a likelihood without a
maximum said so instead of given a number."""
import math

import numpy as np

from zo2bench.analysis import censored


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
