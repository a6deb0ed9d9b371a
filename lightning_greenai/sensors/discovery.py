"""Pick the best available sensors for this process, and say in one line which ones and why not the others."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from lightning_greenai.sensors.amd import discover_amdsmi, load_amdsmi
from lightning_greenai.sensors.apple import PowermetricsSensor, powermetrics_unavailable
from lightning_greenai.sensors.apportion import ApportionedSensor
from lightning_greenai.sensors.base import EnergySensor
from lightning_greenai.sensors.estimate import CPUEstimateSensor, DRAMEstimateSensor
from lightning_greenai.sensors.jetson import JETSON_ROOT, discover_jetson
from lightning_greenai.sensors.nvml import discover_nvml, load_nvml
from lightning_greenai.sensors.rapl import RAPL_ROOT, Reader, _read_text, discover_rapl
from lightning_greenai.sensors.shared import check_sharing

__all__ = ["Discovery", "discover_sensors"]

_AUTO = "auto"

RAPL_FIX = (
    "RAPL energy counters are readable only by root on this kernel (since the 2020 Platypus fix). To measure CPU "
    "energy instead of estimating it, grant read access, e.g. `sudo chmod a+r /sys/class/powercap/intel-rapl:*/"
    "energy_uj /sys/class/powercap/intel-rapl:*:*/energy_uj` (or a udev rule / group for a lasting fix)."
)


@dataclass
class Discovery:
    """The sensors chosen for this process, the domains that could not be metered, and why.

    Attributes:
        sensors: Open sensors, best source first per domain.
        unavailable: Domains that could not be metered at all (their energy is unknown, never 0).
        notes: One line per decision (what was chosen, what was skipped and why).
        warnings: Problems a user should act on (e.g. RAPL permission denied), each said once.
    """

    sensors: list[EnergySensor] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Return one line: which sensors were chosen, and what was left out."""
        chosen = ", ".join(f"{s.name} ({s.method.value})" for s in self.sensors) or "none"
        line = f"lightning-greenai sensors: {chosen}"
        if self.unavailable:
            line += f"; unavailable: {', '.join(self.unavailable)}"
        if self.notes:
            line += f" [{'; '.join(self.notes)}]"
        return line


