"""Budget sweeps on a real local Ray cluster (Hydra's Ray launcher, ``ray start`` head and worker nodes)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.ray_cluster import ENV, RayCluster, ray_cluster
from tests.sweep.test_faults import (
    popen,
    spent_at_least,
    two_jobs_in_flight_overshoot_by_at_most_one_step_each,
    wait_for,
)
from tests.sweep.test_pruning import two_good_then_two_bad_in_batches_of_two
from tests.sweep.test_sweeper import assert_books_balance, finished

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    """A head that runs no task and one worker node of 2 CPUs; the sweeps below connect to it as drivers."""
    before = {key: os.environ.get(key) for key in ("RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE")}
    os.environ.update({key: ENV[key] for key in before})  # the drivers speak as the cluster does
    try:
        with ray_cluster(workers=1) as started:
            yield started
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def on(cluster: RayCluster) -> list[str]:
    """The overrides that send a sweep's trials to ``cluster``."""
    return ["hydra/launcher=ray", f"hydra.launcher.ray.init.address={cluster.address}"]


def test_a_budget_sweep_on_a_ray_cluster_holds_its_budget(cluster, tmp_path):
    sweep_dir = tmp_path / "sweep"
    # the batch is what the cluster runs at once (its 2 CPUs, asked of Ray: the helper checks max_batch_size == 2),
    # and each job stops itself at its share
    two_jobs_in_flight_overshoot_by_at_most_one_step_each(sweep_dir, *on(cluster))


def test_a_worker_node_killed_mid_trial_is_billed_and_its_trials_run_again(cluster, tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = popen(sweep_dir, "x=0,1", "steps=120", "step_s=0.05", *on(cluster))  # 120 J in 6 s each
    try:
        wait_for(lambda: spent_at_least(sweep_dir, range(2), 10.0), proc, timeout_s=120)
        assert cluster.kill_worker("w0") >= 2  # its raylet and the trials' worker processes, as a machine dies
        cluster.add_worker("w1")  # Ray retries the lost tasks there
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    rep = assert_books_balance(sweep_dir, out)
    assert rep["trials_by_status"] == {"completed": 2}
    spent = {job: event["spend"]["energy_j"]["gpu:0"] for job, event in finished(sweep_dir).items()}
    # a trial the kill caught is billed for the attempt that died (10 J or more, to its last heartbeat) and the full
    # rerun (120 J); on a busy machine one may have finished before the kill (120 J), never both
    assert all(joules == 120.0 or 130.0 <= joules <= 240.0 for joules in spent.values()), spent
    assert any(joules >= 130.0 for joules in spent.values()), spent


def test_asha_on_a_ray_cluster_prunes_trials_at_their_rung_and_bills_what_they_spent(cluster, tmp_path):
    # the reports and the verdicts travel on the heartbeat files between the driver and the worker node's tasks;
    # a pruned task returns as any other, its record says pruned (the helper checks the rungs, the books, the ends)
    two_good_then_two_bad_in_batches_of_two(tmp_path / "sweep", *on(cluster))
