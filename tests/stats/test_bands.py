"""Confidence bands for tuning curves: they cover the true curve, simultaneously, in at least 95 % of repetitions."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_greenai.stats.bands import check_bounds, tuning_curve_bands
from lightning_greenai.stats.evp import expected_max


def true_curves(a: float, ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores ~ Beta(a, 1) (CDF x^a): the best of n has CDF x^(a n), mean a n / (a n + 1), median 0.5^(1 / (a n))."""
    return a * ns / (a * ns + 1), 0.5 ** (1 / (a * ns))


@pytest.mark.parametrize("method", ["ld", "ks"])
@pytest.mark.parametrize("direction", ["max", "min"])
@pytest.mark.parametrize("a", [1.0, 4.0], ids=["uniform", "beta-4-1"])
def test_the_95_percent_band_covers_the_true_tuning_curves_in_at_least_95_percent_of_repetitions(a, direction, method):
    rng = np.random.default_rng(12345)  # deterministic: the same draws, the same bands, every run
    trials, repetitions = 20, 200
    ns = np.arange(1, 3 * trials + 1)  # beyond the trials run too: the band holds for every n at once
    expected_true, median_true = true_curves(a, ns)
    if direction == "min":  # a loss: 1 - score, whose best of n is 1 - the best score of n
        expected_true, median_true = 1 - expected_true, 1 - median_true
    covered_expected = covered_median = 0
    for _ in range(repetitions):
        scores = rng.beta(a, 1.0, trials)
        if direction == "min":
            scores = 1 - scores
        bands = tuning_curve_bands(scores, ns, direction=direction, bounds=(0, 1), method=method)
        lo, hi = np.array(bands.expected_lo), np.array(bands.expected_hi)
        covered_expected += bool(np.all((lo <= expected_true + 1e-12) & (expected_true <= hi + 1e-12)))
        lo, hi = np.array(bands.median_lo), np.array(bands.median_hi)
        covered_median += bool(np.all((lo <= median_true + 1e-12) & (median_true <= hi + 1e-12)))
    assert covered_expected / repetitions >= 0.95
    assert covered_median / repetitions >= 0.95


def test_the_point_curve_is_dodge_et_al_and_bands_are_deterministic():
    scores = [0.61, 0.72, 0.55, 0.80, 0.77, 0.69, 0.74]
    first = tuning_curve_bands(scores, [1, 2, 3, 7], bounds=(0, 1))
    again = tuning_curve_bands(scores, [1, 2, 3, 7], bounds=(0, 1))
    assert first == again
    for n, value in zip([1, 2, 3, 7], first.expected, strict=True):
        assert value == pytest.approx(expected_max(scores, n)[0])
    assert all(lo <= e <= hi for lo, e, hi in zip(first.expected_lo, first.expected, first.expected_hi, strict=True))
    assert first.method == "ld" and first.confidence == 0.95


def test_without_bounds_only_the_median_curve_has_a_band():
    bands = tuning_curve_bands([3.0, 1.0, 2.0, 5.0], [1, 2], direction="min")
    assert bands.expected_lo is None and bands.expected_hi is None
    assert all(lo <= m <= hi for lo, m, hi in zip(bands.median_lo, bands.median, bands.median_hi, strict=True))


def test_many_trials_take_the_closed_form_band():
    scores = np.random.default_rng(0).uniform(size=500)
    assert tuning_curve_bands(scores, [1, 10], bounds=(0, 1)).method == "ks"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bounds": (0, 0.5)}, r"A score lies outside score_bounds \[0.0, 0.5\]"),
        ({"bounds": (1, 0)}, r"must be finite with low < high, got \[1.0, 0.0\]"),
        ({"bounds": "0-1"}, r"must be two numbers \[low, high\]"),
        ({"method": "bootstrap"}, r"Unknown band method 'bootstrap'. Allowed: ld, ks"),
        ({"confidence": 95}, r"`confidence` must be in \(0, 1\), got 95"),
    ],
)
def test_bad_input_names_the_value_and_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tuning_curve_bands([0.6, 0.9], [1], **kwargs)


def test_check_bounds_accepts_lists_and_none():
    assert check_bounds([0, 1]) == (0.0, 1.0)
    assert check_bounds(None) is None
