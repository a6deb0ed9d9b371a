"""One glitched reading of a cumulative counter is skipped, warned about once and billed correctly afterwards."""

from collections.abc import Callable
from pathlib import Path

import pytest

from lightning_greenai import GreenAIWarning, Meter, Method
from lightning_greenai.sensors import discover_nvml
from lightning_greenai.sensors.base import CounterGuard
from lightning_greenai.sensors.fake import FakeClock, FakeGPU, FakeNVML, FakeSensor, make_rapl_tree
from lightning_greenai.sensors.rapl import RAPLSensor
from lightning_greenai.sensors.uncertainty import GLITCH_MARGIN, window_bounds

Counter = tuple[object, Callable[[float], None]]  # a sensor, and a function setting its raw counter in joules


def nvml_counter(tmp_path: Path, start_j: float) -> Counter:
    raw = {"mj": round(start_j * 1e3)}
    gpu = FakeGPU("GPU-0", energy_mj=lambda: raw["mj"], power_limit_mw=300_000)
    sensor = discover_nvml(FakeNVML([gpu]), visible=["0"], sharing="exclusive").sensors[0]
    assert sensor.method is Method.COUNTER and sensor.max_power_w == 300.0

    def set_j(joules: float) -> None:
        raw["mj"] = round(joules * 1e3)

    return sensor, set_j


def rapl_counter(tmp_path: Path, start_j: float) -> Counter:
    root = make_rapl_tree(tmp_path, packages=(0,), dram=False, energy_uj=round(start_j * 1e6), max_power_w=300.0)
    zone = root / "intel-rapl:0"
    sensor = RAPLSensor(zone, "gpu:0")  # named like the NVML one, so both share the assertions
    assert sensor.max_power_w == 300.0

    def set_j(joules: float) -> None:
        (zone / "energy_uj").write_text(f"{round(joules * 1e6)}\n")

    return sensor, set_j


COUNTERS = {"nvml": nvml_counter, "rapl": rapl_counter}


def meter_with_one_glitch(
    counter: Counter, clock: FakeClock, start_j: float, steps: list[float], glitch_at: int, glitch_j: float
) -> Meter:
    """Read the counter once a second as it rises by ``steps``; its reading number ``glitch_at`` is ``glitch_j``."""
    sensor, set_j = counter
    meter = Meter([sensor], clock=clock, process=False).start()
    total = start_j
    for index, step in enumerate(steps, start=1):
        clock.advance(1.0)
        total += step
        set_j(glitch_j if index == glitch_at else total)
        if index == glitch_at:
            with pytest.warns(GreenAIWarning, match="'gpu:0' read .* a glitch. The reading is skipped"):
                meter.sample()
            assert meter.glitches == {"gpu:0": 1}
        else:
            meter.sample()
    set_j(total)
    meter.stop()  # no second warning: the suite turns our warnings into errors
    return meter


def assert_billed(meter: Meter, true_j: float) -> None:
    spend = meter.spend
    assert spend.energy_j["gpu:0"] == pytest.approx(true_j, abs=1e-6)
    low, high = spend.energy_bounds_j["gpu:0"]
    assert low <= true_j <= high
    assert high - low < 0.2 * true_j + 1.0  # the counter's own interval, not widened for a glitch it got past
    assert spend.methods["gpu:0"] is Method.COUNTER
    assert meter.glitches == {"gpu:0": 1}


@pytest.mark.parametrize("kind", COUNTERS)
def test_a_counter_reading_zero_once_bills_3_kj_not_3_6_mj(tmp_path, kind):
    start_j = 3.6e6 if kind == "nvml" else 1e5  # NVML counts since the driver loaded; RAPL wraps at 262 kJ
    clock = FakeClock()
    meter = meter_with_one_glitch(COUNTERS[kind](tmp_path, start_j), clock, start_j, [300.0] * 10, 4, 0.0)
    assert_billed(meter, 3000.0)  # 300 W for 10 s; the old reading billed 3.6 MJ (NVML) or 262 kJ (a RAPL "wrap")


@pytest.mark.parametrize("kind", COUNTERS)
def test_a_reading_of_minus_1e6_j_once_bills_6_j_not_1_000_006(tmp_path, kind):
    clock = FakeClock()
    meter = meter_with_one_glitch(COUNTERS[kind](tmp_path, 10.0), clock, 10.0, [1.0] * 6, 3, 10.0 - 1e6)
    assert_billed(meter, 6.0)


