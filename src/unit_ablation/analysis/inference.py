"""Statistical tests behind the verdicts: across-network t-tests, Holm, TOST, pooled correlations.

Torch-free and pandas-free: plain NumPy/SciPy on arrays, each function checked against scipy or
hand-worked values in `tests/unit/analysis/test_inference.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Estimate:
    """An estimate with its two-sided `level` confidence interval, standard error and test.

    `p_value` tests estimate == 0 (two-sided); `df` is the degrees of freedom of a t-based
    interval (inf for a normal one); `n` counts the replicates it rests on.
    """

    estimate: float
    ci_low: float
    ci_high: float
    se: float
    p_value: float
    df: float
    n: int
    level: float = 0.95

    def interval(self, level: float) -> tuple[float, float]:
        """The two-sided interval of another `level` from the same estimate, SE and df."""
        if not np.isfinite(self.se):
            return float("nan"), float("nan")
        quantile = _quantile(1 - (1 - level) / 2, self.df)
        return self.estimate - quantile * self.se, self.estimate + quantile * self.se


def _quantile(q: float, df: float) -> float:
    return float(stats.norm.ppf(q) if not np.isfinite(df) else stats.t.ppf(q, df))


def _nan_estimate(estimate: float, n: int, level: float) -> Estimate:
    nan = float("nan")
    return Estimate(estimate, nan, nan, nan, nan, nan, n, level)


def _t_estimate(estimate: float, se: float, df: float, n: int, level: float) -> Estimate:
    if not (np.isfinite(se) and se > 0 and df > 0):
        return _nan_estimate(estimate, n, level)
    quantile = _quantile(1 - (1 - level) / 2, df)
    p_value = (
        float(2 * stats.t.sf(abs(estimate) / se, df))
        if np.isfinite(df)
        else float(2 * stats.norm.sf(abs(estimate) / se))
    )
    return Estimate(estimate, estimate - quantile * se, estimate + quantile * se, se, p_value, df, n, level)


def welch_difference(changed: np.ndarray, reference: np.ndarray, level: float = 0.95) -> Estimate:
    """mean(changed) - mean(reference) with Welch's t interval and two-sided p (unequal variances).

    n is the total number of replicates; the SE is undefined (NaN) with fewer than 2 per group.
    """
    a, b = np.asarray(changed, dtype=float), np.asarray(reference, dtype=float)
    difference = float(a.mean() - b.mean()) if len(a) and len(b) else float("nan")
    if len(a) < 2 or len(b) < 2:
        return _nan_estimate(difference, len(a) + len(b), level)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    if se == 0:
        return _nan_estimate(difference, len(a) + len(b), level)
    df = float((va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)))
    return _t_estimate(difference, se, df, len(a) + len(b), level)


def paired_difference(differences: np.ndarray, level: float = 0.95) -> Estimate:
    """Mean of within-replicate differences with a one-sample t interval and two-sided p."""
    d = np.asarray(differences, dtype=float)
    mean = float(d.mean()) if len(d) else float("nan")
    if len(d) < 2:
        return _nan_estimate(mean, len(d), level)
    return _t_estimate(mean, float(d.std(ddof=1) / np.sqrt(len(d))), len(d) - 1.0, len(d), level)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the input order; NaN stays NaN."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if not len(finite):
        return adjusted
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    running = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted[order] = np.minimum(running, 1.0)
    return adjusted


def min_detectable_effect(se: float, df: float, alpha: float, power: float = 0.8) -> float:
    """The smallest true difference a two-sided level-`alpha` test detects with `power`,
    (t_{1-alpha/2} + t_{power}) * SE: the normal-approximation formula with t quantiles."""
    if not (np.isfinite(se) and se > 0):
        return float("nan")
    return float((_quantile(1 - alpha / 2, df) + _quantile(power, df)) * se)


def interval_verdict(low: float, high: float, margin: float) -> str:
    """Where a (1 - 2 alpha) interval lies against the equivalence region [-margin, margin]:
    'inside' (TOST rejects both one-sided nulls), 'outside' (the interval excludes the region's
    nearer bound: the effect is at least `margin`), or 'undecided'."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "undecided"
    if -margin < low and high < margin:
        return "inside"
    if low >= margin or high <= -margin:
        return "outside"
    return "undecided"


def spearman_z_se(rho: float, n: int) -> float:
    """Bonett-Wright (2000) standard error of atanh(Spearman rho): sqrt((1 + rho^2 / 2) / (n - 3))."""
    if n <= 3 or not np.isfinite(rho):
        return float("nan")
    return float(np.sqrt((1 + rho**2 / 2) / (n - 3)))


def fisher_z(rho: np.ndarray | float) -> np.ndarray | float:
    """atanh, clipped so that |rho| = 1 stays finite."""
    return np.arctanh(np.clip(rho, -0.999999, 0.999999))


