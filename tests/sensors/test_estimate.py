import os
import subprocess
import sys
import time
from collections.abc import Callable

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


def _read_once_while_it_burns(child: subprocess.Popen, read: Callable[[], object]) -> None:
    """Read once while ``child`` burns (it has used 0.1 s), then wait until it has exited.

    A fixed number of readings: what the readings themselves cost this process does not grow with how slowly a busy
    machine runs the child.
    """
    process = psutil.Process(child.pid)
    while child.poll() is None:
        try:
            if sum(process.cpu_times()[:2]) >= 0.1:
                read()
                break
        except psutil.NoSuchProcess:  # exited (a zombie) already: no reading while it ran
            break
        time.sleep(0.05)
    child.wait()


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
    _read_once_while_it_burns(child, sensor.read_energy_j)
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


TICKS = os.sysconf("SC_CLK_TCK")
PAGE_B = os.sysconf("SC_PAGE_SIZE")


def test_the_tree_is_followed_through_each_threads_children_in_proc(tmp_path):
    from lightning_greenai.sensors.estimate import ProcessTree, TreeCPUTime
    from lightning_greenai.sensors.fake import FakeProcess, make_proc_tree

    me = os.getpid()
    tree = {
        # the main thread started a worker, a second thread a tool that is now a zombie not yet reaped
        me: FakeProcess(utime=100, stime=20, cutime=7, cstime=3, rss_pages=1000, threads={me: [11], me + 1: [12]}),
        11: FakeProcess(utime=50, stime=5, rss_pages=200, comm="pt_data_worker) S 1 (x", threads={11: [13]}),
        12: FakeProcess(utime=30, stime=10, state="Z"),
        13: FakeProcess(utime=8, stime=2, rss_pages=10),  # the worker's own child
        14: FakeProcess(utime=10_000, rss_pages=10_000),  # another job on the machine: not ours
    }
    proc = make_proc_tree(tmp_path / "proc", tree)
    shared = ProcessTree(psutil.Process(), procfs=proc)
    reading = shared.read()
    assert sorted(reading.pids) == [11, 12, 13, me]
    assert reading.cpu_s == pytest.approx((130 + 55 + 40 + 10) / TICKS)
    assert reading.rss_b == 1210 * PAGE_B
    cpu = TreeCPUTime(tree=shared)
    del tree[11]  # the worker exited and was reaped: its time is in ours, its orphan is no longer the run's
    tree[me].cutime += 55
    make_proc_tree(proc, tree)
    assert sorted(shared.read().pids) == [12, me]
    assert cpu() == 0.0  # the orphan's 10 ticks left the tree: the reading does not go back
    tree[me].utime += 10
    make_proc_tree(proc, tree)
    assert cpu() == 0.0  # 10 more ticks of ours make up for them
    tree[me].utime += 10
    make_proc_tree(proc, tree)
    assert cpu() == pytest.approx(10 / TICKS)


def test_a_root_whose_pid_another_process_took_reads_empty_and_its_time_stays(tmp_path):
    from lightning_greenai.sensors.estimate import ProcessTree, TreeCPUTime
    from lightning_greenai.sensors.fake import FakeProcess, make_proc_tree

    me = os.getpid()
    proc = make_proc_tree(tmp_path / "proc", {me: FakeProcess(utime=100, start=500)})
    cpu = TreeCPUTime(tree=ProcessTree(psutil.Process(), procfs=proc))
    make_proc_tree(proc, {me: FakeProcess(utime=300, start=500)})
    assert cpu() == pytest.approx(200 / TICKS)
    make_proc_tree(proc, {me: FakeProcess(utime=5_000, start=900)})  # the run's root ended, a new process took its pid
    assert cpu.tree.read().pids == ()
    assert cpu() == pytest.approx(200 / TICKS)


def test_one_reading_block_reads_the_tree_once_for_every_consumer():
    from lightning_greenai.sensors.estimate import ProcessTree

    me = psutil.Process()
    cpu, dram = CPUEstimateSensor(tdp_w=4.0, logical_cpus=4), DRAMEstimateSensor()
    tree = ProcessTree.of(me)  # the one the sensors share
    reads = tree.reads
    with tree.reading():
        burn(0.05)
        first = cpu.read_energy_j()
        burn(0.05)
        dram.read_energy_j()
        assert cpu.read_energy_j() == first  # the reading of the block's start
    assert tree.reads == reads + 1
    assert cpu.read_energy_j() >= first + 0.05 * 0.5  # outside a block, each read reads the tree
    assert tree.reads == reads + 2


def test_the_tree_read_in_proc_is_the_tree_psutil_walks():
    import threading

    from lightning_greenai.sensors.estimate import ProcessTree

    me = psutil.Process()
    waiter = [sys.executable, "-c", "import sys; sys.stdin.read()"]  # runs until its stdin closes
    family: list[subprocess.Popen] = []
    started, done = threading.Event(), threading.Event()

    def start_and_stay() -> None:  # a child of another thread: in that thread's task/<tid>/children while it lives
        family.append(subprocess.Popen(waiter, stdin=subprocess.PIPE))
        started.set()
        done.wait()

    thread = threading.Thread(target=start_and_stay)
    thread.start()
    code = f"import subprocess, sys; g = subprocess.Popen({waiter!r}, stdin=subprocess.PIPE); print(g.pid, flush=True)"
    code += "; sys.stdin.read(); g.stdin.close(); g.wait()"
    try:
        family.append(subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE))
        assert family[-1].stdout is not None
        grandchild = int(family[-1].stdout.readline())
        assert started.wait(60)
        fast, walked = ProcessTree(me).read(), ProcessTree(me, procfs=None).read()
        assert set(fast.pids) == set(walked.pids) == {me.pid, *(p.pid for p in me.children(recursive=True))}
        assert {p.pid for p in family} | {grandchild} <= set(fast.pids)
        assert fast.cpu_s == pytest.approx(walked.cpu_s, abs=0.05)
        assert fast.rss_b == pytest.approx(walked.rss_b, rel=0.05)
    finally:
        done.set()
        thread.join()
        for p in family:
            assert p.stdin is not None
            p.stdin.close()
            p.wait()


def test_read_with_psutil_a_child_that_exits_is_counted_once_and_one_from_before_not_at_all():
    from lightning_greenai.sensors.estimate import ProcessTree, TreeCPUTime

    older = _burn(0.5)
    while psutil.Process(older.pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.02)
    cpu = TreeCPUTime(tree=ProcessTree(psutil.Process(), procfs=None))
    older.wait()
    child = _burn(0.5)
    _read_once_while_it_burns(child, cpu)
    assert 0.45 <= cpu() <= 0.95


def test_a_tree_cpu_time_takes_a_process_or_a_tree():
    from lightning_greenai.sensors.estimate import ProcessTree, TreeCPUTime

    me = psutil.Process()
    with pytest.raises(ValueError, match="a process or a tree, not both"):
        TreeCPUTime(me, tree=ProcessTree.of(me))
