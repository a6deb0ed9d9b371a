import time
import tracemalloc

import pytest

from lightning_greenai import Method, Spend
from lightning_greenai.io import read_json, write_json_atomic
from lightning_greenai.sweep.admission import admit, estimate_trial_cost
from lightning_greenai.sweep.ledger import MAX_LINE_BYTES, Ledger
from lightning_greenai.trial.channel import FileChannel, heartbeat_path, read_record
from lightning_greenai.trial.record import TrialRecord


def test_ledger_reads_incrementally_and_survives_a_torn_last_line(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append("header", fingerprint="abc")
    ledger.append("launched", job=0, overrides=[])
    assert [e["event"] for e in ledger.events()] == ["header", "launched"]
    with open(ledger.path, "a") as fh:  # the sweeper died mid-write
        fh.write('{"event": "finished", "job"')
    reader = Ledger(ledger.path)
    assert [e["event"] for e in reader.events()] == ["header", "launched"]
    assert reader.truncated_tail
    ledger.append("launched", job=1, overrides=["x=1"])  # a resumed sweeper ends the torn line first: no event is lost
    events = reader.events()
    assert [e["event"] for e in events] == ["header", "launched", "launched"]
    assert events[-1]["job"] == 1
    assert reader.corrupt_lines == [3]


def test_a_large_ledger_is_streamed_a_line_at_a_time(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append("header", fingerprint="abc")
    ledger.append("launched", job=0, overrides=[])
    with open(ledger.path, "a") as fh:
        for _ in range(4 * MAX_LINE_BYTES // 2**20):  # one damaged line of 64 MiB, written a MiB at a time
            fh.write("x" * 2**20)
        fh.write("\n" + "[" * 100_000 + "]" * 100_000 + "\n")  # and one nested too deep for Python's parser
    ledger.append("finished", job=0, status="completed", objective=0.5)
    size = ledger.path.stat().st_size

    reader = Ledger(ledger.path)
    events = iter(reader)
    assert iter(events) is events  # an iterator: lines are read as they are asked for
    assert next(events)["event"] == "header"
    assert reader.notes == []  # the damaged lines further on are not read yet
    assert reader.header() == {"event": "header", "time": pytest.approx(time.time(), abs=600), "fingerprint": "abc"}

    tracemalloc.start()
    try:
        kinds = [e["event"] for e in reader.events()]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kinds == ["header", "launched", "finished"]
    assert peak < size / 3  # at most one line's worth (16 MiB) at a time, not the whole 64 MiB file
    assert reader.corrupt_lines == [3, 4]
    assert reader.notes[0] == f"ledger line 3 skipped: longer than 16 MiB ({4 * MAX_LINE_BYTES + 1} bytes)"
    assert reader.notes[1].startswith("ledger line 4 skipped: not valid JSON (nested 100000 levels deep")


def test_a_deeply_nested_heartbeat_or_message_is_damaged_not_a_recursion_error(tmp_path):
    path = heartbeat_path(tmp_path, 3)
    path.parent.mkdir(parents=True)
    path.write_text("{" + '"a":{' * 100_000 + "}" * 100_001)
    notes: list[str] = []
    assert read_record(tmp_path, 3, notes) is None
    assert notes == [
        f"heartbeat {path} is not valid JSON (nested 100001 levels deep, more than the 64 levels JSON is read to): "
        "ignored"
    ]
    assert read_json(path) is None
    assert FileChannel(tmp_path).receive("heartbeat", 3, unreadable="damaged") == "damaged"


def test_trial_record_round_trip_and_atomic_write(tmp_path):
    record = TrialRecord(
        job_num=3,
        seq=5,
        status="budget_stopped",
        spend=Spend(energy_j={"gpu:0": 2.5}, methods={"gpu:0": Method.COUNTER}),
        objective=0.9,
    )
    write_json_atomic(heartbeat_path(tmp_path, 3), record.to_dict())
    loaded = read_record(tmp_path, 3)
    assert loaded.to_dict() == record.to_dict()
    assert read_record(tmp_path, 4) is None
    assert read_json(tmp_path / "missing.json") is None
    assert not list(heartbeat_path(tmp_path, 3).parent.glob(".*.tmp"))


def test_admission_caps_the_batch_by_what_the_budget_can_pay_for():
    assert admit({"energy_kwh": 10.0}, {"energy_kwh": 3.0}, max_batch_size=8, trials_left=None) == (3, None)
    assert admit({"energy_kwh": 10.0}, {"energy_kwh": None}, max_batch_size=8, trials_left=None) == (1, None)
    k, why = admit({"energy_kwh": 2.0}, {"energy_kwh": 3.0}, max_batch_size=8, trials_left=None)
    assert k == 0 and "not even one fits" in why
    assert admit({"wall_hours": 1.0}, {"wall_hours": 0.5}, max_batch_size=4, trials_left=None) == (4, None)
    assert admit({}, {}, max_batch_size=3, trials_left=5) == (3, None)  # never more than the launcher runs at once
    assert admit({"wall_hours": 1.0}, {"wall_hours": None}, max_batch_size=2, trials_left=None) == (1, None)
    assert admit({"flops": 100.0}, {"flops": 1.0}, max_batch_size=4, trials_left=2) == (2, None)


def test_cost_estimate_is_the_larger_of_prior_and_a_high_percentile():
    assert estimate_trial_cost(None, []) is None
    assert estimate_trial_cost(2.0, []) == 2.0
    assert estimate_trial_cost(1.0, [1.0, 2.0, 3.0, 4.0, 5.0], 0.9) == 4.6
    assert estimate_trial_cost(9.0, [1.0, 2.0], 0.9) == 9.0


def test_a_resumes_record_of_a_crashed_sessions_jobs_does_not_stretch_that_session_over_the_downtime():
    from lightning_greenai.sweep.history import replay

    events = [
        {"event": "header", "time": 0.0},
        {"event": "launched", "time": 1.0, "job": 0, "overrides": ["x=0"]},
        # the sweeper crashed at ~2 s; a resume 100 s later records job 0 (of the crashed session) and starts anew
        {"event": "finished", "time": 100.0, "job": 0, "status": "interrupted", "recovered": True},
        {"event": "resumed", "time": 100.0},
        {"event": "stopped", "time": 110.0},
    ]
    history = replay(events)
    assert history.elapsed_s({0: 2.0}) == 2.0 + 10.0  # both sessions, not the 98 s the sweeper was down
