"""Settling a finished job: its status, objective and spend, from its JobReturn and its trial record.

A job's record (its last heartbeat, or its final record) is what it is billed; the JobReturn says whether the task
returned and what. A launcher that raised loses the JobReturns: the jobs still running are waited for
(:func:`await_siblings`) and each is settled from its record alone.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lightning_greenai.sweep.history import Trial
from lightning_greenai.trial.channel import read_record
from lightning_greenai.trial.objective import ObjectiveError, extract_objective
from lightning_greenai.trial.record import TrialRecord, TrialStatus, job_alive
from lightning_greenai.trial.task import carried_record

if TYPE_CHECKING:
    from lightning_greenai.sweep.engine import BudgetSweep

__all__ = ["await_siblings", "launcher_reason", "settle"]

log = logging.getLogger(__name__)


def await_siblings(sweep: BudgetSweep, jobs: list[Trial], why: str = "still running after the launcher raised") -> None:
    """Wait for the jobs of a batch still running after the launcher raised for one of them.

    Hydra's submitit and Ray launchers wait for the jobs in order and raise at the first one that failed (a SLURM
    job cancelled with ``scancel`` or past its time limit, a Ray task that died): its siblings may still be
    running (and a resumed sweep finds those its crashed sweeper left). A job is waited for while its record is
    not final and it is alive: its process, on this host; its
    SLURM job, in ``squeue``; elsewhere, while its heartbeat moves (``max(6 x heartbeat_s, 60 s)`` of silence ends
    the wait). A job with no heartbeat yet (queued) is waited for while a sibling runs. Jobs given up on are
    billed at their last heartbeat.
    """
    quiet_s = max(6.0 * sweep.heartbeat_s, 60.0)
    seen: dict[int, tuple[int, float]] = {}  # job -> (last heartbeat seq, when this sweeper saw it change)
    told = False
    while True:
        now, running, queued = time.monotonic(), [], []
        for job in jobs:
            record = read_record(sweep.jobs_channel, job.job_num)
            if record is None:
                queued.append(job.job_num)
                continue
            if record.status != TrialStatus.RUNNING:
                continue
            if seen.get(job.job_num, (None,))[0] != record.seq:
                seen[job.job_num] = (record.seq, now)
            alive = job_alive(record)
            if alive and time.time() - record.updated_at > 10 * quiet_s:
                alive = None  # alive but silent for so long: a reused pid, or a job that hangs; heard no more
            if alive or (alive is None and now - seen[job.job_num][1] < quiet_s):
                running.append(job.job_num)
        if not running:
            return
        if not told:
            told = True
            sweep.on_note(f"[greenai] waiting for job(s) {running}, {why}")
        time.sleep(max(sweep.poll_s, 0.2))


#: The last line of a Python traceback: the exception's (dotted) type, then its message
_RAISED = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)(:|$)")


def launcher_reason(err: BaseException, limit: int = 400) -> str:
    """What a launcher's exception says, on one line, for the error of each trial whose JobReturn it lost.

    Its message up to the logs it quotes, and the error that ended the trace it quotes: submitit's
    ``FailedJobError`` holds the job's traceback, its ``UncompletedJobError`` SLURM's state (``TIMEOUT`` for a job
    killed at its time limit).
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    head: list[str] = []
    for line in lines:
        if set(line) <= set("-=") or (head and line.endswith(":")):
            break
        head.append(line)
    rest = lines[len(head) :]
    cause = next((line for line in reversed(rest) if _RAISED.match(line)), None)
    text = " ".join(head).removesuffix(":")
    if cause is not None:
        text = f"{text}; {cause}"
    text = f"the launcher raised {type(err).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def settle(
    sweep: BudgetSweep, job: Trial, ret: Any, *, interrupted: bool = False, lost_because: str | None = None
) -> None:
    """Decide a finished job's status, objective and spend from its JobReturn and its trial record.

    ``lost_because`` says why the JobReturn is missing (:func:`launcher_reason`), for the trial's error.
    """
    from hydra.core.utils import JobStatus

    notes: list[str] = []
    record = read_record(sweep.jobs_channel, job.job_num, notes, patience_s=60.0)
    if record is None and sweep.watchdog is not None:
        record = sweep.watchdog.last_good.get(job.job_num)  # a damaged last write: bill the last good one
    carried = carried_record(ret)  # a final record the channel could not take came back with the result
    if carried is not None:
        try:
            brought = TrialRecord.from_dict(carried)
        except ValueError as err:
            notes.append(f"job {job.job_num}'s final record came back damaged ({err})")
        else:
            if record is None or brought.seq >= record.seq:
                record = brought
    for note in notes:
        log.warning("%s", note)
    job.take_heartbeat(record)
    final = record is not None and record.status != TrialStatus.RUNNING
    if (
        final
        and record is not None
        and record.status in (TrialStatus.NOT_STARTED, TrialStatus.INTERRUPTED, TrialStatus.KILLED)
    ):
        job.status = record.status
        return
    if ret is None:
        if (
            final
            and record is not None
            and record.status
            in (TrialStatus.COMPLETED, TrialStatus.BUDGET_STOPPED, TrialStatus.PRUNED, TrialStatus.FAILED)
        ):
            job.status, job.partial = record.status, record.partial
            if record.status != TrialStatus.FAILED:
                _take_objective(sweep, job, record.objective)
            else:
                job.error = f"failed (its JobReturn was lost: {lost_because or 'its launcher failed'})"
        elif interrupted:
            job.status = TrialStatus.INTERRUPTED
            job.error = "the sweep was interrupted while it ran: billed at its last heartbeat, run again on resume"
        elif record is None:
            job.status, job.error = (
                TrialStatus.FAILED,
                f"no JobReturn and no heartbeat: lost before it ran ({lost_because or 'its launcher failed'})",
            )
        else:
            job.status, job.error = (
                TrialStatus.FAILED,
                f"no JobReturn ({lost_because or 'killed, or its launcher failed'}): billed at its heartbeat",
            )
        return
    if ret.status != JobStatus.COMPLETED:
        job.status, job.error = TrialStatus.FAILED, f"{type(ret._return_value).__name__}: {ret._return_value}"
        return
    if record is not None and record.status in (TrialStatus.BUDGET_STOPPED, TrialStatus.PRUNED):
        job.status, job.partial = record.status, record.partial
    else:
        job.status = TrialStatus.COMPLETED
    try:
        job.objective = extract_objective(ret.return_value, sweep.objective_key)
    except ObjectiveError as err:
        _no_objective(sweep, job, ret.return_value, err)
    if record is None and any(q != "wall_hours" for q in sweep.budget.limits):
        log.warning(
            "Job %d wrote no spend: is an EnergyMonitor, FlopMonitor or Meter in the task? Its spend counts as 0.",
            job.job_num,
        )


def _take_objective(sweep: BudgetSweep, job: Trial, value: Any) -> None:
    if value is None:
        if sweep.needs_objective:
            job.status, job.error = TrialStatus.FAILED, "no objective in its record"
        return
    try:
        job.objective = extract_objective(value)
    except ObjectiveError as err:
        _no_objective(sweep, job, value, err)


def _no_objective(sweep: BudgetSweep, job: Trial, value: Any, err: ObjectiveError) -> None:
    """A trial without a usable score: a failure where a score is needed, or where the score is NaN/infinite."""
    not_finite = isinstance(value, int | float) and not isinstance(value, bool) and not math.isfinite(value)
    if isinstance(value, Mapping) and sweep.objective_key in value:
        item = value[sweep.objective_key]
        not_finite = isinstance(item, int | float) and not math.isfinite(item)
    if sweep.needs_objective or not_finite:
        job.status, job.error, job.objective = TrialStatus.FAILED, str(err), None
        log.warning("Job %d is recorded as failed: %s", job.job_num, err)
    else:
        job.error = f"no objective: {err}"  # a plain grid sweep runs tasks that return anything
