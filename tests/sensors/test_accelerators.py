"""Accelerators beyond NVIDIA discrete GPUs: AMD, Grace superchips, Jetson and Apple Silicon (fakes of each)."""

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from lightning_greenai import Meter, Method
from lightning_greenai.sensors import discover_sensors
from lightning_greenai.sensors.amd import discover_amdsmi, visible_amd_devices
from lightning_greenai.sensors.apple import parse_powermetrics
from lightning_greenai.sensors.fake import (
    FakeAMDGPU,
    FakeAMDSMI,
    FakeClock,
    FakeGPU,
    FakeNVML,
    make_jetson_tree,
    make_rapl_tree,
    set_jetson_power,
)


class Board:
    """An AMD GPU drawing ``power_w`` on a fake clock; its counter runs at ``counter_scale`` x the true energy."""

    def __init__(self, clock: FakeClock, power_w: float = 300.0, counter_scale: float = 1.0) -> None:
        self.clock, self.power_w, self.counter_scale = clock, power_w, counter_scale

    def gpu(self, uuid: str, **kwargs) -> FakeAMDGPU:
        return FakeAMDGPU(
            uuid,
            energy_uj=lambda: self.counter_scale * self.power_w * self.clock() * 1e6,
            power_w=lambda: self.power_w,
            **kwargs,
        )


def discover(smi, clock, **kwargs):
    return discover_amdsmi(smi, clock=clock, sleep=clock.advance, visible=kwargs.pop("visible", None), **kwargs)


@pytest.mark.parametrize("count_key", ["energy_accumulator", "power"])  # ROCm 6.1 and later, and before
def test_a_counter_that_agrees_with_the_board_power_is_read_in_joules(count_key):
    clock = FakeClock(100.0)
    board = Board(clock)
    found = discover(FakeAMDSMI([board.gpu("amd-0", count_key=count_key)]), clock)
    (sensor,) = found.sensors
    assert (sensor.name, sensor.uid, sensor.method) == ("gpu:0", "amd-0", Method.COUNTER)
    assert found.notes == ["amdsmi: gpu:0 via energy counter (checked against power)"]
    with Meter([sensor], clock=clock) as meter:
        clock.advance(10.0)
    # 3000 J, to the counter's resolution (15.3 uJ a count)
    assert meter.spend.energy_j["gpu:0"] == pytest.approx(3000.0, abs=1e-4)
    assert meter.spend.methods["gpu:0"] is Method.COUNTER


def test_the_check_waits_once_for_every_gpu():
    clock = FakeClock()
    board = Board(clock)
    found = discover(FakeAMDSMI([board.gpu(f"amd-{i}") for i in range(4)]), clock, validate_s=0.5)
    assert len(found.sensors) == 4 and clock() == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("scale", "why"),
    [
        (0.0, "the energy counter did not move in 0.50 s while the board drew 300 W"),
        (1000.0, "the energy counter says 300000 W while the board reports 300 W"),  # mJ counted as uJ
        (0.3, "the energy counter says 90 W while the board reports 300 W"),
    ],
)
def test_a_counter_that_disagrees_with_the_board_falls_back_to_power_polling_flagged(scale, why):
    clock = FakeClock()
    board = Board(clock, counter_scale=scale)
    found = discover(FakeAMDSMI([board.gpu("amd-0")]), clock)
    (sensor,) = found.sensors
    assert sensor.method is Method.SAMPLED
    assert found.notes == [f"amdsmi: gpu:0 via power polling: {why}"]
    start = sensor.read_energy_j()  # the poller's first reading, then 10 s at 300 W
    clock.advance(10.0)
    assert sensor.read_energy_j() - start == pytest.approx(3000.0)
    sensor.close()


def test_a_counter_that_cannot_be_read_and_no_power_is_unavailable_never_zero():
    clock = FakeClock()
    found = discover(FakeAMDSMI([FakeAMDGPU("amd-0", energy_uj=None, power_w=None)]), clock)
    assert found.sensors == [] and found.unavailable == ["gpu:0"]
    assert "reports no usable energy or power: the energy counter cannot be read" in found.notes[0]


