"""Estimated CPU and DRAM energy where no counter can be read; every figure from here is flagged as an estimate.

CPU: the package TDP (from a small table by CPU model, the user's ``cpu_tdp_w``, or a stated default of
``DEFAULT_W_PER_CPU`` watts per logical CPU) is shared evenly among logical CPUs, and this process (with its
child processes, e.g. data-loader workers) is charged for the CPU time it used:
``energy_j = tdp_w / logical_cpus * cpu_seconds``. No thread is needed: the OS counts CPU time for us.

The model and its error: TDP is a thermal rating, not a measured power (a package draws from well under it when
lightly loaded to over it in turbo: tens of percent either way); idle power is not charged; CPU time is charged as
work whatever the core did, so threads that *spin* while they wait for each other count in full. On a machine that
other processes keep busy, a run with several torch threads spins far more: the digits sweep's trial was charged
2.7 J idle and 8 J with two busy processes beside it at 2 threads, 1.4 J either way at 1 thread (benchmarks/
RESULTS.md). The price tag then carries a note (:meth:`CPUEstimateSensor.contention_note`); one thread per
process on a shared machine, or ``OMP_WAIT_POLICY=PASSIVE``, keeps the estimate to the work.

DRAM: ``DRAM_W_PER_GB`` watts per GB of the process tree's resident memory, integrated between reads.

Both read the run's process tree through :class:`ProcessTree`, one per root in a process, shared with the Meter's
host share and the apportioned RAPL counters: inside a Meter's reading the tree is read once for all of them.
"""

from __future__ import annotations

import os
import platform
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import psutil

from lightning_greenai.sensors.base import SensorBase
from lightning_greenai.spend import Method

__all__ = [
    "CONTENTION_SHARE",
    "CPU_TDP_W",
    "DEFAULT_W_PER_CPU",
    "DRAM_W_PER_GB",
    "CPUEstimateSensor",
    "DRAMEstimateSensor",
    "ProcessTree",
    "TreeCPUTime",
    "TreeReading",
    "cpu_model",
    "lookup_tdp_w",
    "process_tree",
]

#: Watts per logical CPU assumed for a CPU model that is not in :data:`CPU_TDP_W`.
DEFAULT_W_PER_CPU = 5.0
#: Watts per GB of resident memory (the figure eco2AI uses for DRAM).
DRAM_W_PER_GB = 0.375

#: Thermal design power (manufacturer specifications) in watts, by a substring of the CPU model name.
CPU_TDP_W: dict[str, float] = {
    "EPYC 9654": 360.0,
    "EPYC 9554": 360.0,
    "EPYC 7763": 280.0,
    "EPYC 7742": 225.0,
    "EPYC 7713": 225.0,
    "EPYC 7543": 225.0,
    "EPYC 7502": 180.0,
    "EPYC 7402": 180.0,
    "Threadripper 3990X": 280.0,
    "Ryzen 9 7950X": 170.0,
    "Ryzen 9 5950X": 105.0,
    "Xeon Platinum 8480": 350.0,
    "Xeon Platinum 8380": 270.0,
    "Xeon Platinum 8358": 250.0,
    "Xeon Platinum 8280": 205.0,
    "Xeon Gold 6248": 150.0,
    "Xeon Gold 6148": 150.0,
    "Xeon Gold 6230": 125.0,
    "Xeon Gold 6130": 125.0,
    "Xeon Silver 4214": 85.0,
    "E5-2698 v4": 135.0,
    "E5-2680 v4": 120.0,
    "i9-13900K": 125.0,
    "i9-12900K": 125.0,
    "i7-12700K": 125.0,
    "i7-8700K": 95.0,
}


def cpu_model() -> str:
    """Return the CPU model name (from ``/proc/cpuinfo`` on Linux), or ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def lookup_tdp_w(model: str, logical_cpus: int) -> tuple[float, str]:
    """Return ``(tdp_w, source)`` for a CPU model: the table's figure, or the stated per-CPU default."""
    for key, tdp_w in CPU_TDP_W.items():
        if key.lower() in model.lower():
            return tdp_w, f"TDP table: {key} = {tdp_w:g} W"
    return (
        DEFAULT_W_PER_CPU * logical_cpus,
        f"default {DEFAULT_W_PER_CPU:g} W x {logical_cpus} logical CPUs ({model!r} not in table)",
    )


#: Other processes' share of the machine above which a multi-threaded run's CPU estimate gets a note.
CONTENTION_SHARE = 0.25


