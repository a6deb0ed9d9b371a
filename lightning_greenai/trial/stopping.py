"""Decide whether a running trial must stop: the sweep's STOP signal, the trial's allowance, or its own budget."""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping

from lightning_greenai.budget import Budget
from lightning_greenai.errors import TrialKilledError
from lightning_greenai.grid import Grid
from lightning_greenai.spend import Spend
from lightning_greenai.trial.account import TrialReporter
from lightning_greenai.trial.record import TrialStatus

__all__ = ["BudgetStoppingReason", "record_stop", "stop_reason"]


class BudgetStoppingReason(enum.Enum):
    """Why a trial was stopped."""

    SWEEP_BUDGET = "the sweep's budget is spent (STOP signal from the sweeper)"
    TRIAL_ALLOWANCE = "this trial's allowance from the sweeper is spent"
    OWN_BUDGET = "the budget given to BudgetStopping is spent"


def stop_reason(
    reporter: TrialReporter | None, spend: Spend, own: Budget | None, grid: Grid | None = None
) -> tuple[BudgetStoppingReason, str] | None:
    """Return why the trial must stop now (and a message), or ``None`` to carry on."""
    if reporter is not None:
        request = reporter.stop_request()
        # under stop_policy=finish the STOP signal only keeps new trials from starting; running ones finish
        if request is not None and request.policy != "finish":
            return BudgetStoppingReason.SWEEP_BUDGET, request.reason or ""
        allowance = reporter.allowance()
        # the caps are in the budget's own quantities, priced as the sweeper prices them: with the sweep's grid
        for caps, why, text in (
            (allowance.trial, BudgetStoppingReason.TRIAL_ALLOWANCE, "allowance spent"),
            (allowance.sweep, BudgetStoppingReason.SWEEP_BUDGET, "this trial spent what was left of the budget"),
        ):
            if caps:
                spent = _caps(caps, reporter.grid).exceeded_by(spend, reporter.grid)
                if spent:
                    return why, f"{text}: {', '.join(spent)}"
        deadline = allowance.deadline_unix_s
        if deadline is not None and time.time() >= deadline:
            return BudgetStoppingReason.SWEEP_BUDGET, "the sweep's wall-time budget ran out"
    if own is not None:
        spent = own.exceeded_by(spend, grid)
        if spent:
            return BudgetStoppingReason.OWN_BUDGET, f"budget spent: {', '.join(spent)}"
    return None


def _caps(caps: Mapping[str, float], grid: Grid | None) -> Budget:
    """The caps a job can check: without the sweep's grid, CO2e and money are left to the sweeper's STOP signal."""
    if grid is None:
        caps = {q: v for q, v in caps.items() if q not in ("co2e_kg", "money")}
    elif not grid.prices_money:
        caps = {q: v for q, v in caps.items() if q != "money"}
    return Budget.parse({q: max(v, 0.0) for q, v in caps.items()})


def record_stop(
    reporter: TrialReporter | None,
    message: str | None,
    reason: BudgetStoppingReason | None = None,
    *,
    write: bool = True,
) -> None:
    """Act on a decision to stop a trial of a greenai sweep.

    Under the sweep's ``stop_policy=kill`` the trial is recorded as ``killed`` (billed, no score, not a failure) and
    :class:`TrialKilledError` is raised; otherwise it is recorded as ``budget_stopped`` (when ``write``: one rank
    writes the heartbeat). A trial stopped by the sweep's STOP signal is ``partial``: its score is kept but never
    ranked as the sweep's best, since it trained for less than the others.
    """
    if reporter is None:
        return
    if reporter.policy() == "kill":
        if write:
            reporter.finish(TrialStatus.KILLED)
        raise TrialKilledError(f"Trial stopped by the budget sweeper (stop_policy=kill): {message}")
    if write:
        request = reporter.stop_request()
        if request is not None and request.interrupted:
            # the sweep was interrupted: billed so far, run again on resume
            reporter.set_status(TrialStatus.INTERRUPTED)
            return
        reporter.record.partial = reason is BudgetStoppingReason.SWEEP_BUDGET
        reporter.set_status(TrialStatus.BUDGET_STOPPED)
