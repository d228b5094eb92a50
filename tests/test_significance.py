"""The paired t-test and the corrections, checked against scipy and hand-worked examples."""

import math

import numpy as np
import pytest
from scipy import stats

from optical_clir.evaluation.significance import (
    bonferroni,
    correct,
    holm,
    paired_randomization_test,
    paired_ttest,
    win_tie_loss,
)


@pytest.mark.parametrize("n", [2, 3, 10, 50, 200])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_ttest_matches_scipy(n, seed):
    rng = np.random.default_rng(seed)
    a = rng.random(n)
    b = a + rng.normal(0.05, 0.2, n)
    t, p = paired_ttest(a, b)
    expected = stats.ttest_rel(a, b)
    assert t == pytest.approx(expected.statistic, rel=1e-10, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-15)


def test_paired_ttest_large_effect_matches_scipy_tail():
    a = np.linspace(0.5, 0.9, 40)
    b = a - 0.3 + np.sin(np.arange(40)) * 0.01
    t, p = paired_ttest(a, b)
    expected = stats.ttest_rel(a, b)
    assert t == pytest.approx(expected.statistic, rel=1e-10)
    assert p == pytest.approx(expected.pvalue, rel=1e-6)
    assert p < 1e-30


def test_identical_and_constant_difference():
    assert paired_ttest([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == (0.0, 1.0)
    t, p = paired_ttest([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])
    assert t == math.inf and p == 0.0


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="equal length"):
        paired_ttest([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="two pairs"):
        paired_ttest([1.0], [2.0])


def test_holm_hand_example():
    # m = 4; sorted p: .01 (x4=.04), .02 (x3=.06), .03 (x2=.06), .04 (x1=.04 -> max .06)
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])


def test_holm_never_exceeds_bonferroni_and_is_capped():
    rng = np.random.default_rng(3)
    p = list(rng.random(12) ** 3)
    for h, b in zip(holm(p), bonferroni(p), strict=True):
        assert h <= b + 1e-15
        assert 0 <= h <= 1


def test_correct_rejects_unknown_method():
    assert correct([0.2, 0.5], "none") == [0.2, 0.5]
    with pytest.raises(ValueError, match="unknown correction"):
        correct([0.1], "fdr")


def test_randomization_test_exact_on_small_samples():
    # n = 4: all 16 sign flips of d = (.1, .2, .3, .4); |mean| >= .25 only for all-same signs
    a = np.array([0.5, 0.6, 0.7, 0.8])
    b = a - np.array([0.1, 0.2, 0.3, 0.4])
    mean, p = paired_randomization_test(a, b, n_resamples=1000)
    assert mean == pytest.approx(0.25)
    assert p == pytest.approx(2 / 16)
    assert paired_randomization_test(b, a, n_resamples=1000) == (pytest.approx(-0.25), p)


def test_randomization_test_agrees_with_ttest_and_is_seeded():
    rng = np.random.default_rng(5)
    a = rng.random(60)
    noise = rng.normal(0, 0.1, 60)
    b = a - 0.025 - (noise - noise.mean())  # mean difference exactly 0.025
    _, p_t = paired_ttest(a, b)
    mean, p1 = paired_randomization_test(a, b, n_resamples=4000, seed=1)
    _, p2 = paired_randomization_test(a, b, n_resamples=4000, seed=1)
    _, p3 = paired_randomization_test(a, b, n_resamples=4000, seed=2)
    assert mean == pytest.approx(0.025)
    assert p1 == p2 and p1 != p3  # Monte Carlo: the seed fixes the resamples
    assert 0.005 < p1 < 0.05 and p1 == pytest.approx(p_t, abs=0.01)  # both near 0.02


def test_randomization_test_identical_and_bad_input():
    assert paired_randomization_test([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == (0.0, 1.0)
    with pytest.raises(ValueError, match="two pairs"):
        paired_randomization_test([1.0], [2.0])
    with pytest.raises(ValueError, match="n_resamples"):
        paired_randomization_test([1.0, 2.0], [2.0, 1.0], n_resamples=0)


def test_win_tie_loss():
    a = [0.5, 0.2, 0.3, 0.1 + 0.2, 0.0]
    b = [0.4, 0.2, 0.4, 0.3, 0.1]
    assert win_tie_loss(a, b) == (1, 2, 2)  # 0.1 + 0.2 != 0.3 in floats: still a tie
    with pytest.raises(ValueError, match="equal length"):
        win_tie_loss([1.0], [1.0, 2.0])


def test_rounding_noise_is_no_difference():
    a = np.array([0.1, 0.2, 0.3, 0.4])
    b = (a * 3 + 0.3) / 3 - 0.1  # a, up to rounding
    assert not np.array_equal(a, b)
    assert paired_ttest(a, b) == (0.0, 1.0)
    assert paired_randomization_test(a, b)[1] == 1.0
    t, p = paired_ttest(a + 0.3, a)  # 0.3 up to rounding: a constant difference
    assert t == math.inf and p == 0.0
