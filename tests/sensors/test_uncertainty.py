"""Error bars: each device's interval from how it was read, carried through spends, accounts, ranks and price tags."""

import itertools

import pytest

from lightning_greenai import GreenAIWarning, Grid, Meter, Method, Spend
from lightning_greenai.metering.distributed import local_record, merge_records
from lightning_greenai.reporting.price_tag import PriceTag
from lightning_greenai.sensors.fake import ConstantPowerSensor, FakeClock, FakeGPU, FakeNVML
from lightning_greenai.sensors.nvml import discover_nvml
from lightning_greenai.sensors.sampling import SampledPowerSensor
from lightning_greenai.sensors.uncertainty import window_bounds
from lightning_greenai.trial.account import TrialReporter
from lightning_greenai.trial.channel import read_record


def test_the_rules_by_method():
    # a counter: 5 % calibration, its resolution and one update period of power at each end
    assert window_bounds(Method.COUNTER, 1000.0, 10.0, resolution_j=0.001, update_period_s=0.1) == pytest.approx(
        (1000 * 0.95 - 0.001 - 2 * 0.1 * 100, 1000 * 1.05 + 0.001 + 2 * 0.1 * 100)
    )
    # an estimate without an interval of its own: within a factor of 2
    assert window_bounds(Method.ESTIMATE, 100.0, 10.0) == (50.0, 200.0)
    # a sensor's own interval (a shared GPU's share) is widened by calibration, never narrowed below the figure
    assert window_bounds(Method.ESTIMATE, 100.0, 10.0, sensor_bounds=(80.0, 300.0)) == pytest.approx((76.0, 315.0))
    assert window_bounds(Method.COUNTER, 0.0, 10.0) == (0.0, 0.0)
    # the low end never goes below zero
    assert window_bounds(Method.COUNTER, 1.0, 0.01, update_period_s=0.1, power_w=300.0)[0] == 0.0


def test_polled_power_brackets_the_trapezoid():
    clock = FakeClock()
    powers = iter([100.0, 200.0, 100.0])
    sensor = SampledPowerSensor("gpu:0", "g", lambda: next(powers), clock=clock, start_thread=False)
    sensor.read_energy_j()
    clock.advance(1.0)
    sensor.read_energy_j()
    clock.advance(1.0)
    assert sensor.read_energy_j() == 300.0  # trapezoids 150 + 150
    # between two samples the power lies between them: 100..200 J in each second
    assert sensor.read_energy_bounds_j() == (200.0, 400.0)


def _meter(clock: FakeClock) -> Meter:
    gpu = ConstantPowerSensor("gpu:0", 300.0, clock=clock)
    gpu.update_period_s, gpu.resolution_j = 0.1, 1e-3
    powers = itertools.cycle([50.0, 70.0])
    cpu = SampledPowerSensor("cpu:package-0", "cpu", lambda: next(powers), clock=clock, start_thread=False)
    dram = ConstantPowerSensor("dram:0", 10.0, clock=clock, method=Method.ESTIMATE)
    return Meter([gpu, cpu, dram], clock=clock)


def test_a_glitched_power_sample_is_dropped_and_the_integral_goes_on():
    clock = FakeClock()
    powers = iter([100.0, 100.0, float("nan"), *[100.0] * 10])
    sensor = SampledPowerSensor("gpu:0", "g", lambda: next(powers), clock=clock, start_thread=False)
    with Meter([sensor], clock=clock) as meter:
        for _ in range(6):
            clock.advance(10.0)
            meter.sample()
    assert meter.spend.energy_j["gpu:0"] == pytest.approx(6000.0)  # the 10 s gap held at the last valid 100 W
    assert meter.spend.energy_bounds_j["gpu:0"] == pytest.approx((0.95 * 5000.0, 1.05 * 7000.0))


@pytest.mark.parametrize(
    ("powers", "energy_j", "bounds_j"),
    [
        # glitched at the end: the last valid power held across the gap, bracketed from 0 to twice it
        ([100.0, 100.0, 100.0, float("nan"), float("nan")], 400.0, (0.95 * 200.0, 1.05 * 600.0)),
        # glitched at the start: the first valid power held back
        ([float("nan"), 100.0, 100.0, 100.0, 100.0], 400.0, (0.95 * 300.0, 1.05 * 500.0)),
    ],
)
def test_glitches_at_the_edges_are_held_and_bracketed(powers, energy_j, bounds_j):
    clock = FakeClock()
    values = iter(powers)
    sensor = SampledPowerSensor("gpu:0", "g", lambda: next(values), clock=clock, start_thread=False)
    with Meter([sensor], clock=clock) as meter:
        for _ in range(len(powers) - 2):
            clock.advance(1.0)
            meter.sample()
        clock.advance(1.0)
    assert meter.spend.energy_j["gpu:0"] == pytest.approx(energy_j)
    assert meter.spend.energy_bounds_j["gpu:0"] == pytest.approx(bounds_j)


