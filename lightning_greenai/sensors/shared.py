"""A fair share of a GPU that other processes use too: a MIG slice, or time-slicing and MPS.

A GPU's energy counter is the whole board's. When the process does not have the GPU to itself,
:class:`SharedGPUSensor` charges it a share, polled every ``interval_s`` on a thread and split into idle and active
energy (after Kepler, kepler PR #2384): the idle power is the lowest mean power over a second (ten counter periods)
seen on the GPU since the sensor opened while no process used its SMs (a MIG slice: any second), and the rest of each
interval's energy is active. Until such a second is seen, all of it is active.

- **MIG**: the slice gets ``fraction`` (its compute slices over the GPU's) of both the idle and the active energy.
- **Time-slicing and MPS**: the active energy is split by each process's SM utilisation in NVML's per-process
  samples (``nvmlDeviceGetProcessUtilization``), the idle energy evenly among the processes on the GPU. An interval
  with no samples is split evenly too. SM utilisation ignores memory-bound work (kepler #1215).

The share is always flagged as an estimate, with bounds (:meth:`SharedGPUSensor.read_energy_bounds_j`): at least the
share of the active energy alone, at most all of the active energy plus this process's idle share.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from lightning_greenai.sensors.base import CounterGuard
from lightning_greenai.sensors.sampling import PollingSensor
from lightning_greenai.spend import Method

__all__ = ["GPU_SHARING", "SharedGPUSensor", "check_sharing", "running_pids", "utilisation_share"]

#: How a GPU's energy is attributed: ``auto`` (shared when a MIG slice or when other processes run on it at start),
#: ``exclusive`` (the whole GPU, as when the job has it to itself), ``shared`` (always apportioned by utilisation).
GPU_SHARING = ("auto", "exclusive", "shared")


def check_sharing(value: object) -> str:
    """Return ``value`` if it is one of :data:`GPU_SHARING`, else raise a ``ValueError`` naming it."""
    if value not in GPU_SHARING:
        raise ValueError(f"gpu_sharing must be one of {', '.join(map(repr, GPU_SHARING))}, got {value!r}")
    return str(value)


def running_pids(nvml: Any, handle: Any) -> set[int]:
    """The pids NVML lists as running compute work on the GPU (empty where it cannot say)."""
    try:
        return {int(p.pid) for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)}
    except (nvml.NVMLError, AttributeError):
        return set()


def utilisation_share(
    nvml: Any, handle: Any, pids: set[int], since_us: int
) -> tuple[float | None, set[int], int, float]:
    """This job's share of the GPU's SM utilisation in NVML's samples after ``since_us``.

    Returns ``(share, or None when no process used the SMs; the processes seen; the newest sample's timestamp; the
    SM utilisation summed over the samples)``.
    """
    try:
        samples = list(nvml.nvmlDeviceGetProcessUtilization(handle, since_us))
    except nvml.NVMLError:  # NVML_ERROR_NOT_FOUND: no sample since then
        samples = []
    mine = total = 0.0
    seen: set[int] = set()
    newest = since_us
    for sample in samples:
        sm = min(max(float(sample.smUtil), 0.0), 100.0)
        seen.add(int(sample.pid))
        total += sm
        if int(sample.pid) in pids:
            mine += sm
        newest = max(newest, int(sample.timeStamp))
    return (mine / total if total > 0 else None), seen, newest, total


class SharedGPUSensor(PollingSensor):
    """This process's share of a shared GPU's energy (see the module docstring for the rule), as an estimate.

    Args:
        whole: The sensor of the whole GPU (its energy counter, or its polled power).
        nvml: The NVML module, for the per-process samples (time-slicing and MPS).
        handle: The GPU's NVML handle.
        fraction: A MIG slice's compute fraction of the GPU; ``None`` splits by SM utilisation.
        pids: Returns the pids whose share is charged (default: this process; under DDP each rank charges its own,
            and the shares of the ranks add up).
        uid: The share's counter id (default: the GPU's UUID with the MIG slice or the pid): distinct shares of one
            GPU are distinct counters, which ranks and meters sum instead of keeping one.
        interval_s: How often the share is taken.
        clock: Monotonic clock in seconds.
        start_thread: Whether to poll on a thread (tests pass ``False`` and drive reads with a fake clock).
    """

    def __init__(
        self,
        whole: Any,
        nvml: Any,
        handle: Any,
        *,
        fraction: float | None = None,
        pids: Callable[[], set[int]] | None = None,
        uid: str | None = None,
        interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        start_thread: bool = True,
    ) -> None:
        pid = os.getpid()
        uid = uid or f"{whole.uid}@pid{pid}"
        super().__init__(str(whole.name), uid, Method.ESTIMATE, interval_s=interval_s, start_thread=start_thread)
        if fraction is not None and not 0.0 < fraction <= 1.0:
            raise ValueError(f"a MIG slice's fraction must be in (0, 1], got {fraction!r}")
        self.whole, self._nvml, self._handle = whole, nvml, handle
        self.fraction = fraction
        self._pids = pids or (lambda: {pid})
        self.update_period_s = float(getattr(whole, "update_period_s", 0.0))
        self.resolution_j = float(getattr(whole, "resolution_j", 0.0))
        self.accuracy = float(getattr(whole, "accuracy", self.accuracy))
        self._clock = clock
        self._guard = CounterGuard(whole)  # the whole GPU's counter, its glitches skipped
        self.max_power_w = self._guard.max_power_w  # a share draws no more than the whole GPU
        self._last_j = float(whole.read_energy_j())
        self._last_s = clock()
        self._guard.step(self._last_j, self._last_s)
        self._since_us = int(time.time() * 1e6)
        self._idle_w: float | None = None
        self._window = (self._last_s, self._last_j, 0.0)  # (start, GPU energy, SM utilisation) for the idle power
        self.energy_j = self.low_j = self.high_j = 0.0
        self.gpu_energy_j = 0.0  # the whole GPU's, over the same time

    def _poll(self) -> None:
        energy_j, now = float(self.whole.read_energy_j()), self._clock()
        with self._lock:
            dt = now - self._last_s
            delta_j = self._guard.step(energy_j, now) if dt > 0 else 0.0
            if delta_j <= 0:  # the counter has not moved since (it ticks every ~100 ms), or glitched: wait for it
                return
            self._last_j, self._last_s = energy_j, now
            if self.fraction is not None:
                share, idle_share, busy = self.fraction, self.fraction, 0.0
            else:
                ours = self._pids()
                sampled, seen, self._since_us, busy = utilisation_share(self._nvml, self._handle, ours, self._since_us)
                present = seen | running_pids(self._nvml, self._handle)
                ours_present = (ours & present) or set(list(ours)[:1])  # this job counts once at least
                idle_share = len(ours_present) / len(present | ours_present)
                share = idle_share if sampled is None else sampled  # no SM activity sampled: split evenly
            self._learn_idle(now, energy_j, busy)
            idle_j = 0.0 if self._idle_w is None else min(self._idle_w * dt, delta_j)
            active_j = delta_j - idle_j
            self.gpu_energy_j += delta_j
            self.energy_j += share * active_j + idle_share * idle_j
            # with the idle power unknown, the fair share lies between the utilisation share and the idle share of it
            self.low_j += share * active_j if self._idle_w is not None else min(share, idle_share) * delta_j
            self.high_j += active_j + idle_share * idle_j

    def _learn_idle(self, now: float, energy_j: float, busy: float) -> None:
        """Close the idle-power window after a second; a window with no SM activity may lower the idle power."""
        start_s, start_j, window_busy = self._window
        window_busy += busy
        if now - start_s < max(1.0, 10 * self.update_period_s):
            self._window = (start_s, start_j, window_busy)
            return
        if window_busy == 0.0:
            power_w = (energy_j - start_j) / (now - start_s)
            self._idle_w = power_w if self._idle_w is None else min(self._idle_w, power_w)
        self._window = (now, energy_j, 0.0)

    def read_energy_j(self) -> float:
        """Return this process's share since the sensor opened, in joules (polling once now)."""
        self._poll_now()
        with self._lock:
            return self.energy_j

    def read_energy_bounds_j(self) -> tuple[float, float]:
        """Cumulative (low, high): the share of the active energy alone, all of it plus the idle share."""
        with self._lock:
            return self.low_j, self.high_j

    def read_power_w(self) -> float | None:
        """The whole GPU's power times the share so far (for windows shorter than the counter's period)."""
        read = getattr(self.whole, "read_power_w", None)
        if read is None:
            return None
        with self._lock:
            ratio = self.energy_j / self.gpu_energy_j if self.gpu_energy_j > 0 else (self.fraction or 1.0)
        return float(read()) * ratio

    def close(self) -> None:
        """Stop polling and close the whole GPU's sensor."""
        super().close()
        self.whole.close()