@pytest.mark.parametrize("kind", COUNTERS)
def test_a_reading_5_j_low_once_bills_10_j_not_14(tmp_path, kind):
    clock = FakeClock()
    # 0, 1, 2, 3, 4, then 0 instead of 5, then 6 ... 10: clipping the drop to 0 and re-basing on it billed 14 J
    meter = meter_with_one_glitch(COUNTERS[kind](tmp_path, 50.0), clock, 50.0, [1.0] * 10, 5, 50.0)
    assert_billed(meter, 10.0)


@pytest.mark.parametrize("kind", COUNTERS)
def test_a_jump_beyond_the_power_limit_is_skipped_and_later_readings_still_count(tmp_path, kind):
    clock = FakeClock()
    # +1 MJ in one second from a 300 W device: a glitch; kept as the base, every later reading would be "below" it
    meter = meter_with_one_glitch(COUNTERS[kind](tmp_path, 10.0), clock, 10.0, [200.0] * 6, 2, 1e6)
    assert_billed(meter, 1200.0)


def test_the_power_limit_decides_what_is_a_jump():
    clock = FakeClock()
    sensor = FakeSensor("gpu:0", lambda: 300.0 * clock())
    sensor.max_power_w = 300.0
    guard = CounterGuard(sensor)
    assert guard.step(0.0, 0.0) == 0.0
    most_j = GLITCH_MARGIN * 300.0 * 10.0
    assert guard.step(most_j, 10.0) == most_j  # as fast as the device can go, with the margin: counted
    with pytest.warns(GreenAIWarning, match=r"more than the device's 300 W allow"):
        assert guard.step(most_j + most_j * 1.01, 20.0) == 0.0  # a little faster: a glitch


def test_a_glitch_last_widens_the_interval_by_the_unread_time(tmp_path):
    clock = FakeClock()
    sensor, set_j = nvml_counter(tmp_path, 1000.0)
    meter = Meter([sensor], clock=clock, process=False).start()
    clock.advance(10.0)
    set_j(1000.0 + 2000.0)
    meter.sample()
    clock.advance(5.0)
    set_j(0.0)
    with pytest.warns(GreenAIWarning, match="a glitch"):
        spend = meter.stop()
    assert spend.energy_j["gpu:0"] == pytest.approx(2000.0)  # up to the last good reading
    counter_low, counter_high = window_bounds(
        Method.COUNTER, 2000.0, 15.0, resolution_j=sensor.resolution_j, update_period_s=sensor.update_period_s
    )
    low, high = spend.energy_bounds_j["gpu:0"]
    assert low == pytest.approx(counter_low)
    assert high == pytest.approx(counter_high + 300.0 * 5.0)  # the unread 5 s at the board's 300 W at most


def test_a_counter_that_resets_is_billed_again_after_two_readings_that_agree(tmp_path):
    clock = FakeClock()
    sensor, set_j = nvml_counter(tmp_path, 5000.0)
    meter = Meter([sensor], clock=clock, process=False).start()
    for joules in (5100.0, 5200.0):
        clock.advance(1.0)
        set_j(joules)
        meter.sample()
    clock.advance(1.0)
    set_j(50.0)  # the driver reloaded: the counter starts again near 0
    with pytest.warns(GreenAIWarning, match="below the last good reading"):
        meter.sample()
    for joules in (150.0, 250.0):
        clock.advance(1.0)
        set_j(joules)
        meter.sample()
    spend = meter.stop()
    assert spend.energy_j["gpu:0"] == pytest.approx(400.0)  # 200 J before, 200 J after; the 1 s between is unread
    low, high = spend.energy_bounds_j["gpu:0"]
    assert low <= 500.0 <= high  # the truth (100 J in that second) lies inside: up to 300 W x 1 s was added
    assert meter.glitches == {"gpu:0": 1}


def test_a_rapl_wrap_is_not_a_glitch(tmp_path):
    root = make_rapl_tree(tmp_path, packages=(0,), dram=False, energy_uj=999_000_000, max_energy_range_uj=999_999_999)
    clock = FakeClock()
    with Meter([RAPLSensor(root / "intel-rapl:0", "cpu:package-0")], clock=clock, process=False) as meter:
        clock.advance(1.0)
        (root / "intel-rapl:0" / "energy_uj").write_text("99000000\n")  # 1 J to the top, 99 J after: 100 J in 1 s
    assert meter.spend.energy_j["cpu:package-0"] == pytest.approx(100.0)
    assert meter.glitches == {"cpu:package-0": 0}