def discover_sensors(
    *,
    gpus: Sequence[int] | str | None = _AUTO,
    host: bool = True,
    nvml: Any | None = _AUTO,
    amdsmi: Any | None = _AUTO,
    rapl_root: Path | str = RAPL_ROOT,
    rapl_reader: Reader = _read_text,
    jetson_root: Path | str = JETSON_ROOT,
    platform: str = sys.platform,
    powermetrics: Sequence[str] | None = None,
    cpu_tdp_w: float | None = None,
    gpu_tdp_w: float | None = None,
    visible: Sequence[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    apportion_host: bool = False,
    process: psutil.Process | None = None,
    sleep: Callable[[float], None] = time.sleep,
    gpu_sharing: str = "auto",
) -> Discovery:
    """Find the best energy sources for this process. Never raises for missing hardware.

    Args:
        gpus: GPU indices (in ``CUDA_VISIBLE_DEVICES`` order) this process uses; ``"auto"`` meters every visible
            GPU; ``None`` or ``[]`` meters none.
        host: Whether to meter the host's CPU and DRAM (a DDP run sets this on one rank per node only).
        nvml: An NVML module or fake; ``"auto"`` imports ``pynvml`` if it and the driver are there.
        amdsmi: An ``amdsmi`` module or fake, looked for when NVML meters no GPU; ``"auto"`` imports ``amdsmi`` if it
            and ROCm's library are there. Each AMD counter is checked against the board's power first (0.5 s).
        rapl_root: The powercap sysfs root.
        rapl_reader: Reads a sysfs file (tests inject failures here).
        jetson_root: Where a Jetson's INA3221 power monitors are (``/sys/bus/i2c/drivers``); where they are found,
            their rails are the whole energy (see :mod:`lightning_greenai.sensors.jetson`).
        platform: ``sys.platform``; on ``darwin`` the host is Apple Silicon's SoC, read with ``powermetrics``.
        powermetrics: The command streaming ``powermetrics``' samples (default: ``powermetrics`` itself, which needs
            root; tests replay recorded output).
        cpu_tdp_w: CPU package power to use for the estimate when RAPL cannot be read.
        gpu_tdp_w: GPU board power to use when NVML reports neither energy nor power nor a limit.
        visible: The process's visible GPUs as NVML indices or UUIDs, in CUDA order (default: parsed from
            ``CUDA_VISIBLE_DEVICES``); the callbacks pass the UUIDs torch reports, which match whatever the order.
        clock: Monotonic clock.
        sleep: How the AMD counters' check waits (tests pass one that advances a fake clock).
        apportion_host: Charge this process only its CPU-time share of the host's RAPL counters (parallel sweep
            jobs on one host); see :mod:`lightning_greenai.sensors.apportion`.
        process: The root of the process tree the run is (default: this process); the host estimates and the
            apportioning charge this process and its descendants. DDP with spawned workers passes their parent.
        gpu_sharing: How a GPU other processes use is attributed: ``"auto"`` (a MIG slice by its compute fraction;
            a GPU other processes run on at start by SM utilisation), ``"exclusive"`` (the whole GPU) or
            ``"shared"`` (always by SM utilisation); see :mod:`lightning_greenai.sensors.shared`.

    Raises:
        ValueError: ``gpu_sharing`` is not one of those.
    """
    check_sharing(gpu_sharing)
    found = Discovery()
    if _discover_jetson(found, jetson_root, host, clock=clock):
        return found
    host = _discover_gpus(
        found,
        gpus,
        host,
        nvml,
        amdsmi,
        gpu_tdp_w=gpu_tdp_w,
        visible=visible,
        clock=clock,
        sleep=sleep,
        sharing=gpu_sharing,
    )
    if host and platform == "darwin" and _discover_apple(found, powermetrics, clock=clock, process=process):
        return found
    if host:
        _discover_host(
            found, rapl_root, rapl_reader, cpu_tdp_w, apportion_host=apportion_host, clock=clock, process=process
        )
    return found


def _discover_jetson(found: Discovery, root: Path | str, host: bool, *, clock: Callable[[], float]) -> bool:
    """Add a Jetson's rails to ``found`` (rank 0 of a node meters them); returns whether this is a Jetson.

    Its rails are the module's energy, CPU and GPU included: nothing else is looked for.
    """
    jetson = discover_jetson(root, clock=clock)
    if not jetson.sensors:
        return False
    found.notes.extend(jetson.notes)
    if host:
        found.sensors.extend(jetson.sensors)
    else:
        for sensor in jetson.sensors:
            sensor.close()
    return True


def _discover_gpus(
    found: Discovery,
    gpus: Sequence[int] | str | None,
    host: bool,
    nvml: Any | None,
    amdsmi: Any | None,
    *,
    gpu_tdp_w: float | None,
    visible: Sequence[str] | None,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    sharing: str,
) -> bool:
    """Add the GPUs' sensors (NVIDIA, else AMD) to ``found``; returns whether the host is still to be metered."""
    if gpus is None or (isinstance(gpus, Sequence) and not isinstance(gpus, str) and len(gpus) == 0):
        return host
    module = load_nvml() if isinstance(nvml, str) and nvml == _AUTO else nvml
    devices = None if isinstance(gpus, str) else list(gpus)
    if module is None and devices is None:
        found.notes.append("NVML: library not found; no GPU metered")
    gpu = discover_nvml(module, devices, gpu_tdp_w=gpu_tdp_w, visible=visible, clock=clock, sharing=sharing)
    if not gpu.sensors:  # no NVIDIA GPU metered: an AMD one?
        smi = load_amdsmi() if isinstance(amdsmi, str) and amdsmi == _AUTO else amdsmi
        amd = discover_amdsmi(smi, devices, clock=clock, sleep=sleep)
        if amd.sensors:
            gpu = amd
    found.sensors.extend(gpu.sensors)
    found.unavailable.extend(gpu.unavailable)
    if gpu.unavailable:
        found.warnings.append(
            f"Energy of {', '.join(gpu.unavailable)} is unavailable (reported as unknown, not 0): "
            f"{'; '.join(gpu.notes)}. Pass gpu_tdp_w= to estimate it."
        )
    found.notes.extend(gpu.notes)
    if host and gpu.module_counters:
        # a Grace superchip's counter is the whole module's: RAPL or an estimate on top would count the CPU twice
        found.notes.append(f"host: not metered apart, {', '.join(gpu.module_counters)} include(s) the CPU")
        return False
    return host


def _discover_apple(
    found: Discovery, powermetrics: Sequence[str] | None, *, clock: Callable[[], float], process: psutil.Process | None
) -> bool:
    """Add Apple Silicon's SoC sensors to ``found``; returns whether they meter the host (else it is estimated)."""
    why = powermetrics_unavailable() if powermetrics is None else None
    if why is None:
        found.sensors.extend([PowermetricsSensor(powermetrics), DRAMEstimateSensor(clock=clock, process=process)])
        found.notes.append("Apple: the SoC (CPU, GPU, ANE) from powermetrics; unified memory: estimate")
        return True
    found.warnings.append(
        f"Apple Silicon: {why}. The CPU is estimated and the GPU (MPS) is not metered; run the job under sudo "
        "(or give powermetrics to it in sudoers) to measure the SoC."
    )
    return False


def _discover_host(
    found: Discovery,
    rapl_root: Path | str,
    rapl_reader: Reader,
    cpu_tdp_w: float | None,
    *,
    apportion_host: bool,
    clock: Callable[[], float],
    process: psutil.Process | None,
) -> None:
    """Add the host's CPU and DRAM sensors to ``found``: RAPL (apportioned in a parallel sweep), else estimates."""
    rapl = discover_rapl(rapl_root, reader=rapl_reader)
    found.notes.extend(rapl.notes)
    if rapl.permission_denied:
        found.warnings.append(RAPL_FIX)
    if not rapl.sensors:
        cpu = CPUEstimateSensor(cpu_tdp_w, process=process)
        dram = DRAMEstimateSensor(clock=clock, process=process)
        found.sensors.extend([cpu, dram])
        found.notes.append(f"CPU: estimate ({cpu.source}) x this process's CPU time; DRAM: estimate ({dram.source})")
        return
    if apportion_host:
        found.sensors.extend(ApportionedSensor(s, process, clock=clock) for s in rapl.sensors)
        found.notes.append("RAPL: apportioned to this process tree by its share of the host's CPU time")
    else:
        found.sensors.extend(rapl.sensors)
    if not any(s.name.startswith("dram:") for s in rapl.sensors):
        found.unavailable.append("dram")
        found.notes.append("RAPL: no dram zone; DRAM energy not metered")
