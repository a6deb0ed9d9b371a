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

from typing import Any

from lightning_greenai.errors import MissingDependencyError
from lightning_greenai.exporters.export import SpendExporter

__all__ = ["PrometheusExporter", "check_port"]


_LIVE: dict[tuple[str, int], PrometheusExporter] = {}  # the exporters this process serves, by address


def check_port(port: Any, *, name: str = "port", allowed: str = "") -> None:
    """Refuse anything but a TCP port number, naming the value and what is allowed."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        also = f", {allowed}" if allowed else ""
        raise ValueError(f"`{name}` must be a port in [0, 65535] (0: a free one){also}; got {port!r}.")


class PrometheusExporter(SpendExporter):
    """Serve a run's energy, FLOPs and power on ``http://<host>:<port>/metrics``.

    Args:
        port: The port to listen on (0: a free one, see :attr:`port`).
        host: The address to listen on (default: this machine only).
        run: The ``run`` label (default: ``<hostname>-<pid>``).

    Raises:
        MissingDependencyError: ``prometheus-client`` is not installed.
        ValueError: ``port`` is not a port number.
        OSError: the port cannot be bound.
    """

    def __init__(self, port: int = 0, *, host: str = "127.0.0.1", run: str | None = None) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
        except ImportError as err:
            raise MissingDependencyError(
                "EnergyMonitor(prometheus=...) needs prometheus-client: pip install 'lightning-greenai[prometheus]'"
            ) from err
        check_port(port)
        super().__init__(run=run)
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["device", "method", "run"]
        self._energy = Counter("greenai_energy_joules", "Energy of each device, joules", labels, registry=self.registry)
        self._flops = Counter("greenai_flops", "Training FLOPs performed", ["run"], registry=self.registry)
        self._power = Gauge(
            "greenai_power_watts", "Mean power of each device since the last update, watts", ["device", "run"],
            registry=self.registry,
        )  # fmt: skip
        self._server: Any
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as err:
            raise OSError(
                err.errno,
                f"Cannot serve Prometheus metrics on {host}:{port}: {err.strerror or err}. Choose a free port "
                "(prometheus=0 picks one), or give every monitor of this process the same PrometheusExporter.",
            ) from err
        self.host, self.port = host, int(self._server.server_port)
        _LIVE[(host, self.port)] = self

    @property
    def url(self) -> str:
        """Where Prometheus scrapes."""
        return f"http://{self.host}:{self.port}/metrics"

    def _add_energy(self, device: str, method: str, joules: float) -> None:
        self._energy.labels(device=device, method=method, run=self.run).inc(joules)

    def _add_flops(self, flops: float) -> None:
        self._flops.labels(run=self.run).inc(flops)

    def _set_power(self, device: str, watts: float) -> None:
        self._power.labels(device=device, run=self.run).set(watts)

    @classmethod
    def on_port(cls, port: int, host: str = "127.0.0.1") -> PrometheusExporter:
        """The exporter this process serves on ``port`` (a second monitor shares it), else a new one there."""
        live = _LIVE.get((host, port)) if port else None
        return live if live is not None else cls(port, host=host)

    def close(self) -> None:
        """Stop serving."""
        _LIVE.pop((self.host, self.port), None)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
