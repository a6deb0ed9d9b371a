"""Budget sweeps whose trials are real SLURM jobs (Hydra's submitit_slurm launcher, array jobs) on a real cluster."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.slurm_cluster import ensure_installed, slurm_cluster
from tests.sweeper.test_faults import two_jobs_in_flight_overshoot_by_at_most_one_step_each
from tests.sweeper.test_sweeper import finished

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
    # the budget holds as on one machine: each job of the array stops itself at its share, one step past it at most
    proc = two_jobs_in_flight_overshoot_by_at_most_one_step_each(
        sweep_dir, *SLURM, "hydra.launcher.array_parallelism=2"
    )
    # the trials ran as SLURM array tasks: submitit names each job's folder after its SLURM id (<array>_<task>)
    tasks = [p.name for p in (sweep_dir / ".submitit").iterdir() if "_" in p.name and not p.name.startswith(".")]
    assert len(tasks) == len(finished(sweep_dir)), tasks
    assert all(a.isdigit() and t.isdigit() for a, t in (name.split("_") for name in tasks)), tasks
    # each trial's ledger record names the array task it ran as; the report sets SLURM's own record beside ours
    assert sorted(e["slurm_job"] for e in finished(sweep_dir).values()) == sorted(tasks)
    assert "SLURM: 2 trials ran as 2 SLURM job(s); SLURM reported no energy for them (sacct: " in proc.stdout
    assert "accounting storage is disabled" in proc.stdout  # sacct's own reason, on a cluster without accounting
