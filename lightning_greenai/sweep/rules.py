"""When a sweep stops: one small class a rule, each giving the stop reason the ledger records (or ``None``).

Before each batch the engine asks its :class:`StopRule` list in order (budget spent, max_trials, search space
exhausted, the gain rule): the first reason ends the sweep cleanly. After each batch it asks its
:class:`FailingRule` list (failure rate, a budget nothing measures, rungs nothing reaches): a reason there ends it
with that rule's error. (Stopping one trial at a rung is its strategy's: see ``rungs`` and ``pruning``.)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from lightning_greenai.budget import measure
from lightning_greenai.errors import BudgetConfigError, MissingDependencyError, SweepFailedError
from lightning_greenai.sweep.config import SweepConfig
from lightning_greenai.sweep.history import Trial
from lightning_greenai.trial.record import TrialStatus, is_scored
from lightning_greenai.units import SPEND_RESOURCES, format_resource

if TYPE_CHECKING:
    from lightning_greenai.sweep.books import Book
    from lightning_greenai.sweep.strategies import SearchStrategy

__all__ = [
    "BudgetSpent",
    "FailingRule",
    "FailureRate",
    "GainStop",
    "MaxTrials",
    "SearchSpaceExhausted",
    "StopRule",
    "SweepState",
    "UnmeasuredBudget",
    "UnreportedScore",
    "first_reason",
]

log = logging.getLogger(__name__)

#: What a trial must report for each budget quantity, and what to attach when it does not.
_MEASURED_BY = {
    "energy_kwh": "an EnergyMonitor on the Trainer (or a Meter with sensors in a plain loop)",
    "co2e_kg": "an EnergyMonitor on the Trainer (or a Meter with sensors in a plain loop)",
    "money": "an EnergyMonitor on the Trainer (or a Meter with sensors), or a grid instance_price_per_h",
    "flops": "a FlopMonitor on the Trainer (or Meter.count_flops / Meter.add_flops in a plain loop)",
    "gpu_hours": "an EnergyMonitor on a Trainer that runs on GPUs",
}
#: Packages a trial may need for an option the README suggests, and the extra that installs each.
_EXTRAS = {
    "wandb": "wandb",
    "mlflow": "mlflow",
    "tensorboard": "tensorboard",
    "tensorboardX": "tensorboard",
    "optuna": "optuna",
    "sklearn": "examples",
    "matplotlib": "plots",
    "rich": "examples",
}


def _missing_package(errors: Sequence[str | None]) -> str | None:
    """If trials failed for want of an optional package, one line saying which and how to install it."""
    for error in errors:
        found = re.search(r"No module named '([\w.]+)'", error or "")
        if found is not None:
            module = found.group(1).split(".")[0]
            extra = _EXTRAS.get(module)
            install = f"pip install 'lightning-greenai[{extra}]'" if extra else f"pip install {module}"
            return f"The trials need the package `{module}`, which is not installed: {install}"
    return None


@dataclass(frozen=True)
class SweepState:
    """What the rules read: the books, the sweep's wall time, its strategy and the reruns a resume has pending."""

    book: Book
    wall_s: float = 0.0
    strategy: SearchStrategy | None = None
    retry: Sequence[Trial] = ()


class StopRule(Protocol):
    """A reason to stop the sweep, or ``None`` to go on."""

    name: str

    def check(self, state: SweepState) -> str | None:
        """The stop reason (recorded in the ledger and printed as it is), or ``None``."""
        ...


class FailingRule(StopRule, Protocol):
    """A stop rule whose reason is an error: the sweep's books are closed, then :meth:`error` is raised."""

    def error(self, reason: str, book: Book) -> Exception:
        """The exception that ends the sweep for ``reason``."""
        ...


Rule = TypeVar("Rule", bound=StopRule)


def first_reason(rules: Sequence[Rule], state: SweepState) -> tuple[Rule, str] | None:
    """The first rule that gives a reason, and the reason; later rules are not asked (the gain rule logs)."""
    for rule in rules:
        reason = rule.check(state)
        if reason is not None:
            return rule, reason
    return None


