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
