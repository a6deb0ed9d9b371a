"""The sweep's books: its trials and running totals (spend, counts, the costs its admission estimates from)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lightning_greenai.spend import Spend
from lightning_greenai.sweep.admission import estimate_trial_cost
from lightning_greenai.sweep.history import Trial
from lightning_greenai.trial.record import TrialStatus

if TYPE_CHECKING:
    from lightning_greenai.sweep.engine import BudgetSweep

__all__ = ["UNMETERED_FAILURES_IN_A_ROW", "Book"]

#: Trials in a row that fail without metering anything before the sweep stops, whatever max_failure_rate (at least:
#: 3x the longest such run that a trial which metered has ended before, so a space with some invalid corners runs on)
UNMETERED_FAILURES_IN_A_ROW = 10


@dataclass
class Book:
    """The sweep's running totals, so each batch's bookkeeping costs the same however long the sweep."""

    sweep: BudgetSweep
    spend: Spend
    counted: int = 0  # trials that count toward max_trials and the failure rate
    failed: int = 0

    def __post_init__(self) -> None:
        self.trials: list[Trial] = []
        self.done = 0  # trials that completed or stopped at the budget: they report what they spent
        self.measured: set[str] = set()  # the limited quantities some such trial reported
        self.unmetered_run = 0  # trials in a row (job order) that failed without metering anything, up to now
        self.longest_unmetered_run = 0  # the longest such run that a trial which metered has ended
        self.costs: dict[str, list[float]] = {q: [] for q in self.sweep.budget.limits}  # kept sorted
        self.warmup_costs: dict[str, list[float]] = {q: [] for q in self.sweep.budget.limits}

    def add(self, trial: Trial) -> None:
        """Count a finished trial."""
        self.trials.append(trial)
        self.spend = self.spend + trial.spend
        if trial.status in (TrialStatus.INTERRUPTED, TrialStatus.NOT_STARTED):
            return  # an interrupted trial runs again; one that never started is no trial
        self.counted += 1
        self.failed += trial.status == TrialStatus.FAILED
        if trial.failed_unmetered:
            self.unmetered_run += 1
        else:
            self.longest_unmetered_run = max(self.longest_unmetered_run, self.unmetered_run)
            self.unmetered_run = 0
        if trial.status == TrialStatus.PRUNED:  # it measured what it spent, but a trial that runs on costs more
            self.measured.update(q for q, cost in self.sweep.costs(trial).items() if cost)
            return
        if trial.status not in (TrialStatus.COMPLETED, TrialStatus.BUDGET_STOPPED):
            return  # a failed or killed trial's cost says nothing about a trial's cost
        self.done += 1
        costs = self.warmup_costs if trial.warmup else self.costs
        for quantity, cost in self.sweep.costs(trial).items():
            if cost:
                self.measured.add(quantity)
            if cost is not None and quantity in costs:
                bisect.insort(costs[quantity], cost)

    def unmetered_failures(self) -> str | None:
        """Why the last trials' failures end the sweep: they metered nothing, so no budget would ever stop it.

        ``UNMETERED_FAILURES_IN_A_ROW`` such trials in a row, or 3x the longest run of them the sweep has come out of
        (a search space with corners that fail at once still runs), whichever is more.
        """
        limit = max(UNMETERED_FAILURES_IN_A_ROW, 3 * self.longest_unmetered_run)
        if self.unmetered_run < limit:
            return None
        return (
            f"{self.unmetered_run} trials in a row failed without metering anything (no energy, FLOPs or time), so "
            "no budget can stop the sweep; it stops whatever max_failure_rate"
        )

    def estimates(self) -> dict[str, float | None]:
        """Per-trial cost of each limited quantity.

        The larger of the prior and a high quantile of finished trials, where the first trial of each process (which
        pays imports and logger start-up once) counts only until a trial without those costs has finished.
        """
        sweep = self.sweep
        return {
            q: estimate_trial_cost(
                sweep.prior_cost.get(q), self.costs[q] or self.warmup_costs[q], sweep.cost_quantile, presorted=True
            )
            for q in sweep.budget.limits
        }
