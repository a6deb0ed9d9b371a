"""Budget sweeps whose trials are real SLURM jobs (Hydra's submitit_slurm launcher, array jobs) on a real cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from lightning_greenai.trial.channel import read_record
from lightning_greenai.trial.record import job_alive
from tests.slurm_cluster import ensure_installed, slurm_cluster
from tests.sweep.test_faults import (
    popen,
    spent_at_least,
    two_jobs_in_flight_overshoot_by_at_most_one_step_each,
    wait_for,
)
from tests.sweep.test_pruning import two_good_then_two_bad_in_batches_of_two
from tests.sweep.test_sweeper import assert_books_balance, finished, run

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(600)]
SLURM = ["hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=5", "hydra.launcher.cpus_per_task=1"]


def start_cluster(tmp_path_factory: pytest.TempPathFactory, *, accounting: bool) -> Iterator[dict[str, str]]:
    """A single-node SLURM cluster; the sweeps reach it through ``SLURM_CONF``."""
    reason = ensure_installed(accounting=accounting)
    if reason is not None:
        pytest.skip(reason)
    with slurm_cluster(tmp_path_factory.mktemp("slurm"), accounting=accounting) as env:
        before = os.environ.get("SLURM_CONF")
        os.environ.update(env)
        try:
            yield env
        finally:
            if before is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = before


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A cluster without job accounting (sacct answers that it is disabled)."""
    yield from start_cluster(tmp_path_factory, accounting=False)


