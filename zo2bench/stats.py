"""The statistics zo2bench reports: summaries of repeated timings and comparisons of two samples.

    summarize([1.2, 1.1, 1.3])          # {"n", "median", "q1", "q3", "iqr", "min", "max", "mean", "stdev"}
    ratio_ci(new_times, old_times)      # {"ratio": median(new)/median(old), "low", "high", "confidence", ...}
    mann_whitney(new_times, old_times)  # {"u", "p", "z", "method"}: do the two samples differ?
    ratio_ci_runs([[...run 1 steps], [...run 2]], [[...], [...]])   # ratio_ci for steps grouped in runs

Pure Python, no numpy or scipy, and deterministic: the bootstrap draws from a fixed seed. Benchmarks
repeat a handful of times and timings have long right tails (a GC pause, a page fault), so the
median and quartiles lead and comparisons are rank-based or bootstrapped, not t-tests.
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


def _median_sorted(s: list[float]) -> float:
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def ratio_ci_runs(a_runs, b_runs, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict:
    """ratio_ci for values that come in runs (the steps of one process): a two-stage bootstrap.

    The steps of one process share its state (clocks, allocator, where its pages landed), so they are not
    independent draws, and a step-level bootstrap would be too sure of itself when runs differ. Each
    replicate draws the runs with replacement, then the values within each drawn run, and pools them.
    This is on the conservative side (the interval is if anything too wide). With one run per side it is
    the step-level bootstrap; with a few runs the interval stays about as wide as the runs disagree.
    "ratio" is the median of all of a's values over the median of all of b's.
    """
    a_runs = [_check(r, "a run") for r in a_runs]
    b_runs = [_check(r, "b run") for r in b_runs]
    if not a_runs or not b_runs:
        raise ValueError("ratio_ci_runs: need at least one run on each side")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mb = median([v for r in b_runs for v in r])
    if mb == 0:
        raise ValueError("ratio_ci_runs: median of b is 0, the ratio is undefined")
    rng = random.Random(seed)

    def draw(runs):
        pooled = []
        for run in rng.choices(runs, k=len(runs)):
            pooled += rng.choices(run, k=len(run))
        pooled.sort()
        return _median_sorted(pooled)

    ratios = []
    for _ in range(n_boot):
        ma_star, mb_star = draw(a_runs), draw(b_runs)
        if mb_star != 0:
            ratios.append(ma_star / mb_star)
    tail = (1.0 - confidence) / 2
    return {"ratio": median([v for r in a_runs for v in r]) / mb, "low": quantile(ratios, tail),
            "high": quantile(ratios, 1.0 - tail), "confidence": confidence, "runs_a": len(a_runs),
            "runs_b": len(b_runs), "n_a": sum(map(len, a_runs)), "n_b": sum(map(len, b_runs)),
            "n_boot": n_boot, "seed": seed}


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
