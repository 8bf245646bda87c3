"""Intervals and paired tests on per-example correctness, against hand-computed values."""

import pytest


def test_wilson_interval_and_mcnemar_hand_computed():
    from softscope.engine.metrics import mcnemar_exact, wilson_interval

    lo, hi = wilson_interval(8, 10)  # the textbook 8/10 case
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)  # all 5 discordant pairs one way
    assert mcnemar_exact(2, 8) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0


def test_paired_difference_counts_discordant_pairs():
    from softscope.engine.metrics import paired_difference

    d = paired_difference([True, True, False, False], [True, False, False, False], n_boot=2000)
    assert d["diff"] == 0.25 and (d["only_first"], d["only_second"]) == (1, 0) and d["mcnemar_p"] == 1.0
    assert d["ci95"][0] <= 0.25 <= d["ci95"][1] and d["ci95"][0] >= 0.0  # no resample can make the difference negative
