"""Public test doubles: fake sensors, a fake clock, fake NVML and amdsmi modules, fake powercap, Jetson and /proc trees.

Use them in your own tests to check energy accounting without hardware::

    clock = FakeClock()
    sensor = ConstantPowerSensor("gpu:0", power_w=300.0, clock=clock)
    with Meter([sensor], clock=clock) as meter:
        clock.advance(10.0)
    assert meter.spend.total_energy_j == 3000.0
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_greenai.sensors.base import SensorBase
from lightning_greenai.spend import Method

__all__ = [
    "ConstantPowerSensor",
    "FakeAMDGPU",
    "FakeAMDSMI",
    "FakeClock",
    "FakeGPU",
    "FakeNVML",
    "FakeProcess",
    "FakeSensor",
    "make_jetson_tree",
    "make_proc_tree",
    "make_rapl_tree",
    "set_jetson_power",
]


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, start_s: float = 0.0) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        """Return the current time in seconds."""
        return self.now_s

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        if seconds < 0:
            raise ValueError(f"A clock cannot go back: advance({seconds}).")
        self.now_s += seconds


class FakeSensor(SensorBase):
    """A sensor that returns scripted cumulative readings (the last one repeats), or calls a function.

    Args:
        name: Domain name, e.g. ``"gpu:0"``.
        readings_j: Cumulative joules returned by successive reads, or a function returning them.
        method: The method to report.
        uid: Unique id (defaults to ``name``).
        fail_after: Raise ``RuntimeError`` on every read after this many successful reads.
    """

    def __init__(
        self,
        name: str,
        readings_j: Sequence[float] | Callable[[], float],
        *,
        method: Method = Method.COUNTER,
        uid: str | None = None,
        fail_after: int | None = None,
    ) -> None:
        super().__init__(name, uid or name, method)
        self._fn = readings_j if callable(readings_j) else self._script(list(readings_j))
        self._fail_after = fail_after
        self.reads = 0
        self.closed = False

    @staticmethod
    def _script(values: list[float]) -> Callable[[], float]:
        if not values:
            raise ValueError("FakeSensor needs at least one reading.")
        it = itertools.chain(values, itertools.repeat(values[-1]))
        return lambda: next(it)

    def read_energy_j(self) -> float:
        """Return the next scripted reading."""
        if self._fail_after is not None and self.reads >= self._fail_after:
            raise RuntimeError(f"fake sensor {self._name} failed")
        self.reads += 1
        return float(self._fn())

    def close(self) -> None:
        """Mark closed."""
        self.closed = True


class ConstantPowerSensor(SensorBase):
    """A counter that accrues ``power_w`` watts on ``clock``: energy = power x elapsed time.

    Args:
        name: Domain name.
        power_w: Constant power in watts.
        clock: The clock whose time drives the counter (usually a :class:`FakeClock`).
        method: The method to report.
        uid: Unique id (defaults to ``name``).
    """

    def __init__(
        self,
        name: str,
        power_w: float,
        *,
        clock: Callable[[], float],
        method: Method = Method.COUNTER,
        uid: str | None = None,
    ) -> None:
        super().__init__(name, uid or name, method)
        self.power_w = power_w
        self._clock = clock
        self._origin = clock()

    def read_energy_j(self) -> float:
        """Return power x time since construction."""
        return self.power_w * (self._clock() - self._origin)

    def read_power_w(self) -> float:
        """Return the constant power."""
        return self.power_w


class _NVMLError(Exception):
    pass


class _NVMLNotSupportedError(_NVMLError):
    pass


@dataclass
class _Utilization:
    gpu: int
    memory: int


@dataclass
class _Memory:
    total: int


@dataclass
class _ProcessSample:
    pid: int
    timeStamp: int  # noqa: N815 (NVML's field names)
    smUtil: int  # noqa: N815
    memUtil: int = 0  # noqa: N815
    encUtil: int = 0  # noqa: N815
    decUtil: int = 0  # noqa: N815


@dataclass
class _Process:
    pid: int
    usedGpuMemory: int = 0  # noqa: N815


@dataclass
class _Attributes:
    gpuInstanceSliceCount: int  # noqa: N815
    computeInstanceSliceCount: int  # noqa: N815
    multiprocessorCount: int  # noqa: N815


@dataclass
class FakeGPU:
    """One fake GPU for :class:`FakeNVML`.

    Args:
        uuid: The GPU's UUID (``"GPU-..."``).
        energy_mj: Total-energy counter in millijoules, or a function returning it; ``None`` = not supported.
        power_mw: Board power in milliwatts, or a function; ``None`` = not supported.
        power_limit_mw: Enforced power limit in milliwatts; ``None`` = not supported.
        utilization: GPU utilisation in percent.
        name: Product name.
        mig_uuids: UUIDs of MIG slices on this GPU.
        memory_bytes: Total memory.
        mig_slices: Compute slices of each MIG slice (by UUID) out of ``mig_max``; a slice absent here reports no
            attributes.
        mig_max: The GPU's MIG slices in all (7 on an A100 or H100).
        sm_util: Each process's SM utilisation in percent (pid -> percent, or a function returning that mapping),
            reported by ``nvmlDeviceGetProcessUtilization`` as one sample per process and call; the processes are
            also the GPU's compute processes.
    """

    uuid: str
    energy_mj: int | Callable[[], int] | None = 0
    power_mw: int | Callable[[], int] | None = 100_000
    power_limit_mw: int | None = 300_000
    utilization: int = 100
    name: str = "NVIDIA Fake GPU"
    mig_uuids: list[str] = field(default_factory=list)
    memory_bytes: int = 80 * 10**9
    mig_slices: dict[str, int] = field(default_factory=dict)
    mig_max: int = 7
    sm_util: dict[int, int] | Callable[[], dict[int, int]] = field(default_factory=dict)

    def utilisation(self) -> dict[int, int]:
        """The processes' SM utilisation now."""
        return dict(self.sm_util() if callable(self.sm_util) else self.sm_util)


