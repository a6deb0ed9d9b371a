"""Interrupts: Ctrl-C, SIGTERM or a trial's ``SystemExit`` while a sweep runs.

Every trial, the ones running at the interrupt included, is recorded with what it spent before the sweep ends: the
running jobs are told to stop (STOP, kind interrupt) and given ``INTERRUPT_GRACE_S`` to write their final records;
the launcher's local workers are ended; the books are closed and the sweep exits non-zero.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from lightning_greenai.errors import StateWriteError
from lightning_greenai.sweep.history import Trial
from lightning_greenai.sweep.ledger import Ledger
from lightning_greenai.sweep.settle import settle
from lightning_greenai.sweep.strategies import SearchStrategy
from lightning_greenai.trial.channel import read_record
from lightning_greenai.trial.record import StopSignal, TrialStatus, job_alive
from lightning_greenai.trial.task import SweepInterrupted

if TYPE_CHECKING:
    from lightning_greenai.sweep.books import Book
    from lightning_greenai.sweep.engine import BudgetSweep

__all__ = ["INTERRUPT_GRACE_S", "closing_books", "interrupted", "signals_raise", "stop_running_jobs"]

log = logging.getLogger(__name__)

#: Seconds an interrupted sweep waits for its running jobs' final records (they stop at their next step).
INTERRUPT_GRACE_S = 20.0


def stop_local_workers() -> None:
    """End the launcher's worker processes on this machine (joblib's loky pool), so an interrupt leaves none running.

    Their jobs have written their final records or were given the grace period to; loky keeps idle workers alive for
    the next call, which an interrupted sweep never makes.
    """
    import psutil

    def is_worker(process: psutil.Process) -> bool:
        try:
            return "loky" in " ".join(process.cmdline())
        except psutil.Error:
            return False

    try:
        workers = [p for p in psutil.Process().children(recursive=True) if is_worker(p)]
    except psutil.Error:
        return
    for worker in workers:
        with suppress(psutil.Error):
            worker.terminate()
    _, alive = psutil.wait_procs(workers, timeout=5.0)
    for worker in alive:
        with suppress(psutil.Error):
            worker.kill()


@contextmanager
def _handling(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """SIGTERM and SIGINT go to ``handler`` inside the block, then back to what handled them before.

    Only the main thread can set handlers: elsewhere (a sweep run from a thread) they stay as they are.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


@contextmanager
def signals_raise(sweep: BudgetSweep) -> Iterator[None]:
    """While the sweep runs (main thread): SIGTERM raises :class:`SweepInterrupted`, SIGINT ``KeyboardInterrupt``.

    The first signal first tells the running jobs to stop and waits (``INTERRUPT_GRACE_S`` at most; a second signal
    ends the wait) for their final records, so each is billed what it metered up to the interrupt, before the launcher
    hears of it: joblib kills its workers at once on a ``KeyboardInterrupt``.

    Each also marks ``sweep.signalled``: an interrupt that lands inside a launcher's or Hydra's own code may come out
    as some other exception (or a failed job), and the sweep must still read it as the interrupt it was.
    """

    def raise_interrupt(signum: int, frame: FrameType | None) -> None:
        first = sweep.signalled is None
        sweep.signalled = signum
        if first:  # before the launcher hears of it (joblib kills its workers): the jobs stop and write their records
            stop_running_jobs(sweep, f"the sweeper received {signal.Signals(signum).name}")
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SweepInterrupted(signum)

    with _handling(raise_interrupt):
        yield


@contextmanager
def closing_books(sweep: BudgetSweep) -> Iterator[None]:
    """While the books close (the ledger's ``stopped`` event, the report, the trackers' curves): a signal waits.

    A first SIGINT or SIGTERM of a sweep that ended lets the report be written, then exits as that signal does
    (``128 + signal``): an interrupt raised inside a tracker's upload would leave the report half written. A second
    one, or one while an interrupted sweep closes its books, exits at once.
    """
    waiting: list[int] = []

    def wait_for_the_books(signum: int, frame: FrameType | None) -> None:
        if waiting or sweep.signalled is not None:
            raise SystemExit(128 + signum)
        waiting.append(signum)
        sweep.on_note(
            f"[greenai] {signal.Signals(signum).name} received while the sweep's report is written: it exits once "
            "that is done"
        )

    with _handling(wait_for_the_books):
        yield
    if waiting:
        sweep.on_note(f"[greenai] the report is written; exiting for {signal.Signals(waiting[0]).name}")
        raise SystemExit(128 + waiting[0])


