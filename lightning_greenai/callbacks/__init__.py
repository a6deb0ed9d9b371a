"""Lightning callbacks: thin adapters that turn Trainer hooks into :class:`~lightning_greenai.Meter` readings."""

from lightning_greenai.callbacks.energy_monitor import EnergyMonitor
from lightning_greenai.callbacks.flop_monitor import FlopMonitor

__all__ = ["EnergyMonitor", "FlopMonitor"]
