"""BudgetStopping: end a trial cleanly when its budget is spent or its sweep's search prunes it at a rung."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_greenai.budget import Budget
from lightning_greenai.callbacks.base import BatchCallback
from lightning_greenai.callbacks.energy_monitor import EnergyMonitor
from lightning_greenai.callbacks.flop_monitor import FlopMonitor
from lightning_greenai.errors import BudgetConfigError
from lightning_greenai.spend import Spend
from lightning_greenai.trial.account import current_trial
from lightning_greenai.trial.stopping import BudgetStoppingReason, record_stop, stop_reason
from lightning_greenai.units import SPEND_RESOURCES

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = ["BudgetStopping"]


class BudgetStopping(BatchCallback):
    """Stop training when the budget is spent, like ``EarlyStopping`` stops when a metric stalls.

    In a ``hydra/sweeper=greenai`` sweep it obeys the sweeper: a STOP signal (the sweep's budget is reached by the
    jobs in flight) or this trial's allowance. With ``budget`` it also enforces a budget of its own, in or out of a
    sweep. Stopping sets ``trainer.should_stop``: Lightning finishes the step, validates, and ends ``fit`` cleanly,
    and the trial is recorded as ``budget_stopped`` with its objective. Under ``stop_policy=kill`` it raises
    :class:`TrialKilledError` instead (the trial fails and is billed for what it spent).

    Spend is read from the :class:`EnergyMonitor` (with FLOPs from a :class:`FlopMonitor`) on the same trainer, so
    put those first; they refresh it every ``log_every_n_steps`` batches.

    When the sweep sets ``hydra.sweeper.monitor``, it reports that metric to the sweep at each validation end, with
    the epochs done (or the global step, under ``resource: steps``) and the Trainer's ``max_epochs`` (``max_steps``);
    under ``resource: energy_kwh`` or ``flops``, with the trial's spend so far, which its monitors read then (in a
    distributed run, as they last read it, every ``log_every_n_steps`` batches).
    Under ``strategy=asha`` or ``hyperband`` (or an Optuna ``pruner``), a report at a rung waits for the sweeper's
    verdict; a trial it prunes stops there, recorded ``pruned`` with what it spent.

    Args:
        budget: A budget of this run's own (``"0.1 kWh"``, ``{"flops": 1e15}``, a :class:`Budget`), or ``None``.
        check_every_n_steps: Check every this many training batches.

    Example::

        trainer = L.Trainer(callbacks=[EnergyMonitor(), FlopMonitor(), BudgetStopping()])
    """

    def __init__(self, budget: Budget | str | Mapping[str, Any] | None = None, *, check_every_n_steps: int = 1) -> None:
        if check_every_n_steps < 1:
            raise ValueError(f"`check_every_n_steps` must be >= 1, got {check_every_n_steps}.")
        super().__init__()
        self.budget = budget if isinstance(budget, Budget) or budget is None else Budget.parse(budget)
        self.check_every_n_steps = check_every_n_steps
        self.stopping_reason: BudgetStoppingReason | None = None
        self.stopping_reason_message: str | None = None
        self._stopped = False  # decided once: the message is printed once, whatever runs after
        self._minimums: tuple[int | None, int | None] | None = None  # min_epochs, min_steps lifted by a stop

    def _spend(self, trainer: pl.Trainer) -> tuple[Spend, Any]:
        callbacks = trainer.callbacks  # type: ignore[attr-defined]
        energy = next((cb for cb in callbacks if isinstance(cb, EnergyMonitor)), None)
        if energy is not None:
            return energy.spend, energy.grid
        flops = next((cb for cb in callbacks if isinstance(cb, FlopMonitor)), None)
        return (flops.spend if flops is not None else Spend()), None

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_minimums(trainer)  # a fit that ended by an exception never reached on_fit_end
        self._stopped, self._due, self._batches = False, False, 0  # a second fit in the same trial checks again

    @override
    def every_n_steps(self, trainer: pl.Trainer) -> int:
        return self.check_every_n_steps

    @override
    def every_n_steps_work(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Decide whether to stop (a collective); a stop then ends training after the step."""
        self._check(trainer)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Report the sweep's monitored score; a trial its search prunes at this rung stops after it."""
        if trainer.sanity_checking or self._stopped:
            return
        reporter = current_trial()
        if reporter is None or reporter.monitor is None:
            return
        score = _monitored(trainer, reporter.monitor)
        if trainer.is_global_zero:  # one report per trial; every rank hears the verdict in _check's collective
            if reporter.resource in SPEND_RESOURCES:  # its spend so far, read now (distributed: as last metered)
                for callback in trainer.callbacks:  # type: ignore[attr-defined]
                    if isinstance(callback, EnergyMonitor | FlopMonitor):
                        callback.read_now(trainer)
                reporter.report_score(None, score)
            else:
                resource, max_resource = _progress(trainer, reporter.resource)
                reporter.report_score(resource, score, max_resource)
        self._check(trainer)

    def _check(self, trainer: pl.Trainer) -> None:
        if self._stopped:
            return
        reporter = current_trial()
        spend, grid = self._spend(trainer)
        # the sweep's signals are about the whole trial (every trainer it ran): its account's total
        found = stop_reason(reporter, reporter.total if reporter is not None else spend, None)
        if found is None and self.budget is not None:
            found = stop_reason(None, spend, self.budget, grid)
        should_stop = trainer.strategy.reduce_boolean_decision(found is not None, all=False)
        if not should_stop:
            return
        if found is not None:
            self.stopping_reason, self.stopping_reason_message = found
        if reporter is not None:
            record_stop(reporter, self.stopping_reason_message, self.stopping_reason, write=trainer.is_global_zero)
        self._stopped = True
        trainer.should_stop = True
        message = f"BudgetStopping: {self.stopping_reason_message or 'budget spent'}; stopping training."
        rank_zero_info(message + self._outrank_minimums(trainer))

    def _outrank_minimums(self, trainer: pl.Trainer) -> str:
        """Lift ``min_epochs``/``min_steps`` for the rest of this fit, so that ``should_stop`` ends it now.

        Lightning honours ``should_stop`` only once ``min_epochs`` epochs have *ended* and ``global_step`` reached
        ``min_steps`` (``FitLoop._can_stop_early``); until then it trains on ("Training will continue..."), the
        template's ``min_epochs: 1`` included. Returns what to add to the stop message (nothing if none was unmet).
        """
        loop = trainer.fit_loop
        min_epochs, min_steps = loop.min_epochs, loop.epoch_loop.min_steps
        if not min_epochs and not min_steps:
            return ""
        self._minimums = (min_epochs, min_steps)  # given back at the fit's end
        loop.min_epochs, loop.epoch_loop.min_steps = 0, None
        # the epoch in progress has not ended: epochs ended so far = its index
        unmet = trainer.current_epoch < (min_epochs or 0) or trainer.global_step < (min_steps or 0)
        return f" The budget outranks min_epochs={min_epochs}, min_steps={min_steps}." if unmet else ""

    def _restore_minimums(self, trainer: pl.Trainer) -> None:
        if self._minimums is not None:
            trainer.fit_loop.min_epochs, trainer.fit_loop.epoch_loop.min_steps = self._minimums
            self._minimums = None

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_minimums(trainer)  # a later fit on this trainer keeps its minimums until its own stop

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"stopping_reason": None if self.stopping_reason is None else self.stopping_reason.name}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        name = state_dict.get("stopping_reason")
        self.stopping_reason = None if name is None else BudgetStoppingReason[name]


