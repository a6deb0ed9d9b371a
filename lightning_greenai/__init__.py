"""lightning-greenai: a price tag on every ML result (energy, CO2e, money and FLOPs) for Lightning and Hydra.

The metering core (:class:`Meter`, :class:`Spend`, :class:`Budget`, :class:`Grid`, the sensors) imports neither
Lightning nor Hydra; the callbacks are thin adapters over it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightning_greenai.budget import Budget
from lightning_greenai.errors import (
    BudgetConfigError,
    GreenAIError,
    GreenAIWarning,
    GridConfigError,
    MissingDependencyError,
    SensorReadError,
    SensorUnavailableError,
    StateWriteError,
    SweepFailedError,
    SweepLockedError,
    TrialKilledError,
)
from lightning_greenai.exporters.opentelemetry import OpenTelemetryExporter
from lightning_greenai.exporters.prometheus import PrometheusExporter
from lightning_greenai.grid import Grid
from lightning_greenai.grid.timeline import ElectricityMaps
from lightning_greenai.metering.meter import Meter
from lightning_greenai.reporting import PriceTag
from lightning_greenai.sensors import EnergySensor, discover_sensors
from lightning_greenai.spend import Method, Spend
from lightning_greenai.trial.record import TrialStatus
from lightning_greenai.trial.stopping import report_score

if TYPE_CHECKING:
    from lightning_greenai.callbacks import BudgetStopping, EnergyMonitor, FlopMonitor

__version__ = "0.1.0"

# Callbacks import Lightning; load them on first use so that the metering core stays light to import.
_LAZY = dict.fromkeys(("BudgetStopping", "EnergyMonitor", "FlopMonitor"), "lightning_greenai.callbacks")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lightning_greenai' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Budget",
    "BudgetConfigError",
    "BudgetStopping",
    "ElectricityMaps",
    "EnergyMonitor",
    "EnergySensor",
    "FlopMonitor",
    "GreenAIError",
    "GreenAIWarning",
    "Grid",
    "GridConfigError",
    "Meter",
    "Method",
    "MissingDependencyError",
    "OpenTelemetryExporter",
    "PriceTag",
    "PrometheusExporter",
    "SensorReadError",
    "SensorUnavailableError",
    "Spend",
    "StateWriteError",
    "SweepFailedError",
    "SweepLockedError",
    "TrialKilledError",
    "TrialStatus",
    "__version__",
    "discover_sensors",
    "report_score",
]
