"""A compute budget: limits in any subset of energy, FLOPs, CO2e, money, GPU-hours and wall time."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from lightning_greenai.errors import BudgetConfigError
from lightning_greenai.grid import Grid
from lightning_greenai.spend import Spend
from lightning_greenai.units import (
    ISO_4217,
    QUANTITIES,
    S_PER_HOUR,
    check_currency,
    check_limit,
    g_to_kg,
    parse_quantity,
)

__all__ = ["Budget", "measure"]


@dataclass(frozen=True)
class Budget:
    """Limits on what a run or a sweep may spend; any subset may be set, and the first one reached counts.

    Args:
        energy_kwh: Energy, PUE included, in kWh.
        flops: Floating-point operations.
        co2e_kg: Emissions in kg CO2e (needs a :class:`~lightning_greenai.grid.Grid`).
        money: Cost in ``currency`` (needs a grid with a price).
        gpu_hours: GPU-hours.
        wall_hours: Wall-clock hours.
        currency: ISO 4217 code of ``money``; ``None`` accepts the grid's currency.

    Raises:
        BudgetConfigError: a negative, NaN or infinite limit, or a currency that is not an ISO 4217 code.

    Example::

        >>> Budget.parse("0.5 kWh, 90 min")
        Budget(energy_kwh=0.5, flops=None, co2e_kg=None, money=None, gpu_hours=None, wall_hours=1.5, currency=None)
    """

    energy_kwh: float | None = None
    flops: float | None = None
    co2e_kg: float | None = None
    money: float | None = None
    gpu_hours: float | None = None
    wall_hours: float | None = None
    currency: str | None = None

    def __post_init__(self) -> None:
        for name in QUANTITIES:
            value = getattr(self, name)
            if value is not None:
                check_limit(name, value)
        if self.currency is not None:
            check_currency(self.currency)

    @classmethod
    def parse(cls, spec: str | Iterable[str] | Mapping[str, Any]) -> Budget:
        """Build a budget from ``"0.5 kWh"``, ``"1e18 FLOPs, 2 kgCO2e"``, a list of such strings, or a mapping.

        A mapping may use the field names with numbers (``{"energy_kwh": 0.5}``) or with strings that carry a
        unit (``{"energy_kwh": "500 Wh"}``).

        Raises:
            BudgetConfigError: an unknown key or unit, a limit given twice, or a negative/NaN value.
        """
        limits: dict[str, Any] = {}

        def put(quantity: str, value: float, currency: str | None, source: object) -> None:
            if quantity in limits:
                raise BudgetConfigError(f"Budget limit `{quantity}` is given twice (second time as {source!r}).")
            limits[quantity] = value
            if currency is not None:
                if limits.get("currency", currency) != currency:
                    raise BudgetConfigError(f"Budget mixes currencies {limits['currency']} and {currency}.")
                limits["currency"] = currency

        if isinstance(spec, Mapping):
            for key, value in spec.items():
                if key == "currency":
                    if isinstance(value, str) and value.upper() in ISO_4217:
                        value = value.upper()
                    if value is not None:
                        limits["currency"] = value
                    continue
                if key not in QUANTITIES:
                    raise BudgetConfigError(f"Unknown budget key {key!r}. Allowed: {', '.join(QUANTITIES)}, currency.")
                if value is None:
                    continue
                if isinstance(value, str):
                    quantity, number, currency = parse_quantity(value)
                    if quantity != key:
                        raise BudgetConfigError(f"Budget key {key!r} got {value!r}, which is a {quantity} value.")
                    put(key, number, currency, value)
                else:
                    put(key, value, None, value)
            return cls(**limits)
        parts = [spec] if isinstance(spec, str) else list(spec)
        for part in parts:
            for piece in part.split(","):
                if piece.strip():
                    put(*parse_quantity(piece), piece)
        return cls(**limits)

    @property
    def limits(self) -> dict[str, float]:
        """The limits that are set, by quantity name."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name in QUANTITIES and getattr(self, f.name) is not None
        }

    @property
    def is_unlimited(self) -> bool:
        """Whether no limit is set."""
        return not self.limits

    def check_grid(self, grid: Grid | None) -> None:
        """Raise :class:`BudgetConfigError` if a CO2e or money limit cannot be evaluated with ``grid``."""
        if self.co2e_kg is not None and grid is None:
            raise BudgetConfigError("A `co2e_kg` budget needs a grid (country or region) to turn energy into CO2e.")
        if self.money is not None:
            if grid is None or not grid.prices_money:
                raise BudgetConfigError(
                    "A `money` budget needs a price: set `price_per_kwh` and `currency` (or `instance_price_per_h`), "
                    "or a country whose price is in the packaged table."
                )
            if self.currency is not None and grid.currency != self.currency:
                raise BudgetConfigError(
                    f"The budget is in {self.currency} but the grid prices in {grid.currency}; "
                    f"set `currency={self.currency!r}` and a matching `price_per_kwh`."
                )

    def spent(self, spend: Spend, grid: Grid | None = None, *, wall_s: float | None = None) -> dict[str, float | None]:
        """Return how much of each limited quantity ``spend`` used, in the budget's units (``None`` if unknown).

        ``wall_s`` is the elapsed wall time when it differs from ``spend.duration_s`` (a sweep: its trials' metered
        time adds up, and prices instance-hours, while the wall clock runs once for trials in parallel).
        """
        self.check_grid(grid)
        out: dict[str, float | None] = {}
        for quantity in self.limits:
            out[quantity] = measure(quantity, spend, grid, wall_s)
        return out

    def exceeded_by(self, spend: Spend, grid: Grid | None = None, *, wall_s: float | None = None) -> list[str]:
        """Return the quantities whose limit ``spend`` has reached (>=), in field order; empty if none."""
        used = self.spent(spend, grid, wall_s=wall_s)
        return [q for q, limit in self.limits.items() if (u := used[q]) is not None and u >= limit]

    def remaining(
        self, spend: Spend, grid: Grid | None = None, *, wall_s: float | None = None
    ) -> dict[str, float | None]:
        """Return what is left of each limit (may be negative once overshot; ``None`` if unknown)."""
        used = self.spent(spend, grid, wall_s=wall_s)
        return {q: (None if (u := used[q]) is None else limit - u) for q, limit in self.limits.items()}

    def fraction_spent(self, spend: Spend, grid: Grid | None = None, *, wall_s: float | None = None) -> float:
        """Return the largest used/limit ratio over the set limits (0 when unlimited)."""
        used = self.spent(spend, grid, wall_s=wall_s)
        ratios = [
            u / limit if limit > 0 else float("inf") for q, limit in self.limits.items() if (u := used[q]) is not None
        ]
        return max(ratios, default=0.0)

    def same_as(self, other: Budget | Mapping[str, Any]) -> bool:
        """Whether ``other`` sets the same limits, whatever units they were written in (``0.1 kJ`` is ``100 J``)."""
        theirs = other if isinstance(other, Budget) else Budget.parse(other)
        mine, limits = self.limits, theirs.limits
        return (
            mine.keys() == limits.keys()
            and all(math.isclose(mine[q], limits[q], rel_tol=1e-9, abs_tol=0.0) for q in mine)
            and self.currency == theirs.currency
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the set limits (and currency) as a dict."""
        out: dict[str, Any] = dict(self.limits)
        if self.currency is not None:
            out["currency"] = self.currency
        return out


def measure(quantity: str, spend: Spend, grid: Grid | None, wall_s: float | None) -> float | None:
    """How much of ``quantity`` (a budget axis, in its canonical unit) ``spend`` used; ``None`` if unknown."""
    if quantity == "energy_kwh":
        return spend.energy_kwh if grid is None else grid.facility_energy_kwh(spend)
    if quantity == "flops":
        return spend.flops
    if quantity == "co2e_kg":
        assert grid is not None  # guaranteed by check_grid
        co2e_g = grid.co2e_g(spend)
        return None if co2e_g is None else g_to_kg(co2e_g)
    if quantity == "money":
        assert grid is not None
        return grid.money(spend)
    if quantity == "gpu_hours":
        return spend.gpu_hours
    return spend.wall_hours if wall_s is None else wall_s / S_PER_HOUR
