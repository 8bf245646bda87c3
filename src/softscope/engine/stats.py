"""Uncertainty for every reported figure: intervals on accuracies, paired tests between two prompts scored on the
same examples, and correlations with p-values and bootstrap intervals.

One copy of each: train, eval, wayward, pez, rlprompt, interpret, describe and the benchmarks call these, so a
figure and its interval are computed the same way everywhere. Two-sided, 95% unless told otherwise.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Callable, Sequence

import numpy as np

LEVEL = 0.95
N_BOOT = 2000


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2)


# ---- one proportion -----------------------------------------------------------------------------------------
def wilson_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (stays inside [0, 1], honest at 0/n and n/n)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    z = _z(level)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy_interval(correct: Sequence[float], level: float = LEVEL) -> dict:
    """Accuracy of a 0/1 sequence with its Wilson interval: {"accuracy", "n", "ci95": [lo, hi], "interval"}."""
    n = len(correct)
    k = int(round(sum(float(c) for c in correct)))
    return {"accuracy": k / n if n else float("nan"), "n": n, "ci95": list(wilson_interval(k, n, level)),
            "interval": "wilson"}


def interval_of(accuracy: float, n: int, level: float = LEVEL) -> list[float]:
    """Wilson interval of an accuracy already computed on n examples (k = round(accuracy * n))."""
    if n <= 0 or accuracy is None or not math.isfinite(accuracy):
        return [float("nan"), float("nan")]
    return list(wilson_interval(int(round(accuracy * n)), n, level))


# ---- bootstrap ----------------------------------------------------------------------------------------------
def bootstrap_interval(values: Sequence[float], statistic: Callable = np.mean, n_boot: int = N_BOOT,
                       level: float = LEVEL, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of statistic(values): resample the examples with replacement n_boot times."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    stats = np.array([statistic(v[i]) for i in idx], dtype=float)
    a = (1 - level) / 2
    return (float(np.quantile(stats, a)), float(np.quantile(stats, 1 - a)))


# ---- two prompts on the same examples -----------------------------------------------------------------------
def mcnemar(a_correct: Sequence[float], b_correct: Sequence[float]) -> dict:
    """Exact McNemar test (two-sided binomial on the discordant pairs) of two 0/1 scorings of the same examples.

    a_only counts examples A got right and B wrong; b_only the reverse. p = 1 when no pair is discordant.
    """
    if len(a_correct) != len(b_correct):
        raise ValueError("paired test needs the same examples for both prompts")
    a = [bool(round(float(x))) for x in a_correct]
    b = [bool(round(float(x))) for x in b_correct]
    a_only = sum(x and not y for x, y in zip(a, b))
    b_only = sum(y and not x for x, y in zip(a, b))
    m = a_only + b_only
    if m == 0:
        p = 1.0
    else:
        tail = sum(math.comb(m, i) for i in range(min(a_only, b_only) + 1)) / 2 ** m
        p = min(1.0, 2 * tail)
    n = len(a)
    return {"test": "McNemar exact (paired)", "n": n, "a_only": a_only, "b_only": b_only,
            "diff": (sum(a) - sum(b)) / n if n else float("nan"), "p": p}


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n_boot: int = N_BOOT, level: float = LEVEL,
                     seed: int = 0) -> dict:
    """Paired bootstrap of mean(a) - mean(b) over the same examples: the difference, its percentile interval and a
    two-sided p (share of resampled differences at least |diff| away from diff, the shift method; +1 smoothed)."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError("paired test needs the same examples for both prompts")
    d = x - y
    diff = float(d.mean()) if d.size else float("nan")
    if d.size == 0:
        return {"test": "paired bootstrap", "n": 0, "diff": diff, "ci95": [diff, diff], "p": float("nan")}
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    al = (1 - level) / 2
    p = (int(np.sum(np.abs(boots - diff) >= abs(diff) - 1e-12)) + 1) / (n_boot + 1)
    return {"test": "paired bootstrap", "n": int(d.size), "diff": diff,
            "ci95": [float(np.quantile(boots, al)), float(np.quantile(boots, 1 - al))], "p": min(1.0, p)}


def compare_paired(a: Sequence[float], b: Sequence[float], seed: int = 0) -> dict:
    """The paired comparison to report: McNemar for 0/1 scores, paired bootstrap for anything else (F1, scores).
    Both carry a bootstrap interval on the difference."""
    binary = all(float(v) in (0.0, 1.0) for v in list(a) + list(b))
    out = mcnemar(a, b) if binary else paired_bootstrap(a, b, seed=seed)
    if binary:
        out["ci95"] = paired_bootstrap(a, b, seed=seed)["ci95"]
    return out


def _rowwise_r(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    u = u - u.mean(axis=1, keepdims=True)
    v = v - v.mean(axis=1, keepdims=True)
    return (u * v).sum(axis=1) / np.sqrt((u * u).sum(axis=1) * (v * v).sum(axis=1))


# ---- correlations -------------------------------------------------------------------------------------------
def correlation(x: Sequence[float], y: Sequence[float], n_boot: int = N_BOOT, level: float = LEVEL,
                seed: int = 0) -> dict:
    """Spearman and Pearson with p-values and percentile-bootstrap intervals (pairs resampled; resamples with a
    constant side are skipped). NaN where undefined (constant input or < 3 points)."""
    from scipy import stats

    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None and not (math.isnan(a) or math.isnan(b))]
    nan = float("nan")
    out = {"n": len(pairs), "spearman": nan, "spearman_p": nan, "spearman_ci95": [nan, nan], "pearson": nan,
           "pearson_p": nan, "pearson_ci95": [nan, nan]}
    if len(pairs) < 3:
        return out
    a, b = (np.asarray(v, dtype=float) for v in zip(*pairs))
    if len(set(a)) < 2 or len(set(b)) < 2:
        return out
    s = stats.spearmanr(a, b)
    p = stats.pearsonr(a, b)
    out.update(spearman=float(s.statistic), spearman_p=float(s.pvalue), pearson=float(p.statistic),
               pearson_p=float(p.pvalue))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    xa, yb = a[idx], b[idx]
    keep = (np.ptp(xa, axis=1) > 0) & (np.ptp(yb, axis=1) > 0)
    if keep.any():
        xa, yb = xa[keep], yb[keep]
        al = (1 - level) / 2
        for name, (u, v) in (("pearson", (xa, yb)),
                             ("spearman", (stats.rankdata(xa, axis=1), stats.rankdata(yb, axis=1)))):
            r = _rowwise_r(u, v)
            out[f"{name}_ci95"] = [float(np.quantile(r, al)), float(np.quantile(r, 1 - al))]
    return out


# ---- formatting ---------------------------------------------------------------------------------------------
def fmt_ci(value: float, ci: Sequence[float] | None, digits: int = 3) -> str:
    """'0.820 [0.766, 0.864]': a figure with its 95% interval; 'n/a' for a missing value."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if not ci or any(c is None or not math.isfinite(c) for c in ci):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def fmt_paired(result: dict, digits: int = 3) -> str:
    """One line for a paired comparison: difference, interval, test name and p."""
    return (f"Δ = {result['diff']:+.{digits}f} [{result['ci95'][0]:+.{digits}f}, {result['ci95'][1]:+.{digits}f}], "
            f"{result['test']}, p = {result['p']:.3g}, n = {result['n']}")
