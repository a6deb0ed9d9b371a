"""The one budget curve: best score so far against compute spent so far (``lightning_greenai.stats.curve``)."""

from __future__ import annotations

import pytest

from lightning_greenai.grid import Grid
from lightning_greenai.spend import Spend
from lightning_greenai.stats.curve import CurvePoint, best_so_far, budget_curve
from lightning_greenai.sweep.history import curve_axes


def test_best_so_far_skips_trials_that_do_not_rank():
    assert best_so_far([None, 0.5, None, 0.4, 0.7], "max") == [None, 0.5, 0.5, 0.5, 0.7]
    assert best_so_far([0.5, 0.4, None, 0.7], "min") == [0.5, 0.4, 0.4, 0.4]
    with pytest.raises(ValueError, match="direction must be 'max' or 'min'"):
        best_so_far([1.0], "up")


def test_spend_adds_up_and_is_priced_on_every_axis():
    spends = [Spend(energy_j={"gpu:0": 3.6e6}, flops=1e12, gpu_s=3600.0), Spend(energy_j={"gpu:0": 3.6e6}, flops=1e12)]
    points = budget_curve(spends, [0.1, 0.3], curve_axes(Grid(intensity_g_per_kwh=500.0)))
    assert [p.best_so_far for p in points] == [0.1, 0.3]
    assert points[1].spent["energy_kwh"] == pytest.approx(2.0)
    assert points[1].spent["flops"] == 2e12
    assert points[1].spent["co2e_kg"] == pytest.approx(1.0)
    assert points[1].spent["gpu_hours"] == pytest.approx(1.0)
    assert list(points[1].spent) == ["energy_kwh", "flops", "co2e_kg", "money", "gpu_hours"]


def test_a_trial_without_spend_reads_zero_not_none_and_unpriced_money_stays_none():
    # the choice between the sweeper's None and the report's 0.0: nothing metered is nothing spent (every row has a
    # place on the compute axis); only money, when the grid prices none, is not a price of zero
    points = budget_curve([Spend()], [None], curve_axes(Grid(intensity_g_per_kwh=500.0)))
    assert points == [
        CurvePoint(None, {"energy_kwh": 0.0, "flops": 0.0, "co2e_kg": 0.0, "money": None, "gpu_hours": 0.0})
    ]


def test_spends_and_scores_go_in_pairs():
    with pytest.raises(ValueError, match="2 spends for 1 scores"):
        budget_curve([Spend(), Spend()], [None], {})
