"""`greenai compare` says which sweep is better at which budget, with what confidence, and where the curves cross."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lightning_greenai.grid import Grid
from lightning_greenai.reporting.cli import main
from lightning_greenai.reporting.summary import load
from lightning_greenai.reporting.verdict import compare_at_budgets
from lightning_greenai.stats.gain import gain_upper_bound
from lightning_greenai.sweep.ledger import Ledger


def write_sweep(
    path: Path, scores, energy_j: float, *, bounds=(0, 1), direction="max", strategy="random", budget=None
) -> Path:
    """A finished sweep's ledger, as the sweeper writes it: every trial costs ``energy_j``."""
    ledger = Ledger(path / ".greenai" / "ledger.jsonl")
    search = {"arguments": ["x=interval(0,1)"], "strategy": strategy, "seed": 0, "direction": direction}
    grid = Grid.from_location("FR").to_dict()
    ledger.append("header", search=search, budget=budget or {}, grid=grid, score_bounds=bounds)
    for job, score in enumerate(scores):
        ledger.append("launched", job=job, overrides=[f"x={job}"])
        spend = {"energy_j": {"gpu:0": energy_j}, "methods": {"gpu:0": "counter"}, "flops": 1e9 * energy_j}
        ledger.append("finished", job=job, status="completed", objective=float(score), spend=spend)
    ledger.append("stopped", reason="max_trials reached")
    return path


def test_a_clearly_better_sweep_is_called_better_at_95_percent(tmp_path, capsys):
    rng = np.random.default_rng(7)
    strong = write_sweep(tmp_path / "strong", rng.uniform(0.85, 0.95, 30), energy_j=3600.0)
    weak = write_sweep(tmp_path / "weak", rng.uniform(0.60, 0.75, 30), energy_j=3600.0)
    assert main(["compare", str(strong), str(weak), "--energy-unit", "Wh"]) == 0
    out = capsys.readouterr().out
    assert "expected best at a budget, 95 % confidence for both at once (each band 97.5 %, Lourie et al.):" in out
    assert "strong is better at 95 % confidence" in out
    assert "weak is better" not in out
    assert "no crossing: strong ahead at every common budget" in out
    comparison = compare_at_budgets(load(strong), load(weak), "energy_kwh")
    assert not any(v.better == "b" for v in comparison.verdicts)
    # distribution-free bands on the expected best widen towards the score bound as n grows (a rare high score
    # cannot be ruled out): the verdict is confident where few trials have been bought, not everywhere
    confident = [v.budget for v in comparison.verdicts if v.better == "a"]
    assert len(confident) > len(comparison.verdicts) // 4
    assert "confidently different at" in out


def test_identical_distributions_cannot_be_told_apart(tmp_path):
    rng = np.random.default_rng(8)
    a = load(write_sweep(tmp_path / "a", rng.uniform(0.7, 0.9, 25), energy_j=10.0))
    b = load(write_sweep(tmp_path / "b", rng.uniform(0.7, 0.9, 25), energy_j=10.0))
    assert all(v.better is None for v in compare_at_budgets(a, b, "energy_kwh").verdicts)


def test_a_cheap_model_wins_small_budgets_and_a_dear_one_large_budgets(tmp_path, capsys):
    # cheap: 1 J a trial, scores ~ U(0.70, 0.80); dear: 20 J a trial, scores ~ U(0.60, 0.95): at 20 J the cheap
    # sweep has had 20 tries at 0.80 at most, the dear one one try; with many dear trials 0.95 comes within reach
    rng = np.random.default_rng(3)
    cheap = write_sweep(tmp_path / "cheap", rng.uniform(0.70, 0.80, 60), energy_j=1.0)
    dear = write_sweep(tmp_path / "dear", rng.uniform(0.60, 0.95, 40), energy_j=20.0)
    comparison = compare_at_budgets(load(cheap), load(dear), "energy_kwh")
    assert comparison.common == pytest.approx((20.0 / 3.6e6, 60.0 / 3.6e6))
    first = comparison.verdicts[0]  # at one dear trial's price: 20 cheap trials against one dear one
    assert (first.a.n, first.b.n) == pytest.approx((20.0, 1.0))
    assert first.a.value > first.b.value and first.better != "b"
    assert comparison.leader_before[0] == "a"
    assert main(["compare", str(cheap), str(dear), "--energy-unit", "J"]) == 0
    assert "at 20.0 J: cheap's expected best is" in capsys.readouterr().out


