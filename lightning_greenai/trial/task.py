"""The job side of the sweep's task: run the user's task and write the trial's final record, whatever happens."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from lightning_greenai.errors import TrialKilledError
from lightning_greenai.trial.account import TrialReporter, current_trial, job_context
from lightning_greenai.trial.objective import ObjectiveError, extract_objective
from lightning_greenai.trial.record import StopSignal, TrialStatus

__all__ = ["SweepInterrupted", "TaskWrapper", "Undelivered", "carried_record"]

log = logging.getLogger(__name__)


class SweepInterrupted(BaseException):
    """The sweep was interrupted (SIGTERM to the sweeper); raised in its main thread like ``KeyboardInterrupt``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_CONFIG_FLAGS = ("--config-path", "--config-name", "--config-dir", "-cp", "-cn", "-cd")


@contextmanager
def _single_run_argv() -> Iterator[None]:
    """Make ``sys.argv`` this job's own command line (its overrides, no ``-m``) while its task runs.

    Lightning's DDP launcher starts the other ranks by re-running ``sys.argv``: under a multirun that would be the
    whole sweep again in every rank. With the job's overrides, each rank runs this one trial.
    """
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task)
    except (ImportError, ValueError):
        yield
        return
    saved = list(sys.argv)
    kept: list[str] = []
    args = iter(saved[1:])
    for arg in args:
        if arg.split("=", 1)[0] in _CONFIG_FLAGS:
            kept.append(arg)
            if "=" not in arg:
                kept.append(next(args, ""))
    # hydra.mode=RUN: a search preset may set `hydra.mode: MULTIRUN` in its config (the template's hparams_search)
    sys.argv = [saved[0], *kept, *overrides, "hydra.mode=RUN"]
    try:
        yield
    finally:
        sys.argv = saved


@contextmanager
def _leave_the_process_as_found() -> Iterator[None]:
    """Undo what a trial's DDP run leaves in a process that runs the next trial too (the basic launcher).

    Lightning's DDP launcher sets ``MASTER_PORT``, ``LOCAL_RANK`` ... in ``os.environ`` and keeps its process group:
    the next trial would take ``LOCAL_RANK`` for processes started by someone else and wait for them, or join the
    dead group of the last trial. Both are put back as they were.
    """
    environ = dict(os.environ)
    was_distributed = _distributed_initialized()
    try:
        yield
    finally:
        if not was_distributed and _distributed_initialized():
            import torch.distributed as dist

            with suppress(Exception):  # the other ranks have exited: nothing to agree on
                dist.destroy_process_group()
        for key in set(os.environ) - set(environ):
            del os.environ[key]
        os.environ.update(environ)


@contextmanager
def _finish_wandb_runs_left_open() -> Iterator[None]:
    """Finish a W&B run the trial started and left open (no ``wandb.finish()`` in the task).

    Otherwise the next trial in the process (the basic launcher runs them all in one), and the sweep's own summary run,
    would log into it: W&B hands the open run to every later ``wandb.init``.
    """
    wandb = sys.modules.get("wandb")
    before = getattr(wandb, "run", None)
    failed = True
    try:
        yield
        failed = False
    finally:
        wandb = sys.modules.get("wandb")  # the task may have imported it
        run = getattr(wandb, "run", None)
        if wandb is not None and run is not None and run is not before:
            with suppress(Exception):  # a tracker that cannot close must not change the trial's outcome
                wandb.finish(exit_code=1 if failed else 0)


def _distributed_initialized() -> bool:
    dist = sys.modules.get("torch.distributed")  # never imports torch: a task without it has no process group
    return bool(dist is not None and dist.is_available() and dist.is_initialized())


@dataclass(frozen=True)
class Undelivered:
    """A task's result with the trial's final record that the channel could not take (its database was away).

    The record travels back with the job's result, through the launcher (in process, pickled by joblib, submitit or
    Ray), so the sweeper bills the trial what its job metered, not a stale heartbeat. A failed task's record rides on
    its exception instead, as :data:`RECORD_ATTRIBUTE`.
    """

    value: Any
    record: dict[str, Any]


RECORD_ATTRIBUTE = "greenai_final_record"


def carried_record(ret: Any) -> dict[str, Any] | None:
    """The final record a JobReturn carries back (and the task's own value put back in its place), if any."""
    value = getattr(ret, "_return_value", None)
    if isinstance(value, Undelivered):
        ret._return_value = value.value
        return value.record
    record = getattr(value, RECORD_ATTRIBUTE, None) if isinstance(value, BaseException) else None
    return record if isinstance(record, dict) else None


def _finish(reporter: TrialReporter, status: TrialStatus, objective: float | None = None) -> dict[str, Any] | None:
    """Write the final record; return it when it could not be delivered."""
    return None if reporter.finish(status, objective) else reporter.record.to_dict()


def _carry(value: Any, record: dict[str, Any] | None) -> Any:
    return value if record is None else Undelivered(value, record)


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
        if request is None and reporter.nothing_left():
            request = StopSignal(policy=None, kind="budget", reason="nothing was left of the budget when it began")
        if request is not None:
            status = TrialStatus.INTERRUPTED if request.interrupted else TrialStatus.NOT_STARTED
            undelivered = _finish(reporter, status)
            reason = request.reason if request.reason is not None else "the sweep stopped"
            log.info("Job %d not started: %s", reporter.job_num, reason)
            return _carry(None, undelivered)
        reporter.set_status(TrialStatus.RUNNING)
        try:
            with _single_run_argv(), _leave_the_process_as_found(), _finish_wandb_runs_left_open():
                context = job_context()
                if context is not None:  # ranks a DDP spawn starts have no Hydra: they report to this trial through it
                    context.export()
                value = self.task(cfg)
        except BaseException as err:
            if isinstance(err, TrialKilledError):
                status = TrialStatus.KILLED
            elif isinstance(err, KeyboardInterrupt | SystemExit | SweepInterrupted):
                status = TrialStatus.INTERRUPTED
            else:
                status = TrialStatus.FAILED
            undelivered = _finish(reporter, status)
            if undelivered is not None:
                with suppress(AttributeError, TypeError):  # an exception that takes no attributes goes without
                    setattr(err, RECORD_ATTRIBUTE, undelivered)
            raise
        try:
            objective: float | None = extract_objective(value, self.objective_key)
        except ObjectiveError:
            objective = None  # the sweeper decides whether that fails the trial (it sees the return value)
        status = reporter.record.status
        if status not in (TrialStatus.BUDGET_STOPPED, TrialStatus.INTERRUPTED, TrialStatus.PRUNED):
            status = TrialStatus.COMPLETED
        return _carry(value, _finish(reporter, status, objective))
