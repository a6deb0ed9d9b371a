"""Decide whether a running trial must stop: the sweep's STOP signal, its search's verdict, its allowance or budget."""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Mapping

from lightning_greenai.budget import Budget
from lightning_greenai.errors import TrialKilledError
from lightning_greenai.grid import Grid
from lightning_greenai.spend import Spend
from lightning_greenai.trial.account import TrialReporter, current_trial
from lightning_greenai.trial.record import TrialStatus

__all__ = ["BudgetStoppingReason", "record_stop", "report_score", "stop_reason"]


class BudgetStoppingReason(enum.Enum):
    """Why a trial was stopped."""

    SWEEP_BUDGET = "the sweep's budget is spent (STOP signal from the sweeper)"
    TRIAL_ALLOWANCE = "this trial's allowance from the sweeper is spent"
    OWN_BUDGET = "the budget given to BudgetStopping is spent"
    PRUNED = "the sweep's search stopped this trial at a rung (ASHA, Hyperband or an Optuna pruner)"


def stop_reason(
    reporter: TrialReporter | None, spend: Spend, own: Budget | None, grid: Grid | None = None
) -> tuple[BudgetStoppingReason, str] | None:
    """Return why the trial must stop now (and a message), or ``None`` to carry on."""
    if reporter is not None:
        request = reporter.stop_request()
        # under stop_policy=finish the STOP signal only keeps new trials from starting; running ones finish
        if request is not None and request.policy != "finish":
            return BudgetStoppingReason.SWEEP_BUDGET, request.reason or ""
        pruned = reporter.prune_request()
        if pruned is not None:
            return BudgetStoppingReason.PRUNED, f"pruned: {pruned.reason or 'by the search'}"
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
    ranked as the sweep's best, since it trained for less than the others. One its search stopped at a rung is
    ``pruned``, whatever the stop policy: it ends as gracefully as it was told.
    """
    if reporter is None:
        return
    if reason is BudgetStoppingReason.PRUNED:
        if write:
            reporter.set_status(TrialStatus.PRUNED)
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


def report_score(score: float, resource: float | None = None, *, max_resource: float | None = None) -> bool:
    """Report the monitored score of a trial of a greenai sweep, and return whether the trial must stop.

    The plain-loop counterpart of :class:`~lightning_greenai.BudgetStopping`'s report at each validation end:
    call it after each evaluation, with how far the trial has trained (``resource``: epochs by default, or
    whatever the sweep's ``asha``/``hyperband`` ``min_resource`` counts). Under a strategy that stops trials at
    rungs (``hydra.sweeper.strategy=asha`` or ``hyperband``, or an Optuna ``pruner``), a report at a rung waits for
    the sweeper's verdict. ``True``: end the trial now (it was pruned at this rung, or the sweep's budget is
    spent) and return its result as usual; the trial is recorded ``pruned`` (or ``budget_stopped``) with what it
    spent. Always ``False`` outside a sweep. Under ``stop_policy=kill``, a spent budget raises
    :class:`~lightning_greenai.errors.TrialKilledError` instead, as :meth:`~lightning_greenai.Meter.should_stop`.

    Args:
        score: The monitored score (``hydra.sweeper.monitor``), better as the sweep's ``direction`` says.
        resource: How far the trial has trained when it scored this, e.g. the epochs done. Leave it out when the
            sweep's rungs count the trial's spend (``resource: energy_kwh`` or ``flops``): its metered spend so far
            is taken (call ``Meter.sample()`` first, so that it is fresh).
        max_resource: How far it will train if never stopped (its epochs), which places the rungs when the sweep's
            ``max_resource`` is unset.

    Raises:
        ValueError: a score or resource that is not a finite number (a NaN loss), naming it; a ``resource`` given
            while the sweep's rungs count a spend (it would be read as kWh or FLOPs).

    Example::

        for epoch in range(1, epochs + 1):
            train_one_epoch()
            if report_score(evaluate(), epoch, max_resource=epochs):
                break
    """
    for name, value in (("score", score), ("resource", resource), ("max_resource", max_resource)):
        if value is None and name != "score":
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"`{name}` must be a finite number, got {value!r}.")
    reporter = current_trial()
    if reporter is None:
        return False
    reporter.report_score(resource, score, max_resource)
    found = stop_reason(reporter, reporter.total, None)
    if found is None:
        return False
    record_stop(reporter, found[1], found[0])
    return True
