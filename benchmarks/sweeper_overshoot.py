"""Budget overshoot of the greenai sweeper per launcher and stop policy, and its own overhead per trial.

Run: python benchmarks/sweeper_overshoot.py [--quick]

1. Synthetic trials of known, growing cost (tests/sweep/meter_task.py: 6 + 6x steps of 1 J for x = 0, 1, 2 ...:
   6, 12, 18, 24 J; 50 ms a step, a heartbeat every step) under a 30 J budget, with a low prior (4 J per trial). Each
   trial costs more than the finished ones predict, so admission launches trials the budget cannot pay for in full
   and the mid-batch stop has to act. Batches have the default size, the launcher's parallelism (basic 1, joblib
   n_jobs=2, submitit local: the CPUs). For each launcher x stop policy: budget, spend, overshoot, trials.
2. The sweeper's bookkeeping per trial with N instant trials (a launcher that returns at once), for N = 250 and
   1,000: per-trial time should stay flat (linear total), target < 50 ms per trial.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lightning_greenai import Method, Spend  # noqa: E402
from lightning_greenai.sweep.engine import BudgetSweep  # noqa: E402
from lightning_greenai.trial.account import TrialReporter  # noqa: E402

LAUNCHERS = {
    "basic": [],
    "joblib (2 workers)": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"],
}


SCENARIOS = {
    # growing costs: each trial costs more than the finished ones predict (one job in flight crosses the budget)
    "growing": ["steps=6", "steps_per_x=6", "hydra.sweeper.budget.energy_kwh=30 J"],
    # equal 10 J trials, a 4 J prior: the first batch's jobs cross a 15 J budget together, in flight
    "together": ["steps=10", "steps_per_x=0", "hydra.sweeper.budget.energy_kwh=15 J"],
}


def overshoot(launcher: list[str], policy: str, scenario: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        sweep_dir = Path(tmp) / "sweep"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "tests" / "sweeper" / "meter_task.py"),
                "-m",
                f"hydra.sweep.dir={sweep_dir}",
                "x=0,1,2,3,4,5,6,7,8,9",
                *scenario,
                "step_s=0.05",
                "hydra.sweeper.prior_cost.energy_kwh=4 J",
                "hydra.sweeper.poll_s=0.02",
                f"hydra.sweeper.stop_policy={policy}",
                "hydra.sweeper.max_failure_rate=1.0",
                *launcher,
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=tmp,
        )
        return json.loads((sweep_dir / "budget_report.json").read_text())


class InstantLauncher:
    def __init__(self, sweep_dir: Path) -> None:
        self.sweep_dir = sweep_dir

    def launch(self, job_overrides, initial_job_idx):
        out = []
        for i, overrides in enumerate(job_overrides):
            reporter = TrialReporter(self.sweep_dir, initial_job_idx + i, heartbeat_s=0)
            reporter.contribute("job", Spend(energy_j={"gpu:0": 1.0}, methods={"gpu:0": Method.COUNTER}))
            reporter.finish("completed", objective=float(i))
            out.append(
                JobReturn(
                    overrides=list(overrides),
                    cfg=None,
                    hydra_cfg=None,
                    working_dir="",
                    task_name="t",
                    status=JobStatus.COMPLETED,
                    _return_value=float(i),
                )
            )
        return out


def bookkeeping(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        sweep = BudgetSweep(
            strategy="random",
            max_trials=n,
            max_batch_size=4,
            poll_s=3600,
            budget={"energy_kwh": "1 kWh"},
            prior_cost={"energy_kwh": "1 J"},
        )
        sweep.config = OmegaConf.create({"hydra": {"sweep": {"dir": tmp}}})
        sweep.launcher = InstantLauncher(Path(tmp))
        t0 = time.perf_counter()
        sweep.sweep(["x=interval(0,1)"])
        return (time.perf_counter() - t0) / n


def report_row(scenario: str, launcher: str, policy: str, rep: dict) -> None:
    budget = rep["budget"]["energy_kwh"] * 3.6e6
    spent = rep["spend"]["energy_j"].get("gpu:0", 0.0)
    by = rep["trials_by_status"]
    print(
        f"| {scenario} | {launcher} | {policy} | {rep['max_batch_size']} | {budget:.0f} J | {spent:.0f} J "
        f"| {100 * (spent - budget) / budget:+.0f} % | {by.get('completed', 0)} | {by.get('budget_stopped', 0)} "
        f"| {by.get('killed', 0)} | {by.get('not_started', 0)} | {by.get('failed', 0)} |",
        flush=True,
    )


@contextlib.contextmanager
def engine(name: str) -> Iterator[list[str]]:
    """The overrides of launcher ``name``; for a real engine, start it (as the tests do) and stop it after."""
    if name in LAUNCHERS:
        yield LAUNCHERS[name]
    elif name == "ray":  # a head and a 2-CPU worker node, the trials connect to it
        from tests.ray_cluster import ENV, ray_cluster

        os.environ.update({k: ENV[k] for k in ("RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE")})
        with ray_cluster(workers=1) as cluster:
            yield ["hydra/launcher=ray", f"hydra.launcher.ray.init.address={cluster.address}"]
    elif name == "slurm":  # a single-node cluster, an array of 2 in flight
        from tests.slurm_cluster import ensure_installed, slurm_cluster

        if (reason := ensure_installed()) is not None:
            raise SystemExit(reason)
        with tempfile.TemporaryDirectory() as tmp, slurm_cluster(Path(tmp)) as env:
            os.environ.update(env)
            yield [
                "hydra/launcher=submitit_slurm",
                "hydra.launcher.timeout_min=5",
                "hydra.launcher.cpus_per_task=1",
                "hydra.launcher.array_parallelism=2",
            ]
    elif name == "joblib+postgresql":  # the sweep's signals through a real PostgreSQL server
        from tests.postgres_server import ensure_installed as have_postgres
        from tests.postgres_server import postgres_server

        if (reason := have_postgres()) is not None:
            raise SystemExit(reason)
        with postgres_server() as server:
            yield [*LAUNCHERS["joblib (2 workers)"], f"hydra.sweeper.storage={server.url}"]
    else:
        raise SystemExit(f"unknown launcher {name!r}: {', '.join([*LAUNCHERS, *ENGINES])}")


ENGINES = ("ray", "slurm", "joblib+postgresql")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--launchers",
        default=",".join(LAUNCHERS),
        help=f"comma-separated, of: {', '.join([*LAUNCHERS, *ENGINES])} (the real engines are started here)",
    )
    args = parser.parse_args()
    names = ["basic"] if args.quick else args.launchers.split(",")
    print(
        "| costs | launcher | stop policy | batch | budget | spend | overshoot | completed | budget-stopped | killed "
        "| not started | failed |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        with engine(name) as launcher:
            for scenario, extra in SCENARIOS.items():
                for policy in ("graceful", "finish", "kill"):
                    report_row(scenario, name, policy, overshoot(launcher, policy, extra))
    print()
    for n in (250, 1000) if not args.quick else (50, 200):
        print(f"sweeper bookkeeping with {n} instant trials: {1e3 * bookkeeping(n):.2f} ms per trial", flush=True)


if __name__ == "__main__":
    main()