def test_a_power_that_is_never_valid_is_a_failed_sensor_not_a_silent_zero():
    clock = FakeClock()
    sensor = SampledPowerSensor("gpu:0", "g", lambda: float("nan"), clock=clock, start_thread=False)
    meter = Meter([sensor], clock=clock)

    def run() -> None:
        with meter:
            for _ in range(3):
                clock.advance(1.0)
                meter.sample()

    with pytest.warns(GreenAIWarning, match="every power sample so far was NaN"):
        run()
    assert meter.spend.methods["gpu:0"] is Method.ESTIMATE


def test_a_meter_gives_every_device_its_interval_and_the_total_their_sum():
    clock = FakeClock()
    with _meter(clock) as meter:
        for _ in range(60):
            clock.advance(1.0)
            meter.sample()
    spend = meter.spend
    assert spend.energy_j == pytest.approx({"gpu:0": 18000.0, "cpu:package-0": 3600.0, "dram:0": 600.0})
    assert spend.energy_bounds_j["gpu:0"] == pytest.approx((18000 * 0.95 - 60.001, 18000 * 1.05 + 60.001))
    # polled 50 W / 70 W alternately: each second's trapezoid is 60 J, bracketed 50..70 J, then 5 % calibration
    assert spend.energy_bounds_j["cpu:package-0"] == pytest.approx((3000 * 0.95, 4200 * 1.05))
    assert spend.energy_bounds_j["dram:0"] == pytest.approx((300.0, 1200.0))
    low, high = spend.total_energy_bounds_j
    assert low == pytest.approx(sum(b[0] for b in spend.energy_bounds_j.values()))
    assert high == pytest.approx(sum(b[1] for b in spend.energy_bounds_j.values()))
    assert low < spend.total_energy_j < high


def test_a_failed_sensor_keeps_its_measured_interval_and_its_extrapolation_gets_an_estimates(recwarn):
    clock = FakeClock()
    calls = itertools.count()

    class Failing(ConstantPowerSensor):
        def read_energy_j(self) -> float:
            if next(calls) >= 11:
                raise OSError("driver gone")
            return super().read_energy_j()

    sensor = Failing("gpu:0", 100.0, clock=clock)
    with Meter([sensor], clock=clock) as meter:
        for _ in range(20):
            clock.advance(1.0)
            meter.sample()
    spend = meter.spend
    assert spend.energy_j["gpu:0"] == pytest.approx(2000.0)  # 10 s measured, 10 s extrapolated at 100 W
    assert spend.methods["gpu:0"] is Method.ESTIMATE
    assert spend.energy_bounds_j["gpu:0"] == pytest.approx((950.0 + 500.0, 1050.0 + 2000.0))


def test_a_window_shorter_than_the_nvml_counter_period_is_flagged_and_priced_by_power():
    clock = FakeClock()
    nvml = FakeNVML([FakeGPU("GPU-a", energy_mj=5_000, power_mw=200_000)])
    found = discover_nvml(nvml, visible=["0"], clock=clock)
    with Meter(found.sensors, clock=clock) as meter:
        clock.advance(0.05)  # the counter did not tick in 50 ms
    spend = meter.spend
    assert spend.methods["gpu:0"] is Method.ESTIMATE and spend.is_estimate
    assert spend.energy_j["gpu:0"] == pytest.approx(10.0)  # 200 W x 50 ms
    # one update period of 200 W at each end: the counter may have missed up to 40 J
    assert spend.energy_bounds_j["gpu:0"] == pytest.approx((0.0, 10.0 * 1.05 + 0.001 + 40.0))


