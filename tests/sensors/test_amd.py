"""AMD GPUs through amdsmi (a fake of its interface), and Grace superchips whose NVML counter is the module's."""

import pytest

from lightning_greenai import Meter, Method
from lightning_greenai.sensors import discover_sensors
from lightning_greenai.sensors.amd import discover_amdsmi, visible_amd_devices
from lightning_greenai.sensors.fake import FakeAMDGPU, FakeAMDSMI, FakeClock, FakeGPU, FakeNVML, make_rapl_tree


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
