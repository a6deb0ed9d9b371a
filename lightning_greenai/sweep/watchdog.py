"""The watchdog: while a batch runs, sum its jobs' heartbeats with the books and write STOP when the budget is spent."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from lightning_greenai.errors import StateWriteError
from lightning_greenai.spend import Spend
from lightning_greenai.sweep.history import Trial
from lightning_greenai.trial.channel import read_record
from lightning_greenai.trial.record import StopSignal, TrialRecord, TrialStatus

if TYPE_CHECKING:
    from lightning_greenai.sweep.books import Book
    from lightning_greenai.sweep.engine import BudgetSweep

__all__ = ["Watchdog"]

log = logging.getLogger(__name__)


class Watchdog:
    """Sum the heartbeats of in-flight jobs and write the STOP file when the budget is reached.

    It also hands each heartbeat's reports to the sweep's :class:`~lightning_greenai.sweep.pruning.Pruning`, when its
    strategy stops trials at rungs.
    """

    def __init__(self, sweep: BudgetSweep, sweep_dir: Path, jobs: list[Trial], book: Book) -> None:
        self.sweep, self.sweep_dir, self.jobs, self.book = sweep, sweep_dir, jobs, book
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="greenai-watchdog", daemon=True)
        self.stopped = False
        self.last_good: dict[int, TrialRecord] = {}  # the latest readable heartbeat of each job
        self.finished: set[int] = set()  # jobs of the batch whose record is final

    def start(self) -> None:
        """Start polling (not for an unlimited budget, unless trials are stopped at rungs: nothing to stop)."""
        if not self.sweep.budget.is_unlimited or self.sweep.pruning is not None:
            self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.wait(self.sweep.poll_s):
            self.check_once()

    def check_once(self) -> bool:
        """Add the in-flight heartbeats to the finished trials; write STOP once over the budget. Returns STOP.

        Wall time is the sweep's elapsed time, never a sum of the trials' durations. Under ``stop_policy=finish`` the
        STOP file only keeps queued trials from starting. When a job of the batch finishes, the headroom left is
        shared again among the jobs still running (their ``sweep`` caps rise by what it did not use).
        """
        sweep = self.sweep
        in_flight = Spend()
        records: dict[int, TrialRecord] = {}
        for job in self.jobs:
            record = read_record(sweep.jobs_channel, job.job_num)
            if record is not None:
                self.last_good[job.job_num] = record
            else:
                record = self.last_good.get(job.job_num)
            if record is not None:
                records[job.job_num] = record
                in_flight = in_flight + record.spend
                if sweep.pruning is not None:  # its reports of the monitored score, decided at their rungs
                    running = record.status == TrialStatus.RUNNING
                    sweep.pruning.observe(job, record.reports, record.max_resource, running=running)
        total = self.book.spend + in_flight
        fraction = sweep.budget.fraction_spent(total, sweep.grid, wall_s=sweep.wall_s())
        if fraction > 1.0 + 1e-9 and not self.stopped:  # strictly over (rounding aside): a trial ending at it finishes
            stop = StopSignal(policy=sweep.stop_policy, kind="budget", reason=f"budget reached ({fraction:.1%} spent)")
            try:
                sweep.jobs_channel.send_stop(stop)
                self.stopped = True
            except StateWriteError as err:  # tried again at the next poll; the jobs' allowances hold meanwhile
                log.warning("Could not signal STOP to the running jobs (trying again): %s", err)
        finished = {j for j, r in records.items() if r.status != TrialStatus.RUNNING}
        if finished - self.finished and sweep.stop_policy != "finish" and not self.stopped:
            self.finished = finished
            self._reshare(records, total)
        return self.stopped

    def _reshare(self, records: Mapping[int, TrialRecord], total: Spend) -> None:
        """Share the headroom among the jobs still running, and rewrite their allowances."""
        sweep = self.sweep
        running = [job.job_num for job in self.jobs if job.job_num not in self.finished]
        if not running:
            return
        headroom = sweep.budget.remaining(total, sweep.grid, wall_s=sweep.wall_s())
        # the jobs that can run at once share it (a batch larger than the launcher runs waits in its queue)
        share = sweep.share({q: h for q, h in headroom.items() if h is not None}, min(len(running), sweep.parallelism))
        for job_num in running:
            allowance = sweep.jobs_channel.allowance(job_num)
            if allowance.sweep is None:
                continue
            spent = records[job_num].spend if job_num in records else Spend()
            try:
                sweep.jobs_channel.send_allowance(job_num, replace(allowance, sweep=sweep.job_caps(spent, share)))
            except StateWriteError as err:  # its old, lower caps hold: it stops early, never late
                log.warning("Could not raise job %d's share of the budget: %s", job_num, err)