def test_a_board_with_no_power_reading_keeps_its_counter():
    clock = FakeClock()
    found = discover(FakeAMDSMI([FakeAMDGPU("amd-0", energy_uj=lambda: 5e6 * clock(), power_w=None)]), clock)
    assert [s.method for s in found.sensors] == [Method.COUNTER]


def test_hip_visible_devices_select_the_gpus_and_a_rank_its_own():
    assert visible_amd_devices({"HIP_VISIBLE_DEVICES": "2,3"}) == [2, 3]
    assert visible_amd_devices({"ROCR_VISIBLE_DEVICES": "1"}) == [1]
    assert visible_amd_devices({}) is None
    clock = FakeClock()
    board = Board(clock)
    smi = FakeAMDSMI([board.gpu(f"amd-{i}") for i in range(4)])
    found = discover(smi, clock, visible=[2, 3], devices=[1])
    assert [(s.name, s.uid) for s in found.sensors] == [("gpu:1", "amd-3")]
    missing = discover(smi, clock, visible=[2, 3], devices=[5])
    assert missing.unavailable == ["gpu:5"]


def test_discovery_turns_to_amdsmi_when_nvml_meters_no_gpu(tmp_path):
    clock = FakeClock()
    board = Board(clock)
    found = discover_sensors(
        gpus="auto",
        nvml=None,
        amdsmi=FakeAMDSMI([board.gpu("amd-0")]),
        rapl_root=make_rapl_tree(tmp_path),
        clock=clock,
        sleep=clock.advance,
    )
    assert [s.name for s in found.sensors] == ["gpu:0", "cpu:package-0", "dram:0"]
    assert found.unavailable == [] and found.warnings == []
    # an NVIDIA GPU, when there is one, is metered through NVML and amdsmi is not asked
    nvidia = discover_sensors(gpus="auto", nvml=FakeNVML([FakeGPU("GPU-a")]), amdsmi=None, host=False)
    assert [s.uid for s in nvidia.sensors] == ["GPU-a"]


@pytest.mark.parametrize("product", ["NVIDIA GH200 480GB", "NVIDIA GB200"])
def test_a_grace_superchip_counter_is_the_whole_module_so_the_host_is_not_metered_on_top(tmp_path, product):
    nvml = FakeNVML([FakeGPU("GPU-gh", name=product)])
    found = discover_sensors(gpus="auto", nvml=nvml, amdsmi=None, rapl_root=make_rapl_tree(tmp_path))
    assert [(s.name, s.method) for s in found.sensors] == [("gpu:0", Method.COUNTER)]  # no RAPL, no CPU estimate
    assert f"NVML: gpu:0 is a {product}: its counter covers the module (CPU, GPU and memory)" in found.notes
    assert "host: not metered apart, gpu:0 include(s) the CPU" in found.notes
    assert found.unavailable == []
    # an H100 beside a CPU is two domains, as before
    plain = discover_sensors(gpus="auto", nvml=FakeNVML([FakeGPU("GPU-h", name="NVIDIA H100 80GB HBM3")]),
                             amdsmi=None, rapl_root=make_rapl_tree(tmp_path))  # fmt: skip
    assert [s.name for s in plain.sensors] == ["gpu:0", "cpu:package-0", "dram:0"]


# -- NVIDIA Jetson: the board's power rails ------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["hwmon", "iio"])  # JetPack 5 and later, JetPack 4
def test_a_jetson_is_metered_by_its_input_rail_alone_and_nothing_on_top(tmp_path, layout):
    root = make_jetson_tree(tmp_path / "i2c", {"VDD_IN": 12.0, "VDD_CPU_GPU_CV": 6.0, "VDD_SOC": 3.0}, layout=layout)
    clock = FakeClock()
    found = discover_sensors(
        gpus="auto", nvml=FakeNVML([FakeGPU("GPU-orin", energy_mj=None, power_mw=None)]), amdsmi=None,
        rapl_root=make_rapl_tree(tmp_path / "rapl"), jetson_root=root, clock=clock,
    )  # fmt: skip
    (sensor,) = found.sensors  # the module's input: not NVML's estimate, RAPL or a CPU estimate on top
    assert (sensor.name, sensor.method) == ("jetson:VDD_IN", Method.SAMPLED)
    assert found.notes == [
        "Jetson: the input rail VDD_IN (the whole module) polled; "
        "nothing metered on top (no NVML, RAPL or CPU estimate)"
    ]
    start = sensor.read_energy_j()
    clock.advance(10.0)
    set_jetson_power(root, "VDD_IN", 18.0)
    assert sensor.read_energy_j() - start == pytest.approx(10.0 * (12.0 + 18.0) / 2)  # trapezoid over the window
    sensor.close()
    # another local rank of the node meters nothing: rank 0 has the module
    assert discover_sensors(gpus="auto", nvml=None, amdsmi=None, host=False, jetson_root=root).sensors == []


