"""zo2bench.stats: values worked out by hand, and the edge cases."""
from __future__ import annotations

import itertools
import math

import pytest

from zo2bench.stats import (
    geomean,
    mann_whitney,
    median,
    quantile,
    ratio_ci,
    ratio_ci_welch,
    summarize,
    t_quantile,
    t_sf,
)


def test_summarize_even_count():
    # sorted 1 2 3 4: median (2+3)/2; q1 at position 0.75 -> 1 + 0.75; q3 at 2.25 -> 3 + 0.25
    s = summarize([4, 1, 3, 2])
    assert s == {"n": 4, "median": 2.5, "q1": 1.75, "q3": 3.25, "iqr": 1.5, "min": 1.0, "max": 4.0,
                 "mean": 2.5, "stdev": pytest.approx(math.sqrt(5 / 3))}


def test_summarize_odd_count():
    # sorted 1 2 3 4 100: q1 at position 1 -> 2, q3 at position 3 -> 4; the outlier moves the mean only
    s = summarize([3, 100, 1, 4, 2])
    assert (s["median"], s["q1"], s["q3"], s["iqr"]) == (3.0, 2.0, 4.0, 2.0)
    assert s["mean"] == 22.0 and s["max"] == 100.0


def test_summarize_one_value():
    s = summarize([0.5])
    assert s["n"] == 1 and s["median"] == s["q1"] == s["q3"] == s["min"] == s["max"] == s["mean"] == 0.5
    assert s["iqr"] == 0.0 and s["stdev"] is None


def test_empty_and_nan_raise_clearly():
    with pytest.raises(ValueError, match="at least one value"):
        summarize([])
    with pytest.raises(ValueError, match="NaN"):
        summarize([1.0, float("nan")])
    with pytest.raises(ValueError, match="at least one value"):
        mann_whitney([], [1.0])
    with pytest.raises(ValueError):
        quantile([1.0], 1.5)


def test_quantile_ends():
    assert quantile([5, 1, 3], 0.0) == 1.0 and quantile([5, 1, 3], 1.0) == 5.0 and median([5, 1, 3]) == 3.0


def test_mann_whitney_clearly_different():
    # no overlap, 5 vs 5: only 1 of C(10,5)=252 orderings is as extreme on each side -> p = 2/252
    r = mann_whitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert r["u"] == 0.0 and r["method"] == "exact"
    assert r["p"] == pytest.approx(2 / 252)
    assert mann_whitney([6, 7, 8, 9, 10], [1, 2, 3, 4, 5])["u"] == 25.0


def test_mann_whitney_identical_samples():
    r = mann_whitney([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])
    assert r["u"] == 12.5 and r["p"] == 1.0 and r["method"] == "normal"  # ties: normal approximation
    assert mann_whitney([3, 3, 3], [3, 3, 3])["p"] == 1.0


def test_mann_whitney_normal_approximation_large():
    a = [float(i) for i in range(30)]
    r = mann_whitney(a, [x + 100 for x in a])
    assert r["method"] == "normal" and r["u"] == 0.0 and r["p"] < 1e-9
    # z with continuity: (450 - 0.5) / sqrt(30*30*61/12) = 6.6530, two-sided p = erfc(z / sqrt 2)
    assert r["p"] == pytest.approx(math.erfc(449.5 / math.sqrt(900 * 61 / 12) / math.sqrt(2)))
    assert mann_whitney(a, [x + 0.5 for x in a])["p"] > 0.5


def test_mann_whitney_exact_against_enumeration():
    # every way to place 4 a's among 7 ranks is equally likely under the null; count those as extreme
    a, b = [1.0, 2.0, 5.0, 7.0], [3.0, 4.0, 6.0]
    u_obs = sum(x > y for x in a for y in b)  # 1 and 2 beat nothing, 5 beats 3 and 4, 7 beats all: 5
    us = [sum(x > y for x in pick for y in set(range(1, 8)) - set(pick))
          for pick in itertools.combinations(range(1, 8), 4)]
    p = 2 * min(sum(u <= u_obs for u in us), sum(u >= u_obs for u in us)) / len(us)
    r = mann_whitney(a, b)
    assert r["u"] == u_obs == 5 and r["method"] == "exact" and r["p"] == pytest.approx(min(1.0, p))


