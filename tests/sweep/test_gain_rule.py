"""stop_when: stop a random search when the next trials cannot be expected to buy enough score per unit of compute."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from lightning_greenai import BudgetConfigError, Method, Spend
from lightning_greenai.reporting.summary import load
from lightning_greenai.reporting.sweep_files import ReportedSweep as BudgetSweep
from lightning_greenai.stats.gain import GainRule, gain_upper_bound
from lightning_greenai.trial.account import TrialReporter
from tests.sweep.test_overshoot_property import completed


def true_gain(a: float, best: float, k: int) -> float:
    """Scores ~ Beta(a, 1) on [0, 1]: E[(max of k - best)+] = integral from best to 1 of (1 - x^(a k)) dx."""
    return (1 - best) - (1 - best ** (a * k + 1)) / (a * k + 1)


def test_the_bound_is_above_the_true_expected_gain_in_at_least_95_percent_of_repetitions():
    rng = np.random.default_rng(2024)
    covered, repetitions = 0, 300
    for _ in range(repetitions):
        scores = rng.beta(3.0, 1.0, 25)
        bound = gain_upper_bound(scores, next_trials=10, bounds=(0, 1))
        covered += bound >= true_gain(3.0, scores.max(), 10)
    assert covered / repetitions >= 0.95


def test_the_bound_shrinks_with_more_trials_and_vanishes_at_the_top_of_the_range():
    rng = np.random.default_rng(0)
    few, many = rng.uniform(size=10), rng.uniform(size=1000)
    assert gain_upper_bound(many, next_trials=10, bounds=(0, 1)) < gain_upper_bound(few, next_trials=10, bounds=(0, 1))
    assert gain_upper_bound([0.2, 0.9, 0.5], next_trials=10, bounds=(0, 0.9)) == 0.0  # nothing above 0.9 to find
    # a loss: the gain is a drop below the lowest loss seen, down to the lower bound
    assert gain_upper_bound([2.0, 3.0, 2.5], next_trials=5, bounds=(0, 5), direction="min") > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"gain_per_kwh": 0}, r"`hydra.sweeper.stop_when.gain_per_kwh` must be a number > 0, got 0"),
        ({"gain_per_joule": 1}, r"Unknown hydra.sweeper.stop_when option\(s\) \['gain_per_joule'\]"),
        ({"gain_per_kwh": 1, "next_trials": 0}, r"`hydra.sweeper.stop_when.next_trials` must be an integer >= 1"),
        ({"gain_per_kwh": 1, "confidence": 1.5}, r"`hydra.sweeper.stop_when.confidence` must be in \(0, 1\)"),
    ],
)
def test_bad_options_name_the_value_and_what_is_allowed(options, message):
    with pytest.raises(ValueError, match=message):
        GainRule.parse(options)


def test_without_a_threshold_the_rule_is_off():
    assert GainRule.parse({"next_trials": 5, "confidence": 0.95, "min_trials": 5, "gain_per_kwh": None}) is None


def test_the_rule_needs_a_random_search_and_the_scores_range():
    with pytest.raises(BudgetConfigError, match=r"stop_when needs a random \(i\.i\.d\.\) search"):
        BudgetSweep(strategy="optuna", max_trials=5, stop_when={"gain_per_kwh": 1.0}, score_bounds=[0, 1])
    with pytest.raises(BudgetConfigError, match=r"stop_when needs hydra\.sweeper\.score_bounds"):
        BudgetSweep(strategy="random", max_trials=5, stop_when={"gain_per_kwh": 1.0})


class PlateauLauncher:
    """Runs each trial in process: x in 0..9 costs exactly 1 J and scores min(x, 6) / 10 (a plateau at 0.6)."""

    def __init__(self, sweep, sweep_dir):
        self.sweep, self.sweep_dir = sweep, sweep_dir

    def launch(self, job_overrides, initial_job_idx):
        scores = []
        for i, overrides in enumerate(job_overrides):
            x = int(overrides[0].split("=")[1])
            reporter = TrialReporter(self.sweep_dir, initial_job_idx + i, heartbeat_s=0)
            reporter.contribute("job", Spend(energy_j={"gpu:0": 1.0}, methods={"gpu:0": Method.COUNTER}))
            scores.append(min(x, 6) / 10)
            reporter.finish("completed", objective=scores[-1])
        return completed(job_overrides, scores)


def run_plateau_sweep(tmp_path, bounds):
    sweep = BudgetSweep(
        strategy="random",
        seed=1,
        max_trials=200,
        max_batch_size=1,
        poll_s=3600,
        heartbeat_s=0,
        budget={"energy_kwh": "200 J"},
        grid={"country": "FR"},
        score_bounds=bounds,
        stop_when={"gain_per_kwh": 1000.0, "next_trials": 10, "min_trials": 5},
    )
    out = tmp_path / "sweep"
    sweep.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(out)}}})
    sweep.launcher = PlateauLauncher(sweep, out)
    sweep.sweep(["x=choice(0,1,2,3,4,5,6,7,8,9)"])
    return load(out)


def test_a_sweep_stops_at_the_plateau_far_before_its_energy_budget(tmp_path):
    summary = run_plateau_sweep(tmp_path, [0, 0.6])  # the plateau is the best the score can be
    # 1 J a trial: 200 trials would spend the budget; the rule stops once 0.6 is reached (and 5 trials are scored)
    first_at_plateau = next(i for i, t in enumerate(summary.trials) if t["objective"] == 0.6)
    assert len(summary.trials) == max(first_at_plateau + 1, 5)
    assert summary.stop_reason.startswith("the next 10 trials (about 10.0 J) are expected to add at most +0 ")
    assert "< stop_when.gain_per_kwh=1000" in summary.stop_reason
    assert summary.spend.total_energy_j < 20  # of a 200 J budget


def test_when_a_better_score_cannot_be_ruled_out_the_rule_does_not_stop_the_sweep(tmp_path):
    # with the range up to 1, 200 trials at 0.6 still leave room (a distribution-free bound: a rare config scoring
    # higher is possible) worth far more than 1000 per kWh at 1 J a trial: the rule is conservative, the budget stops
    summary = run_plateau_sweep(tmp_path, [0, 1])
    assert summary.stop_reason == "budget spent: energy_kwh"
    assert len(summary.trials) == 200


def test_scores_outside_the_bounds_turn_the_rule_off_with_a_warning_not_the_sweep(tmp_path, caplog):
    # the plateau scores reach 0.6, above the (wrong) upper bound 0.5: the rule steps aside, the budget stops it
    summary = run_plateau_sweep(tmp_path, [0, 0.5])
    assert summary.stop_reason == "budget spent: energy_kwh"
    assert "stop_when is off for the rest of this sweep: score 0.6 lies outside score_bounds [0.0, 0.5]" in caplog.text
    assert any("score_bounds [0, 0.5] are ignored" in n for n in summary.notes)