def _dersimonian_laird(x: np.ndarray, se: np.ndarray) -> tuple[float, float, int]:
    """Random-effects (DerSimonian-Laird) mean and its SE, over the finite estimates."""
    keep = np.isfinite(x) & np.isfinite(se) & (se > 0)
    x, se = x[keep], se[keep]
    if not len(x):
        return float("nan"), float("nan"), 0
    w = 1 / se**2
    fixed = float((w * x).sum() / w.sum())
    tau2 = 0.0
    if len(x) > 1:
        q = float((w * (x - fixed) ** 2).sum())
        c = float(w.sum() - (w**2).sum() / w.sum())
        tau2 = max(0.0, (q - (len(x) - 1)) / c) if c > 0 else 0.0
    w_star = 1 / (se**2 + tau2)
    return float((w_star * x).sum() / w_star.sum()), float(np.sqrt(1 / w_star.sum())), len(x)


def pool_correlations(rhos: np.ndarray, z_ses: np.ndarray, level: float = 0.90) -> Estimate:
    """Random-effects (DerSimonian-Laird) pooled correlation over replicates on the Fisher z scale.

    Each replicate contributes atanh(rho) with its SE; the between-replicate variance tau^2 is
    added to each SE before the inverse-variance mean. The interval is normal on the z scale and
    back-transformed (tanh); `se` and `p_value` are on the z scale.
    """
    pooled, se, n = _dersimonian_laird(
        fisher_z(np.asarray(rhos, dtype=float)), np.asarray(z_ses, dtype=float)
    )
    if not n:
        return _nan_estimate(float("nan"), 0, level)
    quantile = float(stats.norm.ppf(1 - (1 - level) / 2))
    return Estimate(
        float(np.tanh(pooled)),
        float(np.tanh(pooled - quantile * se)),
        float(np.tanh(pooled + quantile * se)),
        se,
        float(2 * stats.norm.sf(abs(pooled) / se)),
        float("inf"),
        n,
        level,
    )


def pool_normal(estimates: np.ndarray, ses: np.ndarray, level: float = 0.95) -> Estimate:
    """Random-effects (DerSimonian-Laird) pooled mean of per-replicate normal estimates."""
    pooled, se, n = _dersimonian_laird(np.asarray(estimates, dtype=float), np.asarray(ses, dtype=float))
    if not n:
        return _nan_estimate(float("nan"), 0, level)
    return _t_estimate(pooled, se, float("inf"), n, level)


def fisher_combined_p(p_values: np.ndarray) -> float:
    """Fisher's method: -2 sum log p ~ chi^2 with 2k degrees of freedom (independent replicates)."""
    p = np.asarray(p_values, dtype=float)
    p = p[np.isfinite(p)]
    if not len(p):
        return float("nan")
    return float(stats.chi2.sf(-2 * np.log(np.clip(p, 1e-300, 1)).sum(), 2 * len(p)))


def hodges_lehmann(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """The Hodges-Lehmann location estimate (median of the Walsh averages) with its
    distribution-free interval from the Wilcoxon signed-rank distribution (normal approximation
    of the critical rank for n > 25, exact below). Unlike a percentile bootstrap of the median it
    does not collapse to a point on quantised data."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    i, j = np.triu_indices(n)
    walsh = np.sort((x[i] + x[j]) / 2)
    estimate = float(np.median(walsh))
    if n < 2:
        return estimate, float("nan"), float("nan")
    m = len(walsh)
    tail = (1 - level) / 2
    if n <= 25:
        # exact null distribution of the signed-rank statistic: subsets of ranks 1..n by their sum
        counts = np.zeros(m + 1)
        counts[0] = 1
        for rank in range(1, n + 1):
            counts[rank:] = counts[rank:] + counts[: m + 1 - rank]
        cdf = np.cumsum(counts) / 2**n
        c = int(np.searchsorted(cdf, tail, side="right"))  # the largest c with P(W <= c - 1) <= tail
    else:
        mean, sd = n * (n + 1) / 4, np.sqrt(n * (n + 1) * (2 * n + 1) / 24)
        c = int(np.floor(mean - stats.norm.ppf(1 - tail) * sd))
    c = max(0, min(c, m // 2))
    if c == 0:
        return estimate, float(walsh[0]), float(walsh[-1])
    return estimate, float(walsh[c - 1]), float(walsh[m - c])


def binomial_drop_interval(
    broken: np.ndarray, fixed: np.ndarray, n: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Exact interval of a paired accuracy drop (points), 100 (broken - fixed) / n, conditional on
    the discordant count m = broken + fixed: Clopper-Pearson on broken ~ Binomial(m, pi), mapped
    by drop = 100 m (2 pi - 1) / n. No discordant image: [0, 0]."""
    broken, fixed, n = (np.asarray(a, dtype=float) for a in (broken, fixed, n))
    m = broken + fixed
    tail = (1 - level) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        low_pi = np.where(broken > 0, stats.beta.ppf(tail, broken, fixed + 1), 0.0)
        high_pi = np.where(fixed > 0, stats.beta.ppf(1 - tail, broken + 1, fixed), 1.0)
        low = np.where(m > 0, 100 * m * (2 * np.nan_to_num(low_pi) - 1) / n, 0.0)
        high = np.where(m > 0, 100 * m * (2 * np.nan_to_num(high_pi, nan=1.0) - 1) / n, 0.0)
    return low, high


def spearman_brown(r: float) -> float:
    """Reliability of the whole from the correlation r of its two halves: 2 r / (1 + r)."""
    if not np.isfinite(r) or r <= -1:
        return float("nan")
    return float(2 * r / (1 + r))
