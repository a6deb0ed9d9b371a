"""Lightning callbacks: thin adapters that turn Trainer hooks into :class:`~lightning_greenai.Meter` readings."""

from lightning_greenai.callbacks.energy_monitor import EnergyMonitor

__all__ = ["EnergyMonitor"]
