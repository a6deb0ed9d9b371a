"""Read the packaged grid tables (carbon intensity, cloud regions, electricity prices) once, lazily."""

from __future__ import annotations

import csv
import difflib
import functools
from dataclasses import dataclass
from importlib import resources

from lightning_greenai.errors import GridConfigError

__all__ = ["CountryRecord", "PriceRecord", "country", "country_names", "price", "region_country", "table_mean"]


@dataclass(frozen=True)
class CountryRecord:
    """One row of ``carbon_intensity.csv``."""

    iso2: str
    iso3: str
    name: str
    intensity_g_per_kwh: float
    generation_twh: float


@dataclass(frozen=True)
class PriceRecord:
    """One row of ``electricity_price.csv``."""

    price_per_kwh: float
    currency: str


def _rows(filename: str) -> list[dict[str, str]]:
    text = resources.files("lightning_greenai.grid").joinpath("data", filename).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return list(csv.DictReader(lines))


def source_note(filename: str) -> str:
    """Return the comment header of a data file: its source and year."""
    text = resources.files("lightning_greenai.grid").joinpath("data", filename).read_text(encoding="utf-8")
    return " ".join(line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#"))


@functools.cache
def _countries() -> dict[str, CountryRecord]:
    index: dict[str, CountryRecord] = {}
    for row in _rows("carbon_intensity.csv"):
        rec = CountryRecord(
            row["iso2"], row["iso3"], row["name"], float(row["intensity_g_per_kwh"]), float(row["generation_twh"])
        )
        for key in (rec.iso2, rec.iso3, rec.name):
            index[key.lower()] = rec
    return index


@functools.cache
def _regions() -> dict[str, str]:
    return {row["region"].lower(): row["iso2"] for row in _rows("cloud_regions.csv")}


@functools.cache
def _prices() -> dict[str, PriceRecord]:
    return {
        row["iso2"]: PriceRecord(float(row["price_per_kwh"]), row["currency"]) for row in _rows("electricity_price.csv")
    }


def _unknown(kind: str, value: str, choices: list[str], known: list[str]) -> GridConfigError:
    close = difflib.get_close_matches(value, choices, n=5, cutoff=0.5)
    if not close:
        close = difflib.get_close_matches(value.lower(), [c.lower() for c in choices], n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return GridConfigError(f"Unknown {kind} {value!r}.{hint} Allowed: {', '.join(sorted(known))}.")


#: Common names and codes that are not ISO 3166 but mean one country (UK is GB in ISO 3166).
_ALIASES = {"uk": "gb", "britain": "gb", "great britain": "gb", "england": "gb", "usa": "us", "america": "us"}


def country(code: str) -> CountryRecord:
    """Look up a country by ISO 3166 alpha-2 or alpha-3 code or English name (case-insensitive).

    Raises:
        GridConfigError: unknown country; the message lists close matches.
    """
    key = code.strip().lower()
    rec = _countries().get(_ALIASES.get(key, key))
    if rec is None:
        choices = sorted({r.iso2 for r in _countries().values()} | {r.name for r in _countries().values()})
        raise _unknown("country", code, choices, country_names())
    return rec


def country_names() -> list[str]:
    """Return the ISO alpha-2 codes of every country in the table."""
    return sorted({r.iso2 for r in _countries().values()})


def region_country(region: str) -> CountryRecord:
    """Map a cloud region (``"aws:eu-west-1"``, ``"gcp:europe-west4"``, ``"azure:westeurope"``) to its country.

    Raises:
        GridConfigError: unknown region; the message lists close matches.
    """
    iso2 = _regions().get(region.strip().lower())
    if iso2 is None:
        raise _unknown("region", region, list(_regions()), list(_regions()))
    return country(iso2)


def price(iso2: str) -> PriceRecord | None:
    """Return the indicative electricity price of a country, or ``None`` when the table has none."""
    return _prices().get(iso2)


@functools.cache
def table_mean() -> float:
    """Generation-weighted mean carbon intensity of the table's countries, in gCO2e/kWh."""
    records = {r.iso2: r for r in _countries().values()}.values()
    total_twh = sum(r.generation_twh for r in records)
    return sum(r.intensity_g_per_kwh * r.generation_twh for r in records) / total_twh
