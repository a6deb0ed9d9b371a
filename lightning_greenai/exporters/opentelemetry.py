"""OpenTelemetry metrics for a run's energy, FLOPs and power, through the meter provider the application configured.

Opt-in per monitor (``EnergyMonitor(opentelemetry=...)``). Instruments of the meter ``lightning_greenai``:

* ``greenai.energy`` (counter, J) with attributes ``device``, ``method``, ``run``;
* ``greenai.flops`` (counter, ``{FLOP}``) with ``run``;
* ``greenai.power`` (gauge, W) with ``device``, ``run``: the mean power since the previous update.

Where the data goes is the application's choice, as with any OpenTelemetry instrumentation: an OTLP exporter to a
collector, a Prometheus reader... (the global meter provider by default; none configured means a no-op).
"""

from __future__ import annotations

from typing import Any

from lightning_greenai.errors import MissingDependencyError
from lightning_greenai.exporters.export import SpendExporter

__all__ = ["OpenTelemetryExporter"]


class OpenTelemetryExporter(SpendExporter):
    """Record a run's energy, FLOPs and power in OpenTelemetry instruments.

    Args:
        meter_provider: The provider to get the meter from (default: the global one).
        run: The ``run`` attribute (default: ``<hostname>-<pid>``).

    Raises:
        MissingDependencyError: ``opentelemetry-api`` (1.27 or newer, for the synchronous gauge) is not installed.
    """

    def __init__(self, meter_provider: Any = None, *, run: str | None = None) -> None:
        try:
            from opentelemetry import metrics
        except ImportError as err:
            raise MissingDependencyError(
                "EnergyMonitor(opentelemetry=...) needs opentelemetry-api: "
                "pip install 'lightning-greenai[opentelemetry]'"
            ) from err
        super().__init__(run=run)
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("lightning_greenai")
        if not hasattr(meter, "create_gauge"):
            raise MissingDependencyError(
                "EnergyMonitor(opentelemetry=...) needs opentelemetry-api 1.27 or newer (a synchronous gauge): "
                "pip install -U 'opentelemetry-api>=1.27'"
            )
        self._energy = meter.create_counter("greenai.energy", unit="J", description="Energy of each device")
        self._flops = meter.create_counter("greenai.flops", unit="{FLOP}", description="Training FLOPs performed")
        self._power = meter.create_gauge("greenai.power", unit="W", description="Mean power since the last update")

    def _add_energy(self, device: str, method: str, joules: float) -> None:
        self._energy.add(joules, {"device": device, "method": method, "run": self.run})

    def _add_flops(self, flops: float) -> None:
        self._flops.add(flops, {"run": self.run})

    def _set_power(self, device: str, watts: float) -> None:
        self._power.set(watts, {"device": device, "run": self.run})

    def close(self) -> None:
        """Nothing to release: the provider, and its export, belong to the application."""
