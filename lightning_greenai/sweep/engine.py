"""The budget sweep: launch batches of trials until a compute budget is spent, and account for every joule.

This is the implementation behind ``hydra/sweeper=greenai`` (the Hydra plugin is a thin shell around
:class:`BudgetSweep`). It imports neither torch nor Lightning: Hydra scans sweepers at every start-up.

The books hold under faults: one sweeper per sweep dir (a lock); every trial, the one running when the sweep was
interrupted (Ctrl-C, SIGTERM, a trial's ``SystemExit``) included, is recorded with what it spent before the sweep
ends; a resume bills the trials a crash left open at their last heartbeat and reruns only those that never
finished; and the wall time of a crashed session still counts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from lightning_greenai.budget import Budget, measure
from lightning_greenai.errors import (
    BudgetConfigError,
    GridConfigError,
    StateWriteError,
)
from lightning_greenai.grid import Grid
from lightning_greenai.hardware import describe_hardware
from lightning_greenai.spend import Spend
from lightning_greenai.sweep.admission import admit
from lightning_greenai.sweep.books import Book
from lightning_greenai.sweep.config import SweepConfig
from lightning_greenai.sweep.history import Trial, limits_in_force, replay
from lightning_greenai.sweep.launchers import launcher_parallelism, prepare_launcher
from lightning_greenai.sweep.ledger import Ledger
from lightning_greenai.sweep.lock import SweepLock
from lightning_greenai.sweep.rules import (
    BudgetSpent,
    FailingRule,
    FailureRate,
    GainStop,
    MaxTrials,
    SearchSpaceExhausted,
    StopRule,
    SweepState,
    UnmeasuredBudget,
    first_reason,
)
from lightning_greenai.sweep.strategies import (
    GridStrategy,
    RandomStrategy,
    SearchStrategy,
    canonical_overrides,
    make_strategy,
    parse_overrides,
    sweeps_anything,
)
from lightning_greenai.trial.channel import (
    Channel,
    check_no_password,
    masked,
    open_channel,
    storage_url,
)
from lightning_greenai.trial.objective import ObjectiveError, extract_objective
from lightning_greenai.trial.record import TrialRecord, job_alive, state_dir
from lightning_greenai.trial.task import SweepInterrupted, TaskWrapper, carried_record
from lightning_greenai.units import S_PER_HOUR, format_duration, format_quantity

__all__ = ["BudgetSweep", "SweepInterrupted", "SweepStopped", "TaskWrapper", "Trial"]

log = logging.getLogger(__name__)


def _fingerprint(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _search_key(search: Any) -> str | None:
    """The fingerprint of a search as parsed: its overrides compared by meaning, not by spelling (``None``: damaged)."""
    if not isinstance(search, Mapping) or not isinstance(search.get("arguments"), list):
        return None
    from hydra.errors import HydraException

    try:
        arguments = canonical_overrides([str(a) for a in search["arguments"]])
    except (HydraException, ValueError):  # a recorded override Hydra cannot parse: no search this one can be
        return None
    return _fingerprint({**search, "arguments": arguments})


def merge_search_space(params: Mapping[str, str], arguments: Sequence[str]) -> list[str]:
    """The search space: ``hydra.sweeper.params`` with the command line's overrides replacing the same keys.

    Raises:
        BudgetConfigError: a key given twice on the command line.
    """
    merged: dict[str, str] = {str(k): f"{k}={v}" for k, v in params.items()}
    seen: set[str] = set()
    for override in parse_overrides(arguments):
        key = override.get_key_element()
        if key in seen:
            raise BudgetConfigError(
                f"`{key}` is given twice on the command line ({override.input_line!r} and {merged[key]!r}): give "
                "each parameter once."
            )
        seen.add(key)
        merged[key] = str(override.input_line)
    return list(merged.values())


@dataclass(frozen=True)
class SweepStopped:
    """A stopped sweep's result, for whoever reports it: where, why, its trials and what they spent."""

    sweep_dir: Path
    reason: str
    trials: list[Trial]
    spend: Spend  # the sum of the trials' spends
    spent: Mapping[str, float | None]  # of each limited quantity (wall time: the sweep's), empty when unlimited
    wall_s: float  # the sweep's wall time, earlier sessions included
    interrupted: bool = False  # stopped by an interrupt: it can be resumed


#: Seconds an interrupted sweep waits for its running jobs' final records (they stop at their next step).
INTERRUPT_GRACE_S = 20.0


def _stop_local_workers() -> None:
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


def _sweep_id(ledger: Ledger, sweep_dir: Path) -> str:
    """The id that keys a sweep's signals in a storage: its ledger's, or a new one for a new sweep.

    A sweep begun before ids were recorded keeps its sweep dir as its key, so its resume finds its rows.
    """
    header = ledger.header()
    if header is None:
        return uuid.uuid4().hex
    recorded = header.get("sweep_id")
    return recorded if isinstance(recorded, str) and recorded else str(sweep_dir)


