"""A Prometheus endpoint for a run's energy, FLOPs and power: what a cluster's monitoring already scrapes.

Opt-in per monitor (``EnergyMonitor(prometheus=...)``). The exporter serves its own registry on its own port
(``prometheus-client``), so it never mixes with other metrics of the process, and exposes:

* ``greenai_energy_joules_total{device,method,run}``: a counter of each device's energy;
* ``greenai_flops_total{run}``: a counter of the training FLOPs (with a FlopMonitor on the trainer);
* ``greenai_power_watts{device,run}``: a gauge of each device's mean power since the previous update.

Counters only go up: the monitor hands over its cumulative spend and the exporter adds what grew. Under DDP the
monitor's totals are every rank's, so only global rank 0 exports.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from lightning_greenai.errors import MissingDependencyError
from lightning_greenai.spend import Spend

__all__ = ["PrometheusExporter", "check_port"]


def check_port(port: Any, *, name: str = "port", allowed: str = "") -> None:
    """Refuse anything but a TCP port number, naming the value and what is allowed."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        also = f", {allowed}" if allowed else ""
        raise ValueError(f"`{name}` must be a port in [0, 65535] (0: a free one){also}; got {port!r}.")


class PrometheusExporter:
    """Serve a run's energy, FLOPs and power on ``http://<host>:<port>/metrics``.

    Args:
        port: The port to listen on (0: a free one, see :attr:`port`).
        host: The address to listen on (default: this machine only).
        run: The ``run`` label (default: ``<hostname>-<pid>``).
        clock: Monotonic clock for the power gauge.

    Raises:
        MissingDependencyError: ``prometheus-client`` is not installed.
        OSError: the port cannot be bound.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        run: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
        except ImportError as err:
            raise MissingDependencyError(
                "EnergyMonitor(prometheus=...) needs prometheus-client: pip install 'lightning-greenai[prometheus]'"
            ) from err
        check_port(port)
        self.run = run or f"{socket.gethostname()}-{os.getpid()}"
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["device", "method", "run"]
        self._energy = Counter("greenai_energy_joules", "Energy of each device, joules", labels, registry=self.registry)
        self._flops = Counter("greenai_flops", "Training FLOPs performed", ["run"], registry=self.registry)
        self._power = Gauge(
            "greenai_power_watts", "Mean power of each device since the last update, watts", ["device", "run"],
            registry=self.registry,
        )  # fmt: skip
        self._server: Any
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.host, self.port = host, int(self._server.server_port)
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._last_flops = 0.0
        self._last_at: float | None = None

    @property
    def url(self) -> str:
        """Where Prometheus scrapes."""
        return f"http://{self.host}:{self.port}/metrics"

    def update(self, spend: Spend) -> None:
        """Export a run's cumulative ``spend``: counters grow by what grew since the last update."""
        with self._lock:
            now = self._clock()
            elapsed = None if self._last_at is None else now - self._last_at
            for device, joules in spend.energy_j.items():
                grown = joules - self._last.get(device, 0.0)
                method = spend.methods[device].value if device in spend.methods else "unknown"
                if grown > 0:
                    self._energy.labels(device=device, method=method, run=self.run).inc(grown)
                    self._last[device] = joules
                if elapsed:
                    self._power.labels(device=device, run=self.run).set(max(grown, 0.0) / elapsed)
            if spend.flops > self._last_flops:
                self._flops.labels(run=self.run).inc(spend.flops - self._last_flops)
                self._last_flops = spend.flops
            self._last_at = now

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