def test_the_curves_cross_where_the_point_estimates_change_order(tmp_path, capsys):
    rng = np.random.default_rng(5)
    cheap = write_sweep(tmp_path / "cheap", rng.uniform(0.70, 0.80, 80), energy_j=1.0)
    dear = write_sweep(tmp_path / "dear", rng.uniform(0.50, 0.99, 40), energy_j=2.0)
    comparison = compare_at_budgets(load(cheap), load(dear), "energy_kwh")
    assert comparison.crossings, "a model with the higher ceiling overtakes once the budget buys enough of its trials"
    assert comparison.leader_before == ["a", "b"]
    main(["compare", str(cheap), str(dear), "--energy-unit", "J"])
    out = capsys.readouterr().out
    assert "the curves cross: cheap ahead below" in out and ", dear above" in out


def test_without_score_bounds_the_median_best_is_compared(tmp_path, capsys):
    rng = np.random.default_rng(9)
    a = write_sweep(tmp_path / "a", rng.normal(2.0, 0.1, 20), energy_j=5.0, bounds=None, direction="min")
    b = write_sweep(tmp_path / "b", rng.normal(3.0, 0.1, 20), energy_j=5.0, bounds=None, direction="min")
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "median best at a budget" in out and "a is better at 95 % confidence" in out


def test_non_iid_sweeps_get_no_confidence_statement(tmp_path, capsys):
    a = write_sweep(tmp_path / "a", [0.5, 0.6, 0.7], energy_j=5.0, strategy="optuna")
    b = write_sweep(tmp_path / "b", [0.5, 0.6, 0.7], energy_j=5.0)
    assert main(["compare", str(a), str(b)]) == 0
    assert "confidence: needs random (i.i.d.) search on both sides" in capsys.readouterr().out


def test_sweeps_in_opposite_directions_do_not_compare(tmp_path, capsys):
    a = write_sweep(tmp_path / "a", [0.5, 0.6, 0.7], energy_j=5.0)
    b = write_sweep(tmp_path / "b", [0.5, 0.6, 0.7], energy_j=5.0, direction="min")
    assert main(["compare", str(a), str(b)]) == 2
    assert "maximises and" in capsys.readouterr().err


def test_the_pareto_front_and_the_cheapest_trial_near_the_best(tmp_path, capsys):
    from lightning_greenai.reporting.pareto import Point, cheapest_within, pareto_front

    points = [Point(0, 0.90, 5.0), Point(1, 0.80, 1.0), Point(2, 0.85, 3.0), Point(3, 0.70, 2.0), Point(4, 0.895, 2.5)]
    assert [p.job for p in pareto_front(points)] == [1, 4, 0]  # 2 and 3 are dominated by 4 and by 1
    assert [p.job for p in pareto_front(points, "min")] == [1, 3]  # for a loss, low is good
    near = cheapest_within(points, 0.01)
    assert (near["trial"].job, near["best"].job) == (4, 0)
    assert near["saving"] == pytest.approx(0.5)  # 2.5 J against the best's 5 J
    with pytest.raises(ValueError, match="`epsilon` must be >= 0"):
        cheapest_within(points, -1)
    tie = [Point(0, 0.9359, 1.53), Point(2, 0.9331, 1.41), Point(5, 0.9359, 1.41)]
    near = cheapest_within(tie, 0.01)
    assert near["best"].job == 0  # of equal bests, the first launched (as the sweep's own report names it)
    assert near["trial"].job == 5  # at equal cost the better score: never a trial the best dominates
    sweep = write_sweep(tmp_path / "s", [0.90, 0.80, 0.85, 0.70], energy_j=1.0)
    assert main(["report", str(sweep), "--no-plots"]) == 0
    assert "score against each trial's energy: Pareto front of" in capsys.readouterr().out


