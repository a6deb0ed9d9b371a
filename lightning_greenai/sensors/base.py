"""The one hardware interface: a read-only counter of cumulative joules for one energy domain."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from lightning_greenai.sensors.uncertainty import DEFAULT_ACCURACY
from lightning_greenai.spend import Method

__all__ = ["EnergySensor", "GPUDiscovery", "SensorBase"]


@runtime_checkable
class EnergySensor(Protocol):
    """A cumulative energy counter for one domain (a GPU, a CPU package, a DRAM zone).

    Implementations may also offer ``update_period_s: float`` (how often the hardware refreshes the counter) and
    ``read_power_w() -> float | None`` (an instantaneous power reading): the :class:`~lightning_greenai.Meter` uses
    them to price a window too short for the counter as power times time, flagged as an estimate. For the error bars
    (:mod:`lightning_greenai.sensors.uncertainty`) they may offer ``accuracy`` (relative), ``resolution_j`` and
    ``read_energy_bounds_j() -> tuple[float, float] | None``: cumulative low and high joules since the same origin as
    :meth:`read_energy_j`, for a sensor whose figure has an interval of its own (polled power, a shared GPU's share).
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
        """Return energy used since an arbitrary origin, in joules. Never decreases."""
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
