"""The budget sweep: launch batches of trials until a compute budget is spent, and account for every joule.

This is the implementation behind ``hydra/sweeper=greenai`` (the Hydra plugin is a thin shell around
:class:`BudgetSweep`). It imports neither torch nor Lightning: Hydra scans sweepers at every start-up. This module is
the batch loop; its parts are beside it: the options (``config``), the stop rules (``rules``), the books (``books``),
the watchdog, settling a finished job (``settle``), starting or resuming a ledger (``resume``) and interrupts. It
neither prints nor publishes: its progress notes go to ``on_note`` (logged, unless set) and, when it stops, it hands
a :class:`SweepStopped` to ``on_stop`` (see :mod:`lightning_greenai.reporting.sweep_files`).

The books hold under faults: one sweeper per sweep dir (a lock); every trial, the one running when the sweep was
interrupted (Ctrl-C, SIGTERM, a trial's ``SystemExit``) included, is recorded with what it spent before the sweep
ends; a resume bills the trials a crash left open at their last heartbeat and reruns only those that never
finished; and the wall time of a crashed session still counts.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar, cast, overload

from lightning_greenai.budget import Budget, measure
from lightning_greenai.errors import (
    BudgetConfigError,
)
from lightning_greenai.grid import Grid
from lightning_greenai.spend import Spend
from lightning_greenai.sweep import interrupts, resume, settle
from lightning_greenai.sweep.admission import admit
from lightning_greenai.sweep.books import Book
from lightning_greenai.sweep.config import SweepConfig
from lightning_greenai.sweep.history import Trial
from lightning_greenai.sweep.launchers import launcher_parallelism, prepare_launcher
from lightning_greenai.sweep.ledger import Ledger
from lightning_greenai.sweep.lock import SweepLock
from lightning_greenai.sweep.pruning import Pruning
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
    UnreportedScore,
    first_reason,
)
from lightning_greenai.sweep.strategies import (
    GridStrategy,
    RandomStrategy,
    SearchStrategy,
    make_strategy,
    parse_overrides,
    pruning,
    sweeps_anything,
)
from lightning_greenai.sweep.watchdog import Watchdog
from lightning_greenai.trial.channel import (
    Channel,
    check_no_password,
    open_channel,
)
from lightning_greenai.trial.record import Allowance, TrialStatus, state_dir
from lightning_greenai.trial.task import SweepInterrupted, TaskWrapper
from lightning_greenai.units import S_PER_HOUR

__all__ = ["BudgetSweep", "SweepInterrupted", "SweepStopped", "TaskWrapper", "Trial"]

log = logging.getLogger(__name__)

T = TypeVar("T")


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


@dataclass
class _Run:
    """One session's progress through its batches: what an interrupt must know of the batch in flight."""

    retry: list[Trial]  # trials a crash interrupted, not yet run again
    next_job: int
    jobs: list[Trial] = field(default_factory=list)  # the batch proposed last
    settled: set[int] = field(default_factory=set)  # jobs settled and recorded in this session
    returns: list[Sequence[Any]] = field(default_factory=list)  # the launcher's JobReturn batches


