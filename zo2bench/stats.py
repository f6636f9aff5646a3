"""The statistics zo2bench reports: summaries of repeated timings and comparisons of two samples.

    summarize([1.2, 1.1, 1.3])          # {"n", "median", "q1", "q3", "iqr", "min", "max", "mean", "stdev"}
    ratio_ci(new_times, old_times)      # {"ratio": median(new)/median(old), "low", "high", "confidence", ...}
    mann_whitney(new_times, old_times)  # {"u", "p", "z", "method"}: do the two samples differ?
    ratio_ci_welch(new_run_medians, old_run_medians)   # ratio of geometric means, Welch t interval on logs

Pure Python, no numpy or scipy, and deterministic: the bootstrap draws from a fixed seed. Benchmarks
repeat a handful of times and timings have long right tails (a GC pause, a page fault), so the
median and quartiles lead and comparisons of steps are rank-based or bootstrapped, not t-tests. Runs
(processes) differ from each other by more than their steps do; reduced to one median each, a handful
of runs per side is compared with Welch's t on the logarithms (ratio_ci_welch), whose interval widens
for few runs where a bootstrap over five runs cannot.
"""
from __future__ import annotations

import math
import random
from functools import cache


def _check(values, what: str = "values") -> list[float]:
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError(f"{what}: need at least one value, got an empty sequence")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"{what}: NaN or infinite value in {vals}")
    return vals


def quantile(values, q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default, R's type 7): q=0.5 is the median."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile q must be in [0, 1], got {q}")
    s = sorted(_check(values))
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median(values) -> float:
    return quantile(values, 0.5)


def geomean(values) -> float:
    vals = _check(values)
    if min(vals) <= 0:
        raise ValueError(f"geomean: values must be positive, got {min(vals)}")
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def summarize(values) -> dict:
    """n, median, q1, q3, iqr, min, max, mean, stdev (sample, n-1; None when n < 2)."""
    vals = _check(values)
    n = len(vals)
    mean = sum(vals) / n
    q1, q3 = quantile(vals, 0.25), quantile(vals, 0.75)
    stdev = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n >= 2 else None
    return {"n": n, "median": quantile(vals, 0.5), "q1": q1, "q3": q3, "iqr": q3 - q1,
            "min": min(vals), "max": max(vals), "mean": mean, "stdev": stdev}


def ratio_ci(a, b, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict:
    """median(a) / median(b) with a percentile-bootstrap confidence interval.

    Each sample is resampled with replacement on its own (the runs are independent, not paired).
    With one value per side the interval collapses to the ratio itself: report n, not just the CI.
    """
    a, b = _check(a, "a"), _check(b, "b")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mb = median(b)
    if mb == 0:
        raise ValueError("ratio_ci: median of b is 0, the ratio is undefined")
    rng = random.Random(seed)
    ratios = []
    for _ in range(n_boot):
        mb_star = median(rng.choices(b, k=len(b)))
        ma_star = median(rng.choices(a, k=len(a)))
        if mb_star != 0:
            ratios.append(ma_star / mb_star)
    tail = (1.0 - confidence) / 2
    return {"ratio": median(a) / mb, "low": quantile(ratios, tail), "high": quantile(ratios, 1.0 - tail),
            "confidence": confidence, "n_a": len(a), "n_b": len(b), "n_boot": n_boot, "seed": seed}


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny = 1e-300
    clamp = lambda v: v if abs(v) > tiny else tiny
    c, d = 1.0, 1.0 / clamp(1.0 - (a + b) * x / (a + 1.0))
    h = d
    for m in range(1, 1000):
        for aa in (m * (b - m) * x / ((a - 1.0 + 2 * m) * (a + 2 * m)),
                   -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 1.0 + 2 * m))):
            d = 1.0 / clamp(1.0 + aa * d)
            c = clamp(1.0 + aa / c)
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with df degrees of freedom (df may be fractional, as Welch's is)."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (bisection on t_sf: exact to ~1e-12, fast enough for a few hundred calls)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > 1.0 - p:
        hi *= 2.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_sf(mid, df) > 1.0 - p else (lo, mid)
    return (lo + hi) / 2


def ratio_ci_welch(a, b, confidence: float = 0.95) -> dict:
    """The ratio of the geometric means of a and b (positive values, e.g. each run's median step time),
    with Welch's t interval on the log scale and its two-sided p for "no change".

    For a few runs a side: a bootstrap over five runs cannot draw anything wider than the runs it has and
    is too sure of itself; the t distribution widens the interval for the few degrees of freedom there are.
    """
    a, b = _check(a, "a"), _check(b, "b")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"ratio_ci_welch: need at least two values a side, got {len(a)} and {len(b)}")
    if min(a + b) <= 0:
        raise ValueError("ratio_ci_welch: values must be positive (it works on their logarithms)")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    la, lb = [math.log(v) for v in a], [math.log(v) for v in b]
    ma, mb = sum(la) / len(la), sum(lb) / len(lb)
    wa = sum((v - ma) ** 2 for v in la) / (len(la) - 1) / len(la)  # squared standard error of each mean
    wb = sum((v - mb) ** 2 for v in lb) / (len(lb) - 1) / len(lb)
    diff, se = ma - mb, math.sqrt(wa + wb)
    out = {"ratio": math.exp(diff), "confidence": confidence, "n_a": len(a), "n_b": len(b)}
    if se == 0:  # every value alike on both sides: nothing to widen the interval with
        return {**out, "low": out["ratio"], "high": out["ratio"], "df": None, "p": 1.0 if diff == 0 else 0.0}
    df = (wa + wb) ** 2 / (wa ** 2 / (len(la) - 1) + wb ** 2 / (len(lb) - 1))  # Welch-Satterthwaite
    half = t_quantile(1.0 - (1.0 - confidence) / 2, df) * se
    return {**out, "low": math.exp(diff - half), "high": math.exp(diff + half), "df": df,
            "p": min(1.0, 2 * t_sf(abs(diff) / se, df))}


