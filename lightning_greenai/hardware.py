"""Describe the machine a run or a sweep ran on, for reports that ask for the compute workers used.

No torch import: the sweeper records this in its ledger's header before any trial runs. GPUs come from NVML when
it can be read (names and memory of every GPU the process may see), otherwise they are reported as unknown rather
than absent.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
from typing import Any

import psutil

__all__ = ["describe_hardware", "hardware_line"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _gpus(nvml: Any = "auto") -> list[dict[str, Any]] | None:
    """Name and memory of each GPU NVML lists (``None``: NVML could not be read; ``[]``: it lists none)."""
    try:
        if nvml == "auto":
            import pynvml

            nvml = pynvml
        nvml.nvmlInit()
    except Exception:  # no driver, no library: unknown, not "no GPU"
        return None
    try:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            if visible is not None and visible.strip() and str(index) not in visible.split(","):
                continue
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle).total
            gpus.append({"name": name.decode() if isinstance(name, bytes) else str(name), "memory_gb": memory / 1e9})
        return gpus
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def describe_hardware(nvml: Any = "auto") -> dict[str, Any]:
    """Host, CPU model and logical cores, memory, GPUs (``None`` when NVML cannot say), OS and Python."""
    return {
        "host": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_count": psutil.cpu_count(logical=True),
        "memory_gb": psutil.virtual_memory().total / 1e9,
        "gpus": _gpus(nvml),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def hardware_line(hardware: dict[str, Any] | None) -> str:
    """``"2 x NVIDIA H100 80GB (80 GB); Intel Xeon ... (16 logical cores), 128 GB RAM"`` or ``"not measured"``."""
    if not hardware or not isinstance(hardware, dict):
        return "not measured"
    try:
        return _hardware_line(hardware)
    except (TypeError, ValueError, KeyError, AttributeError):
        return "not measured (the record is damaged)"


def _hardware_line(hardware: dict[str, Any]) -> str:
    parts = []
    gpus = hardware.get("gpus")
    if gpus:
        names: dict[str, int] = {}
        for gpu in gpus:
            label = f"{gpu['name']} ({gpu['memory_gb']:.0f} GB)"
            names[label] = names.get(label, 0) + 1
        parts.append(", ".join(f"{count} x {label}" for label, count in names.items()))
    elif gpus is None:
        parts.append("no NVIDIA GPU seen (NVML could not be read)")
    cpu = f"{hardware.get('cpu_model', 'unknown CPU')} ({hardware.get('cpu_count', '?')} logical cores)"
    memory = hardware.get("memory_gb")
    parts.append(cpu + ("" if memory is None else f", {memory:.0f} GB RAM"))
    return "; ".join(parts)