class BudgetSpent:
    """The budget is spent on some axis (wall time: the sweep's, earlier sessions included)."""

    name = "budget"

    def __init__(self, options: SweepConfig) -> None:
        self.options = options

    def check(self, state: SweepState) -> str | None:
        """The stop reason, or ``None``."""
        exceeded = self.options.budget.exceeded_by(state.book.spend, self.options.grid, wall_s=state.wall_s)
        return f"budget spent: {', '.join(exceeded)}" if exceeded else None


class MaxTrials:
    """``max_trials`` trials counted (interrupted and never-started ones are not)."""

    name = "max_trials"

    def __init__(self, options: SweepConfig) -> None:
        self.max_trials = options.max_trials

    def check(self, state: SweepState) -> str | None:
        """The stop reason, or ``None``."""
        if self.max_trials is not None and state.book.counted >= self.max_trials:
            return f"max_trials reached ({self.max_trials})"
        return None


class SearchSpaceExhausted:
    """The strategy has nothing left to propose, and no interrupted trial waits to run again."""

    name = "search space"

    def check(self, state: SweepState) -> str | None:
        """The stop reason, or ``None``."""
        if state.strategy is not None and state.strategy.exhausted() and not state.retry:
            return "search space exhausted"
        return None


class GainStop:
    """``stop_when``: stop when the next trials cannot be expected to buy enough per unit of compute.

    A score outside ``score_bounds`` turns the rule off for the rest of the sweep (with a warning): the bound would
    be wrong, so the rule steps aside rather than stop the sweep.
    """

    name = "stop_when"

    def __init__(self, options: SweepConfig) -> None:
        self.options = options
        self.rule = options.gain_rule

    def check(self, state: SweepState) -> str | None:
        """The stop reason, or ``None``."""
        bounds = self.options.score_bounds
        if self.rule is None or bounds is None:
            return None
        scored = [t for t in state.book.trials if t.objective is not None and is_scored(t.status, t.partial)]
        if not scored:
            return None
        grid = self.options.grid
        mean_cost: dict[str, float | None] = {}
        for quantity in self.rule.thresholds:
            costs = [measure(quantity, t.spend, grid, None) for t in scored]
            known = [c for c in costs if c is not None]
            mean_cost[quantity] = sum(known) / len(known) if known else None
        scores = [float(t.objective) for t in scored if t.objective is not None]
        low, high = bounds
        outside = [s for s in scores if not low <= s <= high]
        if outside:
            log.warning(
                "stop_when is off for the rest of this sweep: score %s lies outside score_bounds [%s, %s] (the range "
                "the score can take); the budget and max_trials still stop it.",
                outside[0],
                low,
                high,
            )
            self.rule = None
            return None
        return self.rule.verdict(
            scores,
            mean_cost,
            bounds=bounds,
            direction=self.options.direction,
            currency=grid.currency,
            objective=self.options.objective or "score",
        )


class FailureRate:
    """More failed trials than ``max_failure_rate``, or a run of failures that metered nothing (see the book)."""

    name = "failure rate"

    def __init__(self, options: SweepConfig) -> None:
        self.max_failure_rate = options.max_failure_rate

    def check(self, state: SweepState) -> str | None:
        """The stop reason, or ``None``."""
        book = state.book
        if book.counted and book.failed / book.counted > self.max_failure_rate:
            return f"failure rate {book.failed}/{book.counted} over max_failure_rate={self.max_failure_rate}"
        return book.unmetered_failures()

    def error(self, reason: str, book: Book) -> Exception:
        """One line naming the install when trials lacked a package, else the failed trials' errors."""
        missing = _missing_package([t.error for t in book.trials if t.status == TrialStatus.FAILED])
        if missing is not None:  # one line, not a failure-rate traceback: the fix is an install
            return MissingDependencyError(missing)
        errors = "; ".join(f"job {t.job_num}: {t.error}" for t in book.trials if t.status == TrialStatus.FAILED)
        return SweepFailedError(f"Budget sweep stopped: {reason}. {errors}")


