"""The sweeper's side of stopping trials at rungs: read the reports on the heartbeats, decide, record, answer.

A running trial adds each report of its monitored score to its heartbeat (``TrialRecord.reports``) and, at a rung,
waits. The watchdog hands each heartbeat it reads to :meth:`Pruning.observe`, which gives the strategy every report
it has not seen, in order, records each decision at a rung in the ledger (a ``rung`` event: the job, the rung, its
score, ``promoted`` or ``pruned``, and why), and answers the trial: a STOP sent to it alone (kind ``prune``), or its
allowance's ``next_rung`` raised past the rung. A resume replays the ``rung`` events into the strategy
(:meth:`Pruning.replay`), so its rungs hold the same scores and it decides as the first session would have.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from lightning_greenai.errors import StateWriteError
from lightning_greenai.sweep.history import Trial
from lightning_greenai.sweep.ledger import Ledger
from lightning_greenai.sweep.strategies import PruningStrategy
from lightning_greenai.trial.channel import Channel
from lightning_greenai.trial.record import Allowance, StopSignal, TrialStatus

__all__ = ["Pruning"]

log = logging.getLogger(__name__)


class Pruning:
    """Act on the reports of a sweep's running trials for a strategy that stops them at rungs.

    Args:
        strategy: The sweep's strategy (``asha``, ``hyperband``, or Optuna's with a pruner).
        ledger: The sweep's ledger, where each decision at a rung is recorded.
        channel: How the sweep talks to its jobs.
    """

    def __init__(self, strategy: PruningStrategy, ledger: Ledger, channel: Channel) -> None:
        self.strategy, self.ledger, self.channel = strategy, ledger, channel
        self.seen: dict[int, int] = {}  # job -> how many of its reports the strategy was given
        self.pruned: set[int] = set()
        self._lock = threading.Lock()  # the watchdog's thread observes while a batch runs, the engine after it

    def replay(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Give the strategy the ``rung`` events of earlier sessions; returns how many.

        The scores of a job that was interrupted are dropped: it runs again under a new number, which reports anew.
        """
        count, interrupted = 0, set()
        for event in events:
            if event.get("event") == "rung":
                self.strategy.replay(event)
                count += 1
            elif event.get("event") == "finished" and event.get("status") == TrialStatus.INTERRUPTED:
                interrupted.add(int(event["job"]))
        for job_num in sorted(interrupted):
            self.strategy.forget(job_num)
        return count

    def allowance(self, job: Trial, allowance: Allowance) -> Allowance:
        """A job's allowance before launch, with the rung its first report waits at."""
        return replace(allowance, next_rung=self.strategy.first_rung(job.job_num))

    def observe(
        self, job: Trial, reports: Sequence[tuple[float, float]], max_resource: float | None, *, running: bool = True
    ) -> None:
        """Decide on the ``reports`` (all a job made so far) the strategy has not seen; answer the job while it runs.

        A job that ended without waiting for a verdict at a rung (its patience ran out) is decided all the same, so
        its scores count for the trials after it; the ``rung`` event then says ``late``.
        """
        with self._lock:
            if job.job_num in self.pruned:
                return
            new = reports[self.seen.get(job.job_num, 0) :]
            if not new:
                return
            next_rung: float | None = None
            for resource, score in new:
                self.seen[job.job_num] = self.seen.get(job.job_num, 0) + 1
                verdict = self.strategy.report(job.job_num, job.strategy_id, resource, score, max_resource)
                next_rung = verdict.next_rung
                if verdict.decision is not None:
                    late = {} if running else {"late": True}
                    self.ledger.append("rung", **verdict.event(job.job_num, score, max_resource), **late)
                if verdict.stop:
                    self.pruned.add(job.job_num)
                    if running:
                        self._send(job.job_num, StopSignal(policy="graceful", kind="prune", reason=verdict.reason))
                    return
            if running:
                self._raise_rung(job.job_num, next_rung)

    def _send(self, job_num: int, signal: StopSignal) -> None:
        try:
            self.channel.send_stop(signal, job_num=job_num, patience_s=30.0)
        except StateWriteError as err:  # the trial waits out its patience and goes on: it is billed all the same
            log.warning("Could not tell job %d it was pruned: %s", job_num, err)

    def _raise_rung(self, job_num: int, next_rung: float | None) -> None:
        """Let the job past its rung: its allowance's ``next_rung`` becomes the next one (``None``: the end)."""
        allowance = self.channel.allowance(job_num)
        if allowance.next_rung == next_rung:
            return
        try:
            self.channel.send_allowance(job_num, replace(allowance, next_rung=next_rung), patience_s=30.0)
        except StateWriteError as err:
            log.warning("Could not let job %d past its rung: %s", job_num, err)