def _host_busy_s() -> float:
    """CPU seconds the whole machine spent busy (not idle or waiting for I/O)."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def process_tree(process: psutil.Process) -> list[psutil.Process]:
    """The process and its live descendants (data-loader workers ...)."""
    try:
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return [process]


#: Where Linux shows processes; each process's ``task/<tid>/children`` lists the children that thread started.
PROCFS = Path("/proc")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_B = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class TreeReading:
    """One reading of a process tree.

    Attributes:
        pids: The processes found (the root first), zombies not yet reaped included.
        cpu_s: Their CPU seconds, each one's own and its reaped children's (``children_user``/``children_system``).
        rss_b: Their resident memory in bytes.
    """

    pids: tuple[int, ...]
    cpu_s: float
    rss_b: int


class ProcessTree:
    """A process and its live descendants (DataLoader workers, DDP ranks ...), read for their CPU time and memory.

    On Linux a reading follows the tree itself: each process's ``/proc/<pid>/stat`` (CPU times and resident memory
    in one file) and its threads' ``task/<tid>/children``, so its cost grows with the tree, not with the machine
    (psutil's ``children(recursive=True)`` reads the ``stat`` of every process on the host: about 1 ms for 80
    processes). Elsewhere, or where the kernel has no ``children`` files, psutil walks it.

    One tree per root is shared in a process (:meth:`of`); inside :meth:`reading` it is read once, and every
    consumer (the CPU and DRAM estimates, the apportioned counters, the Meter's host share) gets that reading.

    Args:
        process: The root.
        procfs: Where the kernel's process files are; ``None`` reads the tree with psutil.
    """

    _shared: ClassVar[weakref.WeakValueDictionary[tuple[int, float], ProcessTree]] = weakref.WeakValueDictionary()
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, process: psutil.Process, *, procfs: Path | str | None = PROCFS) -> None:
        self.process = process
        #: How many times the tree was read (a reading shared inside :meth:`reading` counts once).
        self.reads = 0
        self._local = threading.local()
        self._procfs: str | None = None
        self._root_start: bytes | None = None
        if procfs is not None:
            root = f"{procfs}/{process.pid}"
            fields = _stat_fields(root)
            if fields is not None and os.path.exists(f"{root}/task/{process.pid}/children"):
                self._procfs, self._root_start = str(procfs), fields[19]

    @classmethod
    def of(cls, process: psutil.Process) -> ProcessTree:
        """The tree rooted at ``process`` that this process shares (made on first use, kept while in use)."""
        key = (process.pid, process.create_time())
        with cls._shared_lock:
            tree = cls._shared.get(key)
            if tree is None:
                tree = cls._shared[key] = cls(process)
            return tree

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Read the tree at most once in this block (this thread): one reading for everything read inside."""
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                self._local.held = None

    def read(self) -> TreeReading:
        """The tree now, or the reading already taken in the enclosing :meth:`reading` block."""
        if not getattr(self._local, "depth", 0):
            return self._read()
        held: TreeReading | None = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = self._read()
        return held

    def _read(self) -> TreeReading:
        self.reads += 1
        return self._read_psutil() if self._procfs is None else self._read_procfs(self._procfs)

    def _read_procfs(self, procfs: str) -> TreeReading:
        pids: list[int] = []
        ticks = pages = 0
        todo = [self.process.pid]
        while todo:
            pid = todo.pop()
            folder = f"{procfs}/{pid}"
            fields = None if pid in pids else _stat_fields(folder)  # listed twice: moved in the tree while read
            if fields is None or (pid == self.process.pid and fields[19] != self._root_start):
                continue  # gone (or, for the root, its pid taken by another process): nothing more to count
            pids.append(pid)
            ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
            pages += int(fields[21])
            try:
                threads = os.listdir(f"{folder}/task")
            except OSError:
                continue
            for tid in threads:
                try:
                    with open(f"{folder}/task/{tid}/children", "rb") as fh:
                        todo.extend(int(child) for child in fh.read().split())
                except OSError:
                    continue  # the thread ended
        return TreeReading(tuple(pids), ticks / _CLOCK_TICKS, pages * _PAGE_B)

    def _read_psutil(self) -> TreeReading:
        pids: list[int] = []
        cpu_s = 0.0
        rss_b = 0
        for proc in process_tree(self.process):
            try:
                with proc.oneshot():
                    t, rss = proc.cpu_times(), proc.memory_info().rss
            except psutil.Error:
                continue
            pids.append(proc.pid)
            cpu_s += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
            rss_b += rss
        return TreeReading(tuple(pids), cpu_s, rss_b)


def _stat_fields(folder: str) -> list[bytes] | None:
    """The fields of ``<folder>/stat`` after the command name (state first), or ``None`` if it is gone."""
    try:
        with open(f"{folder}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()


class TreeCPUTime:
    """CPU seconds a process and its descendants used since this was created (call it to read).

    Each live process of the tree counts its own time and the time of the children it has reaped
    (``children_user``/``children_system``: a DataLoader worker that started and ended between two reads is there).
    A process alive at creation and reaped since enters its parent's reaped time with its whole life, whose part
    before creation is in the starting total: only the time since is charged, whoever's child it was. The reading
    never goes back (a descendant reaped outside the tree keeps the time it was last seen at).

    Args:
        process: The root (default: this process); its shared :class:`ProcessTree` is read.
        tree: The tree to read instead (one that is not shared, e.g. read with psutil).
    """

    def __init__(self, process: psutil.Process | None = None, *, tree: ProcessTree | None = None) -> None:
        if process is not None and tree is not None:
            raise ValueError(f"TreeCPUTime takes a process or a tree, not both (got {process!r} and {tree!r}).")
        self.tree = tree or ProcessTree.of(process or psutil.Process())
        self._start_s = self.tree.read().cpu_s
        self._high_s = 0.0

    @property
    def process(self) -> psutil.Process:
        """The root of the tree."""
        return self.tree.process

    def __call__(self) -> float:
        """CPU seconds since creation."""
        self._high_s = max(self._high_s, self.tree.read().cpu_s - self._start_s)
        return self._high_s


class CPUEstimateSensor(SensorBase):
    """Estimate this process tree's CPU energy as its share of the package TDP (see the module docstring).

    Args:
        tdp_w: Package power in watts for the whole machine; ``None`` looks the model up (or uses the default).
        process: The process to charge (default: this one, with its children).
        logical_cpus: Number of logical CPUs sharing ``tdp_w`` (default: ``os.cpu_count()``).
    """

    def __init__(
        self, tdp_w: float | None = None, *, process: psutil.Process | None = None, logical_cpus: int | None = None
    ) -> None:
        self._process = process or psutil.Process()
        self._cpus = logical_cpus or os.cpu_count() or 1
        if tdp_w is None:
            self.tdp_w, self.source = lookup_tdp_w(cpu_model(), self._cpus)
        else:
            self.tdp_w, self.source = float(tdp_w), f"user cpu_tdp_w = {float(tdp_w):g} W"
        self._cpu_seconds = TreeCPUTime(self._process)
        self._host0 = (time.monotonic(), _host_busy_s())
        super().__init__("cpu:estimate", f"cpu-estimate:{socket.gethostname()}:{self._process.pid}", Method.ESTIMATE)

    def read_energy_j(self) -> float:
        """Return estimated joules since construction."""
        return self._cpu_seconds() * self.tdp_w / self._cpus

    def others_share(self) -> float:
        """The share of the machine's CPU capacity that other processes used since construction (0 to 1)."""
        t0, busy0 = self._host0
        elapsed = (time.monotonic() - t0) * self._cpus
        if elapsed <= 0:
            return 0.0
        others = (_host_busy_s() - busy0) - self._cpu_seconds()
        return min(max(others / elapsed, 0.0), 1.0)

    def contention_note(self, threads: int | None) -> str | None:
        """A note for the price tag when the estimate may include threads that spun while the machine was busy."""
        share = self.others_share()
        if share < CONTENTION_SHARE or not threads or threads < 2:
            return None
        return (
            f"the machine was busy ({share:.0%} of its CPU capacity went to other processes) while this run used "
            f"{threads} threads: threads that wait for each other spin, and the CPU estimate charges that CPU time. "
            "torch.set_num_threads(1) (or fewer threads than free cores) or OMP_WAIT_POLICY=PASSIVE keeps it to the "
            "work; RAPL counters measure it instead."
        )


class DRAMEstimateSensor(SensorBase):
    """Estimate DRAM energy as ``w_per_gb`` times the process tree's resident memory, integrated between reads.

    Args:
        w_per_gb: Watts per GB of resident memory.
        process: The process to charge (default: this one, with its children).
        clock: Monotonic clock in seconds.
    """

    def __init__(
        self,
        w_per_gb: float = DRAM_W_PER_GB,
        *,
        process: psutil.Process | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._w_per_gb = w_per_gb
        self._process = process or psutil.Process()
        self._tree = ProcessTree.of(self._process)
        self._clock = clock
        self._energy_j = 0.0
        self._last = (clock(), self._power_w())
        super().__init__("dram:estimate", f"dram-estimate:{socket.gethostname()}:{self._process.pid}", Method.ESTIMATE)
        self.source = f"{w_per_gb:g} W per GB of resident memory"

    def _power_w(self) -> float:
        return self._tree.read().rss_b / 1e9 * self._w_per_gb

    def read_power_w(self) -> float:
        """Return the current estimated DRAM power in watts."""
        return self._power_w()

    def read_energy_j(self) -> float:
        """Return estimated joules since construction (trapezoid between reads)."""
        now, power_w = self._clock(), self._power_w()
        t0, p0 = self._last
        self._energy_j += (now - t0) * (p0 + power_w) / 2.0
        self._last = (now, power_w)
        return self._energy_j