def test_the_marginal_value_curve_is_the_evp_rise_per_unit_and_its_bound(tmp_path, capsys):
    rng = np.random.default_rng(11)
    summary = load(write_sweep(tmp_path / "s", rng.uniform(0.5, 0.9, 12), energy_j=3600.0))  # 1 Wh a trial
    rows, evp = summary.marginal_value(), summary.evp()
    assert [r["n"] for r in rows] == list(range(1, 12))
    for row, a, b in zip(rows, evp, evp[1:], strict=False):
        assert row["spent"] == pytest.approx(row["n"] * 1e-3)  # kWh
        assert row["expected_gain_per_unit"] == pytest.approx((b["expected"] - a["expected"]) / 1e-3)
    assert all(r["upper_gain_per_unit"] is None for r in rows[:4])  # the bound from 5 trials on
    scores = summary.scores()
    for row in rows[4:]:  # the stop rule's bound on the first n scores, per unit of the next 10 trials' cost
        bound = gain_upper_bound(scores[: row["n"]], next_trials=10, bounds=(0, 1))
        assert row["upper_gain_per_unit"] == pytest.approx(bound / (10 * 1e-3))
    assert main(["report", str(summary.path), "--no-plots"]) == 0
    assert "the last trial's energy bought" in capsys.readouterr().out


def test_score_bounds_that_do_not_hold_the_scores_are_dropped_with_a_note(tmp_path, capsys):
    loss = write_sweep(tmp_path / "loss", [2.3, 1.9, 2.1], energy_j=5.0, bounds=[0, 1], direction="min")
    summary = load(loss)
    assert summary.score_bounds is None
    assert any("score_bounds [0, 1] are ignored: score 2.3 lies outside them" in n for n in summary.notes)
    assert summary.evp()[0]["expected_lo"] is None and summary.evp()[0]["median_lo"] is not None
    assert main(["report", str(loss), "--no-plots"]) == 0
    assert "no band without score_bounds" in capsys.readouterr().out


def test_score_bounds_from_the_command_line(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "s", [0.5, 0.7, 0.6, 0.8], energy_j=5.0, bounds=None)
    assert main(["report", str(sweep), "--no-plots"]) == 0
    assert "no band without score_bounds" in capsys.readouterr().out
    assert main(["report", str(sweep), "--no-plots", "--score-bounds", "0", "1"]) == 0
    assert "expected best [" in capsys.readouterr().out
    assert main(["report", str(sweep), "--no-plots", "--score-bounds", "1", "0"]) == 2
    assert "`--score-bounds` must be finite with low < high" in capsys.readouterr().err


def test_a_band_edge_without_bounds_says_so_instead_of_inf(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "s", [0.5, 0.7, 0.6, 0.8], energy_j=5.0, bounds=None)
    assert main(["report", str(sweep), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "unbounded without score_bounds]" in out and "inf]" not in out


def test_a_sweep_compared_with_itself_is_named_the_same_way_in_every_line(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "s", [0.5, 0.7, 0.6, 0.8], energy_j=5.0)
    assert main(["compare", str(sweep), str(sweep)]) == 0
    out = capsys.readouterr().out
    assert f"  A ({sweep}) (random, expected):" in out and f"  B ({sweep}) (random, expected):" in out
    assert f"A ({sweep})'s expected best is" in out


def test_labels_name_the_sweeps_in_every_line_and_the_plot(tmp_path, capsys):
    rng = np.random.default_rng(7)
    strong = write_sweep(tmp_path / "strong", rng.uniform(0.85, 0.95, 30), energy_j=3600.0)
    weak = write_sweep(tmp_path / "weak", rng.uniform(0.60, 0.75, 30), energy_j=3600.0)
    args = ["compare", str(strong), str(weak), "--label", "ResNet", "--label", "ViT", "--out", str(tmp_path / "p")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "  ResNet (random, expected):" in out and "  ViT (random, expected):" in out
    assert "ResNet is better at 95 % confidence" in out
    assert "strong" not in out.replace(str(tmp_path), "")
    assert (tmp_path / "p" / "compare.png").is_file()


def test_one_label_is_refused_naming_what_is_needed(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "s", [0.5, 0.7, 0.6, 0.8], energy_j=5.0)
    assert main(["compare", str(sweep), str(sweep), "--label", "A"]) == 2
    assert "--label names both sweeps, A then B: got 1 (['A'])" in capsys.readouterr().err


def test_markdown_says_which_stages_the_energy_covers(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "s", [0.5, 0.7], energy_j=5.0)
    assert main(["report", str(sweep), "--no-plots", "--markdown"]) == 0
    assert "The sweep of 2 trials used 10.0 J of electricity" in capsys.readouterr().out
