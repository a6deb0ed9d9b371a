"""Budget sweeps whose trials are real SLURM jobs (Hydra's submitit_slurm launcher, array jobs) on a real cluster."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.slurm_cluster import ensure_installed, slurm_cluster
from tests.sweeper.test_sweeper import assert_books_balance, finished, run

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(600)]
SLURM = ["hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=5", "hydra.launcher.cpus_per_task=1"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A single-node SLURM cluster for this module; the sweeps below reach it through ``SLURM_CONF``."""
    reason = ensure_installed()
    if reason is not None:
        pytest.skip(reason)
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as env:
        before = os.environ.get("SLURM_CONF")
        os.environ.update(env)
        try:
            yield env
        finally:
            if before is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = before


def test_a_budget_sweep_of_slurm_array_jobs_holds_its_budget(cluster, tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run(
        sweep_dir,
        "x=0,1,2,3",
        "steps=10",
        "step_s=0.05",
        "hydra.sweeper.budget.energy_kwh=15 J",
        "hydra.sweeper.prior_cost.energy_kwh=4 J",  # two 10 J trials admitted together: 20 J for a 15 J budget
        *SLURM,
        "hydra.launcher.array_parallelism=2",
    )
    rep = assert_books_balance(sweep_dir, proc.stdout)
    assert rep["max_batch_size"] == 2  # the array's parallelism
    # each job stops itself at its share (7.5 J), at the step that reaches it: one 1 J step past it at most
    assert rep["spend"]["energy_j"]["gpu:0"] <= 15.0 + 2 * 1.0
    assert rep["trials_by_status"].get("budget_stopped", 0) >= 1
    # the trials ran as SLURM array tasks: submitit names each job's folder after its SLURM id (<array>_<task>)
    tasks = [p.name for p in (sweep_dir / ".submitit").iterdir() if "_" in p.name and not p.name.startswith(".")]
    assert len(tasks) == len(finished(sweep_dir)), tasks
    assert all(a.isdigit() and t.isdigit() for a, t in (name.split("_") for name in tasks)), tasks
    # each trial's ledger record names the array task it ran as; the report sets SLURM's own record beside ours
    assert sorted(e["slurm_job"] for e in finished(sweep_dir).values()) == sorted(tasks)
    assert "SLURM: 2 trials ran as 2 SLURM job(s); SLURM reported no energy for them (sacct: " in proc.stdout
    assert "accounting storage is disabled" in proc.stdout  # sacct's own reason, on a cluster without accounting
