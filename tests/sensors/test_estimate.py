import os
import subprocess
import sys
import time

import psutil
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


def _burn(seconds: float) -> subprocess.Popen:
    code = f"import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass"
    return subprocess.Popen([sys.executable, "-c", code])


def _burn_elsewhere(seconds: float) -> psutil.Process:
    """A burner that is not this process's descendant (orphaned at once): another job on the machine."""
    code = f"import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass"
    shell = subprocess.run(
        ["sh", "-c", f'"{sys.executable}" -c "{code}" >/dev/null 2>&1 & echo $!'], capture_output=True, text=True
    )
    return psutil.Process(int(shell.stdout.strip()))


def _wait_done(process: psutil.Process, timeout_s: float = 60.0) -> None:
    """Wait until ``process`` has exited; a zombie counts (init may reap an orphan late)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.01)
    raise TimeoutError(f"burner {process.pid} still running after {timeout_s} s")


def test_a_child_that_exits_is_counted_once_and_one_from_before_not_at_all():
    import psutil

    from lightning_greenai.sensors.estimate import CPUEstimateSensor

    older = _burn(0.5)  # ran before the sensor started, reaped while it runs (a previous trial's DDP rank)
    while psutil.Process(older.pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.02)
    sensor = CPUEstimateSensor(tdp_w=4.0, logical_cpus=4)  # 1 W per CPU: joules = CPU seconds
    older.wait()
    child = _burn(0.5)
    while child.poll() is None:
        sensor.read_energy_j()
        time.sleep(0.05)
    cpu_s = sensor.read_energy_j()
    # the child's 0.5 s (+ its interpreter start), once; not twice when reaped, not the older child's too
    assert 0.45 <= cpu_s <= 0.95


def test_a_busy_machine_gives_a_multithreaded_runs_estimate_a_note():
    import os

    from lightning_greenai.sensors.estimate import CPUEstimateSensor

    sensor = CPUEstimateSensor(tdp_w=4.0)
    burners = [_burn_elsewhere(0.6) for _ in range(len(os.sched_getaffinity(0)))]  # others take the whole machine
    for burner in burners:
        _wait_done(burner)
    assert sensor.others_share() >= 0.25
    assert sensor.contention_note(threads=1) is None  # one thread does not spin waiting for another
    note = sensor.contention_note(threads=4)
    assert note is not None and "spin" in note and "torch.set_num_threads(1)" in note
