"""Errors and warnings raised by lightning-greenai.

Every error subclasses :class:`GreenAIError` and the builtin a caller would expect::

    GreenAIError
    ├── BudgetConfigError(ValueError)      a budget or unit that cannot be parsed or is out of range
    ├── GridConfigError(ValueError)        an unknown country/region, a bad PUE, price or currency
    ├── SensorUnavailableError(RuntimeError)   a sensor the user asked for explicitly cannot be opened
    ├── SensorReadError(RuntimeError)      a sensor failed while reading
    ├── TrialKilledError(RuntimeError)     a sweep trial aborted under stop_policy=kill
    ├── SweepLockedError(RuntimeError)     another sweeper holds the sweep dir
    ├── SweepFailedError(RuntimeError)     more trials failed than max_failure_rate allows (ledger and report kept)
    ├── MissingDependencyError(ModuleNotFoundError)  an optional package a feature needs is not installed
    └── StateWriteError(OSError)           a sweep or run file cannot be written (read-only or full disk)

    GreenAIWarning(UserWarning)            every warning we emit (missing sensors, estimates, faults)
"""

from __future__ import annotations

__all__ = [
    "BudgetConfigError",
    "GreenAIError",
    "GreenAIWarning",
    "GridConfigError",
    "MissingDependencyError",
    "SensorReadError",
    "SensorUnavailableError",
    "StateWriteError",
    "SweepFailedError",
    "SweepLockedError",
    "TrialKilledError",
]


class GreenAIError(Exception):
    """Base class of every lightning-greenai error."""


class BudgetConfigError(GreenAIError, ValueError):
    """A budget, quantity or unit is malformed or out of range."""


class GridConfigError(GreenAIError, ValueError):
    """A country, region, PUE, price or currency is unknown or out of range."""


class SensorUnavailableError(GreenAIError, RuntimeError):
    """A sensor that was explicitly requested cannot be opened."""


class SensorReadError(GreenAIError, RuntimeError):
    """A sensor raised while reading its counter."""


class GreenAIWarning(UserWarning):
    """Category of every warning emitted by lightning-greenai."""


class TrialKilledError(GreenAIError, RuntimeError):
    """Raised in a sweep trial when the sweep runs with ``stop_policy=kill`` and its budget is spent."""


class SweepFailedError(GreenAIError, RuntimeError):
    """More trials failed than ``max_failure_rate`` allows; the ledger and the report of what ran are kept."""


class SweepLockedError(GreenAIError, RuntimeError):
    """Another sweeper process is running on the same sweep dir."""


class StateWriteError(GreenAIError, OSError):
    """A ledger, heartbeat or report file cannot be written; what was written before is intact."""


class MissingDependencyError(GreenAIError, ModuleNotFoundError):
    """An optional package that a feature needs is not installed; the message names the install command."""