def interrupted(
    sweep: BudgetSweep,
    interrupt: BaseException,
    sweep_dir: Path,
    jobs: list[Trial],
    settled: set[int],
    strategy: SearchStrategy,
    ledger: Ledger,
    book: Book,
) -> None:
    """Record every open trial, close the books (``on_stop`` says how to resume), and exit non-zero."""
    if isinstance(interrupt, SweepInterrupted):
        what, code = f"the sweeper received {interrupt}", 128 + interrupt.signum
    elif isinstance(interrupt, KeyboardInterrupt):
        what, code = "interrupted (Ctrl-C)", 130
    elif isinstance(interrupt, SystemExit) and isinstance(interrupt.__context__, KeyboardInterrupt):
        what, code = "interrupted (Ctrl-C)", 130  # Lightning turns Ctrl-C in a fit into sys.exit(1)
    elif isinstance(interrupt, SystemExit):
        exit_code = interrupt.code if isinstance(interrupt.code, int) and interrupt.code else 1
        what, code = f"a trial exited (SystemExit({interrupt.code!r}), e.g. SIGTERM in Lightning)", exit_code
    else:
        what, code = type(interrupt).__name__, 1
    if sweep.watchdog is not None:
        sweep.watchdog.stop()
    # jobs still running elsewhere (submitit, Ray) stop, and queued ones do not start
    running = [job for job in jobs if job.job_num not in settled and job.job_num in sweep.launched]
    stop_for_interrupt(sweep, what, running, patience_s=30.0)
    stop_local_workers()
    for job in jobs:
        if job.job_num in settled:
            continue
        if job.job_num in sweep.launched:
            settle(sweep, job, None, interrupted=True)
            sweep.record(job, strategy, ledger, book)
        else:  # proposed, never launched: not a trial; a resume proposes it again (Optuna is told it failed)
            strategy.tell(job.job_num, job.overrides, None, TrialStatus.NOT_STARTED, job.strategy_id)
    sweep.finish(ledger, sweep_dir, book, f"interrupted: {what}", interrupted=True)
    raise SystemExit(code) from interrupt


def stop_running_jobs(sweep: BudgetSweep, why: str) -> None:
    """Tell the jobs in flight to stop (the sweep was interrupted) and give them time to write final records."""
    watchdog = sweep.watchdog
    if sweep.channel is None or watchdog is None:
        return
    launched, done = sweep.launched, watchdog.finished
    stop_for_interrupt(
        sweep, why, [job for job in watchdog.jobs if job.job_num in launched and job.job_num not in done]
    )


def stop_for_interrupt(sweep: BudgetSweep, why: str, running: list[Trial], *, patience_s: float = 5.0) -> None:
    """Write STOP (kind interrupt) and wait up to ``INTERRUPT_GRACE_S`` for ``running`` jobs' final records."""
    try:
        sweep.jobs_channel.send_stop(StopSignal(policy="graceful", kind="interrupt", reason=why), patience_s=patience_s)
    except StateWriteError as err:  # the books still get written; the jobs stop at their allowances
        log.warning("Could not signal STOP to the running jobs: %s", err)
        return
    await_final_records(sweep, running, grace_s=INTERRUPT_GRACE_S)


def await_final_records(sweep: BudgetSweep, jobs: list[Trial], *, grace_s: float) -> None:
    """After an interrupt, give the jobs still running (told to stop) ``grace_s`` to write their final records.

    A job stops at its next step and writes what it metered up to then; without the wait it would be billed at its
    last heartbeat, up to ``heartbeat_s`` old. A second Ctrl-C ends the wait.
    """
    deadline = time.monotonic() + grace_s
    try:
        while time.monotonic() < deadline:
            records = [read_record(sweep.jobs_channel, job.job_num) for job in jobs]
            if not any(
                r is not None and r.status == TrialStatus.RUNNING and job_alive(r) is not False for r in records
            ):
                return
            time.sleep(min(sweep.poll_s, 0.2))
    except KeyboardInterrupt:
        log.warning("Interrupted again: the jobs still running are billed at their last heartbeat.")
