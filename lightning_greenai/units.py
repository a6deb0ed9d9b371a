"""Unit constants and conversions: the one place where joules become kWh, grams become kg, and text becomes numbers.

The library works in SI internally (joules, seconds, grams of CO2e, FLOPs); user-facing units (kWh, kg, hours)
appear only at the edges, converted here. Numbers become text here too: every figure a person reads (the printed
tags, Markdown, LaTeX, messages) is in the unit :func:`display_unit` picks, to 3 significant figures
(:func:`format_number`); trackers and JSON get the full floats.
"""

from __future__ import annotations

import math
import os
import re

from lightning_greenai.errors import BudgetConfigError

__all__ = [
    "J_PER_KWH",
    "QUANTITIES",
    "S_PER_DAY",
    "S_PER_HOUR",
    "SIG_FIGS",
    "SPEND_RESOURCES",
    "ISO_4217",
    "allowed_units",
    "check_currency",
    "check_limit",
    "DISPLAY_UNITS",
    "display_unit",
    "format_duration",
    "format_energy",
    "format_flops",
    "format_gpu_time",
    "format_mass",
    "format_money",
    "format_number",
    "format_quantity",
    "format_resource",
    "format_water",
    "g_to_kg",
    "g_to_t",
    "j_to_kwh",
    "j_to_mwh",
    "kg_to_g",
    "kwh_to_j",
    "parse_quantity",
    "set_display_units",
]

J_PER_KWH = 3.6e6
S_PER_HOUR = 3600.0
S_PER_DAY = 86400.0

#: Budget quantities and the canonical unit each is stored in.
QUANTITIES: dict[str, str] = {
    "energy_kwh": "kWh",
    "flops": "FLOPs",
    "co2e_kg": "kgCO2e",
    "money": "currency",
    "gpu_hours": "GPU-h",
    "wall_hours": "h",
}

