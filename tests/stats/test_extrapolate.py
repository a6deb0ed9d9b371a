"""The tuning curve extrapolated past the trials run: its interval covers the truth, and it agrees with opda's fit."""

from __future__ import annotations

import numpy as np
import pytest
from opda.parametric import NoisyQuadraticDistribution, QuadraticDistribution

from lightning_greenai.stats.extrapolate import MIN_SCORES, extrapolate, unfit_reason


@pytest.mark.parametrize(
    "truth",
    [
        QuadraticDistribution(0.5, 0.95, 4, convex=False),
        QuadraticDistribution(0.5, 0.95, 10, convex=False),
        NoisyQuadraticDistribution(0.5, 0.95, 4, 0.01, convex=False),
    ],
    ids=["quadratic-c4", "quadratic-c10", "noisy-quadratic"],
)
@pytest.mark.parametrize("trials", [12, 40])
def test_the_interval_covers_the_true_curve_at_2_and_4_times_the_trials_run(truth, trials):
    repetitions, covered = 60, np.zeros(2)
    ns = [2 * trials, 4 * trials]
    true_curve = np.array([truth.average_tuning_curve(n) for n in ns])
    for rep in range(repetitions):  # deterministic: the same draws and the same bootstrap every run
        scores = truth.sample(trials, generator=np.random.default_rng(rep))
        fit = extrapolate(scores, ns, bounds=(0.0, 1.0))
        assert fit is not None
        covered += (np.array(fit.lo) <= true_curve) & (true_curve <= np.array(fit.hi))
        assert all(hi <= 1.0 for hi in fit.hi)  # capped by the score's bound
    # A model-based interval, calibrated on these tails to ~95 %; measured 0.92-0.98 over 100 repetitions.
    assert (covered / repetitions >= 0.9).all(), covered / repetitions


def test_the_point_estimate_agrees_with_opdas_own_fit():
    truth = QuadraticDistribution(0.5, 0.95, 4, convex=False)
    scores = truth.sample(1000, generator=np.random.default_rng(0))
    fit = extrapolate(scores, [2000, 4000])
    assert fit is not None
    threshold = np.sort(scores)[1000 - fit.tail_size - 1]
    theirs = QuadraticDistribution.fit(
        scores, limits=(threshold, np.inf), constraints={"convex": False}, generator=np.random.default_rng(0)
    )
    for n, ours in zip(fit.n, fit.expected, strict=True):
        assert ours == pytest.approx(float(theirs.average_tuning_curve(n)), abs=0.005)
    assert fit.best_reachable == pytest.approx(theirs.b, abs=0.005)
    assert fit.best_lo <= fit.best_reachable <= fit.best_hi


def test_a_loss_is_the_mirror_image_of_a_score():
    scores = QuadraticDistribution(0.5, 0.95, 4, convex=False).sample(30, generator=np.random.default_rng(1))
    up = extrapolate(scores, [30, 60, 120])
    down = extrapolate(-scores, [30, 60, 120], direction="min", bounds=(-1.0, 0.0))
    capped = extrapolate(scores, [30, 60, 120], bounds=(0.0, 1.0))
    assert up is not None and down is not None and capped is not None
    assert down.expected == pytest.approx([-e for e in capped.expected])
    assert down.lo == pytest.approx([-h for h in capped.hi]) and down.hi == pytest.approx([-lo for lo in capped.lo])
    assert down.best_reachable == pytest.approx(-capped.best_reachable)
    assert up.expected[0] <= up.expected[1] <= up.expected[2]  # more trials never lower the expected best
    assert extrapolate(scores, [30, 60, 120]) == up  # deterministic


def test_too_few_scores_or_too_few_distinct_top_scores_give_no_extrapolation():
    assert extrapolate([0.5, 0.6, 0.7, 0.8, 0.81, 0.82, 0.83], [14]) is None
    assert MIN_SCORES == 8
    assert extrapolate([0.5] * 20, [40]) is None
    assert extrapolate([0.1] * 10 + [0.9] * 25, [70]) is None  # the top k scores are all one value
    # eight trials at the true best (0) and one at -9: a fit ran to 13.8 at 18 trials before the distinct-value rule
    assert extrapolate([0.0] * 8 + [-9.0], [18, 36]) is None
    assert "only 2 distinct values" in unfit_reason([0.0] * 8 + [-9.0])
    assert "only 4 distinct values" in unfit_reason([-((x - 3) ** 2) for x in [0, 1, 2, 2.5, 3.5, 4, 5, 6] * 2])
    assert "at least 8 scored trials (have 7)" in unfit_reason([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    assert extrapolate([1e308, -1e308, *np.linspace(0, 1, 10)], [24]) is None  # nothing to compute with, no NaN


def test_the_figures_stay_ordered_with_ties_and_a_best_score_on_the_bound():
    """Fuzzed: coarse scores (1-3 decimals), a score on the upper bound in 30 % of the sets (inverted before)."""
    for seed in range(200):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(8, 60))
        scores = np.round(rng.beta(rng.uniform(0.5, 5), rng.uniform(0.5, 5), n), int(rng.integers(1, 4)))
        if rng.random() < 0.3:
            scores[0] = 1.0
        fit = extrapolate(list(scores), [n, 2 * n, 4 * n], bounds=(0.0, 1.0))
        if fit is None:
            assert unfit_reason(list(scores)) is not None
            continue
        assert all(lo <= e <= hi <= 1.0 for lo, e, hi in zip(fit.lo, fit.expected, fit.hi, strict=True)), seed
        assert max(scores) <= fit.best_lo <= fit.best_reachable <= fit.best_hi <= 1.0, seed
        assert fit.expected[0] <= fit.expected[1] <= fit.expected[2], seed


@pytest.mark.parametrize("direction", ["max", "min"])
def test_a_sweep_extrapolates_and_its_band_at_n_bounds_every_n_past_it(tmp_path, direction):
    from lightning_greenai.reporting.summary import load
    from tests.reporting.test_compare_verdict import write_sweep

    scores = QuadraticDistribution(0.5, 0.95, 4, convex=False).sample(12, generator=np.random.default_rng(3))
    if direction == "min":  # an error rate: 1 - accuracy
        scores = 1 - scores
    summary = load(write_sweep(tmp_path / "sweep", scores, energy_j=10.0, direction=direction))
    fit = summary.extrapolation()
    assert fit is not None and fit.n[0] == 12 and fit.n[-1] == 48 and 24 in fit.n
    last = summary.evp()[-1]
    if direction == "max":  # the expected best of n >= 12 is at least the band's lower edge at 12
        assert all(lo >= last["expected_lo"] for lo in fit.lo)
        assert fit.best_lo >= max(scores)
    else:
        assert all(hi <= last["expected_hi"] for hi in fit.hi)
        assert fit.best_hi <= min(scores)
    rows = summary.extrapolated_rows()
    assert rows[-1]["energy_kwh"] == pytest.approx(48 * 10.0 / 3.6e6)