class FakeNVML:
    """An object with the NVML functions lightning-greenai calls, backed by :class:`FakeGPU` records.

    Pass it wherever an ``nvml`` module is accepted (``EnergyMonitor(nvml=...)``, ``discover_sensors(nvml=...)``).
    """

    NVMLError = _NVMLError
    NVMLError_NotSupported = _NVMLNotSupportedError

    def __init__(self, gpus: Iterable[FakeGPU] = (), *, driver: str = "fake-1.0") -> None:
        self.gpus = list(gpus)
        self.driver = driver
        self.initialised = False

    def _value(self, value: Any) -> int:
        if value is None:
            raise _NVMLNotSupportedError("Not Supported")
        return int(value() if callable(value) else value)

    def nvmlInit(self) -> None:  # noqa: N802 (NVML's names)
        """Initialise."""
        self.initialised = True

    def nvmlShutdown(self) -> None:  # noqa: N802
        """Shut down."""
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        """Return the driver version."""
        return self.driver

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        """Return the number of GPUs."""
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGPU:  # noqa: N802
        """Return a GPU by NVML index."""
        if not 0 <= index < len(self.gpus):
            raise _NVMLError("Invalid Argument")
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> Any:  # noqa: N802
        """Return a GPU, or a MIG slice as ``(parent, uuid)``, by UUID."""
        for gpu in self.gpus:
            if gpu.uuid == uuid:
                return gpu
            if uuid in gpu.mig_uuids:
                return ("mig", gpu, uuid)
        raise _NVMLError("Not Found")

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: Any) -> FakeGPU:  # noqa: N802
        """Return the parent GPU of a MIG slice."""
        return handle[1]  # type: ignore[no-any-return]

    def nvmlDeviceGetUUID(self, handle: Any) -> str:  # noqa: N802
        """Return the UUID (a MIG slice's own)."""
        return str(handle[2]) if isinstance(handle, tuple) else handle.uuid

    def nvmlDeviceGetName(self, handle: FakeGPU) -> str:  # noqa: N802
        """Return the product name."""
        return handle.name

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGPU) -> _Memory:  # noqa: N802
        """Return the memory info (``.total`` in bytes)."""
        return _Memory(total=handle.memory_bytes)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGPU) -> int:  # noqa: N802
        """Return the energy counter in mJ."""
        return self._value(handle.energy_mj)

    def nvmlDeviceGetPowerUsage(self, handle: FakeGPU) -> int:  # noqa: N802
        """Return the power in mW."""
        return self._value(handle.power_mw)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeGPU) -> int:  # noqa: N802
        """Return the power limit in mW."""
        return self._value(handle.power_limit_mw)

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: FakeGPU) -> list[int]:  # noqa: N802
        """Return the lowest and highest power limits the board accepts, in mW (the enforced limit is the highest)."""
        highest = self._value(handle.power_limit_mw)
        return [highest // 2, highest]

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGPU) -> _Utilization:  # noqa: N802
        """Return utilisation rates in percent."""
        return _Utilization(gpu=handle.utilization, memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGPU) -> list[_Process]:  # noqa: N802
        """Return the processes running compute work on the GPU."""
        return [_Process(pid) for pid in handle.utilisation()]

    def nvmlDeviceGetProcessUtilization(self, handle: FakeGPU, last_seen_us: int) -> list[_ProcessSample]:  # noqa: N802
        """Return one sample per process, newer than ``last_seen_us``; NVML's "Not Found" when there is none."""
        self._stamp_us = max(getattr(self, "_stamp_us", 0), int(last_seen_us)) + 1
        samples = [_ProcessSample(pid, self._stamp_us, sm) for pid, sm in handle.utilisation().items()]
        if not samples:
            raise _NVMLError("Not Found")
        return samples

    def nvmlDeviceGetAttributes(self, handle: Any) -> _Attributes:  # noqa: N802
        """Return a MIG slice's attributes (NVML supports only MIG handles here)."""
        if not isinstance(handle, tuple) or handle[2] not in handle[1].mig_slices:
            raise _NVMLNotSupportedError("Not Supported")
        slices = handle[1].mig_slices[handle[2]]
        return _Attributes(
            gpuInstanceSliceCount=slices, computeInstanceSliceCount=slices, multiprocessorCount=14 * slices
        )

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: FakeGPU) -> int:  # noqa: N802
        """Return how many MIG slices the GPU has at most."""
        return handle.mig_max


