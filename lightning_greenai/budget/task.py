"""The job side of the sweep's task: run the user's task and write the trial's final record, whatever happens."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

from lightning_greenai.budget.objective import ObjectiveError, extract_objective
from lightning_greenai.budget.trial import current_trial
from lightning_greenai.errors import TrialKilledError

__all__ = ["SweepInterrupted", "TaskWrapper"]

log = logging.getLogger(__name__)


class SweepInterrupted(BaseException):
    """The sweep was interrupted (SIGTERM to the sweeper); raised in its main thread like ``KeyboardInterrupt``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class TaskWrapper:
    """Runs the user's task in the job process and writes the trial's final record (status, objective, spend).

    The record survives a launcher that loses JobReturns (a killed array job takes its siblings' results with it):
    the sweeper reads each finished trial's objective from its file. A trial that begins after the sweep's STOP
    signal does not run its task: it is recorded ``not_started`` (``interrupted`` when the sweep itself was
    interrupted, so that a resume runs it). Ctrl-C, SIGTERM turned into ``SystemExit`` (Lightning, SLURM, ``timeout``)
    record the trial ``interrupted`` before they go on. Picklable if the task is.
    """

    def __init__(self, task: Callable[[Any], Any], objective_key: str | None) -> None:
        self.task, self.objective_key = task, objective_key

    def __call__(self, cfg: Any) -> Any:
        """Run the task, then write the trial's final record."""
        reporter = current_trial()
        if reporter is None:
            return self.task(cfg)
        request = reporter.stop_request()
        if request is not None:
            interrupted = request.get("kind") == "interrupt"
            reporter.finish("interrupted" if interrupted else "not_started")
            log.info("Job %d not started: %s", reporter.job_num, request.get("reason", "the sweep stopped"))
            return None
        reporter.set_status("running")
        try:
            value = self.task(cfg)
        except TrialKilledError:
            reporter.finish("killed")
            raise
        except (KeyboardInterrupt, SystemExit, SweepInterrupted):
            reporter.finish("interrupted")
            raise
        except BaseException:
            reporter.finish("failed")
            raise
        try:
            objective: float | None = extract_objective(value, self.objective_key)
        except ObjectiveError:
            objective = None  # the sweeper decides whether that fails the trial (it sees the return value)
        status = "budget_stopped" if reporter.record.status == "budget_stopped" else "completed"
        reporter.finish(status, objective)
        return value
