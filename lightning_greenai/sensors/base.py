"""The one hardware interface: a read-only counter of cumulative joules for one energy domain."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from lightning_greenai.spend import Method

__all__ = ["EnergySensor"]


@runtime_checkable
class EnergySensor(Protocol):
    """A cumulative energy counter for one domain (a GPU, a CPU package, a DRAM zone).

    Implementations may also offer ``update_period_s: float`` (how often the hardware refreshes the counter) and
    ``read_power_w() -> float | None`` (an instantaneous power reading): the :class:`~lightning_greenai.Meter` uses
    them to price a window too short for the counter as power times time, flagged as an estimate.
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
