"""The overshoot bound under stop_policy=graceful, as a property over random trial costs.

A lock-step launcher runs a batch's jobs one step at a time in turn, each step's spend written as a heartbeat (as a
real job's monitor does), and lets the sweeper's own watchdog check once between rounds (as its thread does every
poll). So a STOP written after a round is seen by every job before its next step: the spend past the budget is at
most one round of steps of the jobs in flight — one heartbeat each.
"""

import math

from hydra.core.utils import JobReturn, JobStatus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from lightning_greenai import Method, Spend
from lightning_greenai.reporting.sweep_files import ReportedSweep as BudgetSweep
from lightning_greenai.trial.account import TrialReporter


class LockstepLauncher:
    def __init__(self, sweep, sweep_dir, step_costs):
        self.sweep, self.sweep_dir, self.step_costs = sweep, sweep_dir, step_costs
        self.max_round_j = 0.0

    def launch(self, job_overrides, initial_job_idx):
        jobs = {}
        for i, overrides in enumerate(job_overrides):
            x = int(overrides[0].split("=")[1])
            jobs[initial_job_idx + i] = {
                "x": x,
                "step": 0,
                "spent": 0.0,
                "done": False,
                "reporter": TrialReporter(self.sweep_dir, initial_job_idx + i, heartbeat_s=0),
            }
        while not all(j["done"] for j in jobs.values()):
            round_j = 0.0
            for job in jobs.values():
                if job["done"]:
                    continue
                reporter, costs = job["reporter"], self.step_costs[job["x"]]
                if reporter.stop_request() is not None:
                    reporter.finish("budget_stopped", objective=float(job["x"]))
                    job["done"] = True
                elif job["step"] == len(costs):
                    reporter.finish("completed", objective=float(job["x"]))
                    job["done"] = True
                else:
                    job["spent"] += costs[job["step"]]
                    round_j += costs[job["step"]]
                    job["step"] += 1
                    reporter.contribute(
                        "job", Spend(energy_j={"gpu:0": job["spent"]}, methods={"gpu:0": Method.COUNTER})
                    )
            self.max_round_j = max(self.max_round_j, round_j)
            self.sweep.watchdog.check_once()
        return completed(job_overrides, [float(jobs[initial_job_idx + i]["x"]) for i in range(len(job_overrides))])


def completed(job_overrides, values):
    """The JobReturns of a batch whose jobs all completed, with these return values."""
    return [
        JobReturn(
            overrides=list(o),
            cfg=None,
            hydra_cfg=None,
            working_dir="",
            task_name="t",
            status=JobStatus.COMPLETED,
            _return_value=value,
        )
        for o, value in zip(job_overrides, values, strict=True)
    ]


def sweep(tmp_path, budget_j, prior_j, batch, step_costs):
    sweep = BudgetSweep(
        budget={"energy_kwh": f"{budget_j} J"},
        prior_cost={"energy_kwh": f"{prior_j} J"},
        max_batch_size=batch,
        poll_s=3600,
        heartbeat_s=0,
        max_failure_rate=1.0,
    )
    sweep.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    sweep.launcher = LockstepLauncher(sweep, tmp_path, step_costs)
    sweep.sweep([f"x={','.join(str(i) for i in range(len(step_costs)))}"])
    import json

    return json.loads((tmp_path / "budget_report.json").read_text()), sweep.launcher


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    budget_j=st.floats(1.0, 40.0),
    prior_j=st.floats(0.2, 8.0),
    batch=st.integers(1, 4),
    step_costs=st.lists(st.lists(st.floats(0.05, 3.0), min_size=1, max_size=6), min_size=1, max_size=12),
)
def test_graceful_overshoot_is_at_most_one_heartbeat_of_the_jobs_in_flight(
    tmp_path_factory, budget_j, prior_j, batch, step_costs
):
    report, launcher = sweep(tmp_path_factory.mktemp("sweep"), budget_j, prior_j, batch, step_costs)
    spent_j = report["spend"]["energy_j"].get("gpu:0", 0.0)
    max_step = max(c for costs in step_costs for c in costs)
    assert spent_j <= budget_j + batch * max_step + 1e-9
    assert spent_j <= budget_j + launcher.max_round_j + 1e-9
    assert sum(report["trials_by_status"].values()) <= len(step_costs)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(budget_j=st.floats(1.0, 60.0), cost_j=st.floats(0.5, 9.0), steps=st.integers(1, 4), batch=st.integers(1, 4))
def test_deterministic_cost_completes_exactly_floor_budget_over_cost(tmp_path_factory, budget_j, cost_j, steps, batch):
    per_step = cost_j / steps
    trials = 20
    report, _ = sweep(tmp_path_factory.mktemp("sweep"), budget_j, cost_j, batch, [[per_step] * steps] * trials)
    expected = min(trials, math.floor(budget_j / cost_j + 1e-9))
    assert report["trials_by_status"].get("completed", 0) == expected
    assert "budget_stopped" not in report["trials_by_status"]
    assert report["spend"]["energy_j"].get("gpu:0", 0.0) <= budget_j + 1e-9
