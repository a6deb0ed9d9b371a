"""Is sweep A better than sweep B at a given budget, and with what confidence? Where do their curves cross?

Each sweep's tuning curve is read at the number of its average trials a budget buys (``budget / mean trial cost``,
fractional allowed), with a simultaneous confidence band from :mod:`lightning_greenai.stats.bands`. Each band is
built at ``1 - (1 - confidence) / 2``, so that both hold together with probability ``confidence`` (Bonferroni): "A
is better" is said only where A's band lies wholly above B's (below, for a loss). The budgets compared are those
both sweeps measured: from the dearer one-trial cost to the cheaper whole sweep; nothing is extrapolated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lightning_greenai.reporting.summary import SweepSummary

__all__ = ["Comparison", "Reading", "Verdict", "compare_at_budgets"]


@dataclass(frozen=True)
class Reading:
    """One sweep's curve at one budget."""

    n: float
    value: float
    lo: float
    hi: float


@dataclass(frozen=True)
class Verdict:
    """Both sweeps at one budget, and which is better with ``confidence`` (``None``: cannot tell apart)."""

    budget: float
    a: Reading
    b: Reading
    better: str | None


@dataclass(frozen=True)
class Comparison:
    """The verdicts over the common budgets, the point-estimate crossings, and what curve was compared."""

    key: str  # "expected" (score bounds known for both) or "median"
    confidence: float
    verdicts: list[Verdict]
    crossings: list[float]  # budgets where the point estimates change order
    leader_before: list[str | None]  # who leads (point estimates) on each side of each crossing, in order
    common: tuple[float, float] | None  # the budget range both sweeps measured


def _readings(summary: SweepSummary, budgets: list[float], cost: float, confidence: float, key: str) -> list[Reading]:
    ns = [max(b / cost, 1.0) for b in budgets]
    bands = summary.bands(ns, confidence=confidence)
    value = bands.expected if key == "expected" else bands.median
    lo = bands.expected_lo if key == "expected" else bands.median_lo
    hi = bands.expected_hi if key == "expected" else bands.median_hi
    assert lo is not None
    assert hi is not None
    return [Reading(n, v, low, high) for n, v, low, high in zip(ns, value, lo, hi, strict=True)]


def _leader(a: float, b: float, direction: str) -> str | None:
    if a == b:
        return None
    return "a" if (a > b) == (direction == "max") else "b"


def compare_at_budgets(
    a: SweepSummary, b: SweepSummary, unit: str, *, confidence: float = 0.95, points: int = 200
) -> Comparison:
    """Compare two i.i.d. sweeps on the budget axis ``unit`` (``energy_kwh``, ``flops``, ``co2e_kg``, ...).

    Raises:
        ValueError: the sweeps optimise in different directions, or a sweep has no cost on that axis.
    """
    if a.direction != b.direction:
        raise ValueError(f"{a.path} maximises and {b.path} minimises (or the reverse): their scores do not compare.")
    costs = []
    for summary in (a, b):
        cost = summary.mean_trial_cost().get(unit)
        if not cost or not math.isfinite(cost):
            raise ValueError(f"{summary.path} has no {unit} cost per trial: its trials metered none.")
        costs.append(cost)
    key = "expected" if a.score_bounds is not None and b.score_bounds is not None else "median"
    each = 1 - (1 - confidence) / 2
    low = max(costs)  # one trial of the dearer sweep
    high = min(cost * len(s.scores()) for cost, s in zip(costs, (a, b), strict=True))  # the cheaper whole sweep
    if high < low:
        return Comparison(key, confidence, [], [], [], None)
    budgets = [low] if high == low else [low * (high / low) ** (i / (points - 1)) for i in range(points)]
    ra = _readings(a, budgets, costs[0], each, key)
    rb = _readings(b, budgets, costs[1], each, key)
    verdicts = []
    for budget, x, y in zip(budgets, ra, rb, strict=True):
        if a.direction == "max":
            better = "a" if x.lo > y.hi else "b" if y.lo > x.hi else None
        else:
            better = "a" if x.hi < y.lo else "b" if y.hi < x.lo else None
        verdicts.append(Verdict(budget, x, y, better))
    crossings: list[float] = []
    leaders: list[str | None] = []
    previous: str | None = None
    for v in verdicts:
        leader = _leader(v.a.value, v.b.value, a.direction)
        if leader is None:
            continue
        if previous is not None and leader != previous:
            crossings.append(v.budget)
        if previous is None or leader != previous:
            leaders.append(leader)
        previous = leader
    return Comparison(key, confidence, verdicts, crossings, leaders, (low, high))
