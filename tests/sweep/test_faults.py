"""The books under faults, end to end: real Hydra multiruns of a task whose trials cost an exact number of joules.

Every test checks the invariant ledger = report = printed: the sum of the ledger's finished trials is the report's
spend, whatever killed, stopped, resumed or damaged the sweep.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lightning_greenai import Spend
from lightning_greenai.io import write_json_atomic
from lightning_greenai.reporting.render import to_json
from lightning_greenai.reporting.summary import load
from lightning_greenai.sweep.ledger import Ledger
from lightning_greenai.trial.channel import heartbeat_path, read_record
from lightning_greenai.trial.record import TrialRecord
from tests.sweep.test_sweeper import GRID, ROOT, TASK, assert_books_balance, finished, report, run


def popen(sweep_dir: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "1"}
    return subprocess.Popen(
        [sys.executable, str(TASK), "-m", f"hydra.sweep.dir={sweep_dir}", *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=sweep_dir.parent,
    )


JOBLIB_2 = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")


def wait_for(predicate, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Wait until ``predicate()`` holds while ``proc`` runs; a process that died first fails with its stderr."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the sweep exited ({proc.returncode}) first: {proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def spent_at_least(sweep_dir: Path, jobs: range, joules: float) -> bool:
    """Whether each of ``jobs`` has a heartbeat billing ``joules`` or more."""
    records = [read_record(sweep_dir, job) for job in jobs]
    return all(r is not None and (r.spend.total_energy_j or 0.0) >= joules for r in records)


# -- one account per trial ------------------------------------------------------------------------------------------


def test_a_trial_that_meters_twice_is_billed_for_both(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run(
        sweep_dir, GRID, "blocks=2", "hydra.sweeper.budget.energy_kwh=20 J", "hydra.sweeper.prior_cost.energy_kwh=6 J"
    )
    rep = assert_books_balance(sweep_dir, proc.stdout)
    assert rep["trials_by_status"] == {"completed": 3}  # floor(20 J / (2 blocks x 3 J))
    assert rep["spend"]["energy_j"] == {"gpu:0": pytest.approx(18.0)}


def test_heartbeats_left_in_a_reused_sweep_dir_never_bill_a_new_trial(tmp_path):
    sweep_dir = tmp_path / "sweep"
    for job in range(10):  # an earlier sweep's files, its ledger deleted
        old = TrialRecord(job_num=job, spend=Spend(energy_j={"gpu:0": 10.0}))
        write_json_atomic(heartbeat_path(sweep_dir, job), old.to_dict())
    run(sweep_dir, "x=0,1,2", "hydra.sweeper.budget.energy_kwh=1 kWh")
    assert {e["spend"]["energy_j"]["gpu:0"] for e in finished(sweep_dir).values()} == {3.0}
    assert_books_balance(sweep_dir)


# -- stop and admission ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "crossing", "exit_code"),
    [("graceful", "budget_stopped", 0), ("finish", "completed", 0), ("kill", "killed", 0)],
)
def test_queued_trials_never_start_after_the_budget_is_spent(tmp_path, policy, crossing, exit_code):
    sweep_dir = tmp_path / "sweep"
    proc = run(
        sweep_dir,
        "x=0,1,2,3,4",
        "steps=6",
        "joules_per_step=0.5",
        "step_s=0.15",
        "hydra.sweeper.max_batch_size=5",  # more than the basic launcher runs at once: four wait in its queue
        "hydra.sweeper.budget.energy_kwh=10 J",
        "hydra.sweeper.prior_cost.energy_kwh=1 J",
        f"hydra.sweeper.stop_policy={policy}",
        check=False,
    )
    assert proc.returncode == exit_code, proc.stderr[-3000:]
    jobs = finished(sweep_dir)
    assert [jobs[j]["status"] for j in range(3)] == ["completed"] * 3  # 9 J
    assert jobs[3]["status"] == crossing  # crosses 10 J
    assert jobs[4]["status"] == "not_started" and jobs[4]["objective"] is None
    assert jobs[4]["spend"]["energy_j"] == {}
    rep = assert_books_balance(sweep_dir, proc.stdout)
    if policy != "finish":  # within one step of the one trial in flight
        assert rep["spend"]["energy_j"]["gpu:0"] <= 10.0 + 2 * 0.5
    # x=3 scores best: ranked only if it ran to its end (finish); a trial stopped part-way never ranks
    assert rep["best"]["job"] == (3 if policy == "finish" else 2)


def test_batches_default_to_the_launchers_parallelism(tmp_path):
    sweep_dir = tmp_path / "sweep"
    run(sweep_dir, GRID, "hydra.sweeper.budget.energy_kwh=10 J", "hydra.sweeper.prior_cost.energy_kwh=1 J")
    events = [e["event"] for e in Ledger(sweep_dir / ".greenai" / "ledger.jsonl").events()]
    body = [e for e in events if e in ("launched", "finished")]
    assert body == ["launched", "finished"] * (len(body) // 2)  # the basic launcher: one at a time
    rep = report(sweep_dir)
    assert rep["max_batch_size"] == 1
    assert rep["trials_by_status"] == {"completed": 3}  # 3 x 3 J; a fourth would cross 10 J


def test_a_wall_time_budget_with_random_search_and_no_max_trials_ends(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run(
        sweep_dir,
        "x=interval(0,6)",
        "hydra.sweeper.strategy=random",
        "steps=4",
        "step_s=0.25",
        "hydra.sweeper.budget.wall_hours=4 s",
    )
    rep = assert_books_balance(sweep_dir, proc.stdout)
    assert "wall_hours" in rep["stop_reason"] and rep["trials_by_status"].get("completed", 0) >= 1
    # The bounds are in units of the trials' own wall time (launch to finish, from the ledger), so that they hold
    # however fast the machine runs them: in-flight time counted twice would stop the sweep near half the budget,
    # before the room left is less than one trial; and a trial in flight stops within its next step past the deadline.
    events = Ledger(sweep_dir / ".greenai" / "ledger.jsonl").events()
    launched = {e["job"]: e["time"] for e in events if e["event"] == "launched"}
    trial_s = max(e["time"] - launched[e["job"]] for e in events if e["event"] == "finished")
    assert 4.0 - trial_s - 0.5 <= rep["wall_s"] <= 4.0 + trial_s, (rep["wall_s"], trial_s)


def test_a_budget_that_trials_do_not_measure_is_an_error_after_the_first_trial(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run(sweep_dir, GRID, "sensor=none", "hydra.sweeper.budget.energy_kwh=30 J", check=False)
    assert proc.returncode != 0
    assert "budget `energy_kwh` is not measured: 1 trial(s) finished and none reported it" in proc.stderr
    assert "Attach an EnergyMonitor" in proc.stderr
    assert report(sweep_dir)["trials"] == 1


def test_money_from_an_instance_price_is_one_number_everywhere(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run(
        sweep_dir,
        "x=0,1,2",
        "step_s=0.1",
        "hydra.sweeper.grid.country=FR",
        "hydra.sweeper.grid.instance_price_per_h=36",
        "hydra.sweeper.grid.price_per_kwh=0.2",
        "hydra.sweeper.grid.currency=EUR",
        "hydra.sweeper.budget.money=1000 EUR",
    )
    money = report(sweep_dir)["money"]
    printed = re.search(r"^  carbon\s.*; cost ([0-9.e+-]+) EUR$", proc.stdout, re.MULTILINE)  # the compact tag
    assert printed is not None and float(printed.group(1)) == pytest.approx(money, rel=5e-3)  # 3 significant figures
    cli = subprocess.run(
        [sys.executable, "-m", "lightning_greenai.reporting.cli", "report", str(sweep_dir), "--json", "--no-plots"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert json.loads(cli.stdout)["price_tag"]["cost"] == pytest.approx(money)
    durations = sum(Spend.from_dict(e["spend"]).duration_s for e in finished(sweep_dir).values())
    assert money == pytest.approx(durations / 3600 * 36 + 9 / 3.6e6 * 0.2)  # each trial's metered hours


# -- kills, signals, resume -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "code"),
    [("sysexit", 1), ("sigterm", 143), ("sigint", 130)],
    ids=["SystemExit-in-a-trial", "SIGTERM", "Ctrl-C"],
)
def test_an_interrupted_sweep_records_every_trial_reports_and_resumes(tmp_path, mode, code):
    common = (GRID, "hydra.sweeper.budget.energy_kwh=20 J", "hydra.sweeper.prior_cost.energy_kwh=3 J")
    whole = tmp_path / "whole"
    run(whole, *common)
    sweep_dir = tmp_path / "sweep"
    crash = ("crash_at=1", "crash_x=2", f"crash_mode={mode}", f"crash_once_file={tmp_path / 'once'}")
    proc = run(sweep_dir, *common, *crash, check=False)
    assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "hydra.sweeper.resume=true" in proc.stdout
    jobs = finished(sweep_dir)
    assert [jobs[j]["status"] for j in (0, 1)] == ["completed", "completed"]
    assert jobs[2]["status"] == "interrupted" and jobs[2]["spend"]["energy_j"]["gpu:0"] == pytest.approx(1.0)
    rep = assert_books_balance(sweep_dir, proc.stdout)
    assert rep["stop_reason"].startswith("interrupted")
    resumed = run(sweep_dir, *common, *crash, "hydra.sweeper.resume=true")
    assert "running again: jobs [2]" in resumed.stdout
    rep = assert_books_balance(sweep_dir, resumed.stdout)
    assert rep["trials_by_status"] == {"completed": 6, "interrupted": 1}
    # the interrupted attempt's 1 J is spent too: one trial fewer than the uninterrupted sweep's
    assert report(whole)["trials_by_status"] == {"completed": 6}
    assert rep["spend"]["energy_j"]["gpu:0"] == pytest.approx(19.0)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["SIGTERM", "SIGINT", "SIGKILL"])
@pytest.mark.parametrize("after_s", [0.8, 2.1])
def test_a_signal_at_any_moment_keeps_the_books_and_a_resume_completes_them(tmp_path, sig, after_s):
    common = (
        GRID,
        "steps=3",
        "step_s=0.1",
        "hydra.sweeper.budget.energy_kwh=20 J",
        "hydra.sweeper.prior_cost.energy_kwh=3 J",
    )
    sweep_dir = tmp_path / "sweep"
    proc = popen(sweep_dir, *common)
    wait_for(lambda: (sweep_dir / ".greenai" / "ledger.jsonl").exists(), proc)
    time.sleep(after_s)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    if sig == signal.SIGKILL:
        assert proc.returncode == -9
    else:
        assert proc.returncode in (0, 128 + sig), err[-3000:]  # 0: it had already finished
        assert_books_balance(sweep_dir, out)
    resumed = run(sweep_dir, *common, "hydra.sweeper.resume=true")
    rep = assert_books_balance(sweep_dir, resumed.stdout)
    assert rep["trials_by_status"].get("completed", 0) + rep["trials_by_status"].get("interrupted", 0) >= 6
    assert rep["spend"]["energy_j"]["gpu:0"] <= 20.0 + 1.0


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("sig", "times"), [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGINT, 2)], ids=["SIGINT", "SIGTERM", "twice"]
)
def test_a_signal_while_the_report_is_written_waits_for_it_and_a_second_one_does_not(tmp_path, sig, times):
    sweep_dir = tmp_path / "sweep"
    proc = run(
        sweep_dir,
        "x=0,1",
        "hydra.sweeper.budget.energy_kwh=1 kWh",
        # the sweep's curves go to a tracker that the user interrupts while they are uploaded
        "+logger._target_=signal_logger.SignalLogger",
        f"+logger.signal_name={sig.name}",
        f"+logger.times={times}",
        check=False,
    )
    assert proc.returncode == 128 + sig, proc.stderr[-3000:]  # it exits as the signal asks, without a traceback
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    rep = assert_books_balance(sweep_dir, proc.stdout)  # the ledger, the report and the printed tag agree
    assert rep["trials_by_status"] == {"completed": 2}
    assert f"{sig.name} received while the sweep's report is written" in proc.stdout
    if times == 1:  # the first signal waited for the whole report: the curves were sent to the tracker too
        assert f"the report is written; exiting for {sig.name}" in proc.stdout
        assert "budget curves logged to SignalLogger" in proc.stdout
    else:  # a second one ends it at once
        assert "budget curves logged to" not in proc.stdout


@pytest.mark.timeout(300)
def test_ctrl_c_with_joblib_bills_what_each_job_metered_and_leaves_no_worker_running(tmp_path):
    # heartbeats every 2 s: without waiting for the jobs' final records, they would be billed up to 2 s stale
    common = ("x=0,1", "steps=400", "step_s=0.1", "hydra.sweeper.heartbeat_s=2", *JOBLIB_2)
    sweep_dir = tmp_path / "sweep"
    proc = popen(sweep_dir, *common)
    wait_for(lambda: spent_at_least(sweep_dir, range(2), 1.0), proc, timeout_s=120)
    workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if "loky" in " ".join(p.cmdline())]
    assert workers
    proc.send_signal(signal.SIGINT)  # Ctrl-C to the sweeper alone
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert_books_balance(sweep_dir, out)
    for job, event in finished(sweep_dir).items():
        record = read_record(sweep_dir, job)
        assert record is not None and record.status == "interrupted"  # the job's own final record, not a heartbeat
        assert event["status"] == "interrupted"
        assert Spend.from_dict(event["spend"]).energy_j == record.spend.energy_j  # billed what it metered
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == []  # nothing left running
    assert "job(s) [0, 1] were billed what they had metered" in out and "run again on resume" in out


def test_a_second_sweeper_on_the_same_dir_is_refused(tmp_path):
    sweep_dir = tmp_path / "sweep"
    hold = tmp_path / "hold"
    hold.touch()  # the first sweep's trial holds still until the second sweeper has been refused, however slow it is
    first = popen(sweep_dir, "x=0,1,2", "step_s=0.3", f"hold_file={hold}", "hydra.sweeper.budget.energy_kwh=1 kWh")
    try:
        wait_for(lambda: (sweep_dir / ".greenai" / "ledger.jsonl").exists(), first)
        second = run(
            sweep_dir,
            "x=0,1,2",
            "step_s=0.3",
            f"hold_file={hold}",
            "hydra.sweeper.budget.energy_kwh=1 kWh",
            "hydra.sweeper.resume=true",
            check=False,
        )
    finally:
        hold.unlink()
    assert second.returncode != 0
    assert "Another sweeper (pid" in second.stderr and "is running on" in second.stderr
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err[-3000:]
    rep = assert_books_balance(sweep_dir, out)
    assert rep["trials_by_status"] == {"completed": 3}
    assert sorted(finished(sweep_dir)) == [0, 1, 2]


def test_resume_never_reruns_a_trial_whose_final_record_is_on_disk(tmp_path):
    common = (GRID, "hydra.sweeper.budget.energy_kwh=20 J", "hydra.sweeper.prior_cost.energy_kwh=3 J")
    sweep_dir = tmp_path / "sweep"
    run(sweep_dir, *common)
    before = report(sweep_dir)
    ledger = sweep_dir / ".greenai" / "ledger.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    # the sweeper died right after the last trial wrote its final record, before the ledger heard of it
    last_finished = max(i for i, line in enumerate(lines) if '"event": "finished"' in line)
    ledger.write_text("".join(lines[:last_finished]))
    resumed = run(sweep_dir, *common, "hydra.sweeper.resume=true")
    assert "recovered from their records: jobs [5]" in resumed.stdout
    after = assert_books_balance(sweep_dir, resumed.stdout)
    assert after["trials_by_status"] == before["trials_by_status"] == {"completed": 6}
    assert after["spend"] == before["spend"]


def test_a_resume_with_the_budget_in_other_units_is_the_same_budget(tmp_path):
    sweep_dir = tmp_path / "sweep"
    run(sweep_dir, GRID, "hydra.sweeper.budget.energy_kwh=100 J", "hydra.sweeper.max_trials=2")
    resumed = run(
        sweep_dir,
        GRID,
        "hydra.sweeper.budget.energy_kwh=0.1 kJ",
        "hydra.sweeper.max_trials=2",
        "hydra.sweeper.resume=true",
    )
    assert "resuming" in resumed.stdout
    assert "The budget changed" not in resumed.stdout


def test_a_resume_with_a_larger_budget_spends_up_to_it_and_a_spent_one_stops_at_once(tmp_path):
    sweep_dir = tmp_path / "sweep"
    prior = "hydra.sweeper.prior_cost.energy_kwh=3 J"
    run(sweep_dir, GRID, "hydra.sweeper.budget.energy_kwh=10 J", prior)
    assert report(sweep_dir)["trials_by_status"] == {"completed": 3}  # 3 J trials: 9 J of 10 J
    raised = run(sweep_dir, GRID, "hydra.sweeper.budget.energy_kwh=20 J", prior, "hydra.sweeper.resume=true")
    assert (
        "The budget changed on resume (was 10.0 J, now 20.0 J): the sweep continues up to the new budget "
        "(energy_kwh 9.00 J, 3 trials so far)." in raised.stdout
    )
    rep = assert_books_balance(sweep_dir, raised.stdout)
    assert rep["trials_by_status"] == {"completed": 6}  # 18 J of 20 J: the grid went on where it stopped
    launched = [e for e in Ledger(sweep_dir / ".greenai" / "ledger.jsonl").events() if e["event"] == "launched"]
    assert [e["overrides"] for e in launched] == [[f"x={i}"] for i in range(6)]
    assert rep["budget"] == {"energy_kwh": pytest.approx(20 / 3.6e6)}
    assert "; budget 20.0 J" in raised.stdout  # the price tag's stop line: the budget in force
    # lowered below what was spent: nothing runs, and the log says why
    lowered = run(sweep_dir, GRID, "hydra.sweeper.budget.energy_kwh=5 J", prior, "hydra.sweeper.resume=true")
    assert (
        "The budget changed on resume (was 20.0 J, now 5.00 J), and the new one is already spent (energy_kwh 18.0 J, "
        "6 trials so far: energy_kwh): the sweep stops at once and runs nothing." in lowered.stdout
    )
    rep = assert_books_balance(sweep_dir, lowered.stdout)
    assert rep["trials_by_status"] == {"completed": 6}
    assert rep["stop_reason"] == "budget spent: energy_kwh"
    assert load(sweep_dir).header["budget"] == {"energy_kwh": pytest.approx(5 / 3.6e6)}


RANDOM = ("hydra.sweeper.strategy=random", "hydra.sweeper.max_trials=2")


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (("x=interval(0,1)",), "The grid strategy needs discrete values"),
        (("nokey=1,2",), "nokey"),
        # not a bare "math domain error" from the first draw
        (
            ("x=tag(log, interval(0, 1))", *RANDOM),
            "(parameter `x`): a log interval, tag(log, interval(a, b)), needs 0 < a",
        ),
        (("x=interval(1, 0)", *RANDOM), "(parameter `x`): an interval(a, b) needs finite ends with a < b, got a=1"),
    ],
)
def test_a_bad_search_space_never_writes_the_ledger(tmp_path, space, message):
    sweep_dir = tmp_path / "sweep"
    proc = run(sweep_dir, *space, check=False)
    assert proc.returncode != 0 and message in proc.stderr
    assert ("Traceback" not in proc.stderr) == ("nokey" not in message)  # ours are one line; Hydra's own is its
    assert not (sweep_dir / ".greenai" / "ledger.jsonl").exists()


def test_a_resume_compares_the_search_space_as_parsed_not_as_spelled(tmp_path):
    sweep_dir = tmp_path / "sweep"
    run(sweep_dir, "x=choice(0, 1,2)", "hydra.sweeper.max_trials=1")
    resumed = run(sweep_dir, "x=choice(0,1,2)", "hydra.sweeper.max_trials=1", "hydra.sweeper.resume=true")
    assert "resuming" in resumed.stdout
    proc = run(sweep_dir, "x=choice(0,1,3)", "hydra.sweeper.max_trials=1", "hydra.sweeper.resume=true", check=False)
    assert proc.returncode != 0 and "The search space changed" in proc.stderr
    # only what changed, not both whole searches (a rung option showed as a bare kWh figure among them)
    assert "resumed: arguments: ['x=choice(0, 1,2)'] vs ['x=choice(0,1,3)'] (was then vs now)." in proc.stderr


@pytest.mark.parametrize("strategy", ["random", "optuna"])
def test_a_search_space_that_sweeps_nothing_runs_one_trial_and_says_so(tmp_path, strategy):
    sweep_dir = tmp_path / "sweep"
    # hydra.sweeper.params is null in meter_task.yaml, and the command line sweeps nothing
    proc = run(sweep_dir, "x=2", f"hydra.sweeper.strategy={strategy}", "hydra.sweeper.max_trials=5")
    assert "the search space sweeps nothing (x=2: " in proc.stdout
    assert f"so the {strategy} search runs it once" in proc.stdout
    rep = report(sweep_dir)
    assert rep["trials_by_status"] == {"completed": 1}  # not five identical trials
    assert rep["stop_reason"] == "search space exhausted"


def test_a_resume_after_a_crash_counts_the_crashed_sessions_wall_time(tmp_path):
    # no bound here depends on the machine's speed: the crash comes at the second trial whatever the clock says (the
    # wall budget is never reached), and each bound is read from the ledger or timed around the session's process
    common = ("x=0,1,2,3", "steps=2", "step_s=0.5", "hydra.sweeper.budget.wall_hours=1 h", "hydra.sweeper.max_trials=3")
    sweep_dir = tmp_path / "sweep"
    crash = ("crash_at=0", "crash_x=1", "crash_mode=exit", f"crash_once_file={tmp_path / 'once'}")
    started = time.monotonic()
    proc = run(sweep_dir, *common, *crash, check=False)
    first_process_s = time.monotonic() - started
    assert proc.returncode == 17
    events = Ledger(sweep_dir / ".greenai" / "ledger.jsonl").events()
    header, first = events[0], finished(sweep_dir)[0]
    time.sleep(2.0)  # the sweeper is down: this is not the sweep's wall time
    resumed = run(sweep_dir, *common, *crash, "hydra.sweeper.resume=true")
    rep = assert_books_balance(sweep_dir, resumed.stdout)
    earlier_s = next(e for e in Ledger(sweep_dir / ".greenai" / "ledger.jsonl").events() if e["event"] == "resumed")[
        "earlier_wall_s"
    ]
    # the crashed session lasted at least until its first trial finished, and no longer than its process ran
    assert first["time"] - header["time"] <= earlier_s <= first_process_s
    # the sweep's wall time (what a wall budget is held at) is both sessions': the earlier one and the resumed trials
    again = [e for job, e in finished(sweep_dir).items() if job != 0 and e["status"] == "completed"]
    assert len(again) == 2  # job 1 run again, then job 2
    assert rep["wall_s"] >= earlier_s + sum(Spend.from_dict(e["spend"]).duration_s for e in again)
    # the price tag's duration is that wall time (both sessions); the trials' times are summed under their own name
    tag = json.loads(to_json(load(sweep_dir)))["price_tag"]
    assert tag["duration_s"] == rep["wall_s"]
    trial_time_s = sum(Spend.from_dict(e["spend"]).duration_s for e in finished(sweep_dir).values())
    assert tag["trial_time_sum_s"] == pytest.approx(trial_time_s)


def test_a_final_record_the_channel_cannot_take_comes_back_with_the_result(tmp_path):
    # job 0 loses its channel at its 2nd step and meters 5 J in all: its heartbeats and final record never arrive
    sweep_dir = tmp_path / "sweep"
    proc = run(sweep_dir, "x=0,1", "steps=5", "crash_mode=lose_channel", "crash_at=1", "crash_x=0")
    jobs = finished(sweep_dir)
    assert jobs[0]["status"] == "completed" and jobs[0]["objective"] == -9.0
    assert jobs[0]["spend"]["energy_j"] == {"gpu:0": 5.0}  # what the job metered, not its last heartbeat's 1 J
    assert "Cannot write the trial's heartbeat" in proc.stderr
    assert_books_balance(sweep_dir, proc.stdout)


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_the_wrapper_sends_an_undelivered_final_record_back_with_the_value_or_the_error(in_sweep_job, status):
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    from lightning_greenai import Meter
    from lightning_greenai.errors import GreenAIWarning
    from lightning_greenai.sensors.fake import FakeSensor
    from lightning_greenai.trial.task import TaskWrapper, Undelivered, carried_record

    def task(cfg):
        joules = {"j": 0.0}
        with Meter([FakeSensor("gpu:0", lambda: joules["j"])]) as meter:
            for _ in range(3):
                joules["j"] += 2.0
                meter.sample()
                heartbeat = in_sweep_job / ".greenai" / "trials" / "7.json"
                if not heartbeat.is_dir():
                    heartbeat.unlink(missing_ok=True)
                    heartbeat.mkdir()  # no write lands from now on
        if status == "failed":
            raise RuntimeError("the task failed")
        return {"objective": 0.5}

    OmegaConf.update(HydraConfig.get(), "overrides", {"task": []}, force_add=True)
    wrapper = TaskWrapper(task, "objective")

    def call():
        try:
            return JobReturn(status=JobStatus.COMPLETED, _return_value=wrapper(None))
        except RuntimeError as err:
            return JobReturn(status=JobStatus.FAILED, _return_value=err)

    with pytest.warns(GreenAIWarning, match="its final record goes back with the job's result"):
        ret = call()
    assert isinstance(ret._return_value, Undelivered if status == "completed" else RuntimeError)
    record = carried_record(ret)
    assert record is not None and record["status"] == status and record["spend"]["energy_j"] == {"gpu:0": 6.0}
    if status == "completed":
        assert ret.return_value == {"objective": 0.5}  # the task's own value back in its place


def meter_7_j_in_a_spawned_process() -> None:
    """A DDP-spawn rank's share of a trial: a new interpreter without Hydra, metering 7 J (module-level: picklable)."""
    from lightning_greenai import Meter
    from lightning_greenai.sensors.fake import FakeSensor

    joules = {"j": 0.0}
    with Meter([FakeSensor("gpu:0", lambda: joules["j"])]) as meter:
        joules["j"] = 7.0
        meter.sample()


