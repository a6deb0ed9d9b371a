"""The budget's promise on every axis: past the budget by at most one step of each job in flight.

A lock-step launcher runs a batch's jobs one step at a time in turn; each job, as a real one does at every metering
step, contributes its cumulative spend to its account and asks :func:`stop_reason` whether to stop (its allowance's
caps, priced with the sweep's grid, and the STOP signal); the sweeper's watchdog checks every few rounds. Every
axis the budget can be set on is driven by the same step: energy, FLOPs, CO2e at a yearly and at an hourly figure,
money priced by energy and by an instance's hours, GPU-hours. Under ``graceful`` and ``kill`` the spend past the
budget is at most one step of each job in flight; under ``finish`` running trials finish, so at most one trial of
each. File and SQL transports alike.
"""

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lightning_greenai import Method, Spend
from lightning_greenai.budget import measure
from lightning_greenai.errors import TrialKilledError
from lightning_greenai.reporting.sweep_files import ReportedSweep as BudgetSweep
from lightning_greenai.trial.account import TrialReporter
from lightning_greenai.trial.channel import open_channel
from lightning_greenai.trial.stopping import record_stop, stop_reason
from tests.sweep.test_overshoot_property import completed

HOUR = "2026-12-07T10"
STEP_J, STEP_FLOPS, STEP_S = 10.0, 1e9, 60.0  # one step of a job: 10 J, 1 GFLOP, one minute of one GPU
STEPS = 5  # a trial's steps: 50 J
TRIALS = 12

# axis -> (grid, what one step costs on that axis in the budget's canonical unit); the budget is 12.5 steps' cost
AXES = {
    "energy_kwh": ({}, STEP_J / 3.6e6),
    "flops": ({}, STEP_FLOPS),
    "co2e_yearly": ({"intensity_g_per_kwh": 150.0}, STEP_J / 3.6e6 * 150.0 / 1000),
    "co2e_hourly": ({"intensity_g_per_kwh": 40.0, "csv": 150.0}, STEP_J / 3.6e6 * 150.0 / 1000),
    "money_energy": ({"price_per_kwh": 1000.0, "currency": "EUR"}, STEP_J / 3.6e6 * 1000.0),
    "money_instance": ({"instance_price_per_h": 3.0, "currency": "EUR"}, STEP_S / 3600 * 3.0),
    "gpu_hours": ({}, STEP_S / 3600),
}
BUDGET_STEPS = 12.5
# the watchdog polls every few steps of a job (a 1 s poll, 0.1 s steps): between polls only the jobs' own caps hold
WATCHDOG_ROUNDS = 10
QUANTITY = {"co2e_yearly": "co2e_kg", "co2e_hourly": "co2e_kg", "money_energy": "money", "money_instance": "money"}


class StepLauncher:
    """Runs each batch in lock-step; each job checks its caps at every step, as a metered job does."""

    def __init__(self, sweep: BudgetSweep, sweep_dir: Path, storage: str | None):
        self.sweep, self.sweep_dir, self.storage = sweep, sweep_dir, storage

    def launch(self, job_overrides, initial_job_idx):
        jobs = {}
        for i, _ in enumerate(job_overrides):
            channel = open_channel(self.sweep_dir, self.storage, key=self.sweep.sweep_id)
            reporter = TrialReporter(channel, initial_job_idx + i, heartbeat_s=0, signal_s=0, grid=self.sweep.grid)
            jobs[initial_job_idx + i] = {"step": 0, "done": False, "reporter": reporter}
        rounds = 0
        while not all(j["done"] for j in jobs.values()):
            rounds += 1
            for job in jobs.values():
                if job["done"]:
                    continue
                reporter = job["reporter"]
                found = stop_reason(reporter, reporter.total, None)
                if found is not None:
                    try:
                        record_stop(reporter, found[1], found[0])
                        reporter.finish("budget_stopped", objective=1.0)
                    except TrialKilledError:
                        pass  # recorded killed by record_stop
                    job["done"] = True
                elif job["step"] == STEPS:
                    reporter.finish("completed", objective=1.0)
                    job["done"] = True
                else:
                    job["step"] += 1
                    n = job["step"]
                    reporter.contribute(
                        "job",
                        Spend(
                            energy_j={"gpu:0": n * STEP_J},
                            methods={"gpu:0": Method.COUNTER},
                            flops=n * STEP_FLOPS,
                            duration_s=n * STEP_S,
                            gpu_s=n * STEP_S,
                            hourly_energy_j={HOUR: n * STEP_J},
                        ),
                    )
            if rounds % WATCHDOG_ROUNDS == 0:
                self.sweep.watchdog.check_once()
        return completed(job_overrides, [1.0] * len(job_overrides))


def run_sweep(tmp_path: Path, axis: str, policy: str, jobs: int, transport: str) -> tuple[dict, float, float]:
    grid, step_cost = AXES[axis]
    grid = dict(grid)
    if "csv" in grid:
        csv = tmp_path / "hourly.csv"
        csv.write_text(f"datetime,carbon_intensity_g_per_kwh\n{HOUR}:00:00,{grid.pop('csv')}\n")
        grid["intensity_csv"] = str(csv)
    quantity = QUANTITY.get(axis, axis)
    storage = f"sqlite:///{tmp_path / 'signals.db'}" if transport == "sql" else None
    sweep = BudgetSweep(
        strategy="grid",
        budget={quantity: BUDGET_STEPS * step_cost},
        # a guess too low (one step for a five-step trial): more trials start than the budget holds
        prior_cost={quantity: step_cost, **({"currency": "EUR"} if quantity == "money" else {})},
        max_batch_size=jobs,
        poll_s=3600,
        heartbeat_s=0,
        stop_policy=policy,
        grid=grid,
        storage=storage,
        report=False,
        log_curves=False,
    )
    out = tmp_path / "sweep"
    sweep.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(out)}}})
    sweep.launcher = StepLauncher(sweep, out, storage)
    sweep.parallelism = jobs  # the launcher runs them all at once (as joblib's n_jobs says)
    sweep.sweep([f"x={','.join(str(i) for i in range(TRIALS))}"])
    report = json.loads((out / "budget_report.json").read_text())
    limit = sweep.budget.limits[quantity]
    spent = measure(quantity, Spend.from_dict(report["spend"]), sweep.grid, None)
    assert spent is not None
    return report, spent - limit, step_cost


@pytest.mark.parametrize("transport", ["file", "sql"])
@pytest.mark.parametrize("jobs", [1, 2, 4])
@pytest.mark.parametrize("policy", ["graceful", "kill", "finish"])
@pytest.mark.parametrize("axis", sorted(AXES))
def test_the_overshoot_is_one_step_per_job_in_flight_on_every_axis(tmp_path, axis, policy, jobs, transport):
    report, over, step_cost = run_sweep(tmp_path, axis, policy, jobs, transport)
    # finish lets running trials finish: one trial of each job in flight; otherwise one step of each
    bound = jobs * step_cost * (STEPS if policy == "finish" else 1)
    assert over <= bound * (1 + 1e-9), (over / step_cost, report["stop_reason"])
    assert sum(report["trials_by_status"].values()) >= jobs  # a whole batch ran: the caps, not admission, held it
    if policy != "finish":
        assert over >= -jobs * step_cost * STEPS  # and not stopped absurdly early: within a trial per job
