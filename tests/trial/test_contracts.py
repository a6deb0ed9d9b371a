"""The contracts of what a sweep's jobs and its sweeper exchange: statuses, heartbeats, allowances, STOP."""

from __future__ import annotations

import json

import pytest

from lightning_greenai import TrialStatus
from lightning_greenai.trial.record import TrialRecord


def test_status_is_its_bare_word_in_json_messages_and_comparisons():
    status = TrialStatus.BUDGET_STOPPED
    assert status == "budget_stopped"
    assert str(status) == f"{status}" == "budget_stopped"
    assert json.dumps({"status": status}) == '{"status": "budget_stopped"}'
    assert {"budget_stopped": 1}[status] == 1


def test_status_parse_takes_only_known_words():
    assert TrialStatus.parse("killed") is TrialStatus.KILLED
    for damaged in ("done", None, 3, ["completed"], {"a": 1}):
        assert TrialStatus.parse(damaged) is None


def test_record_takes_a_bare_word_and_writes_it_back():
    record = TrialRecord(job_num=3, status="completed")  # type: ignore[arg-type]
    assert record.status is TrialStatus.COMPLETED
    text = json.dumps(record.to_dict())
    assert '"status": "completed"' in text
    assert TrialRecord.from_dict(json.loads(text)).status is TrialStatus.COMPLETED


def test_record_with_an_unknown_status_is_refused():
    with pytest.raises(ValueError, match="unknown status 'done'"):
        TrialRecord.from_dict({"job_num": 1, "status": "done"})


def test_allowance_and_stop_are_written_byte_for_byte_as_before(tmp_path):
    from lightning_greenai.trial.channel import FileChannel
    from lightning_greenai.trial.record import Allowance, StopSignal

    channel = FileChannel(tmp_path)
    # the dicts the sweeper wrote before these types existed, and the same messages typed
    before = {"policy": "graceful", "trial": {"energy_kwh": 0.5}, "sweep": {"energy_kwh": 2.0}, "deadline_unix_s": 9.5}
    typed = Allowance(policy="graceful", trial={"energy_kwh": 0.5}, sweep={"energy_kwh": 2.0}, deadline_unix_s=9.5)
    channel.send_allowance(4, typed)
    assert channel.get("allowance", 4) == json.dumps(before)
    assert channel.allowance(4) == typed == before
    stop = {"policy": "kill", "kind": "budget", "reason": "budget reached (101.0% spent)"}
    channel.send_stop(StopSignal(policy="kill", kind="budget", reason="budget reached (101.0% spent)"))
    assert channel.get("stop", None) == json.dumps(stop)
    assert channel.stop_signal() == StopSignal(policy="kill", kind="budget", reason="budget reached (101.0% spent)")


def test_damaged_allowances_and_stops_read_as_before(tmp_path):
    from lightning_greenai.trial.channel import FileChannel
    from lightning_greenai.trial.record import Allowance, StopSignal

    channel = FileChannel(tmp_path)
    assert channel.allowance(1) == Allowance() and channel.stop_signal() is None  # none written
    channel.put("allowance", 1, "{not json")
    assert channel.allowance(1) == Allowance()
    channel.put("allowance", 1, json.dumps({"energy_kwh": 3}))  # a plain mapping of limits: the trial's own
    assert channel.allowance(1).trial == {"energy_kwh": 3.0}
    damaged = {"policy": "graceful", "trial": {"energy_kwh": "x"}, "sweep": [1], "deadline_unix_s": True}
    channel.put("allowance", 1, json.dumps(damaged))
    assert channel.allowance(1) == Allowance(policy="graceful")
    assert Allowance(sweep={"energy_kwh": 0.0}).nothing_left(0.0)
    assert Allowance(deadline_unix_s=5.0).nothing_left(5.0) and not Allowance(deadline_unix_s=5.0).nothing_left(4.0)
    channel.put("stop", None, "STOP")  # written by hand: still a STOP, graceful
    assert channel.stop_signal() == StopSignal(policy="graceful", reason="STOP signal present")
    channel.put("stop", None, json.dumps({"policy": "graceful", "kind": "interrupt", "reason": "Ctrl-C"}))
    signal = channel.stop_signal()
    assert signal is not None and signal.interrupted and signal.reason == "Ctrl-C"


