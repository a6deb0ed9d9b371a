"""The budget curve of a sweep: the best score so far against the compute spent so far, trial by trial.

One computation for the sweeper's ``budget_curve.csv`` and the reports (``greenai report``, the trackers): the trials
in launch order, their spends added up, each cumulative spend priced on every budget axis.

A trial that metered nothing (no energy sensor, a job that failed before its first step) has spent nothing on that
axis: the curve reads ``0.0`` there, never ``None``, so that every row has a place on the compute axis. Only
``money`` stays ``None`` when the grid prices no money at all (no price is not a price of zero).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

__all__ = ["UNPRICED_AXES", "CurvePoint", "best_so_far", "budget_curve"]

#: Axes on which ``None`` means "not priced" and stays ``None``; on every other axis ``None`` reads 0.0.
UNPRICED_AXES = frozenset({"money"})


class _Addable(Protocol):
    def __add__(self: _S, other: _S, /) -> _S: ...


_S = TypeVar("_S", bound=_Addable)


@dataclass(frozen=True)
class CurvePoint:
    """One trial's point on the curve: the best score after it, and what the sweep had spent by its end."""

    best_so_far: float | None  # None until a trial that may rank has a score
    spent: Mapping[str, float | None]  # by budget axis (energy_kwh, flops, co2e_kg, money, gpu_hours)


def best_so_far(scores: Iterable[float | None], direction: str = "max") -> list[float | None]:
    """The running best of ``scores`` (``None``: a trial that does not rank, which leaves the best as it was).

    Raises:
        ValueError: ``direction`` is neither ``max`` nor ``min``.
    """
    if direction not in ("max", "min"):
        raise ValueError(f"direction must be 'max' or 'min', got {direction!r}")
    better = max if direction == "max" else min
    out: list[float | None] = []
    best: float | None = None
    for score in scores:
        if score is not None:
            best = score if best is None else better(best, score)
        out.append(best)
    return out


def budget_curve(
    spends: Sequence[_S],
    scores: Sequence[float | None],
    axes: Mapping[str, Callable[[_S], float | None]],
    *,
    direction: str = "max",
) -> list[CurvePoint]:
    """The budget curve of trials in launch order.

    Args:
        spends: Each trial's own spend (anything that adds up, e.g. :class:`~lightning_greenai.spend.Spend`).
        scores: Each trial's score if it may rank (see ``is_scored``), else ``None``.
        axes: How to price a cumulative spend on each axis, by axis name (``None``: nothing to price).
        direction: ``max`` or ``min``.

    Returns one point per trial: the best score so far and the cumulative spend priced on every axis (``None``
    reads 0.0 except on :data:`UNPRICED_AXES`).

    Raises:
        ValueError: ``spends`` and ``scores`` differ in length, or ``direction`` is neither ``max`` nor ``min``.
    """
    if len(spends) != len(scores):
        raise ValueError(f"{len(spends)} spends for {len(scores)} scores: one of each per trial")
    cumulative = itertools.accumulate(spends, operator.add)
    return [
        CurvePoint(best, {axis: _value(axis, price(total)) for axis, price in axes.items()})
        for best, total in zip(best_so_far(scores, direction), cumulative, strict=True)
    ]


def _value(axis: str, value: Any) -> float | None:
    if value is None:
        return None if axis in UNPRICED_AXES else 0.0
    return float(value)
