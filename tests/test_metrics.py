"""McNemar and the paired bootstrap (engine.stats) on small cases computed by hand."""

import pytest

from softscope.engine.stats import mcnemar, paired_bootstrap


def _pairs(only_a: int, only_b: int, both: int = 1) -> tuple[list[int], list[int]]:
    return [1] * only_a + [0] * only_b + [1] * both, [0] * only_a + [1] * only_b + [1] * both


def test_mcnemar_hand_computed():
    assert mcnemar(*_pairs(0, 5))["p"] == pytest.approx(2 / 32)  # all 5 discordant pairs one way
    assert mcnemar(*_pairs(2, 8))["p"] == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert mcnemar(*_pairs(3, 3))["p"] == 1.0 and mcnemar(*_pairs(0, 0))["p"] == 1.0


def test_paired_bootstrap_counts_discordant_pairs():
    d = paired_bootstrap([1, 1, 0, 0], [1, 0, 0, 0], n_boot=2000)
    assert d["diff"] == 0.25 and d["n"] == 4
    assert d["ci95"][0] == 0.0  # no resample can make the difference negative; 0 is reached (the one pair left out)
