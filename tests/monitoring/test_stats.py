"""The A/B statistics against textbook figures computed by hand."""

from __future__ import annotations

import math

import pytest

from personalization.monitoring.experiments import (
    mean_interval,
    sample_size_means,
    sample_size_proportions,
    two_proportion_test,
    welch_test,
    wilson_interval,
)


def test_sample_size_for_10_to_12_percent_is_the_textbook_3841_per_arm():
    # Fleiss (no continuity correction), alpha .05 two-sided, power .8: n = 3841 per group for p1=.10, p2=.12
    assert sample_size_proportions(0.10, 0.20) == 3841


def test_sample_size_of_means_matches_the_closed_form():
    # 2 * (1.959964 + 0.841621)^2 * sd^2 / delta^2 with sd = 10, delta = 2 (a 10% lift of 20): 392.4 -> 393
    assert sample_size_means(20.0, 10.0, 0.10) == 393
    assert sample_size_means(0.0, 10.0, 0.10) is None  # no baseline, no size


def test_two_proportion_z_test_200_of_1000_against_250_of_1000():
    result = two_proportion_test(200, 1000, 250, 1000)
    pooled = 450 / 2000
    z = 0.05 / math.sqrt(pooled * (1 - pooled) * (2 / 1000))  # 2.677
    assert result["z"] == pytest.approx(z) and result["z"] == pytest.approx(2.677, abs=1e-3)
    assert result["p_value"] == pytest.approx(0.00742, abs=2e-5)
    se = math.sqrt(0.2 * 0.8 / 1000 + 0.25 * 0.75 / 1000)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((0.05 - 1.959964 * se, 0.05 + 1.959964 * se))
    assert result["ci_low"] == pytest.approx(0.01349, abs=1e-4)


def test_no_trials_gives_no_test():
    assert two_proportion_test(0, 0, 5, 10)["p_value"] is None
    assert wilson_interval(0, 0) is None


def test_wilson_interval_of_3_in_10():
    # Wilson score interval, z = 1.96: (0.1078, 0.6032)
    assert wilson_interval(3, 10) == pytest.approx((0.1078, 0.6032), abs=1e-4)


def test_welch_t_test_textbook_example():
    # Welch (1947)-style example worked by hand: means 20.0 and 22.0, variances 2.5 and 10.0, n = 5 each
    a = [18.0, 19.0, 20.0, 21.0, 22.0]
    b = [18.0, 20.0, 22.0, 24.0, 26.0]
    result = welch_test(a, b)
    se = math.sqrt(2.5 / 5 + 10.0 / 5)  # 1.5811
    assert result["t"] == pytest.approx(2.0 / se)  # 1.2649
    df = (2.5 / 5 + 10.0 / 5) ** 2 / ((2.5 / 5) ** 2 / 4 + (10.0 / 5) ** 2 / 4)  # Welch-Satterthwaite: 5.882
    assert df == pytest.approx(5.882, abs=1e-3)
    assert result["p_value"] == pytest.approx(0.2536, abs=1e-3)
    assert result["ci_low"] < 0 < result["ci_high"] and result["difference"] == 2.0


def test_mean_interval():
    low, high = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.776445 * math.sqrt(2.5 / 5)  # t(0.975, 4) * sem
    assert (low, high) == pytest.approx((3 - half, 3 + half))
