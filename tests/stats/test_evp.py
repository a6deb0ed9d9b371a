import itertools
import math
import random
from fractions import Fraction

import pytest

from lightning_greenai.stats.evp import expected_max, expected_max_curve, unbiased_expected_max

SCORES = [0.80, 0.72, 0.90, 0.85, 0.60]


def dodge_by_hand(scores, n):
    """Exact rationals: weights (i/N)^n - ((i-1)/N)^n on the sorted scores."""
    v = sorted(Fraction(str(s)) for s in scores)
    big_n = len(v)
    w = [Fraction(i, big_n) ** n - Fraction(i - 1, big_n) ** n for i in range(1, big_n + 1)]
    mean = sum(a * b for a, b in zip(w, v, strict=True))
    var = sum(a * (b - mean) ** 2 for a, b in zip(w, v, strict=True))
    return mean, var


def tang_by_hand(scores, n):
    """Exact: average of the max over every n-subset (draws without replacement)."""
    subsets = list(itertools.combinations([Fraction(str(s)) for s in scores], n))
    return sum(max(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize(
    ("n", "mean", "sd", "unbiased"),
    [
        (1, Fraction(387, 500), 0.105376, Fraction(774, 1000)),
        (2, Fraction(2081, 2500), 0.074955, Fraction(847, 1000)),
        (3, Fraction(10719, 12500), 0.054680, Fraction(875, 1000)),
        (4, Fraction(2177, 2500), 0.042532, Fraction(890, 1000)),
        (5, Fraction(274647, 312500), 0.034695, Fraction(900, 1000)),
    ],
)
def test_exact_values_derived_by_hand(n, mean, sd, unbiased):
    hand_mean, hand_var = dodge_by_hand(SCORES, n)
    assert hand_mean == mean
    got_mean, got_sd = expected_max(SCORES, n)
    assert got_mean == pytest.approx(float(mean), abs=1e-12)
    assert got_sd == pytest.approx(math.sqrt(hand_var), abs=1e-12)
    assert got_sd == pytest.approx(sd, abs=1e-6)
    assert tang_by_hand(SCORES, n) == unbiased
    assert unbiased_expected_max(SCORES, n) == pytest.approx(float(unbiased), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_invariants_on_random_scores(seed):
    rng = random.Random(seed)
    scores = [rng.random() for _ in range(rng.randint(2, 12))]
    curve = expected_max_curve(scores)
    expected = [r["expected"] for r in curve]
    unbiased = [r["unbiased"] for r in curve]
    assert expected == sorted(expected) and unbiased == sorted(unbiased)  # monotone in n
    assert expected[0] == pytest.approx(sum(scores) / len(scores)) == unbiased[0]
    assert unbiased[-1] == pytest.approx(max(scores))
    assert all(e <= u + 1e-12 for e, u in zip(expected[1:], unbiased[1:], strict=True))
    shuffled = scores[:]
    rng.shuffle(shuffled)
    for a, b in zip(expected_max_curve(shuffled), curve, strict=True):  # order does not matter
        assert a == pytest.approx(b)
    for n in range(1, len(scores) + 1):
        assert unbiased_expected_max(scores, n) == pytest.approx(float(tang_by_hand(scores, n)))


def test_direction_min_is_the_expected_minimum_of_a_loss():
    losses = [1.0, 3.0, 2.0]
    assert expected_max(losses, 1, "min")[0] == pytest.approx(2.0)
    assert unbiased_expected_max(losses, 3, "min") == pytest.approx(1.0)
    assert expected_max(losses, 2, "min")[0] == pytest.approx(-expected_max([-x for x in losses], 2)[0])
    mins = [r["expected"] for r in expected_max_curve(losses, "min")]
    assert mins == sorted(mins, reverse=True)


@pytest.mark.parametrize(
    ("scores", "n", "direction", "match"),
    [
        (SCORES, 0, "max", r"`n` must be an integer in 1..5"),
        (SCORES, 6, "max", r"`n` must be an integer in 1..5 \(the number of scores\), got 6"),
        (SCORES, 2, "up", r"`direction` must be 'max' or 'min', got 'up'"),
        ([], 1, "max", r"at least one score"),
        ([0.1, float("nan")], 1, "max", r"NaN"),
    ],
)
def test_bad_input(scores, n, direction, match):
    with pytest.raises(ValueError, match=match):
        expected_max(scores, n, direction)


@pytest.mark.parametrize("direction", ["max", "min"])
@pytest.mark.parametrize("size", [1, 5, 60, 61, 300])
def test_the_vectorised_curve_equals_the_estimators_at_each_n(size, direction):
    rng = random.Random(size)
    scores = [rng.gauss(0.0, 1.0) for _ in range(size)]
    for row in expected_max_curve(scores, direction):
        mean, sd = expected_max(scores, row["n"], direction)
        assert row["expected"] == pytest.approx(mean, abs=1e-9)
        assert row["sd"] == pytest.approx(sd, abs=1e-9)
        assert row["unbiased"] == pytest.approx(unbiased_expected_max(scores, row["n"], direction), abs=1e-9)
