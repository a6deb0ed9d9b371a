"""Accuracy against cost, trial by trial: the Pareto front and the cheapest trial within epsilon of the best.

A trial is on the front when no other trial scores at least as well for at most its cost and is strictly better in
one of the two. Costs are each trial's own spend on one budget axis (``energy_kwh``, ``flops``, ``co2e_kg``,
``money``, ``gpu_hours``); only trials that may rank (completed, or stopped at their own allowance) take part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lightning_greenai.spend import Spend

if TYPE_CHECKING:
    from lightning_greenai.grid import Grid
    from lightning_greenai.reporting.summary import SweepSummary

__all__ = ["AXES", "Point", "cheapest_within", "pareto_front", "trial_points"]

AXES = ("energy_kwh", "flops", "co2e_kg", "money", "gpu_hours")


@dataclass(frozen=True)
class Point:
    """One trial: its number, score, cost on the axis, and overrides."""

    job: int
    score: float
    cost: float
    overrides: tuple[str, ...] = ()


def trial_cost(spend: Spend, axis: str, grid: Grid) -> float | None:
    """One trial's cost on ``axis`` (``None`` where it was not metered or, for money, not priced)."""
    if axis == "energy_kwh":
        return spend.energy_kwh
    if axis == "flops":
        return spend.flops
    if axis == "co2e_kg":
        co2e_g = grid.co2e_g(spend)
        return None if co2e_g is None else co2e_g / 1000
    if axis == "money":
        return grid.money(spend)
    if axis == "gpu_hours":
        return spend.gpu_hours
    raise ValueError(f"Unknown cost axis {axis!r}. Allowed: {', '.join(AXES)}.")


def trial_points(summary: SweepSummary, axis: str) -> list[Point]:
    """The ranked trials of a sweep as (score, cost) points on ``axis``; trials without that cost are left out."""
    points = []
    for trial in summary.ranked_trials():
        cost = trial_cost(trial.spend, axis, summary.grid)
        if cost is not None and trial.objective is not None:
            points.append(Point(trial.job_num, float(trial.objective), cost, tuple(trial.overrides)))
    return points


def _better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "max" else a < b


def pareto_front(points: list[Point], direction: str = "max") -> list[Point]:
    """The trials no other trial dominates, cheapest first."""
    ordered = sorted(points, key=lambda p: (p.cost, -p.score if direction == "max" else p.score))
    front: list[Point] = []
    for point in ordered:  # by rising cost: a point joins when it beats every cheaper one
        if not front or _better(point.score, front[-1].score, direction):
            front.append(point)
    return front


def cheapest_within(points: list[Point], epsilon: float, direction: str = "max") -> dict[str, Any] | None:
    """The cheapest trial scoring within ``epsilon`` of the best, with what it saves against the best trial."""
    if not points:
        return None
    if epsilon < 0:
        raise ValueError(f"`epsilon` must be >= 0 (in score units), got {epsilon}.")
    top = max(p.score for p in points) if direction == "max" else min(p.score for p in points)
    best = next(p for p in points if p.score == top)  # of equal bests the first launched, as the sweep's report says
    near = [p for p in points if abs(p.score - top) <= epsilon]
    # the cheapest; at equal cost the better score (never a trial the best dominates), then the first launched
    cheapest = min(near, key=lambda p: (p.cost, -p.score if direction == "max" else p.score, p.job))
    return {
        "trial": cheapest,
        "best": best,
        "epsilon": epsilon,
        "saving": None if best.cost <= 0 else 1 - cheapest.cost / best.cost,
    }
