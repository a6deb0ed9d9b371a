"""The one hardware interface: a read-only counter of cumulative joules for one energy domain."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from lightning_greenai.errors import GreenAIWarning
from lightning_greenai.sensors.uncertainty import DEFAULT_ACCURACY, ESTIMATE_FACTOR, counter_allowance_j
from lightning_greenai.spend import Method

__all__ = ["DEFAULT_GPU_MAX_POWER_W", "CounterGuard", "EnergySensor", "GPUDiscovery", "SensorBase"]

#: The most a GPU whose limits are unknown is taken to draw: twice the largest boards' (MI355X, B300: 1.4 kW).
DEFAULT_GPU_MAX_POWER_W = 2800.0


@runtime_checkable
class EnergySensor(Protocol):
    """A cumulative energy counter for one domain (a GPU, a CPU package, a DRAM zone).

    Implementations may also offer ``update_period_s: float`` (how often the hardware refreshes the counter) and
    ``read_power_w() -> float | None`` (an instantaneous power reading): the :class:`~lightning_greenai.Meter` uses
    them to price a window too short for the counter as power times time, flagged as an estimate. For the error bars
    (:mod:`lightning_greenai.sensors.uncertainty`) they may offer ``accuracy`` (relative), ``resolution_j`` and
    ``read_energy_bounds_j() -> tuple[float, float] | None``: cumulative low and high joules since the same origin as
    :meth:`read_energy_j`, for a sensor whose figure has an interval of its own (polled power, a shared GPU's share).
    A hardware counter offers ``max_power_w`` (the most its device can draw: a jump beyond it is a glitch, see
    :class:`CounterGuard`) and, where it wraps to 0, ``wrap_j`` (the joules at which it does).
    """

    @property
    def name(self) -> str:
        """Domain name shown to users, e.g. ``"gpu:0"``, ``"cpu:package-0"``, ``"dram:0"``."""
        ...

    @property
    def uid(self) -> str:
        """Globally unique id of the physical counter (GPU UUID, host + sysfs path), so ranks never count it twice."""
        ...

    @property
    def method(self) -> Method:
        """How this sensor obtains energy (counter, sampled, estimate)."""
        ...

    def read_energy_j(self) -> float:
        """Return energy used since an arbitrary origin, in joules. Never decreases (but wraps past ``wrap_j``)."""
        ...

    def close(self) -> None:
        """Release handles and stop threads. Safe to call twice."""
        ...


class SensorBase:
    """The identity every sensor reports (name, uid, method); subclasses add ``read_energy_j``.

    Sensors need not inherit from it (the interface is the :class:`EnergySensor` protocol); ours do, to share this.
    """

    #: Seconds between two updates of the hardware counter (0: continuous); see :class:`EnergySensor`.
    update_period_s: float = 0.0
    #: The counter's step, in joules.
    resolution_j: float = 0.0
    #: Relative calibration accuracy of the hardware's reading.
    accuracy: float = DEFAULT_ACCURACY
    #: The most the device can draw, in watts (``None``: unknown, so only a counter going back is a glitch).
    max_power_w: float | None = None
    #: Where the counter wraps to 0, in joules (``None``: it does not).
    wrap_j: float | None = None

    def __init__(self, name: str, uid: str, method: Method) -> None:
        self._name, self._uid, self._method = name, uid, method

    @property
    def name(self) -> str:
        """Domain name, e.g. ``"gpu:0"``."""
        return self._name

    @property
    def uid(self) -> str:
        """Unique id of the physical counter."""
        return self._uid

    @property
    def method(self) -> Method:
        """How this sensor obtains energy."""
        return self._method

    def close(self) -> None:
        """Nothing to release by default."""


@dataclass
class GPUDiscovery:
    """What a GPU vendor's discovery found (NVML, amdsmi, Jetson rails): sensors, domains it could not meter, notes."""

    sensors: list[Any] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Domains whose counter covers the whole module, CPU and memory included (Grace Hopper, Grace Blackwell).
    module_counters: list[str] = field(default_factory=list)


class CounterGuard:
    """Turn one cumulative counter's readings into energy, skipping glitches (one per sensor the Meter reads).

    A reading is a glitch when it is not a number, lies below the last good one (unless the counter declares
    ``wrap_j`` and the wrap it implies is plausible: that is a wrap), or lies above it by more than
    :func:`~lightning_greenai.sensors.uncertainty.counter_allowance_j` (the device's maximum power over the time
    since). A glitch is skipped: the last good reading stays the base, so the next good one bills the whole interval.
    It is warned about once per sensor and counted in :attr:`glitches`; while the latest reading is one, the interval
    grows by :meth:`unread_high_j`. Two readings in a row that agree with each other but not with the base are the
    counter itself moving (a reset): billing goes on from them, and the time before them is unread.

    Args:
        sensor: The counter: its ``name``, and where it has them ``max_power_w``, ``wrap_j``, ``update_period_s``
            and ``resolution_j``.
    """

    def __init__(self, sensor: Any) -> None:
        self.name = str(sensor.name)
        self.max_power_w = _positive_or_none(getattr(sensor, "max_power_w", None))
        self.wrap_j = _positive_or_none(getattr(sensor, "wrap_j", None))
        self.update_period_s = float(getattr(sensor, "update_period_s", 0.0) or 0.0)
        self.resolution_j = float(getattr(sensor, "resolution_j", 0.0) or 0.0)
        self.glitches = 0
        self._good: tuple[float, float] | None = None  # (reading, time) of the last good reading
        self._glitch: tuple[float, float] | None = None  # the latest reading, while it is a glitch
        self._first_s = 0.0
        self._billed_j = 0.0
        self._lost_high_j = 0.0  # unread time before a reset, at the device's maximum power

    def step(self, value_j: float, now_s: float) -> float:
        """Return the joules the reading ``value_j`` taken at ``now_s`` bills: 0 for the first reading or a glitch."""
        if self._good is None:
            if math.isfinite(value_j):
                self._good, self._first_s = (value_j, now_s), now_s
            else:
                self._skip(value_j, now_s, "not a number")
            return 0.0
        problem = self._problem(self._good, value_j, now_s)
        if problem is None:
            return self._bill(self._good, value_j, now_s)
        glitch = self._glitch
        if glitch is not None and self._rise(glitch[0], value_j) > 0 and self._problem(glitch, value_j, now_s) is None:
            self._lost_high_j += self._rate_w() * (glitch[1] - self._good[1])
            return self._bill(glitch, value_j, now_s)
        self._skip(value_j, now_s, problem)
        return 0.0

    def unread_high_j(self, now_s: float) -> float:
        """The most the device may have used that no good reading covers (a glitch last, or before a reset)."""
        if self._good is None or self._glitch is None:
            return self._lost_high_j
        return self._lost_high_j + self._rate_w() * max(now_s - self._good[1], 0.0)

    def _bill(self, base: tuple[float, float], value_j: float, now_s: float) -> float:
        delta = self._rise(base[0], value_j)
        self._good, self._glitch = (value_j, now_s), None
        self._billed_j += delta
        return delta

    def _rise(self, base_j: float, value_j: float) -> float:
        delta = value_j - base_j
        if delta < 0 and self.wrap_j is not None:
            delta += self.wrap_j
        return delta

    def _problem(self, base: tuple[float, float], value_j: float, now_s: float) -> str | None:
        """Why ``value_j`` cannot follow the reading ``base``, or ``None``."""
        if not math.isfinite(value_j):
            return "not a number"
        delta = self._rise(base[0], value_j)
        if delta < 0:
            return f"{-delta:.6g} J below the last good reading"
        elapsed_s = now_s - base[1]
        most_j = counter_allowance_j(
            self.max_power_w, elapsed_s, update_period_s=self.update_period_s, resolution_j=self.resolution_j
        )
        if delta > most_j:
            return (
                f"{delta:.6g} J above the last good reading {elapsed_s:.3g} s before, more than the device's "
                f"{self.max_power_w:g} W allow ({most_j:.6g} J)"
            )
        return None

    def _skip(self, value_j: float, now_s: float, problem: str) -> None:
        self._glitch = (value_j, now_s)
        self.glitches += 1
        if self.glitches == 1:
            warnings.warn(
                f"Energy sensor {self.name!r} read {value_j!r} J, {problem}: a glitch. The reading is skipped (the "
                "last good one stays the base, so the next good reading bills the whole interval) and the interval is "
                "widened until then; later glitches of this sensor are skipped without a warning.",
                GreenAIWarning,
                stacklevel=4,
            )

    def _rate_w(self) -> float:
        """The power an unread stretch may have drawn: the device's maximum, else twice the mean so far."""
        if self.max_power_w is not None:
            return self.max_power_w
        elapsed_s = self._good[1] - self._first_s if self._good is not None else 0.0
        return ESTIMATE_FACTOR * self._billed_j / elapsed_s if elapsed_s > 0 else 0.0


def _positive_or_none(value: Any) -> float | None:
    """A positive finite float, or ``None`` for anything else (a sensor that does not say)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None