def test_ratio_ci_deterministic_and_brackets_ratio():
    new, old = [2.0, 2.1, 1.9, 2.05, 1.95], [1.0, 1.05, 0.95, 1.0, 0.98]
    r = ratio_ci(new, old)
    assert r == ratio_ci(new, old)  # fixed seed
    assert r["ratio"] == 2.0  # medians 2.0 and 1.0
    assert r["low"] <= r["ratio"] <= r["high"] and 1.7 < r["low"] and r["high"] < 2.3


def test_ratio_ci_edge_cases():
    one = ratio_ci([3.0], [1.5])
    assert one["ratio"] == one["low"] == one["high"] == 2.0
    with pytest.raises(ValueError, match="median of b is 0"):
        ratio_ci([1.0], [0.0])
    with pytest.raises(ValueError, match="at least one value"):
        ratio_ci([], [1.0])


def test_t_distribution_against_printed_tables():
    # Student's t tables: t(0.975; 1) = 12.706, t(0.975; 8) = 2.306, t(0.995; 4) = 4.604, t(0.975; 1000) = 1.962
    for p, df, t in ((0.975, 1, 12.706), (0.975, 8, 2.306), (0.995, 4, 4.604), (0.975, 1000, 1.962)):
        assert t_quantile(p, df) == pytest.approx(t, abs=5e-4)
        assert t_sf(t, df) == pytest.approx(1 - p, abs=2e-5)
    assert t_quantile(0.025, 8) == pytest.approx(-2.306, abs=5e-4) and t_sf(0.0, 3.5) == pytest.approx(0.5)
    assert t_sf(1.0, 1) == pytest.approx(0.25)  # Cauchy: P(T > 1) = 1/4 exactly


def test_ratio_ci_welch_worked_by_hand():
    # logs: a = {ln 2 + ln 1.1, ln 2 - ln 1.1}, b = {ln 1 +- ln 1.1}: equal spreads, so df = 2, and the
    # ratio of geometric means is exactly 2; se = sqrt(2 * (2 ln(1.1)^2 / 1) / 2) = sqrt(2) ln 1.1
    a, b = [2.2, 2 / 1.1], [1.1, 1 / 1.1]
    r = ratio_ci_welch(a, b, confidence=0.95)
    se = math.sqrt(2) * math.log(1.1)
    assert r["ratio"] == pytest.approx(2.0) and r["df"] == pytest.approx(2.0)
    assert r["low"] == pytest.approx(2 * math.exp(-4.303 * se), rel=1e-3)  # t(0.975; 2) = 4.303
    assert r["high"] == pytest.approx(2 * math.exp(4.303 * se), rel=1e-3)
    assert r["p"] == pytest.approx(2 * t_sf(math.log(2) / se, 2))


def test_ratio_ci_welch_edges():
    flat = ratio_ci_welch([3.0, 3.0], [1.0, 1.0])  # no spread at all: the interval collapses, p says "changed"
    assert flat["ratio"] == flat["low"] == flat["high"] == pytest.approx(3.0) and (flat["df"], flat["p"]) == (None, 0.0)
    with pytest.raises(ValueError, match="two values a side"):
        ratio_ci_welch([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        ratio_ci_welch([1.0, 0.0], [1.0, 2.0])
    wide = ratio_ci_welch([1.0, 1.5, 0.7], [1.0, 1.4, 0.8])
    assert wide["low"] < 1 < wide["high"] and wide["p"] > 0.5
    assert geomean([1, 4, 16]) == pytest.approx(4.0)