def test_a_jetson_without_an_input_rail_meters_each_connected_rail(tmp_path):
    root = make_jetson_tree(tmp_path, {"VDD_GPU_SOC": 4.0, "VDD_CPU_CV": 2.0, "NC": 0.0})
    found = discover_sensors(gpus=None, nvml=None, amdsmi=None, jetson_root=root)
    assert [s.name for s in found.sensors] == ["jetson:VDD_GPU_SOC", "jetson:VDD_CPU_CV"]
    for sensor in found.sensors:
        sensor.close()


# -- Apple Silicon: powermetrics ---------------------------------------------------------------------------------

POWERMETRICS = Path(__file__).with_name("data") / "powermetrics.txt"
#: The three samples of the file: (elapsed s, combined W).
SAMPLES = [(0.10231, 5.950), (0.10087, 6.512), (0.09942, 5.750)]


def test_powermetrics_text_output_is_parsed_sample_by_sample():
    samples = parse_powermetrics(POWERMETRICS.read_text().splitlines())
    assert [s.elapsed_s for s in samples] == pytest.approx([t for t, _ in SAMPLES])
    assert [s.combined_w for s in samples] == pytest.approx([w for _, w in SAMPLES])
    # the first GPU Power line counts, not the GPU section's repeat; units are read, not assumed
    assert [s.gpu_w for s in samples] == pytest.approx([0.830, 1.020, 0.790])
    assert samples[1].ane_w == pytest.approx(0.012)
    assert sum(s.energy_j for s in samples) == pytest.approx(sum(t * w for t, w in SAMPLES))
    # older macOS prints no combined line: the parts are summed; watts are read as watts
    old = parse_powermetrics(
        ["*** Sampled system activity (x) (250ms elapsed) ***", "CPU Power: 4.5 W", "GPU Power: 500 mW"]
    )
    assert [(s.elapsed_s, s.combined_w) for s in old] == [(0.25, 5.0)]
    assert parse_powermetrics(["CPU Power: 4.5 W"]) == []  # no sample header: nothing to integrate over


def test_the_soc_sensor_integrates_a_powermetrics_stream(tmp_path):
    # the recorded output replayed by a process, as powermetrics streams it
    replay = [sys.executable, "-c", f"import sys; sys.stdout.write(open({str(POWERMETRICS)!r}).read())"]
    found = discover_sensors(gpus=None, platform="darwin", powermetrics=replay, jetson_root=tmp_path)
    soc, dram = found.sensors
    assert (soc.name, soc.method) == ("apple:soc", Method.SAMPLED)
    assert (dram.name, dram.method) == ("dram:estimate", Method.ESTIMATE)
    assert found.notes[-1] == "Apple: the SoC (CPU, GPU, ANE) from powermetrics; unified memory: estimate"
    expected = sum(t * w for t, w in SAMPLES)
    deadline = time.monotonic() + 30
    while soc.read_energy_j() < expected - 1e-9 and time.monotonic() < deadline:  # until the replay is read
        time.sleep(0.01)
    assert soc.read_energy_j() == pytest.approx(expected)
    assert soc.read_power_w() == pytest.approx(5.750)
    soc.close()


def test_without_root_a_mac_says_why_and_falls_back_to_the_flagged_estimate(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 501)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    found = discover_sensors(gpus=None, platform="darwin", jetson_root=tmp_path, rapl_root=tmp_path)
    assert [s.method for s in found.sensors] == [Method.ESTIMATE, Method.ESTIMATE]
    assert found.warnings[0].startswith("Apple Silicon: powermetrics needs root (run under sudo to measure the SoC).")