def _ranks(values: list[float]) -> tuple[list[float], list[int]]:
    """1-based ranks, ties sharing their mean rank, and the sizes of the tie groups."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


@cache
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """How many of the C(m+n, m) orderings give each U = 0..m*n (no ties)."""
    if m == 0 or n == 0:
        return (1,)
    # The largest of all m+n values is either an `a` (beating all n b's) or a `b` (beating none).
    with_a, with_b = _u_counts(m - 1, n), _u_counts(m, n - 1)
    out = [0] * (m * n + 1)
    for u, c in enumerate(with_a):
        out[u + n] += c
    for u, c in enumerate(with_b):
        out[u] += c
    return tuple(out)


EXACT_MAX_N = 20  # exact null distribution up to this size per side (and no ties); beyond, normal approx


def mann_whitney(a, b) -> dict:
    """Two-sided Mann-Whitney U test: is a value from `a` as likely to exceed one from `b` as not?

    u counts pairs with a > b (ties count half). p is exact for small samples without ties; otherwise
    the normal approximation with tie and continuity corrections (fine from about 8 per side).
    """
    a, b = _check(a, "a"), _check(b, "b")
    n1, n2 = len(a), len(b)
    ranks, ties = _ranks(a + b)
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    mu = n1 * n2 / 2
    n = n1 + n2
    tie_term = sum(t ** 3 - t for t in ties) / (n * (n - 1)) if n > 1 else 0.0
    var = n1 * n2 / 12 * ((n + 1) - tie_term)
    z = 0.0 if var <= 0 else (u - mu) / math.sqrt(var)
    if max(ties) == 1 and max(n1, n2) <= EXACT_MAX_N:
        counts = _u_counts(n1, n2)
        total = sum(counts)
        k = int(round(u))
        lower, upper = sum(counts[:k + 1]) / total, sum(counts[k:]) / total
        p, method = min(1.0, 2 * min(lower, upper)), "exact"
    elif var <= 0:  # every value equal: nothing tells the samples apart
        p, method = 1.0, "normal"
    else:
        zc = max(0.0, abs(u - mu) - 0.5) / math.sqrt(var)
        p, method = min(1.0, math.erfc(zc / math.sqrt(2))), "normal"
    return {"u": u, "p": p, "z": z, "n_a": n1, "n_b": n2, "method": method}


mann_whitney_u = mann_whitney
