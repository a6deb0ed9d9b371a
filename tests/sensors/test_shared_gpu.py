"""A fair share of a shared GPU: MIG by its compute fraction, time-slicing and MPS by SM utilisation, with bounds."""

import json
import os
import threading
import time
from pathlib import Path

import pytest
from lightning.pytorch.demos.boring_classes import BoringModel

from lightning_greenai import EnergyMonitor, Meter, Method
from lightning_greenai.metering.distributed import local_record, merge_records
from lightning_greenai.sensors import discover_sensors
from lightning_greenai.sensors.fake import FakeClock, FakeGPU, FakeNVML
from lightning_greenai.sensors.shared import SharedGPUSensor

ME = os.getpid()
OTHER = 999_999_001  # a process of another job on the same GPU


class Board:
    """A GPU's energy counter driven by a fake clock at a power the test sets (idle 50 W), and its processes' SM use.

    ``tick_s`` > 0 makes the counter move in steps, as NVML's does every ~100 ms.
    """

    def __init__(self, clock: FakeClock, tick_s: float = 0.0) -> None:
        self.clock, self.power_w, self.energy_mj, self.at, self.tick_s = clock, 50.0, 0.0, clock(), tick_s
        self.sm: dict[int, int] = {ME: 0, OTHER: 0}
        self.lock = threading.Lock()  # the sensor's polling thread reads it too

    def __call__(self) -> int:
        with self.lock:
            now = self.clock()
            if self.tick_s:
                now = self.tick_s * int(round(now / self.tick_s, 6))  # the last tick
            self.energy_mj += self.power_w * max(now - self.at, 0.0) * 1e3
            self.at = max(self.at, now)
            return int(self.energy_mj)

    def utilisation(self) -> dict[int, int]:
        return dict(self.sm)


def gpus(clock: FakeClock, tick_s: float = 0.0, **fields) -> tuple[FakeNVML, Board]:
    board = Board(clock, tick_s)
    fields.setdefault("sm_util", board.utilisation)
    gpu = FakeGPU("GPU-a", energy_mj=board, power_mw=lambda: int(board.power_w * 1e3), **fields)
    return FakeNVML([gpu]), board


def run(meter: Meter, clock: FakeClock, board: Board, seconds: float, power_w: float, sm=None, step_s=1.0) -> None:
    board.power_w = power_w
    if sm is not None:
        board.sm = sm
    for _ in range(round(seconds / step_s)):
        clock.advance(step_s)
        meter.sample()


def test_time_slicing_splits_the_active_energy_by_sm_utilisation_and_the_idle_evenly():
    clock = FakeClock()
    nvml, board = gpus(clock)
    found = discover_sensors(gpus="auto", host=False, nvml=nvml, visible=["0"], clock=clock)
    [sensor] = found.sensors
    assert isinstance(sensor, SharedGPUSensor) and sensor.method is Method.ESTIMATE
    assert sensor.uid == f"GPU-a@pid{ME}"  # each process's share is a counter of its own: ranks add up
    assert "shared with 1 other process(es): share by SM utilisation" in found.summary()
    with Meter(found.sensors, clock=clock) as meter:
        run(meter, clock, board, 10, 50.0, {ME: 0, OTHER: 0})  # idle: 500 J; its power is learnt after a second
        run(meter, clock, board, 10, 250.0, {ME: 75, OTHER: 25})  # busy: 500 J idle + 2000 J active
    sensor.close()  # the polling thread (its polls, if any, see the same fake clock: the same sums)
    spend = meter.spend
    assert spend.methods["gpu:0"] is Method.ESTIMATE and spend.is_estimate
    # idle 1000 J split between the 2 processes (the idle power is learnt over the first second, with no SM
    # activity), active 2000 J by SM utilisation (75 %)
    assert spend.energy_j["gpu:0"] == pytest.approx(500.0 + 0.75 * 2000.0)
    low, high = spend.energy_bounds_j["gpu:0"]
    # bounds: the share of the active energy alone .. all of the active energy plus the idle share (5 % calibration
    # and the counter's edges on top)
    edges = 0.001 + 2 * 0.1 * (2000.0 / 20.0)
    assert low == pytest.approx(0.75 * 2000.0 * 0.95 - edges)
    assert high == pytest.approx((2000.0 + 500.0) * 1.05 + edges)