def test_a_process_the_trial_spawns_reports_to_the_trial_and_its_spend_is_billed(in_sweep_job):
    # as Lightning's ddp_spawn starts its ranks: a fresh interpreter, no Hydra context, the trial's job still open
    import multiprocessing

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from lightning_greenai.trial.account import TRIAL_ENV
    from lightning_greenai.trial.task import TaskWrapper

    OmegaConf.update(HydraConfig.get(), "overrides", {"task": []}, force_add=True)

    def task(cfg):
        rank = multiprocessing.get_context("spawn").Process(target=meter_7_j_in_a_spawned_process)
        rank.start()
        rank.join(timeout=120)
        assert rank.exitcode == 0
        return {"objective": 0.5}

    assert TaskWrapper(task, "objective")(None) == {"objective": 0.5}
    record = read_record(in_sweep_job, 7)
    assert record.status == "completed" and record.objective == 0.5
    assert record.spend.energy_j == {"gpu:0": 7.0}  # the spawned rank's, kept by the job's final record
    assert TRIAL_ENV not in os.environ  # the context lived only while the task ran


# -- bad scores -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("score", ["nan", "inf", "-inf"])
def test_a_non_finite_score_is_a_failed_trial_and_never_the_best(tmp_path, score):
    sweep_dir = tmp_path / "sweep"
    proc = run(sweep_dir, "x=0,1,2", "crash_x=1", f"score={score}", "hydra.sweeper.max_failure_rate=1.0")
    jobs = finished(sweep_dir)
    assert jobs[1]["status"] == "failed" and jobs[1]["objective"] is None
    assert "not a finite number" in jobs[1]["error"]
    assert "Job 1 is recorded as failed" in proc.stdout + proc.stderr  # Hydra's log goes to stdout
    assert report(sweep_dir)["best"]["job"] == 2
    assert_books_balance(sweep_dir, proc.stdout)


