"""Stop a search when more compute is not expected to buy enough: ``hydra.sweeper.stop_when.gain_per_kwh``.

After each batch of a random (i.i.d.) search, the expected gain of the next ``k`` trials over the best score so far,
``E[(best of k new trials - best so far)+]``, is bounded from above at the given confidence: of every score
distribution the simultaneous CDF band (Kolmogorov-Smirnov, through opda: exact, distribution-free, closed form, so
milliseconds per batch) admits, the bound takes the most favourable one — the band's lower edge, which puts the
most mass at the top of the score's range. That range must be known (``score_bounds``): without it a better score
can never be ruled out. The bound divided by what ``k`` trials are expected to cost (``k`` x the mean cost of a scored
trial) is the most an extra kWh (FLOP, kg CO2e, currency unit) can be expected to buy; the sweep stops when that
falls below the threshold. Being an upper bound, it stops late rather than early.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightning_greenai.units import format_quantity

__all__ = ["GAIN_QUANTITIES", "GainRule", "gain_upper_bound"]

#: ``stop_when`` keys and the budget quantity each divides by.
GAIN_QUANTITIES = {
    "gain_per_kwh": "energy_kwh",
    "gain_per_flop": "flops",
    "gain_per_kg_co2e": "co2e_kg",
    "gain_per_money": "money",
    "gain_per_gpu_hour": "gpu_hours",
}
_UNITS = {"energy_kwh": "kWh", "flops": "FLOPs", "co2e_kg": "kg CO2e", "gpu_hours": "GPU-h"}


def gain_upper_bound(
    scores: Sequence[float],
    *,
    next_trials: int,
    bounds: tuple[float, float],
    direction: str = "max",
    confidence: float = 0.95,
) -> float:
    """Upper confidence bound on the expected gain of ``next_trials`` more i.i.d. trials over the best of ``scores``.

    Raises:
        ValueError: no scores, a score outside ``bounds``, or bad arguments.
    """
    import warnings

    import numpy as np
    from opda.nonparametric import EmpiricalDistribution

    ys = np.asarray([float(s) for s in scores], dtype=float)
    low, high = bounds
    if ys.size == 0 or not np.all(np.isfinite(ys)):
        raise ValueError("The gain bound needs at least one finite score.")
    if direction == "min":  # a loss: the gain in -loss, over [-high, -low]
        ys, low, high = -ys, -high, -low
    if ys.min() < low or ys.max() > high:
        raise ValueError(f"A score lies outside score_bounds [{bounds[0]}, {bounds[1]}].")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ties: the band is then conservative
        optimistic, _, _ = EmpiricalDistribution.confidence_bands(ys, confidence, low, high, method="ks")
    best = float(ys.max())
    # E[(M - best)+] = integral over (best, high) of (1 - F(x)^k): F is a step function, constant between support points
    support = np.unique(np.concatenate([optimistic.ys[np.isfinite(optimistic.ys)], [best, high]]))
    support = support[(support >= best) & (support <= high)]
    if support.size < 2:
        return 0.0
    cdf = optimistic.cdf(support[:-1])  # F on [support[i], support[i + 1])
    return float(np.sum((1.0 - cdf**next_trials) * np.diff(support)))


@dataclass(frozen=True)
class GainRule:
    """The ``stop_when`` options: a minimum gain per unit of each quantity, over the next ``next_trials`` trials."""

    thresholds: dict[str, float]  # budget quantity -> minimum gain per unit
    next_trials: int = 10
    confidence: float = 0.95
    min_trials: int = 5

    @classmethod
    def parse(cls, options: Mapping[str, Any] | None) -> GainRule | None:
        """``None`` when no threshold is set; a ValueError naming a bad key or value."""
        options = {k: v for k, v in dict(options or {}).items() if v is not None}
        known = {*GAIN_QUANTITIES, "next_trials", "confidence", "min_trials"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"Unknown hydra.sweeper.stop_when option(s) {unknown}. Allowed: {', '.join(sorted(known))}."
            )
        thresholds = {}
        for key, quantity in GAIN_QUANTITIES.items():
            if key in options:
                value = options[key]
                if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                    raise ValueError(f"`hydra.sweeper.stop_when.{key}` must be a number > 0, got {value!r}.")
                thresholds[quantity] = float(value)
        if not thresholds:  # next_trials, confidence, min_trials alone (the config's defaults) switch nothing on
            return None
        next_trials = options.get("next_trials", 10)
        min_trials = options.get("min_trials", 5)
        confidence = options.get("confidence", 0.95)
        for name, value in (("next_trials", next_trials), ("min_trials", min_trials)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`hydra.sweeper.stop_when.{name}` must be an integer >= 1, got {value!r}.")
        if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 < confidence < 1:
            raise ValueError(f"`hydra.sweeper.stop_when.confidence` must be in (0, 1), got {confidence!r}.")
        return cls(thresholds, int(next_trials), float(confidence), int(min_trials))

    def verdict(
        self,
        scores: Sequence[float],
        mean_cost: Mapping[str, float | None],
        *,
        bounds: tuple[float, float],
        direction: str,
        currency: str | None = None,
        objective: str = "score",
    ) -> str | None:
        """The stop reason, with its numbers, when the bound per unit falls below a threshold; else ``None``."""
        if len(scores) < self.min_trials:
            return None
        bound = gain_upper_bound(
            scores, next_trials=self.next_trials, bounds=bounds, direction=direction, confidence=self.confidence
        )
        for quantity, threshold in self.thresholds.items():
            per_trial = mean_cost.get(quantity)
            if per_trial is None or not math.isfinite(per_trial) or per_trial <= 0:
                continue
            cost = self.next_trials * per_trial
            per_unit = bound / cost
            if per_unit < threshold:
                unit = currency if quantity == "money" else _UNITS[quantity]
                key = next(k for k, q in GAIN_QUANTITIES.items() if q == quantity)
                return (
                    f"the next {self.next_trials} trials (about {format_quantity(quantity, cost, currency)}) are "
                    "expected to add at most "
                    f"+{bound:.4g} {objective} ({100 * self.confidence:g} % upper bound, Kolmogorov-Smirnov band): "
                    f"{per_unit:.3g} per {unit} < stop_when.{key}={threshold:g}"
                )
        return None
