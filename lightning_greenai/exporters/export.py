"""Live export of a run's cumulative spend to monitoring systems: what both exporters share.

A monitor hands over its cumulative spend at each log; an exporter turns it into monotonic counters (energy by
device, FLOPs) by adding what grew since the last update, and a power gauge per device (the mean power since then:
what its energy grew over what the spend's metered time grew).
:class:`~lightning_greenai.exporters.prometheus.PrometheusExporter` serves them to a Prometheus scrape;
:class:`~lightning_greenai.exporters.opentelemetry.OpenTelemetryExporter` records them in OpenTelemetry instruments.
"""

from __future__ import annotations

import abc
import os
import socket
import threading
from collections.abc import Hashable

from lightning_greenai.spend import Spend

__all__ = ["SpendExporter"]


class SpendExporter(abc.ABC):
    """Turn a run's cumulative spend into counter increments and power readings.

    Args:
        run: The ``run`` label of every series (default: ``<hostname>-<pid>``).
    """

    def __init__(self, *, run: str | None = None) -> None:
        self.run = run or f"{socket.gethostname()}-{os.getpid()}"
        self._lock = threading.Lock()
        self._last: dict[tuple[Hashable, str], float] = {}  # (source, device) -> joules exported
        self._last_flops: dict[Hashable, float] = {}
        self._last_duration_s: dict[Hashable, float] = {}

    def update(self, spend: Spend, source: Hashable = None) -> None:
        """Export the cumulative ``spend`` of ``source`` (a monitor): counters grow by what grew since its last update.

        Several monitors may share one exporter (a pretrain and a finetune in one process): each is followed apart,
        and the counters carry their sum. They never go down.
        """
        with self._lock:
            last = self._last_duration_s.get(source)
            elapsed = None if last is None else spend.duration_s - last
            for device, joules in spend.energy_j.items():
                grown = joules - self._last.get((source, device), 0.0)
                method = spend.methods[device].value if device in spend.methods else "unknown"
                if grown > 0:
                    self._add_energy(device, method, grown)
                    self._last[(source, device)] = joules
                if elapsed:
                    self._set_power(device, max(grown, 0.0) / elapsed)
            if spend.flops > self._last_flops.get(source, 0.0):
                self._add_flops(spend.flops - self._last_flops.get(source, 0.0))
                self._last_flops[source] = spend.flops
            self._last_duration_s[source] = spend.duration_s

    @abc.abstractmethod
    def _add_energy(self, device: str, method: str, joules: float) -> None:
        """Add ``joules`` to the device's energy counter."""

    @abc.abstractmethod
    def _add_flops(self, flops: float) -> None:
        """Add ``flops`` to the FLOP counter."""

    @abc.abstractmethod
    def _set_power(self, device: str, watts: float) -> None:
        """Set the device's power gauge."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the exporter holds (a server, a port)."""