def test_spends_add_scale_and_survive_json_with_their_bounds():
    a = Spend(energy_j={"gpu:0": 100.0}, methods={"gpu:0": Method.COUNTER}, energy_bounds_j={"gpu:0": (90.0, 110.0)})
    b = Spend(energy_j={"gpu:0": 50.0, "cpu:0": 10.0}, methods={"gpu:0": Method.COUNTER, "cpu:0": Method.COUNTER})
    total = a + b
    # b carries no interval: exact, so the sum widens by a's only
    assert total.energy_bounds_j == {"gpu:0": (140.0, 160.0), "cpu:0": (10.0, 10.0)}
    assert total.scaled(2.0).total_energy_bounds_j == (300.0, 340.0)
    assert Spend.from_dict(total.to_dict()) == total
    assert Spend.from_dict(b.to_dict()).total_energy_bounds_j == (60.0, 60.0)
    low = total.bound("low")
    assert low.energy_j == {"gpu:0": 140.0, "cpu:0": 10.0} and low.total_energy_bounds_j == (150.0, 150.0)
    with pytest.raises(ValueError, match=r"energy_bounds_j\['gpu:0'\]"):
        Spend.from_dict({**a.to_dict(), "energy_bounds_j": {"gpu:0": [1.0]}})
    with pytest.raises(ValueError, match="finite number"):
        Spend.from_dict({**a.to_dict(), "energy_bounds_j": {"gpu:0": [1.0, float("nan")]}})
    for damaged in ([200.0, 50.0], [10.0, 20.0]):  # low above high; an interval without its energy
        with pytest.raises(ValueError, match=r"does not contain its energy 100.0"):
            Spend.from_dict({**a.to_dict(), "energy_bounds_j": {"gpu:0": damaged}})
    for factor in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="scaled by a finite number >= 0"):
            a.scaled(factor)


def test_the_account_and_the_ranks_carry_each_counters_interval_once(tmp_path):
    clock = FakeClock()
    account = TrialReporter(tmp_path, 0, heartbeat_s=0)
    # two meters one after the other on the same GPU, then a third reading it at the same time as the second
    for key, seconds in (("pretrain", 10.0), ("finetune", 5.0)):
        sensor = ConstantPowerSensor("gpu:0", 100.0, clock=clock)
        meter = Meter([sensor], clock=clock, report=False)
        meter.start()
        clock.advance(seconds)
        account.contribute(key, meter.stop())
        account.release(key)
    assert account.spend.energy_j == {"gpu:0": pytest.approx(1500.0)}
    assert account.spend.energy_bounds_j == {"gpu:0": pytest.approx((1425.0, 1575.0))}
    assert read_record(tmp_path, 0).spend.total_energy_bounds_j == pytest.approx((1425.0, 1575.0))
    # two ranks reading one GPU (same uid) and each its own: each counter's interval once
    meters = []
    for uid in ("GPU-shared", "GPU-shared", "GPU-own"):
        meter = Meter([ConstantPowerSensor("gpu:0", 100.0, clock=clock, uid=uid)], clock=clock, report=False)
        meters.append(meter.start())
    clock.advance(10.0)
    records = [local_record(m, rank=r) for r, m in enumerate(meters) if m.sample()]
    merged = merge_records(records)
    assert merged.total_energy_j == pytest.approx(2000.0)
    assert merged.total_energy_bounds_j == pytest.approx((1900.0, 2100.0))


def test_the_price_tag_prices_both_ends():
    clock = FakeClock()
    with _meter(clock) as meter:
        clock.advance(60.0)
    grid = Grid.from_location(country="FR", price_per_kwh=0.2, currency="EUR", pue=1.2)
    tag = PriceTag(meter.spend, grid)
    data = tag.to_dict()
    low_j, high_j = meter.spend.total_energy_bounds_j
    assert data["energy_kwh_bounds"] == pytest.approx((low_j / 3.6e6, high_j / 3.6e6))
    intensity = grid.intensity_g_per_kwh
    assert data["co2e_kg_bounds"] == pytest.approx(
        (low_j / 3.6e6 * 1.2 * intensity / 1e3, high_j / 3.6e6 * 1.2 * intensity / 1e3)
    )
    assert data["cost_bounds"] == pytest.approx((low_j / 3.6e6 * 1.2 * 0.2, high_j / 3.6e6 * 1.2 * 0.2))
    assert data["co2e_kg_bounds"][0] < data["co2e_kg"] < data["co2e_kg_bounds"][1]
    text = tag.to_text()
    assert "(a to b): the interval" in text
    energy_row = next(line for line in text.splitlines() if line.strip().startswith("energy "))
    assert " to " in energy_row
