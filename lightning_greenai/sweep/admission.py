"""Admission control: how many trials the remaining budget can pay for, before each batch."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from lightning_greenai.units import format_quantity

__all__ = ["estimate_trial_cost", "admit"]


def _percentile(values: Sequence[float], q: float, presorted: bool = False) -> float:
    ordered = values if presorted else sorted(values)
    if not ordered:
        return 0.0
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def estimate_trial_cost(
    prior: float | None, finished_costs: Sequence[float], quantile: float = 0.9, *, presorted: bool = False
) -> float | None:
    """Per-trial cost estimate: the larger of the configured prior and a high percentile of finished trials.

    ``None`` when there is neither a prior nor a finished trial (the first batch then runs one trial).
    ``presorted`` skips sorting ``finished_costs`` (the sweeper keeps them sorted as trials finish).
    """
    observed = _percentile(finished_costs, quantile, presorted) if finished_costs else None
    candidates = [c for c in (prior, observed) if c is not None]
    return max(candidates) if candidates else None


def admit(
    remaining: Mapping[str, float],
    estimates: Mapping[str, float | None],
    *,
    max_batch_size: int,
    trials_left: int | None,
) -> tuple[int, str | None]:
    """Return ``(k, reason)``: how many trials to launch now, and why none (``k == 0``) or why fewer.

    For every limited quantity, ``k <= floor(remaining / estimate)``; a quantity without an estimate yet allows one
    trial (to learn its cost). Wall time is shared by trials that run together, so it only asks that one trial's
    duration fits. ``k`` is always capped by ``max_batch_size`` (the launcher's parallelism: a larger batch would
    queue trials that may start after the budget is spent, and ask the strategy for an unbounded batch), and by the
    trials left.
    """
    if max_batch_size < 1:
        raise ValueError(f"`max_batch_size` must be >= 1, got {max_batch_size}.")
    caps: list[tuple[int, str | None]] = []
    for quantity, left in remaining.items():
        estimate = estimates.get(quantity)
        if left <= 0:
            return 0, f"budget `{quantity}` is spent"
        if estimate is None or estimate <= 0:
            caps.append((1, None) if estimate is None else (max_batch_size, None))
            continue
        fit = math.floor(left / estimate + 1e-9)
        if quantity == "wall_hours" and fit >= 1:
            continue
        if fit == 0:
            return 0, (
                f"budget `{quantity}`: {format_quantity(quantity, left)} left, but a trial is estimated at "
                f"{format_quantity(quantity, estimate)}: not even one fits"
            )
        caps.append((fit, None))
    k = min([c for c, _ in caps], default=max_batch_size)
    k = min(k, max_batch_size)
    if trials_left is not None:
        if trials_left <= 0:
            return 0, "max_trials reached"
        k = min(k, trials_left)
    return max(k, 0), None
