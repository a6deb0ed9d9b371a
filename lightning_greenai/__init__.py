"""lightning-greenai: a price tag on every ML result (energy, CO2e, money and FLOPs) for Lightning and Hydra.

The metering core (:class:`Meter`, :class:`Spend`, :class:`Budget`, :class:`Grid`, the sensors) imports neither
Lightning nor Hydra; the callbacks are thin adapters over it.
"""

from lightning_greenai.budget import Budget
from lightning_greenai.callbacks import EnergyMonitor
from lightning_greenai.errors import (
    BudgetConfigError,
    GreenAIError,
    GreenAIWarning,
    GridConfigError,
    SensorReadError,
    SensorUnavailableError,
)
from lightning_greenai.grid import Grid
from lightning_greenai.meter import Meter
from lightning_greenai.reporting import PriceTag
from lightning_greenai.sensors import EnergySensor, discover_sensors
from lightning_greenai.spend import Method, Spend

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "BudgetConfigError",
    "EnergyMonitor",
    "EnergySensor",
    "GreenAIError",
    "GreenAIWarning",
    "Grid",
    "GridConfigError",
    "Meter",
    "Method",
    "PriceTag",
    "SensorReadError",
    "SensorUnavailableError",
    "Spend",
    "__version__",
    "discover_sensors",
]
