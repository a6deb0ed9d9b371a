import os
import time

import pytest

from lightning_greenai import Method
from lightning_greenai.sensors.estimate import (
    DEFAULT_W_PER_CPU,
    CPUEstimateSensor,
    DRAMEstimateSensor,
    lookup_tdp_w,
)
from lightning_greenai.sensors.fake import FakeClock


def burn(seconds: float) -> None:
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1


def test_cpu_estimate_is_tdp_share_times_cpu_time():
    sensor = CPUEstimateSensor(tdp_w=80.0, logical_cpus=4)
    start = time.process_time()
    burn(0.2)
    used = time.process_time() - start
    energy = sensor.read_energy_j()
    assert sensor.method is Method.ESTIMATE
    # 20 W per logical CPU x the CPU seconds this process used (a little more for the reads themselves)
    assert energy == pytest.approx(20.0 * used, rel=0.25)
    assert "user cpu_tdp_w = 80 W" in sensor.source


def test_tdp_table_and_stated_default():
    assert lookup_tdp_w("AMD EPYC 7763 64-Core Processor", 128) == (280.0, "TDP table: EPYC 7763 = 280 W")
    tdp, source = lookup_tdp_w("Mystery CPU 9000", 8)
    assert tdp == DEFAULT_W_PER_CPU * 8
    assert "not in table" in source


def test_cpu_estimate_is_monotonic():
    sensor = CPUEstimateSensor(tdp_w=10.0)
    readings = [sensor.read_energy_j() for _ in range(5)]
    assert readings == sorted(readings)


def test_dram_estimate_integrates_resident_memory():
    clock = FakeClock()
    sensor = DRAMEstimateSensor(w_per_gb=1.0, clock=clock)
    power = sensor.read_power_w()
    clock.advance(10.0)
    energy = sensor.read_energy_j()
    assert energy == pytest.approx(10.0 * power, rel=0.05)
    assert power > 0.001  # this test process has some resident memory
    assert sensor.uid.endswith(str(os.getpid()))
