"""Lightning callbacks: thin adapters that turn Trainer hooks into :class:`~lightning_greenai.Meter` readings."""

from lightning_greenai.callbacks.budget_stopping import BudgetStopping
from lightning_greenai.callbacks.energy_monitor import EnergyMonitor
from lightning_greenai.callbacks.flop_monitor import FlopMonitor

__all__ = ["BudgetStopping", "EnergyMonitor", "FlopMonitor"]
