"""Integrate a power reading over time on a background thread, for devices that have no energy counter."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from lightning_greenai.errors import SensorReadError
from lightning_greenai.sensors.base import SensorBase
from lightning_greenai.spend import Method

__all__ = ["PollingSensor", "SampledPowerSensor"]


class PollingSensor(SensorBase):
    """A sensor that updates its own cumulative figure in :meth:`_poll`, every ``interval_s`` on a daemon thread.

    The thread starts on the first :meth:`_poll_now` (each read polls too, so a figure always reaches the moment of
    the read) and stops on :meth:`close`. A poll that raises on the thread is skipped; the next read raises to the
    Meter.
    """

    def __init__(self, name: str, uid: str, method: Method, *, interval_s: float, start_thread: bool) -> None:
        super().__init__(name, uid, method)
        self._interval_s, self._start_thread = interval_s, start_thread
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._poll()
            except Exception:  # a failing poll must not kill the thread; the next read raises to the Meter
                continue

    def _poll_now(self) -> None:
        """Poll in the caller's thread, and start the polling thread on the first call."""
        self._poll()
        if self._start_thread and self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"greenai-poll-{self._name}", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the polling thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None


class SampledPowerSensor(PollingSensor):
    """Poll ``power_fn`` (watts) every ``interval_s`` on a daemon thread and integrate it (trapezoid rule).

    The thread starts on the first :meth:`read_energy_j` and stops on :meth:`close`. Each read also takes a fresh
    sample, so the integral always reaches the moment of the read.

    Args:
        name: Domain name, e.g. ``"gpu:0"``.
        uid: Unique id of the device.
        power_fn: Returns the current power in watts.
        method: ``Method.SAMPLED`` for a measured power, ``Method.ESTIMATE`` for a modelled one.
        interval_s: Polling period in seconds.
        clock: Monotonic clock in seconds.
        start_thread: Whether to poll on a thread (tests pass ``False`` and drive reads with a fake clock).
    """

    def __init__(
        self,
        name: str,
        uid: str,
        power_fn: Callable[[], float],
        *,
        method: Method = Method.SAMPLED,
        interval_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        start_thread: bool = True,
    ) -> None:
        super().__init__(name, uid, method, interval_s=interval_s, start_thread=start_thread)
        self._power_fn = power_fn
        self._clock = clock
        self._energy_j = 0.0
        self._bracket_j = 0.0  # half the gap between the left and right Riemann sums: the sampling error
        self._last: tuple[float, float] | None = None  # (time_s, power_w) of the last valid sample
        self._invalid = 0  # glitched samples (NaN, negative)
        self._first_invalid_s: float | None = None  # when glitches began, before any valid sample

    def _poll(self) -> None:
        power_w = float(self._power_fn())
        now = self._clock()
        with self._lock:
            if not math.isfinite(power_w) or power_w < 0:
                # a glitched sample: the last valid power is held across the gap, bracketed from 0 to twice it
                self._invalid += 1
                if self._last is None:
                    self._first_invalid_s = self._first_invalid_s if self._first_invalid_s is not None else now
                    return
                t0, p0 = self._last
                self._energy_j += (now - t0) * p0
                self._bracket_j += (now - t0) * p0
                self._last = (now, p0)
                return
            if self._last is not None:
                t0, p0 = self._last
                self._energy_j += (now - t0) * (p0 + power_w) / 2.0
                self._bracket_j += (now - t0) * abs(power_w - p0) / 2.0
            elif self._first_invalid_s is not None:  # glitched from the start: the first valid power held back
                self._energy_j += (now - self._first_invalid_s) * power_w
                self._bracket_j += (now - self._first_invalid_s) * power_w
            self._last = (now, power_w)

    def read_energy_j(self) -> float:
        """Return the integrated energy up to now, in joules.

        Raises:
            SensorReadError: every sample so far was glitched (NaN or negative), three at least: the Meter then warns
                and flags the device.
        """
        self._poll_now()
        with self._lock:
            if self._last is None and self._invalid >= 3:
                raise SensorReadError(f"{self._name}: every power sample so far was NaN or negative ({self._invalid})")
            return self._energy_j

    def read_energy_bounds_j(self) -> tuple[float, float] | None:
        """Cumulative (low, high) joules: the power between two samples lies between them (``None`` for a model).

        Read right after :meth:`read_energy_j`; a modelled power (``Method.ESTIMATE``) has no interval of its own.
        """
        if self._method is Method.ESTIMATE:
            return None
        with self._lock:
            return self._energy_j - self._bracket_j, self._energy_j + self._bracket_j

    def read_power_w(self) -> float:
        """Return the current power in watts."""
        return float(self._power_fn())