class UnmeasuredBudget:
    """A budget quantity that no finished trial reports: the budget could never stop the sweep."""

    name = "unmeasured budget"

    def __init__(self, options: SweepConfig) -> None:
        self.budget = options.budget

    def check(self, state: SweepState) -> str | None:
        """The stop reason, or ``None``."""
        book = state.book
        if not book.done:
            return None
        for quantity in self.budget.limits:
            if quantity != "wall_hours" and quantity not in book.measured:
                return (
                    f"budget `{quantity}` is not measured: {book.done} trial(s) finished and none reported it, so the "
                    f"budget could never stop the sweep. Attach {_MEASURED_BY[quantity]}."
                )
        return None

    def error(self, reason: str, book: Book) -> Exception:
        """The reason as a config error: the fix is a monitor in the task."""
        return BudgetConfigError(reason)


class UnreportedScore:
    """Rungs nothing can reach: a trial that completed without one report of ``monitor``, or unusable rungs.

    Under rungs that count a spend (``resource: energy_kwh`` or ``flops``), also a trial that completed with every
    report at 0: nothing metered that spend when it reported, so no rung could ever be reached.

    Only for a strategy that stops trials at rungs (``asha``, ``hyperband``, an Optuna pruner): without reports it
    would run every trial to its end while the user believes bad ones are stopped early.
    """

    name = "monitor"

    def __init__(self, options: SweepConfig) -> None:
        self.monitor, self.strategy, self.rungs = options.monitor, options.strategy, options.rungs

    def check(self, state: SweepState) -> str | None:
        """The stop reason, or ``None``."""
        strategy = state.strategy
        if strategy is None or not getattr(strategy, "prunes", False):
            return None
        problem: str | None = getattr(strategy, "problem", None)
        if problem is not None:
            return problem
        completed = [t for t in state.book.trials if t.status == TrialStatus.COMPLETED]
        silent = [t.job_num for t in completed if not t.reports]
        if silent:
            spends = self.rungs is not None and self.rungs.resource in SPEND_RESOURCES
            call = "report_score(score) after Meter.sample()" if spends else "report_score(score, epoch)"
            return (
                f"hydra.sweeper.monitor={self.monitor!r} was never reported: trial {silent[0]} completed without a "
                f"report of it, so no trial could be compared at a rung. A Lightning trial reports it at each "
                f"validation end through BudgetStopping (callbacks=greenai) once it logs {self.monitor!r} (self.log "
                f"in validation_step); a plain task calls lightning_greenai.{call} after each evaluation."
            )
        if self.rungs is None or self.rungs.resource not in SPEND_RESOURCES:
            return None
        # rungs that count a spend nothing meters: every report at 0, no rung ever reached, no trial ever stopped
        unmetered = [t.job_num for t in completed if t.reports and not any(r > 0 for r, _ in t.reports)]
        if not unmetered:
            return None
        resource = self.rungs.resource
        how = (
            "an EnergyMonitor in a Lightning trial, a Meter with an energy sensor in a plain task"
            if resource == "energy_kwh"
            else "a FlopMonitor in a Lightning trial, Meter.add_flops in a plain task"
        )
        return (
            f"hydra.sweeper.{self.strategy}.resource={resource}, but trial {unmetered[0]} completed with every report "
            f"at {format_resource(0.0, resource)}: no {resource} was metered when it reported, so no trial could reach "
            f"the first rung ({format_resource(self.rungs.min_resource, resource)}) and none would ever be stopped "
            f"early. Meter it ({how}; a plain task calls Meter.sample() before report_score), or count epochs "
            f"(hydra.sweeper.{self.strategy}.resource=epochs)."
        )

    def error(self, reason: str, book: Book) -> Exception:
        """The reason as a config error: the fix is in the task or the options."""
        return BudgetConfigError(reason)