# Case-sensitive unit spellings -> (quantity, factor to the canonical unit). SI prefixes differ by case ("m" is milli,
# "M" mega), so a spelling is looked up exactly first; other spellings are accepted only where every unit they could
# mean, ignoring case, is the same amount (``KWH`` -> kWh), and refused with the spellings to choose from otherwise.
_PREFIXES = {"m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_UNITS: dict[str, tuple[str, float]] = {}
for _p, _f in _PREFIXES.items():
    _UNITS[f"{_p}J"] = ("energy_kwh", _f / J_PER_KWH)
    _UNITS[f"{_p}Wh"] = ("energy_kwh", _f * 1e-3)
for _p, _f in {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "Z": 1e21}.items():
    for _base in ("FLOP", "FLOPs", "FLOPS"):
        _UNITS[f"{_p}{_base}"] = ("flops", _f)
for _p, _f in {"mg": 1e-6, "g": 1e-3, "kg": 1.0, "t": 1e3, "Mg": 1e3, "kt": 1e6, "Mt": 1e9}.items():
    for _base in ("CO2e", "CO2", "CO2eq"):
        _UNITS[f"{_p}{_base}"] = ("co2e_kg", _f)
for _name, _f in {
    "GPU-h": 1.0, "GPUh": 1.0, "GPU-hour": 1.0, "GPU-hours": 1.0, "GPU-hr": 1.0, "GPU-hrs": 1.0,
    "GPU-min": 1 / 60, "GPU-mins": 1 / 60, "GPU-minutes": 1 / 60, "GPU-s": 1 / S_PER_HOUR, "GPU-sec": 1 / S_PER_HOUR,
    "GPU-d": 24.0, "GPU-days": 24.0,
}.items():  # fmt: skip
    _UNITS[_name] = ("gpu_hours", _f)
for _name, _f in {
    "ms": 1e-3 / S_PER_HOUR, "s": 1 / S_PER_HOUR, "sec": 1 / S_PER_HOUR, "secs": 1 / S_PER_HOUR,
    "second": 1 / S_PER_HOUR, "seconds": 1 / S_PER_HOUR, "min": 1 / 60, "mins": 1 / 60, "minute": 1 / 60,
    "minutes": 1 / 60, "h": 1.0, "hr": 1.0, "hrs": 1.0, "hour": 1.0, "hours": 1.0, "d": 24.0, "day": 24.0,
    "days": 24.0,
}.items():  # fmt: skip
    _UNITS[_name] = ("wall_hours", _f)
del _p, _f, _base, _name

_FOLDED: dict[str, list[str]] = {}
for _spelling in _UNITS:
    _FOLDED.setdefault(_spelling.casefold(), []).append(_spelling)
del _spelling

#: Active ISO 4217 currency codes: a money budget or price must name one.
_ISO_4217_CODES = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF
    CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF
    IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK
    MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR
    SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED
    VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG"""
ISO_4217 = frozenset(_ISO_4217_CODES.split())


_NUMBER_UNIT = re.compile(
    r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf)\s*(.*?)\s*$", re.IGNORECASE
)


def check_currency(currency: object, *, name: str = "currency", error: type[ValueError] = BudgetConfigError) -> str:
    """Return ``currency`` if it is an ISO 4217 code (upper case); otherwise raise ``error`` naming what is allowed."""
    if not isinstance(currency, str) or currency not in ISO_4217:
        hint = ""
        if isinstance(currency, str) and currency.upper() in ISO_4217:
            hint = f" (write it in capitals: {currency.upper()!r})"
        raise error(
            f"`{name}` must be an ISO 4217 currency code such as 'USD', 'EUR' or 'GBP', got {currency!r}{hint}."
        )
    return currency


def _lookup_unit(unit: str, text: str) -> tuple[str, float] | None:
    """Resolve a unit spelling (see ``_UNITS``); ``None`` if it is no known unit in any case."""
    key = re.sub(r"[\s_]+", "", unit).replace("·", "-")
    key = re.sub(r"(?i)^gpu(?=[a-z])", "GPU-", key) if key.lower().startswith("gpu") and "-" not in key else key
    if key in _UNITS:
        return _UNITS[key]
    candidates = _FOLDED.get(key.casefold(), [])
    meanings = {_UNITS[c] for c in candidates}
    if len(meanings) == 1:
        return meanings.pop()
    if len(meanings) > 1:
        words = {"m": "milli", "M": "mega", "k": "kilo", "G": "giga", "T": "tera", "P": "peta", "E": "exa"}
        options = " or ".join(f"{c!r} ({words.get(c[0], 'no prefix')})" for c in sorted(candidates))
        raise BudgetConfigError(
            f"Ambiguous unit {unit!r} in {text!r}: SI prefixes are case-sensitive ('m' is milli, 'M' is mega). "
            f"Write {options}."
        )
    return None


def j_to_kwh(energy_j: float) -> float:
    """Convert joules to kilowatt-hours."""
    return energy_j / J_PER_KWH


def j_to_mwh(energy_j: float) -> float:
    """Convert joules to megawatt-hours (the EU AI Act's unit of training energy)."""
    return energy_j / J_PER_KWH / 1e3


def kwh_to_j(energy_kwh: float) -> float:
    """Convert kilowatt-hours to joules."""
    return energy_kwh * J_PER_KWH


def g_to_kg(mass_g: float) -> float:
    """Convert grams to kilograms."""
    return mass_g / 1e3


def g_to_t(mass_g: float) -> float:
    """Convert grams to tonnes (CycloneDX's unit of CO2e)."""
    return mass_g / 1e6


def kg_to_g(mass_kg: float) -> float:
    """Convert kilograms to grams."""
    return mass_kg * 1e3


def parse_quantity(text: str) -> tuple[str, float, str | None]:
    """Parse ``"0.5 kWh"``, ``"1e18 FLOPs"``, ``"2 kgCO2e"``, ``"3 USD"``, ``"10 GPU-h"`` or ``"90 min"``.

    Returns:
        ``(quantity, value_in_canonical_unit, currency)``, e.g. ``("energy_kwh", 0.5, None)`` or
        ``("money", 3.0, "USD")``.

    Raises:
        BudgetConfigError: the text has no number, an unknown unit, or a negative or NaN value.

    Example::

        >>> parse_quantity("90 min")
        ('wall_hours', 1.5, None)
    """
    match = _NUMBER_UNIT.match(text)
    if match is None:
        raise BudgetConfigError(f"Cannot parse budget {text!r}: expected '<number> <unit>', e.g. '0.5 kWh'.")
    number, unit = match.groups()
    value = float(number)
    if not unit:
        raise BudgetConfigError(f"Budget {text!r} has no unit. Allowed units: {allowed_units()}.")
    found = _lookup_unit(unit, text)
    if found is not None:
        quantity, factor = found
        canonical, currency = value * factor, None
    elif unit.upper() in ISO_4217:
        quantity, canonical, currency = "money", value, unit.upper()
    else:
        raise BudgetConfigError(
            f"Unknown unit {unit!r} in budget {text!r}. Allowed units: {allowed_units()}; a currency must be an "
            "ISO 4217 code."
        )
    check_limit(quantity, canonical, source=text)
    return quantity, canonical, currency


def check_limit(quantity: str, value: float, *, source: object = None) -> None:
    """Raise :class:`BudgetConfigError` unless ``value`` is a finite, non-negative limit for ``quantity``."""
    shown = f" (from {source!r})" if source is not None else ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BudgetConfigError(f"Budget limit `{quantity}` must be a number, got {value!r}{shown}.")
    if math.isnan(value) or math.isinf(value):
        raise BudgetConfigError(f"Budget limit `{quantity}` must be a finite number >= 0, got {value}{shown}.")
    if value < 0:
        raise BudgetConfigError(f"Budget limit `{quantity}` must be >= 0, got {value}{shown}.")


def allowed_units() -> str:
    """Return the accepted unit spellings, for error messages."""
    return (
        "mJ, J, kJ, MJ, GJ, mWh, Wh, kWh, MWh, GWh ('m' is milli, 'M' mega); FLOPs, kFLOPs ... PFLOPs, EFLOPs; "
        "mgCO2e, gCO2e, kgCO2e, tCO2e; an ISO 4217 currency code (USD, EUR, ...); GPU-h, GPU-min, GPU-s; "
        "ms, s, min, h, d"
    )


#: Display units by kind: name -> size in the kind's base unit (J, g CO2e, FLOPs, GPU-s), smallest first.
DISPLAY_UNITS: dict[str, dict[str, float]] = {
    "energy": {"J": 1.0, "Wh": 3.6e3, "kWh": 3.6e6, "MWh": 3.6e9},
    "co2e": {"g": 1.0, "kg": 1e3, "t": 1e6},
    "flops": {
        "FLOPs": 1.0,
        "kFLOPs": 1e3,
        "MFLOPs": 1e6,
        "GFLOPs": 1e9,
        "TFLOPs": 1e12,
        "PFLOPs": 1e15,
        "EFLOPs": 1e18,
    },
    "gpu_time": {"GPU-s": 1.0, "GPU-min": 60.0, "GPU-h": S_PER_HOUR},
}
_forced: dict[str, str] = {}
_env_read = False
UNITS_ENV = "GREENAI_UNITS"


def set_display_units(**units: str | None) -> None:
    """Show every figure of a kind in one unit, e.g. ``energy="kWh"``; ``None`` chooses by magnitude again.

    Kinds: ``energy``, ``co2e``, ``flops``, ``gpu_time``. Also read from ``GREENAI_UNITS`` (``"energy=kWh,co2e=kg"``).

    Raises:
        BudgetConfigError: an unknown kind or unit, naming what is allowed.
    """
    for kind, unit in units.items():
        if kind not in DISPLAY_UNITS:
            raise BudgetConfigError(f"Unknown unit kind {kind!r}. Allowed: {', '.join(DISPLAY_UNITS)}.")
        if unit is None:
            _forced.pop(kind, None)
        elif unit not in DISPLAY_UNITS[kind]:
            raise BudgetConfigError(
                f"Unknown {kind} unit {unit!r}. Allowed: {', '.join(DISPLAY_UNITS[kind])} (or none: by magnitude)."
            )
        else:
            _forced[kind] = unit


def display_unit(kind: str, magnitude: float | None) -> tuple[str, float]:
    """The unit one figure of ``kind`` is shown in: ``(name, size in the base unit)``.

    The largest unit in which ``magnitude`` (in the base unit, as rounded for showing) is at least 1, or the next one
    up where the figure would read 1,000 or more and there is one (1234 J is 0.343 Wh, not 1230 J), unless the user
    forced one; a plot or a table passes its largest value, so all its numbers share the unit. The one place that
    decides it.
    """
    global _env_read
    if not _env_read:
        _env_read = True
        spec = os.environ.get(UNITS_ENV, "").strip()
        if spec:
            try:
                set_display_units(**dict(part.strip().split("=", 1) for part in spec.split(",") if part.strip()))
            except ValueError as err:
                raise BudgetConfigError(f"{UNITS_ENV}={spec!r}: {err}") from err
    units = DISPLAY_UNITS[kind]
    if kind in _forced:
        return _forced[kind], units[_forced[kind]]
    ladder = list(units.items())
    if magnitude is None or not math.isfinite(magnitude):
        return ladder[0]
    shown = abs(_round_significant(magnitude))  # 999.7 g is shown as 1.00 kg, not as 1000 g
    step = max([i for i, (_, size) in enumerate(ladder) if shown >= size], default=0)
    if shown >= 1000 * ladder[step][1] and step + 1 < len(ladder):
        step += 1
    return ladder[step]


#: Significant figures of every number shown to people; trackers and JSON get the full float.
SIG_FIGS = 3


def _round_significant(value: float, digits: int = SIG_FIGS) -> float:
    """``value`` rounded to ``digits`` significant figures (0, inf and NaN as they are)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def format_number(value: float, digits: int = SIG_FIGS) -> str:
    """Return ``value`` to 3 significant figures: the one rule of every figure shown (text, Markdown, LaTeX).

    Trailing zeros are kept (``1.20``: three figures are known); no scientific notation from 0.0001 to 999,999
    (``0.000139``, ``1230``), and none in the display units chosen by :func:`display_unit`, which keep a figure
    between 1 and 1,000 where the ladder allows.

    Example::

        >>> [format_number(v) for v in (1.2, 0.3434, 1234.5, 9.996, 0.0, 2.5e-7)]
        ['1.20', '0.343', '1230', '10.0', '0', '2.50e-07']
    """
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return f"{value:g}"
    rounded = _round_significant(value, digits)
    if not 1e-4 <= abs(rounded) < 1e6:
        return f"{value:.{digits - 1}e}"
    return f"{rounded:.{max(digits - 1 - math.floor(math.log10(abs(rounded))), 0)}f}"


def format_energy(energy_j: float | None, *, unit_for: float | None = None) -> str:
    """Return energy in its display unit (J, Wh, kWh, MWh; ``unit_for`` picks it for a larger figure beside it)."""
    if energy_j is None:
        return "unavailable"
    name, size = display_unit("energy", energy_j if unit_for is None else unit_for)
    return f"{format_number(energy_j / size)} {name}"


def format_mass(co2e_g: float | None, *, unit_for: float | None = None) -> str:
    """Return a CO2e mass in its display unit (g, kg, t)."""
    if co2e_g is None:
        return "unavailable"
    name, size = display_unit("co2e", co2e_g if unit_for is None else unit_for)
    return f"{format_number(co2e_g / size)} {name} CO2e"


def format_water(litres: float | None, *, unit_for: float | None = None) -> str:
    """Return a volume of water in litres (``unit_for`` is accepted, as by the others)."""
    return "unknown" if litres is None else f"{format_number(litres)} L"


def format_flops(flops: float | None, *, unit_for: float | None = None) -> str:
    """Return a FLOP count with an SI prefix (kFLOPs ... EFLOPs)."""
    if flops is None:
        return "unknown"
    name, size = display_unit("flops", flops if unit_for is None else unit_for)
    return f"{format_number(flops / size)} {name}"


def format_gpu_time(gpu_s: float, *, unit_for: float | None = None) -> str:
    """Return GPU time in GPU-s, GPU-min or GPU-h."""
    name, size = display_unit("gpu_time", gpu_s if unit_for is None else unit_for)
    return f"{format_number(gpu_s / size)} {name}"


def format_money(value: float, currency: str | None = None, *, unit_for: float | None = None) -> str:
    """Return an amount of money, with its currency code when given (``unit_for`` is accepted, as by the others)."""
    return f"{format_number(value)} {currency or ''}".rstrip()


def format_duration(seconds: float) -> str:
    """Return a duration as a reader takes it in: ``0.518 s`` under a minute, ``H:MM:SS`` from a minute on."""
    if seconds < 59.5:  # what rounds to 60 s reads as 0:01:00
        return f"{format_number(seconds)} s"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


#: The resources a sweep's rungs may count that are a trial's spend on a budget axis (its metered energy, its counted
#: FLOPs), in that axis's canonical unit; the others (``epochs``, ``steps``) count training.
SPEND_RESOURCES = ("energy_kwh", "flops")


def format_resource(value: float, resource: str) -> str:
    """How far a trial got, as a rung says it: ``1 epoch``, ``3 epochs``, ``2.5 steps``, ``5.00 J``, ``1.20 GFLOPs``."""
    if resource in SPEND_RESOURCES:
        return format_quantity(resource, value)
    return f"{value:g} {resource[:-1] if value == 1 and resource.endswith('s') else resource}"


def format_quantity(quantity: str, value: float | None, currency: str | None = None) -> str:
    """Return a budget quantity's value, given in its canonical unit, with a readable unit (J, Wh, g, GPU-h ...)."""
    if value is None:
        return "unknown"
    if quantity == "energy_kwh":
        return format_energy(kwh_to_j(value))
    if quantity == "co2e_kg":
        return format_mass(kg_to_g(value))
    if quantity == "flops":
        return format_flops(value)
    if quantity == "money":
        return format_money(value, currency)
    if quantity == "gpu_hours":
        return format_gpu_time(value * S_PER_HOUR)
    return format_duration(value * S_PER_HOUR)
