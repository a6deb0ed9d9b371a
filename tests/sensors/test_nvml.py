import threading

import pytest

from lightning_greenai import Meter, Method
from lightning_greenai.sensors import discover_nvml, discover_sensors
from lightning_greenai.sensors.fake import FakeClock, FakeGPU, FakeNVML
from lightning_greenai.sensors.nvml import visible_devices


def gpus(n: int, **kwargs) -> list[FakeGPU]:
    return [FakeGPU(uuid=f"GPU-{i:04d}", **kwargs) for i in range(n)]


def test_counter_is_read_in_millijoules():
    counter = {"mj": 1_000_000}
    nvml = FakeNVML([FakeGPU("GPU-a", energy_mj=lambda: counter["mj"])])
    found = discover_nvml(nvml, visible=["0"])
    (sensor,) = found.sensors
    assert (sensor.name, sensor.uid, sensor.method) == ("gpu:0", "GPU-a", Method.COUNTER)
    counter["mj"] += 250_500
    assert sensor.read_energy_j() == 250.5


def test_no_thread_is_started_when_every_device_has_a_counter():
    nvml = FakeNVML(gpus(2))
    before = threading.active_count()
    with Meter(discover_nvml(nvml, visible=["0", "1"]).sensors):
        pass
    assert threading.active_count() == before


def test_cuda_visible_devices_selects_exactly_those_gpus():
    nvml = FakeNVML(gpus(4))
    found = discover_nvml(nvml, visible=visible_devices("2,3"))
    assert [(s.name, s.uid) for s in found.sensors] == [("gpu:0", "GPU-0002"), ("gpu:1", "GPU-0003")]


def test_cuda_visible_devices_by_uuid_and_rank_device():
    nvml = FakeNVML(gpus(4))
    found = discover_nvml(nvml, devices=[1], visible=visible_devices("GPU-0003,GPU-0001"))
    assert [(s.name, s.uid) for s in found.sensors] == [("gpu:1", "GPU-0001")]


def test_mig_slice_meters_its_parent_gpu_and_says_so():
    nvml = FakeNVML([FakeGPU("GPU-p", mig_uuids=["MIG-1", "MIG-2"])])
    found = discover_nvml(nvml, visible=["MIG-2"])
    assert [s.uid for s in found.sensors] == ["GPU-p"]
    assert any("MIG" in n for n in found.notes)


def test_missing_counter_falls_back_to_integrated_power():
    clock = FakeClock()
    power = {"mw": 200_000}
    nvml = FakeNVML([FakeGPU("GPU-old", energy_mj=None, power_mw=lambda: power["mw"])])
    (sensor,) = discover_nvml(nvml, visible=["0"], clock=clock).sensors
    try:
        assert sensor.method is Method.SAMPLED
        with Meter([sensor], clock=clock) as meter:
            clock.advance(10.0)
            meter.sample()
            power["mw"] = 300_000
            clock.advance(10.0)
        # trapezoid: 10 s at 200 W, then a 200 -> 300 W ramp over 10 s
        assert meter.spend.energy_j["gpu:0"] == pytest.approx(2000.0 + 2500.0)
    finally:
        sensor.close()


def test_no_power_reading_falls_back_to_power_limit_times_utilisation():
    clock = FakeClock()
    nvml = FakeNVML([FakeGPU("GPU-v", energy_mj=None, power_mw=None, power_limit_mw=250_000, utilization=40)])
    (sensor,) = discover_nvml(nvml, visible=["0"], clock=clock).sensors
    try:
        with Meter([sensor], clock=clock) as meter:
            clock.advance(10.0)
        assert sensor.method is Method.ESTIMATE
        assert meter.spend.energy_j["gpu:0"] == pytest.approx(1000.0)
        assert meter.spend.is_estimate
    finally:
        sensor.close()


def test_user_tdp_when_nvml_reports_nothing():
    clock = FakeClock()
    nvml = FakeNVML([FakeGPU("GPU-x", energy_mj=None, power_mw=None, power_limit_mw=None, utilization=50)])
    (sensor,) = discover_nvml(nvml, visible=["0"], gpu_tdp_w=300.0, clock=clock).sensors
    try:
        with Meter([sensor], clock=clock) as meter:
            clock.advance(2.0)
        assert meter.spend.energy_j["gpu:0"] == pytest.approx(300.0)
    finally:
        sensor.close()


def test_nothing_readable_is_unavailable_with_one_warning_not_zero(tmp_path):
    nvml = FakeNVML([FakeGPU("GPU-x", energy_mj=None, power_mw=None, power_limit_mw=None)])
    found = discover_sensors(gpus=[0], nvml=nvml, host=False)
    assert found.sensors == []
    assert found.unavailable == ["gpu:0"]
    assert len(found.warnings) == 1 and "gpu:0 is unavailable" in found.warnings[0].replace("Energy of ", "")
    spend = Meter(found.sensors, unavailable=found.unavailable).start().stop()
    assert spend.energy_kwh is None
    assert spend.methods == {"gpu:0": Method.UNAVAILABLE}


def test_nvml_present_but_no_gpu():
    found = discover_sensors(gpus="auto", nvml=FakeNVML([]), host=False)
    assert found.sensors == [] and found.unavailable == []
    assert "no GPU present" in found.summary()


def test_nvml_library_missing_meters_no_gpu():
    found = discover_sensors(gpus="auto", nvml=None, host=False)
    assert found.sensors == []
    assert "library not found" in found.summary()


def test_a_rank_asking_for_a_gpu_that_is_not_visible():
    found = discover_nvml(FakeNVML(gpus(1)), devices=[3], visible=["0"])
    assert found.unavailable == ["gpu:3"]


def test_short_window_is_priced_as_power_times_time_and_flagged():
    clock = FakeClock()
    nvml = FakeNVML([FakeGPU("GPU-a", energy_mj=5_000, power_mw=150_000)])
    (sensor,) = discover_nvml(nvml, visible=["0"]).sensors
    with Meter([sensor], clock=clock) as meter:
        clock.advance(0.05)  # shorter than the counter's ~100 ms update period: the counter did not move
    assert meter.spend.energy_j["gpu:0"] == pytest.approx(7.5)
    assert meter.spend.methods["gpu:0"] is Method.ESTIMATE


def test_torch_style_mig_uuid_without_prefix_is_found():
    nvml = FakeNVML([FakeGPU("GPU-p", mig_uuids=["MIG-abc"])])
    found = discover_nvml(nvml, visible=["GPU-abc"])
    assert [s.uid for s in found.sensors] == ["GPU-p"]
