"""Turn energy into CO2e and money: carbon intensity, PUE, electricity price and instance price."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_greenai.errors import GridConfigError
from lightning_greenai.grid import footprint, tables
from lightning_greenai.grid.timeline import read_intensity_csv
from lightning_greenai.spend import Spend
from lightning_greenai.units import S_PER_HOUR, check_currency, j_to_kwh

__all__ = ["GRID_OPTIONS", "Grid"]


def _check_number(name: str, value: float | None, *, minimum: float, allowed: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value < minimum:
        raise GridConfigError(f"`{name}` must be {allowed}, got {value!r}.")
    if math.isinf(value):
        raise GridConfigError(f"`{name}` must be finite, got {value!r}.")


# what a grid config may set: Grid.from_location's arguments, spelled once (hydra.sweeper.grid, EnergyMonitor)
GRID_OPTIONS = (
    "country",
    "region",
    "pue",
    "intensity_g_per_kwh",
    "price_per_kwh",
    "currency",
    "instance_price_per_h",
    "embodied_g_per_gpu_hour",
    "embodied_g_per_host_hour",
    "embodied_host_basis",
    "wue_l_per_kwh",
    "water_l_per_kwh",
    "intensity_csv",
)


@dataclass(frozen=True)
class Grid:
    """Where the electricity came from and what it cost: the constants that turn joules into CO2e and money.

    Build one with :meth:`from_location`, which looks the country or cloud region up in the packaged tables.

    Args:
        intensity_g_per_kwh: Carbon intensity of the electricity, in gCO2e per kWh.
        pue: Power usage effectiveness of the data centre (facility energy / IT energy), >= 1.
        price_per_kwh: Electricity price in ``currency`` per kWh; ``None`` means money is not priced.
        currency: ISO 4217 code of ``price_per_kwh`` and ``instance_price_per_h``.
        instance_price_per_h: An hourly machine price (e.g. a cloud instance) added to the electricity cost.
        country: ISO alpha-2 code of the country, when known.
        region: Cloud region, when given.
        intensity_source: Where the intensity comes from (data file and year, or "user").
        price_source: Where the price comes from.
        embodied_g_per_gpu_hour: A GPU's embodied carbon per hour of use, gCO2e (see :mod:`.footprint`).
        embodied_g_per_host_hour: A server's (without GPUs) embodied carbon per hour of use, gCO2e.
        embodied_host_basis: How the server's hours are counted: ``"cpu"`` (default) by the run's CPU share of it
            (:attr:`Spend.host_share_s <lightning_greenai.Spend.host_share_s>`: a job on 1 core of a 64-core server is
            charged 1/64 of its hours), ``"server"`` by the whole server for the metered time (a reserved machine).
        wue_l_per_kwh: On-site water per kWh of IT energy (the facility's WUE), litres.
        water_l_per_kwh: Off-site water per kWh drawn from the grid (its water intensity), litres.
        footprint_source: Where the embodied and water figures come from.
        timeline: Carbon intensity by UTC hour (``"2026-11-27T13"`` -> gCO2e/kWh): a spend's energy in each hour is
            priced at that hour's figure, and at ``intensity_g_per_kwh`` in an hour the timeline lacks (see
            :mod:`lightning_greenai.grid.timeline`).
        timeline_source: Where the timeline comes from.
    """

    intensity_g_per_kwh: float
    pue: float = 1.0
    price_per_kwh: float | None = None
    currency: str | None = None
    instance_price_per_h: float | None = None
    country: str | None = None
    region: str | None = None
    intensity_source: str = "user"
    price_source: str = "user"
    embodied_g_per_gpu_hour: float = footprint.GPU_EMBODIED_G_PER_HOUR
    embodied_g_per_host_hour: float = footprint.HOST_EMBODIED_G_PER_HOUR
    wue_l_per_kwh: float = footprint.WUE_L_PER_KWH
    water_l_per_kwh: float = footprint.GRID_WATER_L_PER_KWH
    footprint_source: str = f"{footprint.EMBODIED_SOURCE}; {footprint.WATER_SOURCE}"
    embodied_host_basis: str = "cpu"
    timeline: Mapping[str, float] = field(default_factory=dict, hash=False)
    timeline_source: str = ""

    def __post_init__(self) -> None:
        if self.embodied_host_basis not in ("cpu", "server"):
            raise GridConfigError(
                f"`embodied_host_basis` must be 'cpu' (the run's CPU share of the server) or 'server' (the whole "
                f"server for the run's time), got {self.embodied_host_basis!r}."
            )
        if not isinstance(self.timeline, Mapping):
            raise GridConfigError(f"`timeline` must map UTC hours to gCO2e/kWh, got {type(self.timeline).__name__}.")
        for hour, value in self.timeline.items():
            _check_number(f"timeline[{hour!r}]", value, minimum=0, allowed="a number >= 0 (gCO2e/kWh)")
        _check_number("intensity_g_per_kwh", self.intensity_g_per_kwh, minimum=0, allowed="a number >= 0")
        if self.pue is None:
            raise GridConfigError("`pue` must be a number >= 1.0 (1.0 means no facility overhead), got None.")
        _check_number("pue", self.pue, minimum=1.0, allowed="a number >= 1.0 (1.0 means no facility overhead)")
        _check_number("price_per_kwh", self.price_per_kwh, minimum=0, allowed="a number >= 0 or None")
        _check_number("instance_price_per_h", self.instance_price_per_h, minimum=0, allowed="a number >= 0 or None")
        for name in ("embodied_g_per_gpu_hour", "embodied_g_per_host_hour", "wue_l_per_kwh", "water_l_per_kwh"):
            _check_number(name, getattr(self, name), minimum=0, allowed="a number >= 0")
        priced = self.price_per_kwh is not None or self.instance_price_per_h is not None
        if priced and self.currency is None:
            given = "price_per_kwh" if self.price_per_kwh is not None else "instance_price_per_h"
            raise GridConfigError(
                f"`{given}` needs the currency it is in: pass `currency=`, an ISO 4217 code such as 'USD', 'EUR' or "
                "'GBP'."
            )
        if priced or self.currency is not None:
            check_currency(self.currency, error=GridConfigError)

    @classmethod
    def from_location(
        cls,
        country: str | None = None,
        region: str | None = None,
        *,
        pue: float = 1.0,
        intensity_g_per_kwh: float | None = None,
        price_per_kwh: float | None = None,
        currency: str | None = None,
        instance_price_per_h: float | None = None,
        embodied_g_per_gpu_hour: float | None = None,
        embodied_g_per_host_hour: float | None = None,
        wue_l_per_kwh: float | None = None,
        water_l_per_kwh: float | None = None,
        intensity_csv: str | os.PathLike[str] | None = None,
        embodied_host_basis: str | None = None,
    ) -> Grid:
        """Build a grid from a country (ISO code or name) or a cloud region, with optional overrides.

        With neither, the generation-weighted mean intensity of the packaged table is used, and no price.
        ``intensity_csv`` adds an hourly timeline (:func:`~lightning_greenai.grid.timeline.read_intensity_csv`); the
        country's (or the given) intensity prices the hours it lacks.

        Raises:
            GridConfigError: an unknown country or region (with close matches), or an out-of-range number.
        """
        record = _location_record(country, region)
        intensity_source = "user"
        if intensity_g_per_kwh is None:
            if record is not None:
                intensity_g_per_kwh = record.intensity_g_per_kwh
                intensity_source = f"{record.name}, 2021 yearly mean (Our World in Data / Ember)"
            else:
                intensity_g_per_kwh = tables.table_mean()
                intensity_source = "generation-weighted mean of the packaged countries, 2021 (no country given)"
        price_source = "user"
        if price_per_kwh is None and record is not None:
            known = tables.price(record.iso2)
            if known is not None and (currency is None or currency == known.currency):
                price_per_kwh, currency = known.price_per_kwh, known.currency
                price_source = f"{record.name}, indicative 2023 non-household price"
        if price_per_kwh is None and instance_price_per_h is None:
            price_source = "none"
        given = {
            "embodied_g_per_gpu_hour": embodied_g_per_gpu_hour,
            "embodied_g_per_host_hour": embodied_g_per_host_hour,
            "wue_l_per_kwh": wue_l_per_kwh,
            "water_l_per_kwh": water_l_per_kwh,
        }
        overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        source = f"{footprint.EMBODIED_SOURCE}; {footprint.WATER_SOURCE}"
        if overrides:
            source = f"user ({', '.join(overrides)}); otherwise {source}"
        timeline: dict[str, float] = {}
        timeline_source = ""
        if intensity_csv is not None:
            timeline = read_intensity_csv(intensity_csv)
            timeline_source = f"{Path(intensity_csv).name} (user's hourly CSV)"
        if embodied_host_basis is not None:
            overrides["embodied_host_basis"] = embodied_host_basis
        return cls(
            **overrides,
            timeline=timeline,
            timeline_source=timeline_source,
            footprint_source=source,
            intensity_g_per_kwh=float(intensity_g_per_kwh),
            pue=pue,
            price_per_kwh=price_per_kwh,
            currency=currency,
            instance_price_per_h=instance_price_per_h,
            country=record.iso2 if record is not None else None,
            region=region,
            intensity_source=intensity_source,
            price_source=price_source,
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, *, cwd: str | os.PathLike[str] | None = None) -> Grid:
        """Build a grid from a config mapping (``hydra.sweeper.grid``): :meth:`from_location`'s arguments, nulls unset.

        The one reading of a grid config, shared by the sweeper and its trials' monitors so that both price alike. A
        relative ``intensity_csv`` is read from ``cwd`` (the folder the sweep was launched from), not from wherever
        the reader runs.

        Raises:
            GridConfigError: an unknown key (naming the allowed ones), or anything :meth:`from_location` refuses.
        """
        given = {str(k): v for k, v in dict(config or {}).items() if v is not None}
        unknown = sorted(set(given) - set(GRID_OPTIONS))
        if unknown:
            raise GridConfigError(f"Unknown grid option(s) {unknown}. Allowed: {', '.join(GRID_OPTIONS)}.")
        csv = given.get("intensity_csv")
        if csv is not None and cwd is not None and not Path(str(csv)).is_absolute():
            given["intensity_csv"] = str(Path(cwd) / str(csv))
        return cls.from_location(**given)

    @classmethod
    def from_dict(cls, data: Any) -> Grid:
        """Rebuild a grid that :meth:`to_dict` recorded (a ledger header, a price tag); unknown keys are ignored.

        Raises:
            GridConfigError: the record is not a mapping, or a figure in it is damaged.
        """
        if not isinstance(data, Mapping):
            raise GridConfigError(f"a recorded grid must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, ValueError, AttributeError) as err:
            raise GridConfigError(str(err)) from None

    def differences(self, other: Grid) -> list[str]:
        """What prices differently in ``other``, one readable line per figure (empty when both price alike)."""
        out = []
        for name in _PRICING_FIELDS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if name == "timeline":
                changed = sorted(h for h in set(mine) | set(theirs) if mine.get(h) != theirs.get(h))
                if changed:
                    out.append(f"timeline: {len(changed)} hour(s) differ, e.g. {changed[0]}")
            elif mine != theirs:
                out.append(f"{name}: {_shown(mine)} vs {_shown(theirs)}")
        return out

    def describe(self) -> str:
        """The grid in one line: where, intensity, PUE and price, as a user would set them."""
        where = self.region or self.country or "no country (the packaged table's mean)"
        price = (
            "no price"
            if not self.prices_money
            else ", ".join(
                f"{value:g} {self.currency}{unit}"
                for value, unit in ((self.price_per_kwh, "/kWh"), (self.instance_price_per_h, "/h"))
                if value is not None
            )
        )
        hourly = f", hourly timeline of {len(self.timeline)} h" if self.timeline else ""
        return f"{where}, {self.intensity_g_per_kwh:.0f} gCO2e/kWh{hourly}, PUE {self.pue:g}, {price}"

    @property
    def prices_money(self) -> bool:
        """Whether this grid can turn a spend into money."""
        return self.price_per_kwh is not None or self.instance_price_per_h is not None

    def facility_energy_kwh(self, spend: Spend) -> float | None:
        """Energy drawn from the grid, PUE included, in kWh (``None`` when the energy is unavailable)."""
        energy_j = spend.total_energy_j
        return None if energy_j is None else j_to_kwh(energy_j) * self.pue

    def co2e_g(self, spend: Spend) -> float | None:
        """Emissions of ``spend`` in gCO2e (``None`` when the energy is unavailable)."""
        kwh = self.facility_energy_kwh(spend)
        return None if kwh is None else kwh * self.intensity_for(spend)

    def intensity_for(self, spend: Spend) -> float:
        """The intensity ``spend`` is priced at, gCO2e/kWh: with a timeline, its hours' figures weighted by energy."""
        hourly = spend.hourly_energy_j
        total_j = sum(hourly.values())
        if not self.timeline or total_j <= 0:
            return self.intensity_g_per_kwh
        fallback = self.intensity_g_per_kwh
        return sum(j * self.timeline.get(hour, fallback) for hour, j in hourly.items()) / total_j

    def timeline_cover(self, spend: Spend) -> tuple[int, int]:
        """How many of the hours ``spend`` was spent in the timeline has a figure for, of how many."""
        hours = [h for h, j in spend.hourly_energy_j.items() if j > 0]
        return sum(1 for h in hours if h in self.timeline), len(hours)

    def priced_hourly(self, spend: Spend) -> bool:
        """Whether ``spend`` is priced by the hour: the timeline has a figure for at least one of its hours."""
        return bool(self.timeline) and self.timeline_cover(spend)[0] > 0

    def intensity_text(self, spend: Spend, unit: str = "g/kWh") -> tuple[str, str]:
        """How ``spend``'s intensity reads in a report: the figure, and where it comes from.

        The figure is ``"61 g/kWh"``, or ``"hourly, mean 61 g/kWh"`` with a timeline; the source then says how many of
        the spend's hours the timeline covered, the rest priced at the yearly figure.
        """
        covered, hours = self.timeline_cover(spend)
        if not self.priced_hourly(spend):
            source = self.intensity_source
            if self.timeline_source and hours:
                source += f" ({self.timeline_source} had none of the {hours} hour(s) of this run)"
            return f"{self.intensity_g_per_kwh:.0f} {unit}", source
        rest = "" if covered == hours else f"; the other {hours - covered} at {self.intensity_source}"
        return (
            f"hourly, mean {self.intensity_for(spend):.0f} {unit}",
            f"{self.timeline_source}, {covered} of {hours} hour(s){rest}",
        )

    def with_timeline(self, timeline: Mapping[str, float], source: str) -> Grid:
        """This grid with ``timeline``'s hours added to (and replacing) its own."""
        return dataclasses.replace(self, timeline={**self.timeline, **timeline}, timeline_source=source)

    def money(self, spend: Spend) -> float | None:
        """Cost of ``spend`` in :attr:`currency` (``None`` when no price is set or the energy is unavailable)."""
        if not self.prices_money:
            return None
        cost = 0.0
        if self.price_per_kwh is not None:
            kwh = self.facility_energy_kwh(spend)
            if kwh is None:
                return None
            cost += kwh * self.price_per_kwh
        if self.instance_price_per_h is not None:
            cost += spend.duration_s / S_PER_HOUR * self.instance_price_per_h
        return cost

    def embodied_co2e_g(self, spend: Spend, hosts: int = 1) -> dict[str, float]:
        """The hardware's embodied carbon charged to ``spend``: its GPU-hours, and its share of its ``hosts`` servers.

        The servers are charged by the run's CPU share of them (``embodied_host_basis="cpu"``), or whole for the
        metered time (``"server"``).
        """
        if self.embodied_host_basis == "cpu":
            host_hours = spend.host_share_s / S_PER_HOUR
        else:
            host_hours = spend.duration_s / S_PER_HOUR * max(hosts, 1)
        return {
            "gpu": spend.gpu_hours * self.embodied_g_per_gpu_hour,
            "host": host_hours * self.embodied_g_per_host_hour,
        }

    def water_l(self, spend: Spend) -> dict[str, float] | None:
        """Water: on-site (WUE x IT energy) and off-site (the grid's water x facility energy); ``None`` if unknown."""
        energy_j = spend.total_energy_j
        if energy_j is None:
            return None
        it_kwh = j_to_kwh(energy_j)
        return {"on_site": it_kwh * self.wue_l_per_kwh, "off_site": it_kwh * self.pue * self.water_l_per_kwh}

    def water_total_l(self, spend: Spend) -> float | None:
        """On-site and off-site water together, litres; ``None`` when the energy is unknown."""
        water = self.water_l(spend)
        return None if water is None else sum(water.values())

    def money_parts(self, spend: Spend) -> dict[str, float]:
        """The cost of ``spend`` line by line: ``electricity`` and ``instance``, each where it is priced and known."""
        parts: dict[str, float] = {}
        kwh = self.facility_energy_kwh(spend)
        if self.price_per_kwh is not None and kwh is not None:
            parts["electricity"] = kwh * self.price_per_kwh
        if self.instance_price_per_h is not None:
            parts["instance"] = spend.duration_s / S_PER_HOUR * self.instance_price_per_h
        return parts

    def to_dict(self, hours: Iterable[str] | None = None) -> dict[str, Any]:
        """Return the grid constants as a JSON-serialisable dict, for reports (the timeline only at ``hours``)."""
        timeline = dict(self.timeline) if hours is None else {h: self.timeline[h] for h in hours if h in self.timeline}
        return {
            "country": self.country,
            "region": self.region,
            "intensity_g_per_kwh": self.intensity_g_per_kwh,
            "intensity_source": self.intensity_source,
            "pue": self.pue,
            "price_per_kwh": self.price_per_kwh,
            "currency": self.currency,
            "instance_price_per_h": self.instance_price_per_h,
            "price_source": self.price_source,
            "embodied_g_per_gpu_hour": self.embodied_g_per_gpu_hour,
            "embodied_g_per_host_hour": self.embodied_g_per_host_hour,
            "wue_l_per_kwh": self.wue_l_per_kwh,
            "water_l_per_kwh": self.water_l_per_kwh,
            "footprint_source": self.footprint_source,
            "embodied_host_basis": self.embodied_host_basis,
            "timeline": timeline,
            "timeline_source": self.timeline_source,
        }


def _shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


# the fields that change a figure (the *_source texts only say where figures come from)
_PRICING_FIELDS = tuple(f.name for f in dataclasses.fields(Grid) if not f.name.endswith("_source"))


def _location_record(country: str | None, region: str | None) -> tables.CountryRecord | None:
    """The packaged table's record of a country or a cloud region's country; ``None`` when neither is given."""
    for name, value in (("country", country), ("region", region)):
        if value is not None and not isinstance(value, str):
            raise GridConfigError(
                f"`{name}` must be a string (an ISO code or name, or a cloud region such as 'aws:eu-west-1'), "
                f"got {value!r}."
            )
    if country is not None and region is not None:
        raise GridConfigError(f"Pass `country` or `region`, not both (got country={country!r}, region={region!r}).")
    if region is not None:
        return tables.region_country(region)
    return tables.country(country) if country is not None else None