def test_a_counter_that_ticks_every_100_ms_read_more_often_keeps_the_rule():
    clock = FakeClock()
    nvml, board = gpus(clock, tick_s=0.1)
    found = discover_sensors(gpus="auto", host=False, nvml=nvml, visible=["0"], clock=clock)
    with Meter(found.sensors, clock=clock) as meter:
        run(meter, clock, board, 10, 50.0, {ME: 0, OTHER: 0}, step_s=0.05)
        run(meter, clock, board, 10, 250.0, {ME: 75, OTHER: 25}, step_s=0.05)
    found.sensors[0].close()
    energy_j = meter.spend.energy_j["gpu:0"]
    assert energy_j == pytest.approx(2000.0, rel=0.02)  # no tick-less poll read as a 0 W idle power
    low, high = meter.spend.energy_bounds_j["gpu:0"]
    assert low < energy_j < high


def test_a_gpu_busy_from_the_start_is_split_by_utilisation_not_evenly():
    clock = FakeClock()
    nvml, board = gpus(clock)
    found = discover_sensors(gpus="auto", host=False, nvml=nvml, visible=["0"], clock=clock)
    with Meter(found.sensors, clock=clock) as meter:
        run(meter, clock, board, 20, 300.0, {ME: 10, OTHER: 90})  # never idle: no idle power is learnt
    found.sensors[0].close()
    assert meter.spend.energy_j["gpu:0"] == pytest.approx(0.1 * 6000.0)
    low, high = meter.spend.energy_bounds_j["gpu:0"]
    edges = 0.001 + 2 * 0.1 * 30.0
    assert (low, high) == pytest.approx((600.0 * 0.95 - edges, 6000.0 * 1.05 + edges))


def test_the_heavier_user_of_a_gpu_busy_from_the_start_keeps_the_fair_share_inside_its_interval():
    clock = FakeClock()
    nvml, board = gpus(clock)
    found = discover_sensors(gpus="auto", host=False, nvml=nvml, visible=["0"], clock=clock)
    with Meter(found.sensors, clock=clock) as meter:
        run(meter, clock, board, 20, 300.0, {ME: 40, OTHER: 20})
    found.sensors[0].close()
    energy_j = meter.spend.energy_j["gpu:0"]
    assert energy_j == pytest.approx(2 / 3 * 6000.0)  # all active while no idle second is seen
    low, high = meter.spend.energy_bounds_j["gpu:0"]
    # whatever the idle power, the fair share (active by utilisation, idle halved) lies in [1/2, 2/3] of it
    assert low <= 0.5 * 6000.0 < energy_j < high


def test_a_job_of_several_processes_gets_their_share_of_the_idle_energy():
    clock = FakeClock()
    nvml, board = gpus(clock)
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    ours = {ME, ME + 1}
    board.sm = {ME: 0, ME + 1: 0, OTHER: 0}
    whole = discover_sensors(gpus="auto", host=False, nvml=nvml, visible=["0"], clock=clock, gpu_sharing="exclusive")
    share = SharedGPUSensor(whole.sensors[0], nvml, handle, pids=lambda: ours, uid="GPU-a@job", clock=clock)
    with Meter([share], clock=clock) as meter:
        run(meter, clock, board, 6, 50.0)
    share.close()
    assert meter.spend.energy_j["gpu:0"] == pytest.approx(2 / 3 * 300.0)  # 2 of the 3 processes on the GPU


def test_the_shares_of_two_ranks_on_one_gpu_add_up_to_the_gpu():
    clock = FakeClock()
    nvml, board = gpus(clock)
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    meters = []
    for pid in (ME, OTHER):
        whole = discover_sensors(
            gpus="auto", host=False, nvml=nvml, visible=["0"], clock=clock, gpu_sharing="exclusive"
        )
        share = SharedGPUSensor(
            whole.sensors[0], nvml, handle, pids=lambda p=pid: {p}, uid=f"GPU-a@pid{pid}", clock=clock
        )
        meters.append(Meter([share], clock=clock, report=False).start())
    board.power_w, board.sm = 250.0, {ME: 75, OTHER: 25}
    for _ in range(10):
        clock.advance(1.0)
        for m in meters:
            m.sample()
    merged = merge_records([local_record(m, rank=r) for r, m in enumerate(meters)])
    assert merged.total_energy_j == pytest.approx(2500.0)  # 75 % + 25 %: the whole GPU, once
    for m in meters:
        m.stop()
        m.sensors[0].close()


def test_our_idle_share_counts_us_when_nvml_does_not_list_us():
    clock = FakeClock()
    nvml, board = gpus(clock)
    found = discover_sensors(gpus="auto", host=False, nvml=nvml, visible=["0"], clock=clock, gpu_sharing="shared")
    board.sm = {OTHER: 0}
    with Meter(found.sensors, clock=clock) as meter:
        run(meter, clock, board, 5, 50.0)
    found.sensors[0].close()
    assert meter.spend.energy_j["gpu:0"] == pytest.approx(250.0 / 2)  # the idle split between the other and us


