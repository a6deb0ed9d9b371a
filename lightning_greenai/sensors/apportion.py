"""Share a host-wide counter among the processes that run on the host, by CPU time.

A CPU package (and its DRAM) serves every process on the host: when parallel sweep jobs each read the whole RAPL
counter, the host's energy is counted once per job. :class:`ApportionedSensor` charges this process tree only its
share of each reading interval: ``delta_J x (this tree's CPU seconds / all CPU seconds used on the host)`` in that
interval. The shares of concurrent jobs add up to at most the measured total; energy of the host's idle time and of
other processes is charged to no job.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil

from lightning_greenai.sensors.base import CounterGuard, SensorBase
from lightning_greenai.sensors.estimate import TreeCPUTime
from lightning_greenai.spend import Method

__all__ = ["ApportionedSensor"]


def _busy_s() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


class ApportionedSensor(SensorBase):
    """Wrap a host-wide sensor (RAPL package or DRAM) to report this process tree's CPU-time share of it.

    Args:
        inner: The host-wide sensor.
        process: The process whose tree is charged (default: this one).
        clock: Monotonic clock in seconds, to tell the counter's glitches from its growth.
    """

    def __init__(
        self, inner: object, process: psutil.Process | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.inner = inner
        self._process = process or psutil.Process()
        # per process: each job's share is its own; splitting a measured counter is not itself an energy estimate
        super().__init__(
            str(inner.name),  # type: ignore[attr-defined]
            f"{inner.uid}@pid{self._process.pid}",  # type: ignore[attr-defined]
            Method(inner.method),  # type: ignore[attr-defined]
        )
        self._clock = clock
        self._guard = CounterGuard(inner)  # the host counter's wraps and glitches
        self._guard.step(float(inner.read_energy_j()), clock())  # type: ignore[attr-defined]
        self._tree_s = TreeCPUTime(self._process)
        self._last_busy, self._last_tree = _busy_s(), self._tree_s()
        self._energy_j = 0.0
        self.update_period_s = float(getattr(inner, "update_period_s", 0.0))
        self.accuracy = float(getattr(inner, "accuracy", self.accuracy))
        self.max_power_w = self._guard.max_power_w  # a share draws no more than the whole host counter

    def read_energy_j(self) -> float:
        """Return this process tree's cumulative share of the host counter, in joules."""
        energy, busy, tree = float(self.inner.read_energy_j()), _busy_s(), self._tree_s()  # type: ignore[attr-defined]
        d_energy, d_busy, d_tree = (
            self._guard.step(energy, self._clock()),
            busy - self._last_busy,
            tree - self._last_tree,
        )
        share = 1.0 if d_busy <= 0 else min(1.0, max(0.0, d_tree / d_busy))
        self._energy_j += d_energy * share
        self._last_busy, self._last_tree = busy, tree
        return self._energy_j

    def close(self) -> None:
        """Close the inner sensor."""
        self.inner.close()  # type: ignore[attr-defined]