def test_optuna_is_told_every_trial_identical_proposals_and_reruns_included(tmp_path):
    optuna = pytest.importorskip("optuna")
    sweep_dir = tmp_path / "sweep"
    common = (
        "x=choice(1)",  # every proposal is the same: each must be told once
        "hydra.sweeper.strategy=optuna",
        "hydra.sweeper.max_trials=4",
        "hydra.sweeper.max_batch_size=2",
    )
    crash = ("crash_at=1", "crash_x=1", "crash_mode=sysexit", f"crash_once_file={tmp_path / 'once'}")
    assert run(sweep_dir, *common, *crash, check=False).returncode == 1
    run(sweep_dir, *common, *crash, "hydra.sweeper.resume=true")
    study = optuna.load_study(study_name="greenai", storage=f"sqlite:///{sweep_dir / '.greenai' / 'optuna.db'}")
    states = [t.state.name for t in study.trials]
    assert "RUNNING" not in states
    assert states.count("COMPLETE") == 4


# -- damaged files and full disks -----------------------------------------------------------------------------------


def test_a_damaged_ledger_gives_notes_and_the_readable_rest_in_report_and_resume(tmp_path):
    common = (GRID, "hydra.sweeper.budget.energy_kwh=20 J", "hydra.sweeper.prior_cost.energy_kwh=3 J")
    sweep_dir = tmp_path / "sweep"
    crash = ("crash_at=0", "crash_x=4", "crash_mode=exit", f"crash_once_file={tmp_path / 'once'}")
    run(sweep_dir, *common, *crash, check=False)
    ledger = sweep_dir / ".greenai" / "ledger.jsonl"
    with open(ledger, "a") as fh:
        fh.write('["not", "an", "event"]\n')
        fh.write('{"event": "finished", "job": 99, "status": "completed", "spend": {"energy_j": {"gpu:0": NaN}}}\n')
        fh.write('{"event": "finished", "job": "seven", "status": "completed"}\n')
    heartbeat_path(sweep_dir, 4).write_text('{"job_num": 4, "spend": {"energy_j": {"gpu:0": -5}}}')
    cli = subprocess.run(
        [sys.executable, "-m", "lightning_greenai.reporting.cli", "report", str(sweep_dir), "--no-plots"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert cli.returncode == 0, cli.stderr
    assert "ledger line" in cli.stdout and "not a ledger event" in cli.stdout
    assert "energy_j['gpu:0'] must be a finite number >= 0, got nan" in cli.stdout
    assert "without an integer job number" in cli.stdout
    resumed = run(sweep_dir, *common, *crash, "hydra.sweeper.resume=true")
    assert "heartbeat" in resumed.stdout and "is damaged" in resumed.stdout
    assert "NaN" not in ledger.read_text().split("\n", 5)[-1].replace('{"energy_j": {"gpu:0": NaN}}', "")
    rep = assert_books_balance(sweep_dir, resumed.stdout)
    assert rep["trials_by_status"]["completed"] == 6


def test_a_full_disk_is_a_clear_error_naming_the_file_and_keeps_what_was_written(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append("header", search={})
    ledger.append("launched", job=0, overrides=["x=1"])
    full = Ledger(tmp_path / "full.jsonl")
    os.symlink("/dev/full", full.path)  # every write fails with ENOSPC, as on a full disk
    from lightning_greenai import StateWriteError

    with pytest.raises(StateWriteError, match=r"Cannot append to the sweep's ledger .*full.jsonl: No space left"):
        full.append("launched", job=1, overrides=[])
    with pytest.raises(StateWriteError, match=r"Cannot write .*price.json"):
        _write_into_a_file(tmp_path)
    assert [e["event"] for e in Ledger(ledger.path).events()] == ["header", "launched"]


def _write_into_a_file(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder must be")
    write_json_atomic(blocker / "price.json", {"a": 1})


def test_a_heartbeat_that_cannot_be_written_warns_and_the_trial_goes_on(tmp_path):
    from lightning_greenai import GreenAIWarning, Method
    from lightning_greenai.trial.account import TrialReporter

    (tmp_path / ".greenai").write_text("a file where the state folder must be")
    account = TrialReporter(tmp_path, 0, heartbeat_s=0)
    with pytest.warns(GreenAIWarning, match=r"Cannot write the trial's heartbeat .*0.json"):
        account.contribute("m", Spend(energy_j={"gpu:0": 1.0}, methods={"gpu:0": Method.COUNTER}))
    account.contribute("m", Spend(energy_j={"gpu:0": 2.0}, methods={"gpu:0": Method.COUNTER}))  # warned once
    assert account.spend.energy_j == {"gpu:0": 2.0}


def test_report_never_writes_through_a_symlink_or_outside_its_folder(tmp_path):
    sweep_dir = tmp_path / "sweep"
    run(sweep_dir, "x=0,1", "hydra.sweeper.budget.energy_kwh=1 kWh", "hydra.sweeper.report=false")
    outside = tmp_path / "outside"
    outside.mkdir()
    link = sweep_dir / "greenai_report"
    link.symlink_to(outside, target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = subprocess.run(
        [sys.executable, "-m", "lightning_greenai.reporting.cli", "report", str(sweep_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert cli.returncode == 2 and "Refusing to write plots" in cli.stderr
    assert list(outside.iterdir()) == []
    link.unlink()
    plots = sweep_dir / "greenai_report"
    plots.mkdir()
    victim = tmp_path / "victim.png"
    victim.write_text("keep me")
    (plots / "budget_curve.png").symlink_to(victim)
    cli = subprocess.run(
        [sys.executable, "-m", "lightning_greenai.reporting.cli", "report", str(sweep_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert cli.returncode == 0, cli.stderr
    assert victim.read_text() == "keep me"
    assert not (plots / "budget_curve.png").is_symlink()


@pytest.mark.parametrize(
    "launcher",
    [
        pytest.param(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], id="joblib"),
        pytest.param(["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"], id="submitit_local"),
    ],
)
def test_jobs_in_flight_together_overshoot_by_at_most_one_step_each(tmp_path, launcher):
    two_jobs_in_flight_overshoot_by_at_most_one_step_each(tmp_path / "sweep", *launcher)


def two_jobs_in_flight_overshoot_by_at_most_one_step_each(sweep_dir, *launcher):
    """Two 10 J trials admitted together (a 4 J prior) under a 15 J budget, on ``launcher``; returns the sweep's run."""
    proc = run(
        sweep_dir,
        "x=0,1,2,3",
        "steps=10",
        "step_s=0.05",
        "hydra.sweeper.budget.energy_kwh=15 J",
        "hydra.sweeper.prior_cost.energy_kwh=4 J",  # two 10 J trials admitted together: 20 J for a 15 J budget
        *launcher,
    )
    rep = assert_books_balance(sweep_dir, proc.stdout)
    assert rep["max_batch_size"] == 2
    # each job stops itself at its share (7.5 J), at the step that reaches it: one 1 J step past it at most
    assert rep["spend"]["energy_j"]["gpu:0"] <= 15.0 + 2 * 1.0
    assert rep["trials_by_status"].get("budget_stopped", 0) >= 1
    return proc


@pytest.mark.parametrize(
    ("module", "install"),
    [("wandb_is_not_here", "pip install wandb_is_not_here"), ("sklearn", "pip install 'lightning-greenai[examples]'")],
)
def test_a_missing_package_is_one_line_naming_the_install(tmp_path, module, install, monkeypatch):
    from lightning_greenai.sweep.rules import _missing_package

    assert _missing_package([f"ModuleNotFoundError: No module named '{module}'"]).endswith(install)
    if module == "sklearn":
        return
    sweep_dir = tmp_path / "sweep"
    proc = run(sweep_dir, "x=0,1", f"needs={module}", check=False)
    assert proc.returncode != 0
    assert f"The trials need the package `{module}`, which is not installed: {install}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert_books_balance(sweep_dir)


@pytest.mark.timeout(300)
def test_a_resume_waits_for_a_job_its_killed_sweeper_left_running_and_takes_its_final_record(tmp_path):
    sweep_dir, hold = tmp_path / "sweep", tmp_path / "hold"
    common = (
        "x=0,1",
        "steps=60",
        "step_s=0.1",
        f"hold_file={hold}",
        "hydra.sweeper.budget.energy_kwh=1 kWh",
        "hydra.sweeper.prior_cost.energy_kwh=4 J",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    )
    proc = popen(sweep_dir, *common)
    try:
        wait_for(lambda: spent_at_least(sweep_dir, range(2), 5.0), proc, timeout_s=120)
        hold.touch()  # the trials hold still (alive) from their next step until the resume is seen waiting for them
        proc.send_signal(signal.SIGKILL)  # the sweeper dies; joblib's workers run their trials on
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    alive = [r.pid for r in (read_record(sweep_dir, j) for j in range(2)) if r and psutil.pid_exists(r.pid)]
    if not alive:
        hold.unlink()  # the workers died with their sweeper: nothing to hold
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "1", "PYTHONUNBUFFERED": "1"}
    errors = tmp_path / "resume.err"
    with errors.open("w") as stderr:  # a file: a pipe nobody reads while stdout is read could fill and block it
        resume = subprocess.Popen(
            [sys.executable, str(TASK), "-m", f"hydra.sweep.dir={sweep_dir}", *common, "hydra.sweeper.resume=true"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            cwd=tmp_path,
        )
    try:
        seen = []
        if alive:  # read until the resume says it waits for the held jobs, then let them finish
            assert resume.stdout is not None
            while not any("still running from the sweeper that stopped" in line for line in seen):
                line = resume.stdout.readline()
                assert line, f"the resume ended without waiting: {''.join(seen)[-3000:]}{errors.read_text()[-3000:]}"
                seen.append(line)
            hold.unlink()
        out, _ = resume.communicate(timeout=240)
    finally:
        if resume.poll() is None:
            resume.kill()
    assert resume.returncode == 0, errors.read_text()[-3000:]
    rep = assert_books_balance(sweep_dir, "".join(seen) + out)
    spent = {job: e["spend"]["energy_j"]["gpu:0"] for job, e in finished(sweep_dir).items()}
    if alive:  # the orphans finished while the resume waited: each billed in full, once, and not run again
        assert rep["trials_by_status"] == {"completed": 2}
        assert spent == {0: 60.0, 1: 60.0}
    else:  # the workers died with their sweeper: billed at their heartbeats and run again
        assert rep["trials_by_status"].get("completed") == 2
