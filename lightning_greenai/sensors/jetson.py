"""NVIDIA Jetson energy from the board's INA3221 power monitors in sysfs, polled and integrated.

A Jetson has no GPU energy counter (NVML reports none there) and no RAPL: its power monitors measure rails. JetPack 5
and later expose them through hwmon (``ina3221/<bus>/hwmon/hwmonN/inK_label``, ``inK_input`` in mV, ``currK_input``
in mA); JetPack 4 through iio (``ina3221x/<bus>/iio:deviceN/rail_name_K``, ``in_powerK_input`` in mW). The board's
input rail (``VDD_IN``; ``POM_5V_IN`` on the Nano) is the whole module — CPU, GPU, memory and SoC — and is metered
alone when present; otherwise every connected rail is its own domain. Either way nothing is metered on top of them.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lightning_greenai.sensors.base import GPUDiscovery
from lightning_greenai.sensors.sampling import SampledPowerSensor

__all__ = ["JETSON_ROOT", "INPUT_RAILS", "Rail", "discover_jetson", "find_rails"]

JETSON_ROOT = Path("/sys/bus/i2c/drivers")
#: Rails that carry the whole module's input power.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")


@dataclass(frozen=True)
class Rail:
    """One power rail: its label, where it is read, and how to read its power in watts."""

    label: str
    path: str
    read_w: Callable[[], float]


def _number(path: Path) -> float:
    return float(path.read_text().strip())


def _volts_times_amps(millivolts: Path, milliamps: Path) -> Callable[[], float]:
    return lambda: _number(millivolts) * _number(milliamps) / 1e6


def _milliwatts(path: Path) -> Callable[[], float]:
    return lambda: _number(path) / 1e3


def _hwmon_rails(root: Path) -> list[Rail]:
    rails = []
    for label_file in sorted(root.glob("ina3221*/*/hwmon/hwmon*/in*_label")):
        index = label_file.name[2 : -len("_label")]
        volts, amps = label_file.with_name(f"in{index}_input"), label_file.with_name(f"curr{index}_input")
        label = label_file.read_text().strip()
        if label and label != "NC" and volts.exists() and amps.exists():
            rails.append(Rail(label, str(label_file.parent / f"in{index}"), _volts_times_amps(volts, amps)))
    return rails


def _iio_rails(root: Path) -> list[Rail]:
    rails = []
    for name_file in sorted(root.glob("ina3221x/*/iio:device*/rail_name_*")):
        index = name_file.name[len("rail_name_") :]
        power = name_file.with_name(f"in_power{index}_input")
        label = name_file.read_text().strip()
        if label and label != "NC" and power.exists():
            rails.append(Rail(label, str(power), _milliwatts(power)))
    return rails


def find_rails(root: Path | str = JETSON_ROOT) -> list[Rail]:
    """Every connected, readable power rail under ``root`` (hwmon first, then the older iio layout)."""
    base = Path(root)
    readable = []
    for rail in _hwmon_rails(base) or _iio_rails(base):
        try:
            rail.read_w()
        except (OSError, ValueError):
            continue
        readable.append(rail)
    return readable


def discover_jetson(
    root: Path | str = JETSON_ROOT, *, clock: Callable[[], float] = time.monotonic, poll_interval_s: float = 0.1
) -> GPUDiscovery:
    """Sensors for a Jetson's rails: the input rail alone where there is one, else every rail; none elsewhere."""
    found = GPUDiscovery()
    rails = find_rails(root)
    if not rails:
        return found
    whole = [r for r in rails if r.label in INPUT_RAILS][:1]
    chosen = whole or rails
    host = socket.gethostname()
    for rail in chosen:
        name = f"jetson:{rail.label}"
        found.sensors.append(
            SampledPowerSensor(name, f"{host}:{rail.path}", rail.read_w, clock=clock, interval_s=poll_interval_s)
        )
        found.module_counters.append(name)
    labels = ", ".join(r.label for r in rails)
    what = f"the input rail {whole[0].label} (the whole module)" if whole else f"rails {labels}"
    found.notes.append(f"Jetson: {what} polled; nothing metered on top (no NVML, RAPL or CPU estimate)")
    return found
