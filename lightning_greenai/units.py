"""Unit constants and conversions: the one place where joules become kWh, grams become kg, and text becomes numbers.

The library works in SI internally (joules, seconds, grams of CO2e, FLOPs); user-facing units (kWh, kg, hours)
appear only at the edges, converted here.
"""

from __future__ import annotations

import math
import re

from lightning_greenai.errors import BudgetConfigError

__all__ = [
    "J_PER_KWH",
    "QUANTITIES",
    "S_PER_HOUR",
    "allowed_units",
    "check_limit",
    "format_duration",
    "format_energy",
    "format_mass",
    "format_quantity",
    "g_to_kg",
    "j_to_kwh",
    "kg_to_g",
    "kwh_to_j",
    "parse_quantity",
]

J_PER_KWH = 3.6e6
S_PER_HOUR = 3600.0

#: Budget quantities and the canonical unit each is stored in.
QUANTITIES: dict[str, str] = {
    "energy_kwh": "kWh",
    "flops": "FLOPs",
    "co2e_kg": "kgCO2e",
    "money": "currency",
    "gpu_hours": "GPU-h",
    "wall_hours": "h",
}

# unit spelling (lower-case, spaces removed) -> (quantity, factor to the canonical unit)
_UNITS: dict[str, tuple[str, float]] = {
    "j": ("energy_kwh", 1 / J_PER_KWH),
    "kj": ("energy_kwh", 1e3 / J_PER_KWH),
    "mj": ("energy_kwh", 1e6 / J_PER_KWH),
    "wh": ("energy_kwh", 1e-3),
    "kwh": ("energy_kwh", 1.0),
    "mwh": ("energy_kwh", 1e3),
    "flop": ("flops", 1.0),
    "flops": ("flops", 1.0),
    "gflops": ("flops", 1e9),
    "tflops": ("flops", 1e12),
    "pflops": ("flops", 1e15),
    "eflops": ("flops", 1e18),
    "gco2e": ("co2e_kg", 1e-3),
    "gco2": ("co2e_kg", 1e-3),
    "kgco2e": ("co2e_kg", 1.0),
    "kgco2": ("co2e_kg", 1.0),
    "tco2e": ("co2e_kg", 1e3),
    "tco2": ("co2e_kg", 1e3),
    "gpu-h": ("gpu_hours", 1.0),
    "gpuh": ("gpu_hours", 1.0),
    "gpu-hour": ("gpu_hours", 1.0),
    "gpu-hours": ("gpu_hours", 1.0),
    "gpu-min": ("gpu_hours", 1 / 60),
    "gpu-s": ("gpu_hours", 1 / S_PER_HOUR),
    "s": ("wall_hours", 1 / S_PER_HOUR),
    "sec": ("wall_hours", 1 / S_PER_HOUR),
    "min": ("wall_hours", 1 / 60),
    "h": ("wall_hours", 1.0),
    "hour": ("wall_hours", 1.0),
    "hours": ("wall_hours", 1.0),
    "d": ("wall_hours", 24.0),
}

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_NUMBER_UNIT = re.compile(
    r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf)\s*(.*?)\s*$", re.IGNORECASE
)


def j_to_kwh(energy_j: float) -> float:
    """Convert joules to kilowatt-hours."""
    return energy_j / J_PER_KWH


def kwh_to_j(energy_kwh: float) -> float:
    """Convert kilowatt-hours to joules."""
    return energy_kwh * J_PER_KWH


def g_to_kg(mass_g: float) -> float:
    """Convert grams to kilograms."""
    return mass_g / 1e3


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
    if _CURRENCY.match(unit):
        quantity, canonical, currency = "money", value, unit
    else:
        key = unit.lower().replace(" ", "").replace("_", "-")
        if key not in _UNITS:
            raise BudgetConfigError(f"Unknown unit {unit!r} in budget {text!r}. Allowed units: {allowed_units()}.")
        quantity, factor = _UNITS[key]
        canonical, currency = value * factor, None
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
        "kWh, Wh, J, kJ, MJ, MWh; FLOPs, GFLOPs, TFLOPs, PFLOPs, EFLOPs; gCO2e, kgCO2e, tCO2e; "
        "a 3-letter currency code (USD, EUR, ...); GPU-h, GPU-min, GPU-s; s, min, h, d"
    )


def format_energy(energy_j: float | None) -> str:
    """Return energy with a readable unit (J, Wh or kWh)."""
    if energy_j is None:
        return "unavailable"
    kwh = j_to_kwh(energy_j)
    if kwh >= 1.0:
        return f"{kwh:.3f} kWh"
    if kwh >= 1e-3:
        return f"{kwh * 1e3:.2f} Wh"
    return f"{energy_j:.1f} J"


def format_mass(co2e_g: float | None) -> str:
    """Return a CO2e mass with a readable unit."""
    if co2e_g is None:
        return "unavailable"
    return f"{g_to_kg(co2e_g):.3f} kg CO2e" if co2e_g >= 1000 else f"{co2e_g:.3g} g CO2e"


def format_duration(seconds: float) -> str:
    """Return ``H:MM:SS``."""
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_quantity(quantity: str, value: float | None, currency: str | None = None) -> str:
    """Return a budget quantity's value, given in its canonical unit, with a readable unit (J, Wh, g, GPU-h ...)."""
    if value is None:
        return "unknown"
    if quantity == "energy_kwh":
        return format_energy(kwh_to_j(value))
    if quantity == "co2e_kg":
        return format_mass(kg_to_g(value))
    if quantity == "flops":
        return f"{value:.3g} FLOPs"
    if quantity == "money":
        return f"{value:.4g} {currency or ''}".rstrip()
    if quantity == "gpu_hours":
        return f"{value:.3g} GPU-h"
    return format_duration(value * S_PER_HOUR)