class _Option:
    """A read-only view of one :class:`SweepConfig` field on the sweep, under the name the sweep's code reads."""

    def __init__(self, field: str | None = None) -> None:
        self.field = field

    def __set_name__(self, owner: type, name: str) -> None:
        self.field = self.field or name

    def __get__(self, sweep: BudgetSweep | None, owner: type) -> Any:
        if sweep is None:
            return self
        return getattr(sweep.options, str(self.field))

    def __set__(self, sweep: BudgetSweep, value: Any) -> None:
        raise AttributeError(f"{self.field} is an option of the sweep: set it in hydra.sweeper")


class BudgetSweep:
    """Run a budget-limited search (see the module docstring and ``conf/hydra/sweeper/greenai.yaml``).

    Raises:
        BudgetConfigError: an option out of range, naming it, the value and what is allowed.
    """

    budget = _Option()
    grid = _Option()
    strategy_name = _Option("strategy")
    max_trials = _Option()
    max_batch_size = _Option()
    params = _Option()
    seed = _Option()
    direction = _Option()
    score_bounds = _Option()
    stop_when = _Option()
    objective_key = _Option("objective")
    stop_policy = _Option()
    heartbeat_s = _Option()
    poll_s = _Option()
    prior_cost = _Option()
    cost_quantile = _Option()
    trial_allowance = _Option()
    max_failure_rate = _Option()
    resume = _Option()
    report = _Option()
    log_curves = _Option()
    sampler = _Option()
    cost_aware = _Option()
    storage = _Option()
    study_name = _Option()
    needs_objective = _Option()

    def __init__(self, **options: Any) -> None:
        """``options``: ``hydra.sweeper``'s, checked by :meth:`SweepConfig.parse` (a BudgetConfigError names one)."""
        self.options = SweepConfig.parse(**options)
        o = self.options
        #: Before each batch: the first reason ends the sweep; after each: a reason ends it with the rule's error
        self.stop_rules: list[StopRule] = [BudgetSpent(o), MaxTrials(o), SearchSpaceExhausted(), GainStop(o)]
        self.failing_rules: list[FailingRule] = [FailureRate(o), UnmeasuredBudget(o)]
        self._cost_warned = False
        self.sweep_id = ""  # the id that keys this sweep's signals: its ledger's (see _sweep_id)
        self.channel: Channel | None = None
        self.config: Any = None
        self.launcher: Any = None
        self.parallelism, self.parallelism_source = 1, "default"
        self.validate_batch: Callable[[Sequence[Sequence[str]]], None] = lambda batch: None
        self.watchdog: _Watchdog | None = None
        self._started = 0.0
        self._elapsed_before = 0.0
        self.signalled: int | None = None  # SIGTERM or SIGINT received while the sweep ran
        self._launched: set[int] = set()  # jobs with a "launched" event in this session
        #: Called once when the sweep stops, its books closed: what reports it (the engine neither prints nor publishes)
        self.on_stop: Callable[[SweepStopped], None] | None = None
        self.stopped: SweepStopped | None = None  # this sweep's result, once it stopped

    # -- Hydra wiring --------------------------------------------------------------------------------------------

    def setup(self, *, hydra_context: Any, task_function: Callable[[Any], Any], config: Any) -> None:
        """Build the configured launcher around a task wrapped to write its trial record."""
        from hydra.core.plugins import Plugins
        from omegaconf import OmegaConf

        sweeper = config.hydra.get("sweeper")
        written = OmegaConf.to_container(sweeper, resolve=False) if sweeper is not None else None
        if isinstance(written, dict):  # the option as written: a password through ${oc.env:...} is never written out
            check_no_password(written.get("storage"))
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=TaskWrapper(task_function, self.objective_key), config=config
        )
        prepare_launcher(self.launcher)
        self.parallelism, self.parallelism_source = launcher_parallelism(config.hydra.get("launcher"))

    @property
    def _channel(self) -> Channel:
        """How this sweep talks to its jobs (opened by :meth:`sweep`)."""
        if self.channel is None:
            raise RuntimeError("the sweep's channel is opened by BudgetSweep.sweep()")
        return self.channel

    @property
    def batch_size(self) -> int:
        """Trials launched together: ``max_batch_size``, by default the launcher's real parallelism."""
        return self.max_batch_size if self.max_batch_size is not None else self.parallelism

    def wall_s(self) -> float:
        """Wall time of this sweep so far, earlier sessions (crashed ones too) included."""
        return self._elapsed_before + (time.monotonic() - self._started if self._started else 0.0)

    def costs(self, trial: Trial) -> dict[str, float | None]:
        """What one trial cost in each limited quantity (wall time: its own metered duration)."""
        return self.budget.spent(trial.spend, self.grid)

    # -- the sweep -----------------------------------------------------------------------------------------------

    def sweep(self, arguments: Sequence[str]) -> list[Sequence[Any]]:
        """Run batches until the budget, ``max_trials`` or the search space is spent; return the JobReturn batches."""
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        folder = state_dir(sweep_dir)
        arguments = merge_search_space(self.params, arguments)
        # the search space is checked before anything is written: a bad one never poisons the sweep dir
        if self.strategy_name == "grid":
            make_strategy("grid", arguments, seed=self.seed, direction=self.direction, state_dir=folder)
        self.validate_batch(RandomStrategy(arguments, seed=self.seed).ask(1))
        if self.strategy_name != "grid" and not sweeps_anything(arguments):
            print(
                f"[greenai] the search space sweeps nothing ({' '.join(arguments) or 'no parameters'}: "
                "hydra.sweeper.params and the command line give no interval, choice, range or comma list), "
                f"so the {self.strategy_name} search runs it once, as Hydra's basic sweeper runs one job. Give "
                "hydra.sweeper.params to search, e.g. `model.lr: tag(log, interval(1e-4, 1e-1))`."
            )
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.signalled, self.stopped = None, None
        self.sweep_id = _sweep_id(Ledger(folder / "ledger.jsonl"), sweep_dir)
        self.channel = open_channel(sweep_dir, self.storage, key=self.sweep_id, create=True)
        with SweepLock(folder), _signals_raise(self):
            return self._sweep(sweep_dir, folder, arguments)

    def _sweep(self, sweep_dir: Path, folder: Path, arguments: list[str]) -> list[Sequence[Any]]:
        from omegaconf import OmegaConf

        search = {
            "arguments": sorted(arguments),
            "strategy": self.strategy_name,
            "seed": self.seed,
            "direction": self.direction,
            "objective": self.objective_key,
        }
        if self.sampler is not None:
            search["sampler"] = self.sampler
        if self.cost_aware is not None:
            search["cost_aware"] = self.cost_aware
        ledger = Ledger(folder / "ledger.jsonl")
        book, proposed, retry, recovered = self._load(ledger, sweep_dir, search)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self._channel.delete("stop", None)
        strategy = make_strategy(
            self.strategy_name,
            arguments,
            seed=self.seed,
            direction=self.direction,
            state_dir=folder,
            skip=proposed,
            sampler=self.sampler,
            cost_aware=self.cost_aware is not None,
            storage=self.storage,
            # two sweeps on one database are two studies, unless the user names one study for both
            study_name=self.study_name or (str(sweep_dir) if self.storage else None),
        )
        study = getattr(strategy, "study", None)
        if study is not None and self.study_name and len(study.trials) > len(book.trials):
            log.warning(
                "The Optuna study %r already holds %d trial(s) that this sweep did not run: it continues that study "
                "(its sampler learns from them). Give hydra.sweeper.study_name a new name for a fresh search.",
                self.study_name,
                len(study.trials) - len(book.trials),
            )
        for trial in recovered:  # finished while the sweeper was down: the strategy learns of them now
            self._tell(strategy, trial)
        self._started = time.monotonic()
        next_job = max((t.job_num for t in book.trials), default=-1) + 1
        returns: list[Sequence[Any]] = []
        jobs: list[Trial] = []
        settled: set[int] = set()
        reason = ""
        try:
            while True:
                stop = first_reason(self.stop_rules, SweepState(book, self.wall_s(), strategy, retry))
                if stop is not None:
                    reason = stop[1]
                    break
                used = self.budget.spent(book.spend, self.grid, wall_s=self.wall_s())
                # nothing metered yet (no trial has run) is 0 spent here, not unknown
                remaining = {q: limit - (used[q] or 0.0) for q, limit in self.budget.limits.items()}
                estimates = book.estimates()
                trials_left = None if self.max_trials is None else self.max_trials - book.counted
                k, why = admit(remaining, estimates, max_batch_size=self._cap(strategy, retry), trials_left=trials_left)
                if k == 0:
                    reason = why or "nothing admitted"
                    break
                # a resumed sweep first reruns the trials its crash interrupted
                reruns, retry = retry[:k], retry[k:]
                fresh = strategy.ask(k - len(reruns))
                jobs = [
                    Trial(next_job + i, list(t.overrides), strategy_id=t.strategy_id, rerun_of=t.job_num)
                    for i, t in enumerate(reruns)
                ] + [
                    Trial(next_job + len(reruns) + i, list(o), strategy_id=sid)
                    for i, (o, sid) in enumerate(zip(fresh, strategy.ids, strict=True))
                ]
                if not jobs:
                    reason = "search space exhausted"
                    break
                self.validate_batch([job.overrides for job in jobs])
                self._channel.delete("stop", None)
                allowance = self._allowance(estimates, self._share(remaining, min(len(jobs), self.parallelism)))
                for job in jobs:
                    self._prepare(job, allowance, ledger)
                results = self._launch(sweep_dir, jobs, book)
                for i, job in enumerate(jobs):
                    self._settle(job, None if results is None else results[i])
                    self._record(job, strategy, ledger, book)
                    settled.add(job.job_num)
                if results is not None:
                    returns.append(results)
                next_job += len(jobs)
                failing = first_reason(self.failing_rules, SweepState(book, self.wall_s(), strategy, retry))
                if failing is not None:
                    rule, reason = failing
                    self._finish(ledger, sweep_dir, book, reason)
                    raise rule.error(reason, book)
        except (KeyboardInterrupt, SystemExit, SweepInterrupted) as interrupt:
            self._interrupted(interrupt, sweep_dir, jobs, settled, strategy, ledger, book)
        except Exception as err:
            if self.signalled is None:
                raise
            # a signal that landed inside Hydra's or OmegaConf's code came out as another error: it is the interrupt
            cause: BaseException = (
                KeyboardInterrupt() if self.signalled == signal.SIGINT else SweepInterrupted(self.signalled)
            )
            cause.__cause__ = err
            self._interrupted(cause, sweep_dir, jobs, settled, strategy, ledger, book)
        self._finish(ledger, sweep_dir, book, reason)
        return returns

    def _failing(self, book: Book) -> str | None:
        """Why failed trials end the sweep: more of them than ``max_failure_rate``, or a run that metered nothing."""
        return self.failing_rules[0].check(SweepState(book))

    def _cap(self, strategy: SearchStrategy, retry: list[Trial]) -> int:
        """The most trials one batch may hold.

        With a budget: the launcher's parallelism (unless ``max_batch_size`` says otherwise), so no admitted trial
        waits in a queue while the budget runs out. An unlimited grid sweep spends nothing it must guard, and runs
        as Hydra's basic sweeper does: the whole grid in one batch.
        """
        if self.max_batch_size is None and self.budget.is_unlimited and isinstance(strategy, GridStrategy):
            return max(strategy.remaining + len(retry), 1)
        return self.batch_size

    def _prepare(self, job: Trial, allowance: Mapping[str, Any], ledger: Ledger) -> None:
        """Record a job's launch, write its allowance, and clear files an earlier sweep here left under its number."""
        self._channel.delete("heartbeat", job.job_num)
        self._channel.send("allowance", job.job_num, dict(allowance), patience_s=60.0)
        ledger.append(
            "launched", job=job.job_num, overrides=job.overrides, rerun_of=job.rerun_of, strategy_id=job.strategy_id
        )
        self._launched.add(job.job_num)

    def _launch(self, sweep_dir: Path, jobs: list[Trial], book: Book) -> Sequence[Any] | None:
        watchdog = self.watchdog = _Watchdog(self, sweep_dir, jobs, book)
        watchdog.start()
        keyed = [f"hydra.sweeper.sweep_id='{self.sweep_id}'"] if self.storage else []
        launch_overrides = [[*job.overrides, f"hydra.sweep.dir='{sweep_dir}'", *keyed] for job in jobs]
        try:
            results: Sequence[Any] | None = self.launcher.launch(launch_overrides, initial_job_idx=jobs[0].job_num)
        except Exception as err:  # a launcher that lost the batch's JobReturns (killed array job)
            self._raise_if_signalled(err)
            log.warning("The launcher raised %s: %s; reading each trial's record instead.", type(err).__name__, err)
            results = None
            self._await_siblings(jobs)
        finally:
            watchdog.stop()
        self._raise_if_signalled(None)  # a signal that reached a job as an ordinary failure is still the interrupt
        return results

    def _await_siblings(self, jobs: list[Trial], why: str = "still running after the launcher raised") -> None:
        """Wait for the jobs of a batch still running after the launcher raised for one of them.

        Hydra's submitit and Ray launchers wait for the jobs in order and raise at the first one that failed (a SLURM
        job cancelled with ``scancel`` or past its time limit, a Ray task that died): its siblings may still be
        running (and a resumed sweep finds those its crashed sweeper left). A job is waited for while its record is
        not final and it is alive: its process, on this host; its
        SLURM job, in ``squeue``; elsewhere, while its heartbeat moves (``max(6 x heartbeat_s, 60 s)`` of silence ends
        the wait). A job with no heartbeat yet (queued) is waited for while a sibling runs. Jobs given up on are
        billed at their last heartbeat.
        """
        quiet_s = max(6.0 * self.heartbeat_s, 60.0)
        seen: dict[int, tuple[int, float]] = {}  # job -> (last heartbeat seq, when this sweeper saw it change)
        told = False
        while True:
            now, running, queued = time.monotonic(), [], []
            for job in jobs:
                record = TrialRecord.load(self._channel, job.job_num)
                if record is None:
                    queued.append(job.job_num)
                    continue
                if record.status != "running":
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
                print(f"[greenai] waiting for job(s) {running}, {why}")
            time.sleep(max(self.poll_s, 0.2))

    def _raise_if_signalled(self, cause: BaseException | None) -> None:
        if self.signalled == signal.SIGINT:
            raise KeyboardInterrupt from cause
        if self.signalled is not None:
            raise SweepInterrupted(self.signalled) from cause

    def _tell(self, strategy: SearchStrategy, job: Trial) -> None:
        """Tell the strategy a job's result, with its measured cost on the ``cost_aware`` axis when one is set."""
        cost = None if self.cost_aware is None else measure(self.cost_aware, job.spend, self.grid, None)
        if self.cost_aware is not None and job.status == "completed" and not cost and not self._cost_warned:
            self._cost_warned = True
            log.warning(
                "hydra.sweeper.cost_aware=%s, but trial %s measured no %s: without costs the proposals stay TPE's. "
                "Meter it (an EnergyMonitor for energy, CO2e and money, a FlopMonitor for FLOPs, a GPU for "
                "GPU-hours) or choose another axis.",
                self.cost_aware,
                job.job_num,
                self.cost_aware,
            )
        strategy.tell(job.job_num, job.overrides, job.objective, job.status, job.strategy_id, cost=cost)

    def _record(self, job: Trial, strategy: SearchStrategy, ledger: Ledger, book: Book) -> None:
        self._tell(strategy, job)
        ledger.append("finished", **job.finished_event())
        book.add(job)

    def _interrupted(
        self,
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
        if self.watchdog is not None:
            self.watchdog.stop()
        # jobs still running elsewhere (submitit, Ray) stop, and queued ones do not start
        running = [job for job in jobs if job.job_num not in settled and job.job_num in self._launched]
        self._stop_for_interrupt(what, running, patience_s=30.0)
        _stop_local_workers()
        for job in jobs:
            if job.job_num in settled:
                continue
            if job.job_num in self._launched:
                self._settle(job, None, interrupted=True)
                self._record(job, strategy, ledger, book)
            else:  # proposed, never launched: not a trial; a resume proposes it again (Optuna is told it failed)
                strategy.tell(job.job_num, job.overrides, None, "not_started", job.strategy_id)
        self._finish(ledger, sweep_dir, book, f"interrupted: {what}", interrupted=True)
        raise SystemExit(code) from interrupt

    def stop_running_jobs(self, why: str) -> None:
        """Tell the jobs in flight to stop (the sweep was interrupted) and give them time to write final records."""
        watchdog = self.watchdog
        if self.channel is None or watchdog is None:
            return
        launched, done = self._launched, watchdog.finished
        self._stop_for_interrupt(
            why, [job for job in watchdog.jobs if job.job_num in launched and job.job_num not in done]
        )

    def _stop_for_interrupt(self, why: str, running: list[Trial], *, patience_s: float = 5.0) -> None:
        """Write STOP (kind interrupt) and wait up to ``INTERRUPT_GRACE_S`` for ``running`` jobs' final records."""
        try:
            self._channel.send(
                "stop", None, {"policy": "graceful", "kind": "interrupt", "reason": why}, patience_s=patience_s
            )
        except StateWriteError as err:  # the books still get written; the jobs stop at their allowances
            log.warning("Could not signal STOP to the running jobs: %s", err)
            return
        self._await_final_records(running, grace_s=INTERRUPT_GRACE_S)

    def _await_final_records(self, jobs: list[Trial], *, grace_s: float) -> None:
        """After an interrupt, give the jobs still running (told to stop) ``grace_s`` to write their final records.

        A job stops at its next step and writes what it metered up to then; without the wait it would be billed at its
        last heartbeat, up to ``heartbeat_s`` old. A second Ctrl-C ends the wait.
        """
        deadline = time.monotonic() + grace_s
        try:
            while time.monotonic() < deadline:
                records = [TrialRecord.load(self._channel, job.job_num) for job in jobs]
                if not any(r is not None and r.status == "running" and job_alive(r) is not False for r in records):
                    return
                time.sleep(min(self.poll_s, 0.2))
        except KeyboardInterrupt:
            log.warning("Interrupted again: the jobs still running are billed at their last heartbeat.")

    # -- helpers -------------------------------------------------------------------------------------------------

    def _load(
        self, ledger: Ledger, sweep_dir: Path, search: dict[str, Any]
    ) -> tuple[Book, int, list[Trial], list[Trial]]:
        """Start a ledger, or (resume) rebuild the sweep from one.

        Returns the book of trials so far, how many jobs the strategy had proposed, the trials to run again (billed
        at their last heartbeat, recorded ``interrupted``), and trials that finished while no sweeper watched.
        """
        header = ledger.header()
        budget = {"budget": self.budget.to_dict(), "max_trials": self.max_trials}
        book = Book(self, Spend())
        if header is None:
            events = ledger.events()
            if events or ledger.corrupt_lines:
                if not self.resume:
                    raise BudgetConfigError(
                        f"{ledger.path} has no readable header line. If it is this sweep's ledger, resume it with "
                        "hydra.sweeper.resume=true (its readable events are kept); otherwise choose another "
                        "hydra.sweep.dir."
                    )
                log.warning("The ledger's header is damaged (%s); resuming with the configured budget.", ledger.notes)
            ledger.append(
                "header",
                search=search,
                fingerprint=_search_key(search),
                **budget,
                grid=self.grid.to_dict(),
                sweep_id=self.sweep_id,
                storage=None if self.storage is None else masked(storage_url(self.storage)),
                score_bounds=None if self.score_bounds is None else list(self.score_bounds),
                hardware=describe_hardware(),
                stop_when=None if self.options.gain_rule is None else dict(self.stop_when),
            )
            if not events:
                return book, 0, [], []
            header = ledger.header()
            assert header is not None
        elif not self.resume:
            raise BudgetConfigError(
                f"{sweep_dir} already holds a greenai sweep. Pass hydra.sweeper.resume=true to continue it, or choose "
                "another hydra.sweep.dir."
            )
        if _search_key(header.get("search")) != _search_key(search):
            raise BudgetConfigError(
                "The search space changed since this sweep started, so it cannot be resumed: was "
                f"{header.get('search')}, now {search}. Use a new hydra.sweep.dir for a new search."
            )
        self._check_grid(header.get("grid"))
        self._check_storage(header)
        for note in ledger.notes:
            print(f"[greenai] note: {note}")
        history = replay(ledger.events())
        recovered, interrupted = [], []
        # a job the crashed sweeper left running (an orphaned worker, a SLURM job) finishes and is taken as it ends
        self._await_siblings(list(history.open.values()), why="still running from the sweeper that stopped")
        for job_num, trial in sorted(history.open.items()):
            notes: list[str] = []
            record = TrialRecord.load(self._channel, job_num, notes, patience_s=60.0)
            for note in notes:
                print(f"[greenai] note: {note}")
            trial.take_heartbeat(record)
            if record is not None and record.status in ("completed", "budget_stopped", "not_started", "killed"):
                trial.status, trial.objective, trial.partial = record.status, record.objective, record.partial
                recovered.append(trial)
            elif record is not None and record.status == "failed":
                trial.status, trial.error = "failed", "failed while the sweeper was down (see its log)"
                recovered.append(trial)
            else:
                trial.status = "interrupted"
                trial.error = "the sweep stopped while it ran: billed at its last heartbeat, run again on resume"
                interrupted.append(trial)
            # written now, but of the session that crashed: its time must not stretch that session over the downtime
            ledger.append("finished", **trial.finished_event(), recovered=True)
            history.finished[job_num] = trial
        last_alive = {
            job: record.updated_at
            for session in history.sessions
            for job in session.jobs
            if (record := TrialRecord.load(self._channel, job, patience_s=60.0)) is not None
        }
        self._elapsed_before = history.elapsed_s(last_alive)
        for trial in sorted(history.finished.values(), key=lambda t: t.job_num):
            book.add(trial)
        self._say_budget_change(limits_in_force(ledger.events()) or header, book)
        retry = [t for t in history.finished.values() if t.status == "interrupted" and t.job_num not in history.rerun]
        retry.sort(key=lambda t: t.job_num)
        ledger.append(
            "resumed",
            trials=len(history.finished),
            rerun=[t.job_num for t in retry],
            earlier_wall_s=self._elapsed_before,
            **budget,
        )
        billed = sum((t.spend for t in interrupted), Spend())
        print(
            f"[greenai] resuming {sweep_dir}: {len(history.finished)} trials on record, "
            f"{format_duration(self._elapsed_before)} of wall time in earlier sessions"
            + (f"; recovered from their records: jobs {[t.job_num for t in recovered]}" if recovered else "")
            + (
                f"; billed at their last heartbeat ({format_quantity('energy_kwh', billed.energy_kwh)}): jobs "
                f"{[t.job_num for t in interrupted]}"
                if interrupted
                else ""
            )
            + (f"; running again: jobs {[t.job_num for t in retry]}" if retry else "")
        )
        return book, history.proposed, retry, recovered

    def _check_grid(self, recorded: Any) -> None:
        """Refuse a resume whose grid prices differently from the one the spend so far was priced and held at."""
        if not isinstance(recorded, Mapping):
            return  # a ledger from before grids were recorded, or a damaged header: nothing to hold against
        try:
            then = Grid.from_dict(recorded)
        except GridConfigError as err:
            log.warning("The ledger's recorded grid is unreadable (%s); resuming with the configured grid.", err)
            return
        changed = then.differences(self.grid)
        if changed:
            raise BudgetConfigError(
                "The grid changed since this sweep started, so a resume would re-price what was already spent and "
                f"hold the rest of the budget at other figures ({'; '.join(changed)}; was then vs now). Restore "
                f"hydra.sweeper.grid to what it was ({then.describe()}), or start a new hydra.sweep.dir."
            )

    def _check_storage(self, header: Mapping[str, Any]) -> None:
        """Refuse a resume whose storage is another database than the one its jobs' records are in."""
        if "storage" not in header:
            return  # a ledger from before storages were recorded
        then, now = header.get("storage"), None if self.storage is None else masked(storage_url(self.storage))
        if then != now:
            files = "none: files in the sweep dir"
            raise BudgetConfigError(
                f"hydra.sweeper.storage reaches another database than when this sweep started (was {then or files}, "
                f"now {now or files}): its jobs' records and signals are there, and a resume without them would bill "
                f"and run its trials again. Resume with hydra.sweeper.storage={then or 'null'} (a relative SQLite "
                "path is read from the launch folder), or start a new hydra.sweep.dir."
            )

    def _say_budget_change(self, recorded: Mapping[str, Any], book: Book) -> None:
        """A resume may raise (or lower) the budget and ``max_trials``: say how, and whether any of it is left.

        The sweep then spends up to the new budget; one already spent stops it at once (its stop rules), running
        nothing. ``recorded``: the ledger event holding the limits of the session before.
        """
        was, was_trials = recorded.get("budget") or {}, recorded.get("max_trials")
        try:
            same = self.budget.same_as(was)
            was_text = _budget_text(Budget.parse(was), was_trials)
        except (BudgetConfigError, TypeError, AttributeError):  # a damaged record: whatever it said, this one holds now
            same, was_text = False, f"unreadable ({was!r})"
        if same and was_trials == self.max_trials:
            return
        now_text = _budget_text(self.budget, self.max_trials)
        used = self.budget.spent(book.spend, self.grid, wall_s=self._elapsed_before)
        spent = ", ".join(f"{q} {format_quantity(q, v, self.budget.currency)}" for q, v in used.items())
        spent += f"{', ' if spent else ''}{book.counted} trial{'' if book.counted == 1 else 's'}"
        over = self.budget.exceeded_by(book.spend, self.grid, wall_s=self._elapsed_before)
        if self.max_trials is not None and book.counted >= self.max_trials:
            over.append("max_trials")
        if over:
            log.warning(
                "The budget changed on resume (was %s, now %s), and the new one is already spent (%s so far: %s): "
                "the sweep stops at once and runs nothing. To continue, resume with a budget above what was spent.",
                was_text,
                now_text,
                spent,
                ", ".join(over),
            )
        else:
            log.info(
                "The budget changed on resume (was %s, now %s): the sweep continues up to the new budget (%s so far).",
                was_text,
                now_text,
                spent,
            )

    def _allowance(self, estimates: Mapping[str, float | None], remaining: Mapping[str, float]) -> dict[str, Any]:
        """What a trial may spend, in the budget's own quantities, written beside it before launch.

        ``trial``: ``trial_allowance`` x the estimate (if set). ``sweep``: its share of what is left of the budget
        (see :meth:`_share`): the job prices its own spend with the sweep's grid (the one its monitors take, see
        :func:`~lightning_greenai.trial.account.sweep_grid`) and stops itself at the step that reaches a cap,
        without waiting for the watchdog's next poll; the watchdog raises the share of the jobs still running when
        one finishes under its own. Wall time is a deadline (``deadline_unix_s``, the clock time the sweep's wall
        budget runs out), not a duration: a job's start-up counts, as it does on the sweep's clock. So the jobs of a
        batch never spend more than what was left by more than one step each, on every axis (under
        ``stop_policy=finish`` running trials finish: no ``sweep`` caps then).
        """
        out: dict[str, Any] = {"policy": self.stop_policy}
        if self.trial_allowance is not None:
            out["trial"] = {q: e * self.trial_allowance for q, e in estimates.items() if e is not None}
        if self.stop_policy != "finish":
            out["sweep"] = {q: left for q, left in remaining.items() if q != "wall_hours"}
            if "wall_hours" in remaining:
                out["deadline_unix_s"] = time.time() + max(remaining["wall_hours"], 0.0) * S_PER_HOUR
        return out

    def _share(self, remaining: Mapping[str, float], jobs: int) -> dict[str, float]:
        """Each of ``jobs`` running trials' share of ``remaining``: an equal part; wall time is shared, not split."""
        return {q: left if q == "wall_hours" else max(left, 0.0) / max(jobs, 1) for q, left in remaining.items()}

    def job_caps(self, spend: Spend, share: Mapping[str, float]) -> dict[str, float]:
        """A running job's ``sweep`` caps: what it spent so far plus its share of the headroom (wall time apart)."""
        measured = self.budget.spent(spend, self.grid)
        return {q: (measured.get(q) or 0.0) + limit for q, limit in share.items() if q != "wall_hours"}

    def _settle(self, job: Trial, ret: Any, *, interrupted: bool = False) -> None:
        """Decide a finished job's status, objective and spend from its JobReturn and its trial record."""
        from hydra.core.utils import JobStatus

        notes: list[str] = []
        record = TrialRecord.load(self._channel, job.job_num, notes, patience_s=60.0)
        if record is None and self.watchdog is not None:
            record = self.watchdog.last_good.get(job.job_num)  # a damaged last write: bill the last good one
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
        final = record is not None and record.status != "running"
        if final and record is not None and record.status in ("not_started", "interrupted", "killed"):
            job.status = record.status
            return
        if ret is None:
            if final and record is not None and record.status in ("completed", "budget_stopped", "failed"):
                job.status, job.partial = record.status, record.partial
                if record.status != "failed":
                    self._take_objective(job, record.objective)
                else:
                    job.error = "failed (its JobReturn was lost with the launcher)"
            elif interrupted:
                job.status = "interrupted"
                job.error = "the sweep was interrupted while it ran: billed at its last heartbeat, run again on resume"
            elif record is None:
                job.status, job.error = "failed", "no JobReturn and no heartbeat: the launcher lost it before it ran"
            else:
                job.status, job.error = (
                    "failed",
                    "no JobReturn (killed, or its launcher failed): billed at its heartbeat",
                )
            return
        if ret.status != JobStatus.COMPLETED:
            job.status, job.error = "failed", f"{type(ret._return_value).__name__}: {ret._return_value}"
            return
        if record is not None and record.status == "budget_stopped":
            job.status, job.partial = "budget_stopped", record.partial
        else:
            job.status = "completed"
        try:
            job.objective = extract_objective(ret.return_value, self.objective_key)
        except ObjectiveError as err:
            self._no_objective(job, ret.return_value, err)
        if record is None and any(q != "wall_hours" for q in self.budget.limits):
            log.warning(
                "Job %d wrote no spend: is an EnergyMonitor, FlopMonitor or Meter in the task? Its spend counts as 0.",
                job.job_num,
            )

    def _take_objective(self, job: Trial, value: Any) -> None:
        if value is None:
            if self.needs_objective:
                job.status, job.error = "failed", "no objective in its record"
            return
        try:
            job.objective = extract_objective(value)
        except ObjectiveError as err:
            self._no_objective(job, value, err)

    def _no_objective(self, job: Trial, value: Any, err: ObjectiveError) -> None:
        """A trial without a usable score: a failure where a score is needed, or where the score is NaN/infinite."""
        not_finite = isinstance(value, int | float) and not isinstance(value, bool) and not math.isfinite(value)
        if isinstance(value, Mapping) and self.objective_key in value:
            item = value[self.objective_key]
            not_finite = isinstance(item, int | float) and not math.isfinite(item)
        if self.needs_objective or not_finite:
            job.status, job.error, job.objective = "failed", str(err), None
            log.warning("Job %d is recorded as failed: %s", job.job_num, err)
        else:
            job.error = f"no objective: {err}"  # a plain grid sweep runs tasks that return anything

    def _finish(self, ledger: Ledger, sweep_dir: Path, book: Book, reason: str, *, interrupted: bool = False) -> None:
        """Close the books: the ledger's ``stopped`` event, then hand the result to ``on_stop`` (the report)."""
        wall_s = self.wall_s()
        spent = self.budget.spent(book.spend, self.grid, wall_s=wall_s) if not self.budget.is_unlimited else {}
        session_s = time.monotonic() - self._started if self._started else 0.0
        ledger.append("stopped", reason=reason, elapsed_s=session_s, wall_s=wall_s, trials=len(book.trials))
        count = len(book.trials)
        log.info("Budget sweep stopped: %s (%d trial%s).", reason, count, "" if count == 1 else "s")
        self.stopped = SweepStopped(sweep_dir, reason, list(book.trials), book.spend, spent, wall_s, interrupted)
        if self.on_stop is not None:
            self.on_stop(self.stopped)


@contextmanager
def _signals_raise(sweep: BudgetSweep) -> Iterator[None]:
    """While the sweep runs (main thread): SIGTERM raises :class:`SweepInterrupted`, SIGINT ``KeyboardInterrupt``.

    The first signal first tells the running jobs to stop and waits (``INTERRUPT_GRACE_S`` at most; a second signal
    ends the wait) for their final records, so each is billed what it metered up to the interrupt, before the launcher
    hears of it: joblib kills its workers at once on a ``KeyboardInterrupt``.

    Each also marks ``sweep.signalled``: an interrupt that lands inside a launcher's or Hydra's own code may come out
    as some other exception (or a failed job), and the sweep must still read it as the interrupt it was.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupt(signum: int, frame: FrameType | None) -> None:
        first = sweep.signalled is None
        sweep.signalled = signum
        if first:  # before the launcher hears of it (joblib kills its workers): the jobs stop and write their records
            sweep.stop_running_jobs(f"the sweeper received {signal.Signals(signum).name}")
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SweepInterrupted(signum)

    previous = {sig: signal.signal(sig, raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Watchdog:
    """Sum the heartbeats of in-flight jobs and write the STOP file when the budget is reached."""

    def __init__(self, sweep: BudgetSweep, sweep_dir: Path, jobs: list[Trial], book: Book) -> None:
        self.sweep, self.sweep_dir, self.jobs, self.book = sweep, sweep_dir, jobs, book
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="greenai-watchdog", daemon=True)
        self.stopped = False
        self.last_good: dict[int, TrialRecord] = {}  # the latest readable heartbeat of each job
        self.finished: set[int] = set()  # jobs of the batch whose record is final

    def start(self) -> None:
        """Start polling (not for an unlimited budget: nothing to stop)."""
        if not self.sweep.budget.is_unlimited:
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
            record = TrialRecord.load(sweep._channel, job.job_num)
            if record is not None:
                self.last_good[job.job_num] = record
            else:
                record = self.last_good.get(job.job_num)
            if record is not None:
                records[job.job_num] = record
                in_flight = in_flight + record.spend
        total = self.book.spend + in_flight
        fraction = sweep.budget.fraction_spent(total, sweep.grid, wall_s=sweep.wall_s())
        if fraction > 1.0 + 1e-9 and not self.stopped:  # strictly over (rounding aside): a trial ending at it finishes
            stop = {"policy": sweep.stop_policy, "kind": "budget", "reason": f"budget reached ({fraction:.1%} spent)"}
            try:
                sweep._channel.send("stop", None, stop)
                self.stopped = True
            except StateWriteError as err:  # tried again at the next poll; the jobs' allowances hold meanwhile
                log.warning("Could not signal STOP to the running jobs (trying again): %s", err)
        finished = {j for j, r in records.items() if r.status != "running"}
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
        share = sweep._share({q: h for q, h in headroom.items() if h is not None}, min(len(running), sweep.parallelism))
        for job_num in running:
            allowance = sweep._channel.receive("allowance", job_num)
            if not isinstance(allowance, dict) or "sweep" not in allowance:
                continue
            spent = records[job_num].spend if job_num in records else Spend()
            allowance["sweep"] = sweep.job_caps(spent, share)
            try:
                sweep._channel.send("allowance", job_num, allowance)
            except StateWriteError as err:  # its old, lower caps hold: it stops early, never late
                log.warning("Could not raise job %d's share of the budget: %s", job_num, err)


def _budget_text(budget: Budget, max_trials: int | None) -> str:
    """``10.0 J, max_trials 5``: a budget's limits in readable units."""
    parts = [format_quantity(q, v, budget.currency) for q, v in budget.limits.items()] or ["unlimited"]
    return ", ".join([*parts, f"max_trials {max_trials}"] if max_trials is not None else parts)
