"""engine.stats against scipy and hand computations: Wilson, bootstrap, McNemar, paired bootstrap, correlations."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from softscope.engine import stats


@pytest.mark.parametrize("k,n", [(8, 10), (0, 10), (10, 10), (164, 200), (1, 3)])
def test_wilson_matches_scipy(k, n):
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert stats.wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_hand_value():
    # 8/10 at z = 1.959964: centre (0.8 + z²/20)/(1 + z²/10), half-width z*sqrt(0.016 + z²/400)/(1 + z²/10)
    assert stats.wilson_interval(8, 10) == pytest.approx((0.4901625, 0.9433178), abs=1e-6)


def test_accuracy_interval_and_interval_of():
    out = stats.accuracy_interval([1, 1, 0, 1, 1, 1, 1, 0, 1, 1])
    assert out["accuracy"] == 0.8 and out["n"] == 10 and out["interval"] == "wilson"
    assert out["ci95"] == pytest.approx([0.4901625, 0.9433178], abs=1e-6)
    assert stats.interval_of(0.8, 10) == out["ci95"]
    assert all(math.isnan(v) for v in stats.interval_of(float("nan"), 10))


def test_bootstrap_interval_equals_exact_enumeration():
    # n = 4: the bootstrap distribution of the mean has 4^4 equally likely resamples; with many draws the 2.5% and
    # 97.5% quantiles land on the exact ones (both levels sit well inside a jump of the distribution).
    v = [0.0, 1.0, 3.0, 10.0]
    means = sorted(np.mean(c) for c in itertools.product(v, repeat=4))
    lo, hi = means[int(0.025 * 256)], means[int(0.975 * 256)]
    assert (lo, hi) == (0.5, 7.75)   # P(X < 0.5) = 5/256, P(X <= 0.5) = 11/256; P(X < 7.75) = 247/256, <= 251/256
    assert stats.bootstrap_interval(v, n_boot=40000, seed=1) == pytest.approx((lo, hi), abs=1e-9)
    assert stats.bootstrap_interval([2.0] * 5) == (2.0, 2.0)


def test_mcnemar_exact_matches_binomial():
    a = [1] * 5 + [0] * 1 + [1] * 10 + [0] * 4   # A right/B wrong 5, A wrong/B right 1, agree 14
    b = [0] * 5 + [1] * 1 + [1] * 10 + [0] * 4
    out = stats.mcnemar(a, b)
    assert (out["a_only"], out["b_only"], out["n"]) == (5, 1, 20)
    assert out["p"] == pytest.approx(2 * (1 + 6) / 64)          # hand: 2 * P(X <= 1), X ~ Bin(6, 1/2)
    assert out["p"] == pytest.approx(sps.binomtest(1, 6, 0.5).pvalue)
    assert out["diff"] == pytest.approx(0.2)
    assert stats.mcnemar([1, 0], [1, 0])["p"] == 1.0
    with pytest.raises(ValueError):
        stats.mcnemar([1], [1, 0])


def test_paired_bootstrap_pinned_cases():
    same = stats.paired_bootstrap([0.1, 0.5, 0.9], [0.1, 0.5, 0.9])
    assert same["diff"] == 0 and same["ci95"] == [0, 0] and same["p"] == 1.0
    shift = stats.paired_bootstrap([1.5, 2.5, 3.5], [0.5, 1.5, 2.5], n_boot=999)
    # every difference is 1: each resample gives 1, none is |1| away from it -> p = 1/(999 + 1)
    assert shift["diff"] == 1.0 and shift["ci95"] == [1.0, 1.0] and shift["p"] == pytest.approx(1 / 1000)


def test_compare_paired_picks_the_test():
    assert stats.compare_paired([1, 0, 1], [0, 0, 1])["test"].startswith("McNemar")
    assert stats.compare_paired([0.5, 0.2], [0.1, 0.3])["test"] == "paired bootstrap"


def test_correlation_matches_scipy_and_bootstrap_bounds():
    x = [0.1, 0.4, 0.35, 0.8, 0.6, 0.9, 0.2]
    y = [1.0, 2.0, 2.5, 3.9, 3.0, 4.2, 0.5]
    c = stats.correlation(x, y)
    s, p = sps.spearmanr(x, y), sps.pearsonr(x, y)
    assert c["n"] == 7
    assert (c["spearman"], c["spearman_p"]) == pytest.approx((s.statistic, s.pvalue))
    assert (c["pearson"], c["pearson_p"]) == pytest.approx((p.statistic, p.pvalue))
    assert c["spearman_ci95"][0] <= c["spearman"] <= c["spearman_ci95"][1] <= 1.0
    mono = stats.correlation([1, 2, 3, 4, 5], [2, 4, 8, 16, 32])
    assert mono["spearman"] == pytest.approx(1.0) and mono["spearman_ci95"] == pytest.approx([1.0, 1.0])
    short = stats.correlation([1, 2], [3, 4])
    assert short["n"] == 2 and math.isnan(short["spearman"]) and all(map(math.isnan, short["spearman_ci95"]))


def test_formatting():
    assert stats.fmt_ci(0.8, [0.49016, 0.94332]) == "0.800 [0.490, 0.943]"
    assert stats.fmt_ci(float("nan"), [0, 1]) == "n/a"
    line = stats.fmt_paired({"diff": 0.2, "ci95": [0.05, 0.35], "test": "McNemar exact (paired)", "p": 0.21875,
                             "n": 20})
    assert line == "Δ = +0.200 [+0.050, +0.350], McNemar exact (paired), p = 0.219, n = 20"
