"""CPU package and DRAM energy from Linux RAPL counters in the powercap sysfs tree.

Layout read (``root`` defaults to ``/sys/class/powercap``)::

    intel-rapl:0/        name=package-0, energy_uj, max_energy_range_uj   <- counted
    intel-rapl:0:0/      name=dram                                        <- counted as dram:0
    intel-rapl:0:1/      name=core / uncore                               <- inside the package: skipped
    intel-rapl:1/        name=psys (whole SoC)                            <- only when there is no package zone
    intel-rapl-mmio:0/   name=package-0 (MMIO copy of the MSR counter)    <- duplicate: skipped

Some multi-die AMD parts expose the same counter once per die; zones that read the same value are counted once.
A zone's maximum power is the highest of its ``constraint_*_max_power_uw`` and ``constraint_*_power_limit_uw``
(twice the CPU's TDP where it has none): a reading that rises faster is a glitch, not a wrap.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lightning_greenai.sensors.base import SensorBase
from lightning_greenai.sensors.estimate import cpu_model, lookup_tdp_w
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
    """One RAPL zone's ``energy_uj`` counter: joules since construction, wrapping at ``max_energy_range_uj``.

    The reader of the counter (the :class:`~lightning_greenai.Meter`'s
    :class:`~lightning_greenai.sensors.base.CounterGuard`) adds ``wrap_j`` when it wraps, and tells a wrap from a
    glitch by ``max_power_w``. Read it at least once per wrap period (``max_energy_range_uj`` / peak power,
    typically minutes): two wraps between reads cannot be told from one.

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
        self._first_uj = self._read_uj()
        self.update_period_s = 0.001
        self.resolution_j = 1e-6  # energy_uj is in microjoules
        self.wrap_j = (self._max_uj + 1) / 1e6
        self.max_power_w = self._max_power_w()

    def _read_uj(self) -> int:
        return int(self._reader(self.zone_dir / "energy_uj"))

    def _max_power_w(self) -> float:
        """The zone's highest power constraint, or twice the CPU's TDP where it has none."""
        limits_uw = []
        for path in sorted(self.zone_dir.glob("constraint_*_max_power_uw")) + sorted(
            self.zone_dir.glob("constraint_*_power_limit_uw")
        ):
            try:
                limits_uw.append(int(self._reader(path)))
            except (OSError, ValueError):
                continue
        if limits_uw and max(limits_uw) > 0:
            return max(limits_uw) / 1e6
        return 2.0 * lookup_tdp_w(cpu_model(), os.cpu_count() or 1)[0]

    def read_energy_j(self) -> float:
        """Return joules since construction, modulo ``wrap_j`` (the counter's ``max_energy_range_uj`` + 1 µJ)."""
        return ((self._read_uj() - self._first_uj) % (self._max_uj + 1)) / 1e6


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
                    if m == sensor._max_uj and abs(v - sensor._first_uj) <= _MIRROR_TOLERANCE_UJ
                ),
                None,
            )
            if mirror is not None:
                found.notes.append(
                    f"RAPL: {z.path.name} ({z.name}) mirrors {mirror} (same counter per die); counted once"
                )
                continue
            seen_values.append((sensor._first_uj, sensor._max_uj, name))
        found.sensors.append(sensor)
    return found
