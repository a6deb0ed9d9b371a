"""CPU package and DRAM energy from Linux RAPL counters in the powercap sysfs tree.

Layout read (``root`` defaults to ``/sys/class/powercap``)::

    intel-rapl:0/        name=package-0, energy_uj, max_energy_range_uj   <- counted
    intel-rapl:0:0/      name=dram                                        <- counted as dram:0
    intel-rapl:0:1/      name=core / uncore                               <- inside the package: skipped
    intel-rapl:1/        name=psys (whole SoC)                            <- only when there is no package zone
    intel-rapl-mmio:0/   name=package-0 (MMIO copy of the MSR counter)    <- duplicate: skipped

Some multi-die AMD parts expose the same counter once per die; zones that read the same value are counted once.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lightning_greenai.sensors.base import SensorBase
from lightning_greenai.spend import Method

__all__ = ["RAPL_ROOT", "RAPLDiscovery", "RAPLSensor", "discover_rapl"]

RAPL_ROOT = Path("/sys/class/powercap")
_ZONE = re.compile(r"^intel-rapl(-mmio)?:(\d+)(?::(\d+))?$")
# Two package zones whose counters agree within this many microjoules are one mirrored counter.
_MIRROR_TOLERANCE_UJ = 1_000_000

Reader = Callable[[Path], str]


def _read_text(path: Path) -> str:
    return path.read_text()


class RAPLSensor(SensorBase):
    """One RAPL zone's ``energy_uj`` counter, with wrap-around handled through ``max_energy_range_uj``.

    Read the counter at least once per wrap period (``max_energy_range_uj`` / peak power, typically minutes):
    two wraps between reads cannot be told from one.

    Args:
        zone_dir: The zone's sysfs directory.
        name: Domain name, e.g. ``"cpu:package-0"``.
        reader: Reads a sysfs file; tests inject one that raises ``PermissionError``.
    """

    def __init__(self, zone_dir: Path, name: str, *, reader: Reader = _read_text) -> None:
        self.zone_dir = Path(zone_dir)
        super().__init__(name, f"rapl:{socket.gethostname()}:{self.zone_dir.resolve()}", Method.COUNTER)
        self._reader = reader
        self._max_uj = int(reader(self.zone_dir / "max_energy_range_uj"))
        self._last_uj = self._read_uj()
        self._total_uj = 0
        self.update_period_s = 0.001
        self.resolution_j = 1e-6  # energy_uj is in microjoules

    def _read_uj(self) -> int:
        return int(self._reader(self.zone_dir / "energy_uj"))

    def read_energy_j(self) -> float:
        """Return joules since construction, adding ``max_energy_range_uj`` when the counter wrapped."""
        now_uj = self._read_uj()
        delta = now_uj - self._last_uj
        if delta < 0:
            delta += self._max_uj + 1
        self._total_uj += delta
        self._last_uj = now_uj
        return self._total_uj / 1e6


@dataclass
class RAPLDiscovery:
    """What :func:`discover_rapl` found: the sensors, and notes saying what was skipped and why."""

    sensors: list[RAPLSensor] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    permission_denied: bool = False


@dataclass
class _Zone:
    path: Path
    mmio: bool
    package: int
    sub: int | None
    name: str


def _zones(root: Path, reader: Reader) -> list[_Zone]:
    zones = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        match = _ZONE.match(path.name)
        if match is None or not (path / "energy_uj").exists():
            continue
        try:
            name = reader(path / "name").strip()
        except OSError:
            continue
        sub = int(match.group(3)) if match.group(3) is not None else None
        zones.append(_Zone(path, match.group(1) is not None, int(match.group(2)), sub, name))
    return zones


def discover_rapl(root: Path | str = RAPL_ROOT, *, reader: Reader = _read_text) -> RAPLDiscovery:
    """Find the package and DRAM counters under ``root``, each physical counter once.

    Never raises: a missing tree or an unreadable counter is reported in the result's notes (and
    ``permission_denied``), so the caller can fall back to an estimate.
    """
    root = Path(root)
    found = RAPLDiscovery()
    zones = _zones(root, reader)
    if not zones:
        found.notes.append(f"RAPL: no powercap zones under {root}")
        return found
    msr_pkgs = [z for z in zones if not z.mmio and z.sub is None and z.name.startswith("package")]
    mmio_pkgs = [z for z in zones if z.mmio and z.sub is None and z.name.startswith("package")]
    msr_names = {z.name for z in msr_pkgs}
    packages = msr_pkgs + [z for z in mmio_pkgs if z.name not in msr_names]
    for z in mmio_pkgs:
        if z.name in msr_names:
            found.notes.append(f"RAPL: {z.path.name} ({z.name}) is the MMIO copy of an MSR zone; counted once")
    chosen: list[tuple[_Zone, str]] = []
    if packages:
        for z in packages:
            chosen.append((z, f"cpu:{z.name}"))
        found.notes.extend(
            f"RAPL: {z.path.name} (psys) overlaps the packages; skipped" for z in zones if z.name == "psys"
        )
    else:
        chosen.extend((z, "cpu:psys") for z in zones if z.name == "psys" and z.sub is None)
    package_ids = {z.package for z, _ in chosen if not z.mmio}
    for z in zones:
        if z.sub is not None and not z.mmio and z.name == "dram" and z.package in package_ids:
            chosen.append((z, f"dram:{z.package}"))
    seen_values: list[tuple[int, int, str]] = []  # (energy_uj, max_uj, name) of package counters opened so far
    for z, name in chosen:
        try:
            sensor = RAPLSensor(z.path, name, reader=reader)
        except PermissionError:
            found.permission_denied = True
            found.notes.append(f"RAPL: permission denied reading {z.path / 'energy_uj'}")
            continue
        except (OSError, ValueError) as err:
            found.notes.append(f"RAPL: cannot read {z.path.name}: {err}")
            continue
        if name.startswith("cpu:"):
            mirror = next(
                (
                    n
                    for v, m, n in seen_values
                    if m == sensor._max_uj and abs(v - sensor._last_uj) <= _MIRROR_TOLERANCE_UJ
                ),
                None,
            )
            if mirror is not None:
                found.notes.append(
                    f"RAPL: {z.path.name} ({z.name}) mirrors {mirror} (same counter per die); counted once"
                )
                continue
            seen_values.append((sensor._last_uj, sensor._max_uj, name))
        found.sensors.append(sensor)
    return found