class _AmdSmiError(Exception):
    pass


@dataclass
class FakeAMDGPU:
    """One fake AMD GPU for :class:`FakeAMDSMI`.

    Args:
        uuid: The GPU's UUID.
        energy_uj: Energy so far in microjoules, or a function returning it; the fake reports it as amdsmi does,
            a whole count of ``resolution_uj``; ``None`` = the counter cannot be read.
        power_w: Board power in watts, or a function; ``None`` = ``"N/A"``.
        resolution_uj: The counter's resolution (``counter_resolution``), microjoules per count.
        name: Market name.
        count_key: The accumulator's key: ``"energy_accumulator"`` (ROCm 6.1 and later) or ``"power"`` (earlier).
    """

    uuid: str
    energy_uj: float | Callable[[], float] | None = 0.0
    power_w: float | Callable[[], float] | None = 300.0
    resolution_uj: float = 15.3
    name: str = "AMD Instinct MI300X"
    count_key: str = "energy_accumulator"


class FakeAMDSMI:
    """An object with the ``amdsmi`` functions lightning-greenai calls, backed by :class:`FakeAMDGPU` records.

    Pass it wherever an ``amdsmi`` module is accepted (``discover_sensors(amdsmi=...)``, ``EnergyMonitor(amdsmi=...)``).
    """

    AmdSmiException = _AmdSmiError

    def __init__(self, gpus: Iterable[FakeAMDGPU] = ()) -> None:
        self.gpus = list(gpus)
        self.initialised = False

    def amdsmi_init(self, *args: Any) -> None:
        """Initialise."""
        self.initialised = True

    def amdsmi_shut_down(self) -> None:
        """Shut down."""
        self.initialised = False

    def amdsmi_get_processor_handles(self) -> list[FakeAMDGPU]:
        """Return every GPU."""
        return list(self.gpus)

    def amdsmi_get_gpu_device_uuid(self, handle: FakeAMDGPU) -> str:
        """Return the UUID."""
        return handle.uuid

    def amdsmi_get_gpu_asic_info(self, handle: FakeAMDGPU) -> dict[str, Any]:
        """Return the ASIC info (``market_name``)."""
        return {"market_name": handle.name}

    def amdsmi_get_energy_count(self, handle: FakeAMDGPU) -> dict[str, Any]:
        """Return the accumulator as a count of ``counter_resolution`` microjoules."""
        if handle.energy_uj is None:
            raise _AmdSmiError("AMDSMI_STATUS_NOT_SUPPORTED")
        energy = handle.energy_uj() if callable(handle.energy_uj) else handle.energy_uj
        count = int(energy // handle.resolution_uj)
        return {handle.count_key: count, "counter_resolution": handle.resolution_uj, "timestamp": 0}

    def amdsmi_get_power_info(self, handle: FakeAMDGPU) -> dict[str, Any]:
        """Return the power info; ``"N/A"`` where the board reports none."""
        power: Any = handle.power_w() if callable(handle.power_w) else handle.power_w
        value = "N/A" if power is None else power
        return {"current_socket_power": value, "average_socket_power": value, "power_limit": 750}


def make_rapl_tree(
    root: Path | str,
    packages: Sequence[int] = (0,),
    *,
    dram: bool = True,
    mmio: bool = False,
    psys: bool = False,
    energy_uj: int | Sequence[int] = 0,
    max_energy_range_uj: int = 262_143_328_850,
    max_power_w: float = 250.0,
) -> Path:
    """Build a fake powercap tree under ``root`` and return ``root``.

    Each package ``N`` gets ``intel-rapl:N`` (``package-N``) and, with ``dram``, ``intel-rapl:N:0`` (``dram``) and
    ``intel-rapl:N:1`` (``core``); ``mmio`` adds ``intel-rapl-mmio:N`` copies; ``psys`` adds a ``psys`` zone.
    Change a counter by writing its ``energy_uj`` file. ``energy_uj`` is the starting value of every counter, or
    one value per package; a single int is offset by 10^10 µJ per package so that separate sockets read
    differently (identical readings are how mirrored per-die counters are recognised). Every zone's power
    constraints (``constraint_0_power_limit_uw``, ``constraint_0_max_power_uw``) are ``max_power_w``.
    """
    root = Path(root)
    starts = [energy_uj + i * 10**10 for i in range(len(packages))] if isinstance(energy_uj, int) else list(energy_uj)

    def zone(dirname: str, name: str, start_uj: int) -> None:
        path = root / dirname
        path.mkdir(parents=True, exist_ok=True)
        (path / "name").write_text(f"{name}\n")
        (path / "energy_uj").write_text(f"{start_uj}\n")
        (path / "max_energy_range_uj").write_text(f"{max_energy_range_uj}\n")
        (path / "constraint_0_power_limit_uw").write_text(f"{round(max_power_w * 1e6)}\n")
        (path / "constraint_0_max_power_uw").write_text(f"{round(max_power_w * 1e6)}\n")

    for n, start in zip(packages, starts, strict=True):
        zone(f"intel-rapl:{n}", f"package-{n}", start)
        if dram:
            zone(f"intel-rapl:{n}:0", "dram", start // 7)
            zone(f"intel-rapl:{n}:1", "core", start // 3)
        if mmio:
            zone(f"intel-rapl-mmio:{n}", f"package-{n}", start)
    if psys:
        zone(f"intel-rapl:{max(packages, default=-1) + 1}", "psys", 5 * 10**10)
    return root


@dataclass
class FakeProcess:
    """One process of a fake ``/proc`` (:func:`make_proc_tree`): CPU times in clock ticks, resident memory in pages.

    ``threads`` maps each thread id to the pids of the children that thread started (default: the main thread, whose
    id is the pid, with none); ``start`` is the start time in ticks after boot, which tells a reused pid apart.
    """

    utime: int = 0
    stime: int = 0
    cutime: int = 0
    cstime: int = 0
    rss_pages: int = 0
    start: int = 1000
    state: str = "S"
    comm: str = "python"
    threads: dict[int, list[int]] = field(default_factory=dict)


def make_proc_tree(root: Path | str, processes: Mapping[int, FakeProcess]) -> Path:
    """Write ``processes`` as a fake ``/proc`` under ``root`` (each pid's ``stat`` and ``task/<tid>/children``).

    Processes already there and not in ``processes`` are removed (they exited); call it again to change the tree.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for folder in root.iterdir():
        if folder.name.isdigit() and int(folder.name) not in processes:
            shutil.rmtree(folder)
    for pid, p in processes.items():
        folder = root / str(pid)
        shutil.rmtree(folder / "task", ignore_errors=True)
        # after the command name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
        # cutime cstime priority nice num_threads itrealvalue starttime vsize rss (proc(5))
        fields = [p.state, 0, pid, pid, 0, -1, 0, 0, 0, 0, 0, p.utime, p.stime, p.cutime, p.cstime, 20, 0]
        fields += [max(len(p.threads), 1), 0, p.start, 4096 * p.rss_pages, p.rss_pages]
        folder.mkdir(exist_ok=True)
        (folder / "stat").write_text(f"{pid} ({p.comm}) {' '.join(map(str, fields))}\n")
        for tid, children in (p.threads or {pid: []}).items():
            (folder / "task" / str(tid)).mkdir(parents=True)
            (folder / "task" / str(tid) / "children").write_text("".join(f"{c} " for c in children))
    return root


def make_jetson_tree(root: Path | str, rails: dict[str, float], *, layout: str = "hwmon") -> Path:
    """Build a fake Jetson power-monitor tree (INA3221) under ``root`` with ``rails`` (label -> watts); return ``root``.

    ``layout="hwmon"`` is JetPack 5 and later (``inK_label``, ``inK_input`` mV, ``currK_input`` mA: 5 V rails);
    ``"iio"`` is JetPack 4 (``rail_name_K``, ``in_powerK_input`` mW). Change a rail's power with
    :func:`set_jetson_power`.
    """
    base = Path(root)
    if layout == "hwmon":
        folder = base / "ina3221" / "1-0040" / "hwmon" / "hwmon1"
    elif layout == "iio":
        folder = base / "ina3221x" / "1-0040" / "iio:device0"
    else:
        raise ValueError(f"layout must be 'hwmon' or 'iio', got {layout!r}")
    folder.mkdir(parents=True, exist_ok=True)
    for index, (label, watts) in enumerate(rails.items(), start=1 if layout == "hwmon" else 0):
        if layout == "hwmon":
            (folder / f"in{index}_label").write_text(f"{label}\n")
        else:
            (folder / f"rail_name_{index}").write_text(f"{label}\n")
        set_jetson_power(base, label, watts)
    return base


def set_jetson_power(root: Path | str, label: str, watts: float) -> None:
    """Set the power of the fake rail ``label`` made by :func:`make_jetson_tree`."""
    base = Path(root)
    for label_file in base.glob("ina3221/*/hwmon/hwmon*/in*_label"):
        if label_file.read_text().strip() == label:
            index = label_file.name[2 : -len("_label")]
            label_file.with_name(f"in{index}_input").write_text("5000\n")  # 5 V, in mV
            label_file.with_name(f"curr{index}_input").write_text(f"{round(watts / 5.0 * 1000)}\n")  # mA
            return
    for name_file in base.glob("ina3221x/*/iio:device*/rail_name_*"):
        if name_file.read_text().strip() == label:
            index = name_file.name[len("rail_name_") :]
            name_file.with_name(f"in_power{index}_input").write_text(f"{round(watts * 1000)}\n")  # mW
            return
    raise KeyError(f"no fake rail {label!r} under {base}")