def _monitored(trainer: pl.Trainer, monitor: str) -> float:
    """The monitored metric's value at this validation end.

    Raises:
        BudgetConfigError: the trial does not log it (the message lists what it logs), or it is not finite.
    """
    value = trainer.callback_metrics.get(monitor)
    if value is None:
        logged = ", ".join(sorted(trainer.callback_metrics)) or "nothing"
        raise BudgetConfigError(
            f"hydra.sweeper.monitor={monitor!r} is not a metric this trial logs at validation end; it logs: {logged}. "
            f"Log it in validation_step (self.log({monitor!r}, ...)), or set hydra.sweeper.monitor to one of these."
        )
    score = float(value)
    if not math.isfinite(score):
        raise BudgetConfigError(f"hydra.sweeper.monitor={monitor!r} is {score} at epoch {trainer.current_epoch}.")
    return score


def _progress(trainer: pl.Trainer, resource: str) -> tuple[float, float | None]:
    """How far the trial has trained, and how far it will, in ``resource`` units (``epochs`` or ``steps``)."""
    if resource == "steps":
        return float(trainer.global_step), float(trainer.max_steps) if trainer.max_steps > 0 else None
    batches, done = trainer.num_training_batches, trainer.fit_loop.epoch_loop.batch_progress.current.completed
    fraction = min(done / batches, 1.0) if math.isfinite(batches) and batches > 0 else 1.0
    max_epochs = trainer.max_epochs
    return trainer.current_epoch + fraction, float(max_epochs) if max_epochs is not None and max_epochs >= 0 else None