def test_a_gpu_to_ourselves_is_metered_whole_unless_sharing_is_forced():
    clock = FakeClock()
    nvml, _ = gpus(clock, sm_util={ME: 90})
    found = discover_sensors(gpus="auto", host=False, nvml=nvml, visible=["0"], clock=clock)
    assert found.sensors[0].method is Method.COUNTER
    forced = discover_sensors(gpus="auto", host=False, nvml=nvml, visible=["0"], clock=clock, gpu_sharing="shared")
    assert isinstance(forced.sensors[0], SharedGPUSensor)
    for s in (*found.sensors, *forced.sensors):
        s.close()
    nvml, _ = gpus(clock, sm_util={ME: 50, OTHER: 50})
    exclusive = discover_sensors(
        gpus="auto", host=False, nvml=nvml, visible=["0"], clock=clock, gpu_sharing="exclusive"
    )
    assert exclusive.sensors[0].method is Method.COUNTER


def test_a_mig_slice_gets_its_compute_fraction_of_the_gpu():
    clock = FakeClock()
    nvml, board = gpus(clock, mig_uuids=["MIG-3g"], mig_slices={"MIG-3g": 3})
    found = discover_sensors(gpus="auto", host=False, nvml=nvml, visible=["MIG-3g"], clock=clock)
    [sensor] = found.sensors
    assert isinstance(sensor, SharedGPUSensor) and sensor.fraction == pytest.approx(3 / 7)
    assert "MIG slice: 0.429 of the GPU by compute slices, estimate" in found.summary()
    with Meter(found.sensors, clock=clock) as meter:
        run(meter, clock, board, 10, 50.0)
        run(meter, clock, board, 10, 190.0)  # 1400 J active
    sensor.close()
    assert meter.spend.energy_j["gpu:0"] == pytest.approx(3 / 7 * (1000.0 + 1400.0))
    low, high = meter.spend.energy_bounds_j["gpu:0"]
    edges = 0.001 + 2 * 0.1 * (3 / 7 * 2400.0 / 20.0)
    assert low == pytest.approx(3 / 7 * 1400.0 * 0.95 - edges)
    assert high == pytest.approx((1400.0 + 3 / 7 * 1000.0) * 1.05 + edges)
    assert sensor.uid == "GPU-a:MIG-3g"  # the slice is the counter


def test_a_mig_slice_nvml_cannot_size_is_metered_whole_and_said():
    clock = FakeClock()
    nvml, _ = gpus(clock, mig_uuids=["MIG-x"])
    found = discover_sensors(gpus="auto", host=False, nvml=nvml, visible=["MIG-x"], clock=clock)
    assert found.sensors[0].method is Method.COUNTER
    assert "MIG: whole GPU, shared; NVML gives no slice size" in found.summary()


def test_no_sm_activity_sampled_splits_the_active_energy_evenly():
    clock = FakeClock()
    nvml, board = gpus(clock, sm_util={ME: 0, OTHER: 0})
    found = discover_sensors(gpus="auto", host=False, nvml=nvml, visible=["0"], clock=clock)
    with Meter(found.sensors, clock=clock) as meter:
        run(meter, clock, board, 5, 50.0)
        run(meter, clock, board, 5, 150.0)
    found.sensors[0].close()
    assert meter.spend.energy_j["gpu:0"] == pytest.approx((500.0 + 500.0) / 2)


def test_bad_sharing_is_refused_by_name():
    with pytest.raises(ValueError, match=r"gpu_sharing must be one of 'auto', 'exclusive', 'shared', got 'mps'"):
        EnergyMonitor(gpu_sharing="mps")
    with pytest.raises(ValueError, match="got 'maybe'"):
        discover_sensors(gpus=None, host=False, gpu_sharing="maybe")


def test_a_fit_on_a_shared_gpu_prices_the_share_with_its_bounds(tiny_trainer, tmp_path):
    nvml, board = gpus(FakeClock(), sm_util={ME: 60, OTHER: 40})
    board.clock = time.monotonic  # a real fit: the board's counter runs on the real clock
    board.at, board.power_w = board.clock(), 200.0
    monitor = EnergyMonitor(nvml=nvml, gpus=[0], rapl_root=tmp_path / "none", verbose=False)
    trainer = tiny_trainer(callbacks=[monitor], max_steps=3)
    trainer.fit(BoringModel())
    tag = json.loads((Path(trainer.log_dir) / "price_tag.json").read_text())
    gpu = next(d for d in tag["devices"] if d["name"] == "gpu:0")
    assert gpu["method"] == "estimate" and tag["is_estimate"] is True
    low, high = gpu["energy_kwh_bounds"]
    assert low <= gpu["energy_kwh"] <= high
    assert "share by SM utilisation" in tag["sensors"]