def test_a_channel_carries_only_its_kinds_types(tmp_path):
    from lightning_greenai.trial.channel import FileChannel
    from lightning_greenai.trial.record import StopSignal

    channel = FileChannel(tmp_path)
    with pytest.raises(TypeError, match="allowance messages are Allowances, not StopSignals"):
        channel.send("allowance", 1, StopSignal())
    assert channel.get("allowance", 1) is None


def write_ledger(path):
    from lightning_greenai.spend import Spend
    from lightning_greenai.sweep.history import Trial
    from lightning_greenai.sweep.ledger import Ledger

    ledger = Ledger(path / ".greenai" / "ledger.jsonl")
    ledger.append("header", search={"strategy": "random", "direction": "max"}, budget={})
    for job, (status, score) in enumerate([("completed", 0.5), ("failed", None), ("budget_stopped", 0.7)]):
        ledger.append("launched", job=job, overrides=[f"x={job}"], rerun_of=None, strategy_id=job)
        trial = Trial(job, [f"x={job}"], status=status, objective=score, spend=Spend(energy_j={"gpu:0": 10.0 * job}))
        trial.slurm_job = "7_1" if job == 2 else None
        ledger.append("finished", **trial.finished_event(), **({"recovered": True} if job == 1 else {}))
    ledger.append("launched", job=3, overrides=["x=3"], rerun_of=None, strategy_id=3)  # still running
    return ledger


def test_the_report_reads_the_ledger_as_the_sweeper_does(tmp_path):
    from lightning_greenai.reporting.summary import load
    from lightning_greenai.sweep.history import replay

    ledger = write_ledger(tmp_path)
    summary = load(tmp_path)
    history = replay(ledger.events())
    assert summary.trials == sorted(history.finished.values(), key=lambda t: t.job_num)
    assert [t.job_num for t in summary.ranked_trials()] == [0, 2] and summary.scores() == [0.5, 0.7]
    assert any("1 trial(s) in flight" in n for n in summary.notes)
    # each trial still reads as the finished event the ledger holds, with its launch's overrides
    finished = [e for e in ledger.events() if e["event"] == "finished"]
    for trial, event in zip(summary.trials, finished, strict=True):
        assert json.dumps(trial.to_json()) == json.dumps(event | {"overrides": [f"x={event['job']}"]})
        assert trial["objective"] == event["objective"] and trial.get("slurm_job") == event.get("slurm_job")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ({"event": "finished", "time": "noon", "job": 9, "status": "completed"}, "time 'noon', not a finite number"),
        ({"event": "launched", "job": 9, "overrides": [], "rerun_of": "2"}, "rerun_of '2', not an integer"),
    ],
)
def test_a_ledger_line_the_sweeper_could_not_replay_is_skipped_with_a_note(tmp_path, line, problem):
    from lightning_greenai.reporting.summary import load
    from lightning_greenai.sweep.history import replay
    from lightning_greenai.sweep.ledger import Ledger

    ledger = write_ledger(tmp_path)
    with open(ledger.path, "a") as fh:
        fh.write(json.dumps(line) + "\n")
    again = Ledger(ledger.path)
    replay(again.events())  # never a traceback on resume
    assert any(problem in n for n in again.notes)
    assert len(load(tmp_path).trials) == 3