@pytest.fixture(scope="module")
def accounted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A cluster with job accounting (slurmdbd on MariaDB): sacct, and submitit through it, see every job end."""
    yield from start_cluster(tmp_path_factory, accounting=True)


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
    assert "  SLURM     2 trials ran as 2 SLURM job(s); SLURM reported no energy for them (sacct: " in proc.stdout
    assert "accounting storage is disabled" in proc.stdout  # sacct's own reason, on a cluster without accounting


def test_asha_prunes_slurm_array_tasks_at_their_rung_and_slurm_sees_them_complete(cluster, tmp_path):
    sweep_dir = tmp_path / "sweep"
    two_good_then_two_bad_in_batches_of_two(sweep_dir, *SLURM, "hydra.launcher.array_parallelism=2")
    tasks = sorted(t["slurm_job"] for t in finished(sweep_dir).values())
    assert len(tasks) == 4 and all(tasks), tasks  # each trial ran as an array task (two arrays: one per batch)

    def states() -> dict[str, str]:
        listed = subprocess.run(
            ["squeue", "-h", "--states=all", "-o", "%i %T", "-j", ",".join({t.split("_")[0] for t in tasks})],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        return dict(line.split() for line in listed.splitlines())

    deadline = time.monotonic() + 60
    while any(state in ("PENDING", "RUNNING", "COMPLETING") for state in states().values()):
        assert time.monotonic() < deadline, states()
        time.sleep(0.2)
    # a pruned trial ends its task as a finished one does: SLURM has it completed, not failed or cancelled
    assert states() == dict.fromkeys(tasks, "COMPLETED")


def test_a_job_cancelled_with_scancel_is_billed_at_its_last_heartbeat_and_its_sibling_finishes(accounted, tmp_path):
    sweep_dir = tmp_path / "sweep"
    hold = tmp_path / "hold"
    proc = popen(
        sweep_dir,
        "x=0,1",
        "steps=100",
        "step_s=0.1",
        f"hold_file={hold}",
        "hydra.sweeper.budget.energy_kwh=1 kWh",
        "hydra.sweeper.prior_cost.energy_kwh=4 J",  # two trials admitted at once
        "hydra.sweeper.max_failure_rate=1.0",
        *SLURM,
        "hydra.launcher.array_parallelism=2",
    )
    try:
        wait_for(lambda: spent_at_least(sweep_dir, range(2), 5.0), proc, timeout_s=120)
        hold.touch()  # both jobs hold still at their next step: job 0 is cancelled mid-trial however late job 1 began
        cancelled = read_record(sweep_dir, 0).slurm_job
        subprocess.run(["scancel", cancelled], check=True, timeout=30)
        wait_for(lambda: job_alive(read_record(sweep_dir, 0)) is False, proc)  # killed (after KillWait), on hold
        hold.unlink()
        out, err = proc.communicate(timeout=300)
    finally:
        hold.unlink(missing_ok=True)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert_books_balance(sweep_dir, out)
    trials = finished(sweep_dir)
    # the cancelled one: billed at its last heartbeat, recorded with the reason; the launcher raised for it first,
    # and the sweeper waited for its sibling, which finished and was billed in full
    assert trials[0]["status"] == "failed" and trials[0]["slurm_job"] == cancelled
    assert 5.0 <= trials[0]["spend"]["energy_j"]["gpu:0"] < 100.0
    assert "billed at its heartbeat" in trials[0]["error"]
    assert trials[1]["status"] == "completed"
    assert trials[1]["spend"]["energy_j"] == {"gpu:0": 100.0}


def test_a_job_past_its_time_limit_is_billed_and_recorded_with_the_reason(accounted, tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run(
        sweep_dir,
        "x=0",
        "steps=400",
        "step_s=0.5",  # 200 s and 400 J, for a 2-minute limit
        "hydra.sweeper.budget.energy_kwh=1 kWh",
        "hydra.sweeper.max_failure_rate=1.0",
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.timeout_min=2",
        # SLURM warns the job (USR2) at its first limit check (every 30 s) less than signal_delay_s + 30 s before the
        # limit: 30 to 60 s in here. Sooner, it may come before the job's step has started and reach no process, or
        # while Python starts, before submitit handles it, and kill the job outright
        "hydra.launcher.signal_delay_s=60",
        "hydra.launcher.cpus_per_task=1",
    )
    trial = finished(sweep_dir)[0]
    # submitit, with no requeue left (max_num_timeout=0, the default), ends the job: the trial is billed for what it
    # metered and recorded as failed. A job whose warning was lost would run to its limit, be killed there, and read
    # what the launcher raised for it: SLURM's state
    assert trial["status"] == "failed", trial
    assert "timed-out" in trial["error"] or "(state: TIMEOUT)" in trial["error"], trial
    # billed exactly what the job metered by then
    heartbeat = read_record(sweep_dir, 0)
    assert trial["spend"]["energy_j"] == heartbeat.spend.energy_j
    # less than the whole trial (400 steps of 1 J): its time limit ended it
    assert 0.0 <= trial["spend"]["energy_j"].get("gpu:0", 0.0) < 400.0, trial
    assert "SLURM reported no energy for them (sacct has no ConsumedEnergy" in proc.stdout


def test_a_sweep_resumes_after_its_sweeper_is_killed_while_slurm_jobs_run(accounted, tmp_path):
    sweep_dir = tmp_path / "sweep"
    common = (
        "x=0,1,2,3",
        "steps=20",
        "step_s=0.1",
        "hydra.sweeper.budget.energy_kwh=1 kWh",
        "hydra.sweeper.prior_cost.energy_kwh=4 J",
        *SLURM,
    )
    proc = popen(sweep_dir, *common, "hydra.launcher.array_parallelism=2")
    try:
        wait_for(lambda: spent_at_least(sweep_dir, range(2), 2.0), proc, timeout_s=120)
        proc.send_signal(signal.SIGKILL)  # the sweeper dies; its SLURM jobs run on, and finish
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()

    def both_final() -> bool:
        records = [read_record(sweep_dir, job) for job in range(2)]
        return all(r is not None and r.status != "running" for r in records)

    deadline = time.monotonic() + 120
    while not both_final():
        assert time.monotonic() < deadline, "the SLURM jobs did not finish"
        time.sleep(0.2)
    resumed = run(sweep_dir, *common, "hydra.launcher.array_parallelism=2", "hydra.sweeper.resume=true")
    assert "recovered from their records: jobs [0, 1]" in resumed.stdout
    rep = assert_books_balance(sweep_dir, resumed.stdout)
    # the two that finished while the sweeper was down are counted once, in full; the other two ran after
    assert rep["trials_by_status"] == {"completed": 4}
    spent = {job: t["spend"]["energy_j"]["gpu:0"] for job, t in finished(sweep_dir).items()}
    assert spent == dict.fromkeys(range(4), 20.0)
