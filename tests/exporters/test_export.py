"""Export to cluster monitoring: Prometheus (a real server scrapes and is queried) and OpenTelemetry (the SDK)."""

import time
import urllib.request

import pytest

from lightning_greenai import EnergyMonitor, FlopMonitor
from lightning_greenai.exporters.opentelemetry import OpenTelemetryExporter
from lightning_greenai.exporters.prometheus import PrometheusExporter
from lightning_greenai.sensors.fake import ConstantPowerSensor
from lightning_greenai.spend import Method, Spend
from tests.conftest import ClockedModel
from tests.prometheus_server import ensure_installed, prometheus_server


def scrape(exporter: PrometheusExporter) -> str:
    with urllib.request.urlopen(exporter.url, timeout=10) as response:
        return response.read().decode()


def test_counters_grow_by_what_the_cumulative_spend_grew_and_never_go_down():
    exporter = PrometheusExporter(run="r1")
    counter = {"gpu:0": Method.COUNTER}
    try:
        exporter.update(Spend(energy_j={"gpu:0": 100.0}, methods=counter, flops=1e12, duration_s=1.0))
        exporter.update(Spend(energy_j={"gpu:0": 300.0}, methods=counter, flops=3e12, duration_s=3.0))
        text = scrape(exporter)
        assert 'greenai_energy_joules_total{device="gpu:0",method="counter",run="r1"} 300.0' in text
        assert 'greenai_flops_total{run="r1"} 3e+12' in text
        assert 'greenai_power_watts{device="gpu:0",run="r1"} 100.0' in text  # 200 J in 2 s
        exporter.update(Spend(energy_j={"gpu:0": 250.0}, methods={"gpu:0": Method.COUNTER}))  # a smaller reading
        assert 'greenai_energy_joules_total{device="gpu:0",method="counter",run="r1"} 300.0' in scrape(exporter)
    finally:
        exporter.close()


@pytest.mark.parametrize("port", [-1, 70000, "9100", True])
def test_a_bad_port_is_refused_naming_it(port):
    with pytest.raises(ValueError, match=r"`prometheus` must be a port in \[0, 65535\].*got "):
        EnergyMonitor(prometheus=port)


@pytest.mark.prometheus
@pytest.mark.timeout(180)
def test_a_real_prometheus_scrapes_the_runs_joules_and_flops(tiny_trainer, fake_clock, tmp_path):
    reason = ensure_installed()
    if reason is not None:
        pytest.skip(reason)
    exporter = PrometheusExporter(run="fit-1")
    try:
        with prometheus_server([f"127.0.0.1:{exporter.port}"], tmp_path / "prometheus") as server:
            mon = EnergyMonitor(
                sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)],
                clock=fake_clock,
                verbose=False,
                prometheus=exporter,
            )
            trainer = tiny_trainer(max_steps=-1, max_epochs=1, limit_train_batches=4, limit_val_batches=2,
                                   callbacks=[mon, FlopMonitor()], log_every_n_steps=1)  # fmt: skip
            trainer.fit(ClockedModel(fake_clock))
            joules, flops = mon.spend.energy_j["gpu:0"], mon.spend.flops
            assert joules == 500.0 and flops > 0
            query = 'greenai_energy_joules_total{device="gpu:0",method="counter",run="fit-1"}'
            deadline, seen = time.monotonic() + 60, []
            while time.monotonic() < deadline:  # a scrape a second
                seen = server.query(query)
                if seen and float(seen[0]["value"][1]) == joules:
                    break
                time.sleep(0.5)
            assert seen and float(seen[0]["value"][1]) == joules, seen
            assert seen[0]["metric"]["job"] == "greenai"
            scraped_flops = server.query('greenai_flops_total{run="fit-1"}')
            assert float(scraped_flops[0]["value"][1]) == pytest.approx(flops)
    finally:
        exporter.close()


# -- OpenTelemetry: the SDK's own meter provider and reader ----------------------------------------------------------


def points(reader, name: str) -> list:
    data = reader.get_metrics_data()
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def test_opentelemetry_instruments_carry_the_runs_joules_flops_and_power(tiny_trainer, fake_clock):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        mon = EnergyMonitor(
            sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)],
            clock=fake_clock,
            verbose=False,
            opentelemetry=OpenTelemetryExporter(provider, run="otel-1"),
        )
        trainer = tiny_trainer(max_steps=-1, max_epochs=1, limit_train_batches=4, limit_val_batches=2,
                               callbacks=[mon, FlopMonitor()], log_every_n_steps=1)  # fmt: skip
        trainer.fit(ClockedModel(fake_clock))
        (energy,) = points(reader, "greenai.energy")
        assert dict(energy.attributes) == {"device": "gpu:0", "method": "counter", "run": "otel-1"}
        assert energy.value == mon.spend.energy_j["gpu:0"] == 500.0
        (flops,) = points(reader, "greenai.flops")
        assert flops.value == pytest.approx(mon.spend.flops) and flops.value > 0
        (power,) = points(reader, "greenai.power")
        assert power.value == pytest.approx(100.0)  # the constant 100 W, between two updates
    finally:
        provider.shutdown()


def test_a_bad_opentelemetry_value_is_refused_naming_it():
    with pytest.raises(ValueError, match="`opentelemetry` must be True, False, None or an OpenTelemetryExporter"):
        EnergyMonitor(opentelemetry="yes")


def test_two_monitors_of_a_process_on_one_port_share_its_exporter_and_add_up(tiny_trainer, fake_clock):
    first = EnergyMonitor(sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)], clock=fake_clock,
                          verbose=False, prometheus=0)  # fmt: skip
    tiny_trainer(max_steps=2, callbacks=[first], log_every_n_steps=1).fit(ClockedModel(fake_clock))
    port = first._prometheus.port
    second = EnergyMonitor(sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)], clock=fake_clock,
                           verbose=False, prometheus=port)  # fmt: skip
    try:
        tiny_trainer(max_steps=2, callbacks=[second], log_every_n_steps=1).fit(ClockedModel(fake_clock))
        assert second._prometheus is first._prometheus  # the pretrain's exporter serves the finetune too
        total = first.spend.energy_j["gpu:0"] + second.spend.energy_j["gpu:0"]
        assert f'method="counter",run="{first._prometheus.run}"}} {total}' in scrape(first._prometheus)
    finally:
        first._prometheus.close()


def test_a_port_another_program_holds_is_a_clear_error_naming_it():
    holder = PrometheusExporter()
    try:
        message = rf"Cannot serve Prometheus metrics on 127\.0\.0\.1:{holder.port}: .*prometheus=0"
        with pytest.raises(OSError, match=message):
            PrometheusExporter(holder.port)
    finally:
        holder.close()
