"""What a run spent: energy by device, FLOPs, time, and how each figure was obtained."""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lightning_greenai.units import S_PER_HOUR, j_to_kwh

__all__ = ["AMOUNT_FIELDS", "JOULE_MAP_FIELDS", "SPEND_FIELDS", "Bounds", "Method", "Spend"]


class Method(str, enum.Enum):
    """How a device's energy was obtained, from most to least trustworthy."""

    COUNTER = "counter"  # a hardware energy counter (NVML total energy, RAPL energy_uj)
    SAMPLED = "sampled"  # measured power polled on a thread and integrated over time
    ESTIMATE = "estimate"  # a model: power limit or TDP times utilisation, DRAM by GB
    UNAVAILABLE = "unavailable"  # nothing could be read; the energy is unknown, not zero

    @property
    def rank(self) -> int:
        """Trust order: 0 for a counter, 3 for unavailable."""
        return list(Method).index(self)

    @property
    def is_estimate(self) -> bool:
        """Whether a figure obtained this way must be flagged as an estimate."""
        return self is Method.ESTIMATE

    @staticmethod
    def worst(*methods: Method) -> Method:
        """Return the least trustworthy of ``methods``."""
        return max(methods, key=lambda m: m.rank)


def _add_maps(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    out = dict(a)
    for key, value in b.items():
        out[key] = out.get(key, 0.0) + value
    return out


Bounds = tuple[float, float]
_AMOUNT = {"adds": "amount"}  # one number >= 0: added, subtracted (floored at 0), scaled
_JOULE_MAP = {"adds": "joules by key"}  # joules by domain, stage or hour: added and scaled key by key


def _add_bounds(a: Spend, b: Spend) -> dict[str, Bounds]:
    """Per domain, the sum of two spends' bounds (a domain without bounds counts as exactly its energy)."""
    if not a.energy_bounds_j and not b.energy_bounds_j:
        return {}
    out: dict[str, Bounds] = {}
    for name in {*a.energy_j, *b.energy_j}:
        (al, ah), (bl, bh) = a.bounds_of(name), b.bounds_of(name)
        out[name] = (al + bl, ah + bh)
    return out


@dataclass(frozen=True)
class Spend:
    """The compute a run spent, in SI units.

    Args:
        energy_j: Energy by domain (``"gpu:0"``, ``"cpu:package-0"``, ``"dram:0"``, ...), in joules. A domain whose
            energy could not be read is absent here and listed as ``unavailable`` in ``methods``.
        methods: How each domain's energy was obtained.
        flops: Floating-point operations performed (2 per multiply-add).
        duration_s: Wall-clock time metered, in seconds.
        gpu_s: GPU-seconds: metered GPUs times wall-clock time.
        is_estimate: Whether any figure in this spend comes from an estimate.
        stage_energy_j: Energy by stage (``"train"``, ``"validate"``, ``"test"``, ``"predict"``), in joules.
        energy_bounds_j: By domain, the interval ``(low, high)`` in joules that the true energy lies in, from how it
            was obtained (see :mod:`lightning_greenai.sensors.uncertainty`); a domain absent here is exact. Bounds add
            linearly (a worst case: a sensor's calibration error is the same in every window).
        host_share_s: The share of its host(s) the run used, in server-seconds: its processes' CPU-seconds over the
            host's logical CPUs (the basis of the host's embodied carbon: 1 core of 64 for an hour is 56 s).
        hourly_energy_j: Energy by the UTC hour it was spent in (``"2026-11-27T13"``), in joules: what an hourly
            carbon-intensity timeline prices (see :mod:`lightning_greenai.grid.timeline`). Its shape is what counts:
            a grid spreads :attr:`total_energy_j` over the hours in these proportions.

    Example::

        >>> a = Spend(energy_j={"gpu:0": 3.6e6}, methods={"gpu:0": Method.COUNTER}, duration_s=10.0)
        >>> (a + a).energy_kwh
        2.0
    """

    # ``adds``: how a field adds up (see AMOUNT_FIELDS and JOULE_MAP_FIELDS); the others have rules of their own
    energy_j: Mapping[str, float] = field(default_factory=dict, metadata=_JOULE_MAP)
    methods: Mapping[str, Method] = field(default_factory=dict)
    flops: float = field(default=0.0, metadata=_AMOUNT)
    duration_s: float = field(default=0.0, metadata=_AMOUNT)
    gpu_s: float = field(default=0.0, metadata=_AMOUNT)
    is_estimate: bool = False
    stage_energy_j: Mapping[str, float] = field(default_factory=dict, metadata=_JOULE_MAP)
    energy_bounds_j: Mapping[str, Bounds] = field(default_factory=dict)
    hourly_energy_j: Mapping[str, float] = field(default_factory=dict, metadata=_JOULE_MAP)
    host_share_s: float = field(default=0.0, metadata=_AMOUNT)

    def bounds_of(self, name: str) -> Bounds:
        """The interval of one domain's energy, in joules (its energy twice when it carries none)."""
        energy_j = self.energy_j.get(name, 0.0)
        low, high = self.energy_bounds_j.get(name, (energy_j, energy_j))
        return min(low, energy_j), max(high, energy_j)

    @property
    def total_energy_bounds_j(self) -> Bounds | None:
        """The interval of :attr:`total_energy_j`, in joules; ``None`` when no domain could be read."""
        if not self.energy_j:
            return None
        bounds = [self.bounds_of(name) for name in self.energy_j]
        return float(sum(b[0] for b in bounds)), float(sum(b[1] for b in bounds))

    def bound(self, side: str) -> Spend:
        """This spend with every domain's energy at its ``"low"`` or ``"high"`` bound, to price the interval."""
        if side not in ("low", "high"):
            raise ValueError(f"side must be 'low' or 'high', got {side!r}")
        index = 0 if side == "low" else 1
        energy = {name: self.bounds_of(name)[index] for name in self.energy_j}
        total, point = sum(energy.values()), sum(self.energy_j.values())
        factor = total / point if point > 0 else 1.0
        return dataclasses.replace(
            self,
            energy_j=energy,
            energy_bounds_j={},
            stage_energy_j={k: v * factor for k, v in self.stage_energy_j.items()},
        )

    @property
    def total_energy_j(self) -> float | None:
        """Energy of every readable domain, in joules; ``None`` when no domain could be read at all."""
        if not self.energy_j:
            return None
        return float(sum(self.energy_j.values()))

    @property
    def energy_kwh(self) -> float | None:
        """Total energy in kWh, or ``None`` when unavailable."""
        total = self.total_energy_j
        return None if total is None else j_to_kwh(total)

    @property
    def gpu_hours(self) -> float:
        """GPU-hours."""
        return self.gpu_s / S_PER_HOUR

    @property
    def wall_hours(self) -> float:
        """Wall-clock hours."""
        return self.duration_s / S_PER_HOUR

    @property
    def power_w(self) -> float | None:
        """Mean power over the metered time, in watts."""
        total = self.total_energy_j
        if total is None or self.duration_s <= 0:
            return None
        return total / self.duration_s

    def __add__(self, other: Spend) -> Spend:
        if not isinstance(other, Spend):
            return NotImplemented
        methods = dict(self.methods)
        for key, method in other.methods.items():
            methods[key] = Method.worst(methods[key], method) if key in methods else method
        sums: dict[str, Any] = {f: getattr(self, f) + getattr(other, f) for f in AMOUNT_FIELDS}
        sums |= {f: _add_maps(getattr(self, f), getattr(other, f)) for f in JOULE_MAP_FIELDS}
        return Spend(
            **sums,
            methods=methods,
            is_estimate=self.is_estimate or other.is_estimate,
            energy_bounds_j=_add_bounds(self, other),
        )

    def since(self, before: Spend) -> Spend:
        """What this running total added to an earlier one, ``before`` (a stage's own spend, another writer's growth).

        Amounts never go below zero; the interval keeps only the margins this total added beyond ``before``'s.
        """
        energy = {k: max(v - before.energy_j.get(k, 0.0), 0.0) for k, v in self.energy_j.items()}
        stages = {k: max(v - before.stage_energy_j.get(k, 0.0), 0.0) for k, v in self.stage_energy_j.items()}
        bounds = {}
        for k, v in energy.items():
            (low_t, high_t), (low_b, high_b) = self.bounds_of(k), before.bounds_of(k)
            below = max((self.energy_j[k] - low_t) - (before.energy_j.get(k, 0.0) - low_b), 0.0)
            above = max((high_t - self.energy_j[k]) - (high_b - before.energy_j.get(k, 0.0)), 0.0)
            bounds[k] = (max(v - below, 0.0), v + above)
        hourly = {k: max(v - before.hourly_energy_j.get(k, 0.0), 0.0) for k, v in self.hourly_energy_j.items()}
        return dataclasses.replace(
            self,
            **{f: max(getattr(self, f) - getattr(before, f), 0.0) for f in AMOUNT_FIELDS},
            energy_j=energy,
            energy_bounds_j=bounds,
            hourly_energy_j={k: v for k, v in hourly.items() if v > 0},
            stage_energy_j={k: v for k, v in stages.items() if v > 0},
        )

    def scaled(self, factor: float) -> Spend:
        """Return this spend with every amount multiplied by ``factor`` (used for projections).

        Raises:
            ValueError: ``factor`` is not a finite number >= 0.
        """
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not math.isfinite(factor) or factor < 0:
            raise ValueError(f"a spend is scaled by a finite number >= 0, got {factor!r}")
        parts: dict[str, Any] = {f: getattr(self, f) * factor for f in AMOUNT_FIELDS}
        parts |= {f: {k: v * factor for k, v in getattr(self, f).items()} for f in JOULE_MAP_FIELDS}
        return Spend(
            **parts,
            methods=dict(self.methods),
            is_estimate=self.is_estimate,
            energy_bounds_j={k: (lo * factor, hi * factor) for k, (lo, hi) in self.energy_bounds_j.items()},
        )

    @property
    def estimated_domains(self) -> list[str]:
        """Domains whose energy is an estimate."""
        return [k for k, m in self.methods.items() if m.is_estimate]

    @property
    def unavailable_domains(self) -> list[str]:
        """Domains whose energy could not be obtained at all."""
        return [k for k, m in self.methods.items() if m is Method.UNAVAILABLE]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (see :meth:`from_dict`)."""
        special = {
            "methods": {k: m.value for k, m in self.methods.items()},
            "is_estimate": self.is_estimate,
            "energy_bounds_j": {k: [lo, hi] for k, (lo, hi) in self.energy_bounds_j.items()},
        }
        return {f: special[f] if f in special else _plain(getattr(self, f)) for f in SPEND_FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Spend:
        """Rebuild a spend written by :meth:`to_dict`.

        Raises:
            ValueError: ``data`` has the wrong shape, or an amount that is not a finite number >= 0 (a damaged file).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a spend is a mapping, got {type(data).__name__}")

        def amount(key: str, value: Any) -> float:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{key} must be a finite number >= 0, got {value!r}")
            return float(value)

        def amounts(key: str) -> dict[str, float]:
            values = data.get(key, {})
            if not isinstance(values, Mapping):
                raise ValueError(f"{key} must be a mapping, got {type(values).__name__}")
            return {str(k): amount(f"{key}[{k!r}]", v) for k, v in values.items()}

        bounds = data.get("energy_bounds_j", {})
        if not isinstance(bounds, Mapping):
            raise ValueError(f"energy_bounds_j must be a mapping, got {type(bounds).__name__}")
        for key, pair in bounds.items():
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ValueError(f"energy_bounds_j[{key!r}] must be a [low, high] pair, got {pair!r}")
        methods = data.get("methods", {})
        if not isinstance(methods, Mapping):
            raise ValueError(f"methods must be a mapping, got {type(methods).__name__}")
        energy = amounts("energy_j")
        intervals = {
            str(k): (amount(f"energy_bounds_j[{k!r}]", lo), amount(f"energy_bounds_j[{k!r}]", hi))
            for k, (lo, hi) in bounds.items()
        }
        for key, (lo, hi) in intervals.items():
            point = energy.get(key, 0.0)
            slack = 1e-9 * max(abs(point), 1.0)  # rounding in a JSON round trip
            if not lo - slack <= point <= hi + slack:
                raise ValueError(f"energy_bounds_j[{key!r}] = [{lo}, {hi}] does not contain its energy {point}")
        special: dict[str, Callable[[], Any]] = {
            "energy_j": lambda: energy,
            "methods": lambda: {str(k): Method(v) for k, v in methods.items()},
            "is_estimate": lambda: bool(data.get("is_estimate", False)),
            "energy_bounds_j": lambda: intervals,
        }
        # read in field order, so that of two damaged fields the first is the one named
        values: dict[str, Any] = {
            f: special[f]() if f in special else amount(f, data.get(f, 0.0)) if f in AMOUNT_FIELDS else amounts(f)
            for f in SPEND_FIELDS
        }
        return cls(**values)


def _plain(value: Any) -> Any:
    """A field's JSON form: a mapping as a dict, a number as it is."""
    return dict(value) if isinstance(value, Mapping) else value


#: Every field of :class:`Spend`, in order (the keys of :meth:`Spend.to_dict`).
SPEND_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Spend))
#: The fields that are one amount (FLOPs, seconds): added, subtracted (never below zero) and scaled as numbers.
AMOUNT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Spend) if f.metadata == _AMOUNT)
#: The fields that are joules by key (domain, stage, UTC hour): added and scaled key by key.
JOULE_MAP_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Spend) if f.metadata == _JOULE_MAP)
