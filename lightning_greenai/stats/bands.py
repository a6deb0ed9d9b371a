"""Confidence bands for tuning curves: exact, simultaneous and distribution-free (Lourie, Cho & He, NAACL 2024).

The scores of an i.i.d. (random) search are a sample of one score distribution; the tuning curve is what the best
of n trials from it is expected to be (``expected``, Dodge et al.'s plug-in estimate) or its median (``median``).
A simultaneous confidence band for the distribution's CDF bounds both curves for every n at once. The bands come
from ``opda`` (the authors' package), not a bootstrap: bootstrap bands under-cover. Two of its band methods are
used, both exact for continuous score distributions:

* Learned-Miller-DeStefano (``ld_equal_tailed``): tight at the top of the distribution, where tuning curves live;
  its critical value is simulated (100,000 draws of n order statistics), about 0.6 s at 40 trials and growing with n,
  so it is the default up to :data:`LD_MAX_TRIALS` trials.
* Kolmogorov-Smirnov (``ks``): closed form, milliseconds at any size, looser near the top; the default above that.

The band of the *expected* best needs the scores' range (``bounds``, e.g. ``(0, 1)`` for accuracy): without it,
the band reaches minus or plus infinity, so only the median curve gets a band. Every band is deterministic: the
simulation draws from a generator seeded by the sample size and the confidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["BAND_METHODS", "LD_MAX_TRIALS", "Bands", "band_method", "check_bounds", "tuning_curve_bands"]

#: Band methods by name: ours -> opda's.
BAND_METHODS = {"ld": "ld_equal_tailed", "ks": "ks"}
#: The largest number of trials for which the LD band is the default (its simulation grows with n).
LD_MAX_TRIALS = 40
_GENERATORS: dict[tuple[int, float], Any] = {}


@dataclass(frozen=True)
class Bands:
    """A tuning curve with its simultaneous confidence band at the points ``n``.

    Attributes:
        n: Numbers of trials (fractional n is allowed: a budget buys a fractional number of average trials).
        median, median_lo, median_hi: The median best of n trials and its band.
        expected, expected_lo, expected_hi: The expected best of n trials (Dodge et al.) and its band; the band is
            ``None`` without the scores' bounds.
        confidence: The band's simultaneous coverage.
        method: ``"ld"`` or ``"ks"``.
    """

    n: list[float]
    median: list[float]
    median_lo: list[float]
    median_hi: list[float]
    expected: list[float]
    expected_lo: list[float] | None
    expected_hi: list[float] | None
    confidence: float
    method: str

    def at(self, i: int) -> dict[str, float | None]:
        """The figures at the ``i``-th point."""
        return {
            "median": self.median[i],
            "median_lo": self.median_lo[i],
            "median_hi": self.median_hi[i],
            "expected_lo": None if self.expected_lo is None else self.expected_lo[i],
            "expected_hi": None if self.expected_hi is None else self.expected_hi[i],
        }


def band_method(n_scores: int, method: str | None = None) -> str:
    """The band method for ``n_scores`` scores: ``method`` if given, else LD up to :data:`LD_MAX_TRIALS`, then KS."""
    chosen = method or ("ld" if n_scores <= LD_MAX_TRIALS else "ks")
    if chosen not in BAND_METHODS:
        raise ValueError(f"Unknown band method {chosen!r}. Allowed: {', '.join(BAND_METHODS)}.")
    return chosen


def check_bounds(bounds: Any, *, name: str = "score_bounds") -> tuple[float, float] | None:
    """``None``, or two finite numbers ``[low, high]`` with low < high; otherwise a ValueError naming them."""
    if bounds is None:
        return None
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be two numbers [low, high], the range the score can take (e.g. [0, 1] for accuracy), "
            f"or null; got {bounds!r}."
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"`{name}` must be finite with low < high, got [{low}, {high}].")
    return low, high


def _generator(n: int, confidence: float) -> Any:
    """One seeded generator per (n, confidence): deterministic bands, and opda's cache of them hits on reuse."""
    import numpy as np

    key = (n, confidence)
    if key not in _GENERATORS:
        _GENERATORS[key] = np.random.default_rng([n, round(confidence * 1e9)])
    return _GENERATORS[key]


def tuning_curve_bands(
    scores: Sequence[float],
    n: Sequence[float],
    *,
    direction: str = "max",
    confidence: float = 0.95,
    bounds: tuple[float, float] | None = None,
    method: str | None = None,
) -> Bands:
    """The median and expected tuning curves of ``scores`` at ``n`` trials, with simultaneous bands.

    Args:
        scores: Scores of an i.i.d. search (at least one).
        n: Where to evaluate the curves (positive; beyond ``len(scores)`` the band still holds, the point estimate
            is the plug-in's).
        direction: ``"max"`` (higher is better) or ``"min"``.
        confidence: Simultaneous coverage, in (0, 1).
        bounds: The range the score can take, for the band of the expected best.
        method: ``"ld"`` or ``"ks"``; default: LD up to :data:`LD_MAX_TRIALS` scores, KS above.

    Raises:
        ValueError: no scores, a non-finite score or bound, a score outside ``bounds``, a bad confidence, method or
            direction.
    """
    import warnings

    import numpy as np
    from opda.nonparametric import EmpiricalDistribution

    ys = np.asarray([float(s) for s in scores], dtype=float)
    if ys.size == 0 or not np.all(np.isfinite(ys)):
        raise ValueError(f"Tuning-curve bands need at least one finite score, got {list(scores)!r}.")
    if direction not in ("max", "min"):
        raise ValueError(f"`direction` must be 'max' or 'min', got {direction!r}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be in (0, 1), got {confidence!r}.")
    method = band_method(int(ys.size), method)
    low, high = check_bounds(bounds) or (-np.inf, np.inf)
    if ys.min() < low or ys.max() > high:
        raise ValueError(
            f"A score lies outside score_bounds [{low}, {high}] (scores range {ys.min()} to {ys.max()}): widen the "
            "bounds to the range the score can take."
        )
    ns = np.asarray(n, dtype=float)
    minimize = direction == "min"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ties: the band is then conservative, not exact
        lower_cdf, point, upper_cdf = EmpiricalDistribution.confidence_bands(
            ys,
            confidence,
            low,
            high,
            generator=_generator(int(ys.size), float(confidence)),
            method=BAND_METHODS[method],
            n_jobs=1,
        )
        # a higher CDF puts more mass on low scores: it bounds the curve from below, for max and min alike
        bounded = math.isfinite(low) and math.isfinite(high)
        return Bands(
            n=ns.tolist(),
            median=point.quantile_tuning_curve(ns, minimize=minimize).tolist(),
            median_lo=upper_cdf.quantile_tuning_curve(ns, minimize=minimize).tolist(),
            median_hi=lower_cdf.quantile_tuning_curve(ns, minimize=minimize).tolist(),
            expected=point.average_tuning_curve(ns, minimize=minimize).tolist(),
            expected_lo=upper_cdf.average_tuning_curve(ns, minimize=minimize).tolist() if bounded else None,
            expected_hi=lower_cdf.average_tuning_curve(ns, minimize=minimize).tolist() if bounded else None,
            confidence=confidence,
            method=method,
        )