def test_a_pruned_trials_stop_goes_to_it_alone_and_the_rung_rides_on_its_allowance(tmp_path):
    from lightning_greenai.trial.channel import FileChannel
    from lightning_greenai.trial.record import Allowance, StopSignal

    channel = FileChannel(tmp_path)
    channel.send_stop(StopSignal(kind="prune", reason="rung 1 (1 epoch): 0.41 < top third 0.63"), job_num=3)
    assert (tmp_path / ".greenai" / "trials" / "3.stop.json").exists() and channel.stop_signal() is None
    signal = channel.stop_signal(job_num=3)
    assert signal is not None and signal.pruned and not signal.interrupted and channel.stop_signal(job_num=4) is None
    channel.send_allowance(3, Allowance(policy="graceful", next_rung=3.0))
    assert channel.get("allowance", 3) == json.dumps({"policy": "graceful", "next_rung": 3.0})
    assert channel.allowance(3).next_rung == 3.0
    channel.put("allowance", 3, json.dumps({"policy": "graceful", "next_rung": "soon"}))
    assert channel.allowance(3).next_rung is None  # damaged: no rung, the trial never waits on it


def test_a_heartbeat_carries_its_reports_and_refuses_damaged_ones():
    record = TrialRecord(job_num=1, reports=[(1.0, 0.5), (2.0, 0.6)], max_resource=9.0)
    data = json.loads(json.dumps(record.to_dict()))
    assert data["reports"] == [[1.0, 0.5], [2.0, 0.6]] and data["max_resource"] == 9.0
    assert TrialRecord.from_dict(data).reports == [(1.0, 0.5), (2.0, 0.6)]
    assert "reports" not in TrialRecord(job_num=1).to_dict()  # a trial that reports nothing writes as before
    for damaged in ([[1.0]], [[1.0, None]], "0.5", [[1.0, float("nan")]]):
        with pytest.raises(ValueError, match=r"reports|score|resource"):
            TrialRecord.from_dict({"job_num": 1, "reports": damaged})


@pytest.mark.parametrize("verdict", ["pruned", "promoted"])
def test_a_report_at_a_rung_waits_for_the_sweepers_verdict(tmp_path, verdict):
    import threading
    import time

    from lightning_greenai.trial.account import TrialReporter
    from lightning_greenai.trial.channel import FileChannel, read_record
    from lightning_greenai.trial.record import Allowance, StopSignal

    channel = FileChannel(tmp_path)
    channel.send_allowance(0, Allowance(next_rung=1.0))
    reporter = TrialReporter(channel, 0, heartbeat_s=0.0)
    reporter.report_score(0.5, 0.2)  # below the rung: no verdict needed, no wait

    def sweeper() -> None:  # answers once the report at the rung is on the heartbeat
        while len(getattr(read_record(channel, 0), "reports", [])) < 2:
            time.sleep(0.005)
        if verdict == "pruned":
            channel.send_stop(StopSignal(kind="prune", reason="rung 1: 0.3 < top third 0.5"), job_num=0)
        else:
            channel.send_allowance(0, Allowance(next_rung=3.0))

    thread = threading.Thread(target=sweeper)
    thread.start()
    reporter.report_score(1.0, 0.3, max_resource=9)
    thread.join()
    pruned = reporter.prune_request()
    assert (pruned is not None) == (verdict == "pruned")
    assert read_record(channel, 0).reports == [(0.5, 0.2), (1.0, 0.3)]


def test_a_silent_sweeper_is_warned_about_and_the_trial_goes_on(tmp_path):
    from lightning_greenai import GreenAIWarning
    from lightning_greenai.trial.account import TrialReporter
    from lightning_greenai.trial.channel import FileChannel
    from lightning_greenai.trial.record import Allowance

    channel = FileChannel(tmp_path)
    channel.send_allowance(0, Allowance(next_rung=1.0))
    reporter = TrialReporter(channel, 0, heartbeat_s=0.0, verdict_patience_s=0.05)
    with pytest.warns(GreenAIWarning, match=r"gave no verdict on this trial's report at 1 epoch within 0.05 s"):
        reporter.report_score(1.0, 0.3)
    assert reporter.prune_request() is None