class _Option(Generic[T]):
    """A read-only view of one :class:`SweepConfig` field on the sweep, under the name the sweep's code reads."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = self.name or name

    @overload
    def __get__(self, sweep: None, owner: type) -> _Option[T]: ...

    @overload
    def __get__(self, sweep: BudgetSweep, owner: type) -> T: ...

    def __get__(self, sweep: BudgetSweep | None, owner: type) -> T | _Option[T]:
        if sweep is None:  # read on the class (help(), autodoc): the descriptor itself
            return self
        return cast(T, getattr(sweep.options, str(self.name)))

    def __set__(self, sweep: BudgetSweep, value: T) -> None:
        raise AttributeError(f"{self.name} is an option of the sweep: set it in hydra.sweeper")


class BudgetSweep:
    """Run a budget-limited search (see the module docstring and ``conf/hydra/sweeper/greenai.yaml``).

    Raises:
        BudgetConfigError: an option out of range, naming it, the value and what is allowed.
    """

    budget: _Option[Budget] = _Option()
    grid: _Option[Grid] = _Option()
    strategy_name: _Option[str] = _Option("strategy")
    max_trials: _Option[int | None] = _Option()
    max_batch_size: _Option[int | None] = _Option()
    params: _Option[dict[str, str]] = _Option()
    seed: _Option[int] = _Option()
    direction: _Option[str] = _Option()
    score_bounds: _Option[tuple[float, float] | None] = _Option()
    stop_when: _Option[Any] = _Option()
    objective_key: _Option[str | None] = _Option("objective")
    stop_policy: _Option[str] = _Option()
    heartbeat_s: _Option[float] = _Option()
    poll_s: _Option[float] = _Option()
    prior_cost: _Option[dict[str, float]] = _Option()
    cost_quantile: _Option[float] = _Option()
    trial_allowance: _Option[float | None] = _Option()
    max_failure_rate: _Option[float] = _Option()
    resume: _Option[bool] = _Option()
    report: _Option[bool] = _Option()
    verbose: _Option[bool] = _Option()
    log_curves: _Option[bool] = _Option()
    sampler: _Option[dict[str, Any] | None] = _Option()
    cost_aware: _Option[str | None] = _Option()
    storage: _Option[str | None] = _Option()
    study_name: _Option[str | None] = _Option()
    needs_objective: _Option[bool] = _Option()

    def __init__(self, **options: Any) -> None:
        """``options``: ``hydra.sweeper``'s, checked by :meth:`SweepConfig.parse` (a BudgetConfigError names one)."""
        self.options = SweepConfig.parse(**options)
        o = self.options
        #: Before each batch: the first reason ends the sweep; after each: a reason ends it with the rule's error
        self.stop_rules: list[StopRule] = [BudgetSpent(o), MaxTrials(o), SearchSpaceExhausted(), GainStop(o)]
        self.failing_rules: list[FailingRule] = [FailureRate(o), UnmeasuredBudget(o), UnreportedScore(o)]
        self._cost_warned = False
        self.sweep_id = ""  # the id that keys this sweep's signals: its ledger's (see _sweep_id)
        self.channel: Channel | None = None
        self.config: Any = None
        self.launcher: Any = None
        self.parallelism, self.parallelism_source = 1, "default"
        self.validate_batch: Callable[[Sequence[Sequence[str]]], None] = lambda batch: None
        self.watchdog: Watchdog | None = None
        #: Acts on the running trials' reports when the strategy stops trials at rungs (asha, hyperband, a pruner)
        self.pruning: Pruning | None = None
        self._started = 0.0
        self.elapsed_before_s = 0.0
        self.signalled: int | None = None  # SIGTERM or SIGINT received while the sweep ran
        self.launched: set[int] = set()  # jobs with a "launched" event in this session
        #: Called once when the sweep stops, its books closed: what reports it (the engine neither prints nor publishes)
        self.on_stop: Callable[[SweepStopped], None] | None = None
        #: What a person running the sweep should hear of its progress ("[greenai] resuming ..."): logged by default
        self.on_note: Callable[[str], None] = log.info
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
    def jobs_channel(self) -> Channel:
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
        return self.elapsed_before_s + (time.monotonic() - self._started if self._started else 0.0)

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
            self.on_note(
                f"[greenai] the search space sweeps nothing ({' '.join(arguments) or 'no parameters'}: "
                "hydra.sweeper.params and the command line give no interval, choice, range or comma list), "
                f"so the {self.strategy_name} search runs it once, as Hydra's basic sweeper runs one job. Give "
                "hydra.sweeper.params to search, e.g. `model.lr: tag(log, interval(1e-4, 1e-1))`."
            )
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.signalled, self.stopped = None, None
        self.sweep_id = resume.sweep_id(Ledger(folder / "ledger.jsonl"), sweep_dir)
        self.channel = open_channel(sweep_dir, self.storage, key=self.sweep_id, create=True)
        with SweepLock(folder), interrupts.signals_raise(self):
            return self._sweep(sweep_dir, folder, arguments)

    def _sweep(self, sweep_dir: Path, folder: Path, arguments: list[str]) -> list[Sequence[Any]]:
        """Load or start the ledger, build the strategy, run the batches; an interrupt closes the books and exits."""
        from omegaconf import OmegaConf

        ledger = Ledger(folder / "ledger.jsonl")
        book, proposed, retry, recovered = resume.load(self, ledger, sweep_dir, self._search(arguments))
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self.jobs_channel.delete("stop", None)
        strategy = self._make_strategy(arguments, folder, sweep_dir, proposed, book)
        rungs = pruning(strategy)
        self.pruning = None if rungs is None else Pruning(rungs, ledger, self.jobs_channel)
        if self.pruning is not None:  # a resume: the rungs hold the scores of the earlier sessions' trials again
            self.pruning.replay(ledger.events())
        for trial in recovered:  # finished while the sweeper was down: the strategy learns of them now
            self._tell(strategy, trial)
        self._started = time.monotonic()
        run = _Run(retry=retry, next_job=max((t.job_num for t in book.trials), default=-1) + 1)
        reason = ""
        try:
            reason = self._run_batches(run, sweep_dir, strategy, ledger, book)
        except (KeyboardInterrupt, SystemExit, SweepInterrupted) as interrupt:
            interrupts.interrupted(self, interrupt, sweep_dir, run.jobs, run.settled, strategy, ledger, book)
        except Exception as err:
            if self.signalled is None:
                raise
            # a signal that landed inside Hydra's or OmegaConf's code came out as another error: it is the interrupt
            cause: BaseException = (
                KeyboardInterrupt() if self.signalled == signal.SIGINT else SweepInterrupted(self.signalled)
            )
            cause.__cause__ = err
            interrupts.interrupted(self, cause, sweep_dir, run.jobs, run.settled, strategy, ledger, book)
        self.finish(ledger, sweep_dir, book, reason)
        return run.returns

    def _search(self, arguments: list[str]) -> dict[str, Any]:
        """What defines the search, recorded in the ledger's header: a resume must find the same."""
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
        o = self.options
        if o.monitor is not None:  # a resume must stop trials by the same score, at the same rungs
            search["monitor"] = o.monitor
        if o.rungs is not None:
            search[o.strategy] = dataclasses.asdict(o.rungs)
        if o.pruner is not None:
            search["pruner"] = o.pruner
        return search

    def _make_strategy(
        self, arguments: list[str], folder: Path, sweep_dir: Path, proposed: int, book: Book
    ) -> SearchStrategy:
        """The search strategy, past the ``proposed`` jobs of earlier sessions; warn when an Optuna study is reused."""
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
            pruner=self.options.pruner,
            rungs=self.options.rungs,
        )
        study = getattr(strategy, "study", None)
        if study is not None and self.study_name and len(study.trials) > len(book.trials):
            log.warning(
                "The Optuna study %r already holds %d trial(s) that this sweep did not run: it continues that study "
                "(its sampler learns from them). Give hydra.sweeper.study_name a new name for a fresh search.",
                self.study_name,
                len(study.trials) - len(book.trials),
            )
        return strategy

    def _run_batches(self, run: _Run, sweep_dir: Path, strategy: SearchStrategy, ledger: Ledger, book: Book) -> str:
        """Launch batches until a stop rule, the admission or the strategy ends the sweep; return why it stopped.

        A failing rule closes the books and raises its error.
        """
        while True:
            stop = first_reason(self.stop_rules, SweepState(book, self.wall_s(), strategy, run.retry))
            if stop is not None:
                return stop[1]
            used = self.budget.spent(book.spend, self.grid, wall_s=self.wall_s())
            # nothing metered yet (no trial has run) is 0 spent here, not unknown
            remaining = {q: limit - (used[q] or 0.0) for q, limit in self.budget.limits.items()}
            estimates = book.estimates()
            trials_left = None if self.max_trials is None else self.max_trials - book.counted
            k, why = admit(remaining, estimates, max_batch_size=self._cap(strategy, run.retry), trials_left=trials_left)
            if k == 0:
                return why or "nothing admitted"
            run.jobs = self._propose(run, strategy, k)
            if not run.jobs:
                return "search space exhausted"
            allowance = self._allowance(estimates, self.share(remaining, min(len(run.jobs), self.parallelism)))
            self._run_batch(run, sweep_dir, allowance, strategy, ledger, book)
            failing = first_reason(self.failing_rules, SweepState(book, self.wall_s(), strategy, run.retry))
            if failing is not None:
                rule, reason = failing
                self.finish(ledger, sweep_dir, book, reason)
                raise rule.error(reason, book)

    def _propose(self, run: _Run, strategy: SearchStrategy, k: int) -> list[Trial]:
        """The next ``k`` jobs: first the trials a crash interrupted (a resume reruns them), then new proposals."""
        reruns, run.retry = run.retry[:k], run.retry[k:]
        fresh = strategy.ask(k - len(reruns))
        return [
            Trial(run.next_job + i, list(t.overrides), strategy_id=t.strategy_id, rerun_of=t.job_num)
            for i, t in enumerate(reruns)
        ] + [
            Trial(run.next_job + len(reruns) + i, list(o), strategy_id=sid)
            for i, (o, sid) in enumerate(zip(fresh, strategy.ids, strict=True))
        ]

    def _run_batch(
        self,
        run: _Run,
        sweep_dir: Path,
        allowance: Allowance,
        strategy: SearchStrategy,
        ledger: Ledger,
        book: Book,
    ) -> None:
        """Launch ``run.jobs`` with their allowance, then settle and record each."""
        jobs = run.jobs
        self.validate_batch([job.overrides for job in jobs])
        self.jobs_channel.delete("stop", None)
        for job in jobs:
            self._prepare(job, allowance, ledger)
        results, lost_because = self._launch(sweep_dir, jobs, book)
        for i, job in enumerate(jobs):
            settle.settle(self, job, None if results is None else results[i], lost_because=lost_because)
            if self.pruning is not None:  # reports the watchdog had not read count at their rungs all the same
                self.pruning.observe(job, job.reports, job.max_resource, running=False)
            self.record(job, strategy, ledger, book)
            run.settled.add(job.job_num)
        if results is not None:
            run.returns.append(results)
        run.next_job += len(jobs)

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

    def _prepare(self, job: Trial, allowance: Allowance, ledger: Ledger) -> None:
        """Record a job's launch, write its allowance, and clear files an earlier sweep here left under its number."""
        self.jobs_channel.delete("heartbeat", job.job_num)
        self.jobs_channel.delete("stop", job.job_num)
        if self.pruning is not None:
            allowance = self.pruning.allowance(job, allowance)
        self.jobs_channel.send_allowance(job.job_num, allowance, patience_s=60.0)
        ledger.append(
            "launched", job=job.job_num, overrides=job.overrides, rerun_of=job.rerun_of, strategy_id=job.strategy_id
        )
        self.launched.add(job.job_num)

    def _launch(self, sweep_dir: Path, jobs: list[Trial], book: Book) -> tuple[Sequence[Any] | None, str | None]:
        """The batch's JobReturns, or None and what the launcher raised where it lost them."""
        watchdog = self.watchdog = Watchdog(self, sweep_dir, jobs, book)
        watchdog.start()
        keyed = [f"hydra.sweeper.sweep_id='{self.sweep_id}'"] if self.storage else []
        launch_overrides = [[*job.overrides, f"hydra.sweep.dir='{sweep_dir}'", *keyed] for job in jobs]
        try:
            results: Sequence[Any] | None = self.launcher.launch(launch_overrides, initial_job_idx=jobs[0].job_num)
            lost_because = None
        except Exception as err:  # a launcher that lost the batch's JobReturns (killed array job)
            self._raise_if_signalled(err)
            log.warning("The launcher raised %s: %s; reading each trial's record instead.", type(err).__name__, err)
            results, lost_because = None, settle.launcher_reason(err)
            settle.await_siblings(self, jobs)
        finally:
            watchdog.stop()
        self._raise_if_signalled(None)  # a signal that reached a job as an ordinary failure is still the interrupt
        return results, lost_because

    def _raise_if_signalled(self, cause: BaseException | None) -> None:
        if self.signalled == signal.SIGINT:
            raise KeyboardInterrupt from cause
        if self.signalled is not None:
            raise SweepInterrupted(self.signalled) from cause

    def _tell(self, strategy: SearchStrategy, job: Trial) -> None:
        """Tell the strategy a job's result, with its measured cost on the ``cost_aware`` axis when one is set."""
        cost = None if self.cost_aware is None else measure(self.cost_aware, job.spend, self.grid, None)
        if self.cost_aware is not None and job.status == TrialStatus.COMPLETED and not cost and not self._cost_warned:
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

    def record(self, job: Trial, strategy: SearchStrategy, ledger: Ledger, book: Book) -> None:
        """Tell the strategy a settled job's result, write it to the ledger and count it in the books."""
        self._tell(strategy, job)
        ledger.append("finished", **job.finished_event())
        book.add(job)

    def _allowance(self, estimates: Mapping[str, float | None], remaining: Mapping[str, float]) -> Allowance:
        """What a trial may spend, in the budget's own quantities, written beside it before launch.

        ``trial``: ``trial_allowance`` x the estimate (if set). ``sweep``: its share of what is left of the budget
        (see :meth:`share`): the job prices its own spend with the sweep's grid (the one its monitors take, see
        :func:`~lightning_greenai.trial.account.sweep_grid`) and stops itself at the step that reaches a cap,
        without waiting for the watchdog's next poll; the watchdog raises the share of the jobs still running when
        one finishes under its own. Wall time is a deadline (``deadline_unix_s``, the clock time the sweep's wall
        budget runs out), not a duration: a job's start-up counts, as it does on the sweep's clock. So the jobs of a
        batch never spend more than what was left by more than one step each, on every axis (under
        ``stop_policy=finish`` running trials finish: no ``sweep`` caps then).
        """
        trial = None
        if self.trial_allowance is not None:
            trial = {q: e * self.trial_allowance for q, e in estimates.items() if e is not None}
        if self.stop_policy == "finish":
            return Allowance(policy=self.stop_policy, trial=trial)
        deadline_unix_s = None
        if "wall_hours" in remaining:
            deadline_unix_s = time.time() + max(remaining["wall_hours"], 0.0) * S_PER_HOUR
        sweep = {q: left for q, left in remaining.items() if q != "wall_hours"}
        return Allowance(policy=self.stop_policy, trial=trial, sweep=sweep, deadline_unix_s=deadline_unix_s)

    def share(self, remaining: Mapping[str, float], jobs: int) -> dict[str, float]:
        """Each of ``jobs`` running trials' share of ``remaining``: an equal part; wall time is shared, not split."""
        return {q: left if q == "wall_hours" else max(left, 0.0) / max(jobs, 1) for q, left in remaining.items()}

    def job_caps(self, spend: Spend, share: Mapping[str, float]) -> dict[str, float]:
        """A running job's ``sweep`` caps: what it spent so far plus its share of the headroom (wall time apart)."""
        measured = self.budget.spent(spend, self.grid)
        return {q: (measured.get(q) or 0.0) + limit for q, limit in share.items() if q != "wall_hours"}

    def finish(self, ledger: Ledger, sweep_dir: Path, book: Book, reason: str, *, interrupted: bool = False) -> None:
        """Close the books: the ledger's ``stopped`` event, then hand the result to ``on_stop`` (the report).

        A signal waits until they are closed (:func:`interrupts.closing_books`).
        """
        with interrupts.closing_books(self):
            self._close_books(ledger, sweep_dir, book, reason, interrupted=interrupted)

    def _close_books(self, ledger: Ledger, sweep_dir: Path, book: Book, reason: str, *, interrupted: bool) -> None:
        wall_s = self.wall_s()
        spent = self.budget.spent(book.spend, self.grid, wall_s=wall_s) if not self.budget.is_unlimited else {}
        session_s = time.monotonic() - self._started if self._started else 0.0
        ledger.append("stopped", reason=reason, elapsed_s=session_s, wall_s=wall_s, trials=len(book.trials))
        count = len(book.trials)
        log.info("Budget sweep stopped: %s (%d trial%s).", reason, count, "" if count == 1 else "s")
        self.stopped = SweepStopped(sweep_dir, reason, list(book.trials), book.spend, spent, wall_s, interrupted)
        if self.on_stop is not None:
            self.on_stop(self.stopped)
