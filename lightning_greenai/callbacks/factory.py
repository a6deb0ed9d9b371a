"""Opt-in registration through Lightning's ``callbacks_factory`` entry point.

Set ``LIGHTNING_GREENAI=1`` (or ``true``/``yes``/``on``) and every ``Trainer`` gets an :class:`EnergyMonitor`
without code changes; ``LIGHTNING_GREENAI_COUNTRY`` and ``LIGHTNING_GREENAI_REGION`` choose the grid. A monitor the
user passes explicitly always wins: the auto-registered one then does nothing.
"""

from __future__ import annotations

import os

from lightning.pytorch.callbacks import Callback

from lightning_greenai.callbacks.energy_monitor import EnergyMonitor

__all__ = ["ENV_VAR", "auto_callbacks"]

ENV_VAR = "LIGHTNING_GREENAI"
_TRUE = {"1", "true", "yes", "on"}


def auto_callbacks() -> list[Callback]:
    """Return the monitors to add to every Trainer when ``LIGHTNING_GREENAI`` is set, else nothing."""
    if os.environ.get(ENV_VAR, "").strip().lower() not in _TRUE:
        return []
    grid = {
        "country": os.environ.get(f"{ENV_VAR}_COUNTRY") or None,
        "region": os.environ.get(f"{ENV_VAR}_REGION") or None,
    }
    monitor = EnergyMonitor(grid=grid)
    monitor._auto = True
    return [monitor]
