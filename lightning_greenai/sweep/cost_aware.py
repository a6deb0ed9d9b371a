"""A cost-aware Optuna sampler: expected improvement per unit of predicted cost (Snoek, Larochelle & Adams 2012).

Plain TPE spends as readily on a configuration that costs 50x more as on a cheap one. This sampler models both the
score and the cost of a configuration from the trials so far — two Gaussian processes on the unit cube (Matern 5/2,
length scale and noise by marginal likelihood), the cost one on log cost — and proposes the candidate with the
largest expected improvement divided by its predicted cost. The cost of each trial is what the sweep's ledger
measured on the chosen budget axis (kWh, FLOPs, CO2e, money or GPU-hours), stored on the Optuna trial as the user
attribute :data:`COST_ATTR` when the sweeper tells it its result.

Until ``n_startup_trials`` trials have completed with a measured cost it proposes as TPE does (random at first), so
a cost axis the trials never measure leaves a plain TPE search (the sweeper warns). Trials still running in a batch
count as observed at their predicted score and cost ("kriging believer"), so one batch does not propose the same
point twice; failed trials count at the worst score seen, so a configuration that fails is not proposed again.
Candidates: ``candidates`` uniform draws over the search space plus perturbations of the best trials so far.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from scipy.special import ndtr

__all__ = ["COST_ATTR", "CostAwareSampler"]

#: The Optuna user attribute holding a trial's measured cost on the sweep's ``cost_aware`` axis.
COST_ATTR = "greenai_cost"
_LENGTH_SCALES = (0.1, 0.2, 0.4, 0.8, 1.6)
_NOISES = (1e-4, 1e-2, 1e-1)


class _GaussianProcess:
    """A GP regression on the unit cube: Matern 5/2, length scale and noise picked by marginal likelihood."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.mean, self.scale = float(y.mean()), float(y.std()) or 1.0
        target = (y - self.mean) / self.scale
        distance = _distances(x, x)
        best = None
        for length in _LENGTH_SCALES:
            kernel = _matern(distance, length)
            for noise in _NOISES:
                try:
                    factor = np.linalg.cholesky(kernel + noise * np.eye(len(x)))
                except np.linalg.LinAlgError:
                    continue
                alpha = np.linalg.solve(factor.T, np.linalg.solve(factor, target))
                evidence = -0.5 * target @ alpha - np.log(np.diag(factor)).sum()
                if best is None or evidence > best[0]:
                    best = (evidence, length, factor, alpha)
        assert best is not None  # noise 0.1 on a unit-diagonal kernel is always positive definite
        _, self.length, self.factor, self.alpha = best
        self.x = x

    def predict(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation at ``points``, in the units of ``y``."""
        cross = _matern(_distances(points, self.x), self.length)
        mean = cross @ self.alpha
        v = np.linalg.solve(self.factor, cross.T)
        var = np.maximum(1.0 - (v * v).sum(0), 1e-12)
        return self.mean + self.scale * mean, self.scale * np.sqrt(var)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))
    return result


def _matern(distance: np.ndarray, length: float) -> np.ndarray:
    r = math.sqrt(5.0) * distance / length
    result: np.ndarray = (1.0 + r + r * r / 3.0) * np.exp(-r)
    return result


class _Space:
    """Maps the search space's parameters to and from the unit cube (log scale where the distribution is log)."""

    def __init__(self, space: dict[str, BaseDistribution]) -> None:
        self.space = dict(sorted(space.items()))
        self.width = sum(len(d.choices) if isinstance(d, CategoricalDistribution) else 1 for d in self.space.values())

    def encode(self, params: dict[str, Any]) -> np.ndarray:
        out: list[float] = []
        for name, dist in self.space.items():
            value = params[name]
            if isinstance(dist, CategoricalDistribution):
                out.extend(1.0 if value == choice else 0.0 for choice in dist.choices)
            else:
                assert isinstance(dist, (FloatDistribution, IntDistribution))
                low, high, v = float(dist.low), float(dist.high), float(value)
                if dist.log:
                    low, high, v = math.log(low), math.log(high), math.log(v)
                out.append((v - low) / (high - low) if high > low else 0.0)
        return np.array(out)

    def random(self, rng: np.random.Generator, count: int) -> np.ndarray:
        columns = []
        for dist in self.space.values():
            if isinstance(dist, CategoricalDistribution):
                columns.append(np.eye(len(dist.choices))[rng.integers(len(dist.choices), size=count)])
            else:
                columns.append(rng.random((count, 1)))
        return np.hstack(columns)

    def snap(self, points: np.ndarray) -> np.ndarray:
        """Points moved onto the space (clipped, one-hot categories, integer and stepped values) and re-encoded."""
        return np.array([self.encode(self.decode(p)) for p in points])

    def decode(self, point: np.ndarray) -> dict[str, Any]:
        params: dict[str, Any] = {}
        i = 0
        for name, dist in self.space.items():
            if isinstance(dist, CategoricalDistribution):
                k = len(dist.choices)
                params[name] = dist.choices[int(np.argmax(point[i : i + k]))]
                i += k
                continue
            assert isinstance(dist, (FloatDistribution, IntDistribution))
            u = min(max(float(point[i]), 0.0), 1.0)
            i += 1
            low, high = float(dist.low), float(dist.high)
            value = (
                math.exp(math.log(low) + u * (math.log(high) - math.log(low))) if dist.log else low + u * (high - low)
            )
            step = dist.step
            if step is not None:
                value = low + round((value - low) / step) * step
            if isinstance(dist, IntDistribution):
                params[name] = min(max(round(value), dist.low), dist.high)
            else:
                params[name] = min(max(value, low), high)
        return params


def expected_improvement(mean: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """Expected improvement over ``best`` of a normal(mean, sd) score (maximising)."""
    gain = mean - best
    z = gain / sd
    result: np.ndarray = gain * ndtr(z) + sd * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return result


class CostAwareSampler(optuna.samplers.BaseSampler):
    """Proposes the configuration with the most expected improvement per unit of predicted cost.

    Args:
        seed: Seeds the candidates and the TPE proposals of the start-up.
        n_startup_trials: Completed trials with a measured cost before the models take over.
        candidates: Uniform candidates scored per proposal (plus 64 perturbations of each of the 5 best trials).
        pending: The numbers of the trials asked and not yet told in this session (default: every RUNNING trial);
            a trial an interrupted session left RUNNING is not in flight, and must not weigh as one.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        n_startup_trials: int = 8,
        candidates: int = 2000,
        pending: Callable[[], set[int]] | None = None,
    ) -> None:
        if n_startup_trials < 2:
            raise ValueError(
                f"n_startup_trials must be at least 2 (the models need two points); got {n_startup_trials}."
            )
        self.seed, self.n_startup_trials, self.candidates = seed, n_startup_trials, candidates
        self._pending = pending
        self._startup = optuna.samplers.TPESampler(seed=seed)
        self._intersection = optuna.search_space.IntersectionSearchSpace()

    def reseed_rng(self) -> None:
        """Optuna's hook for parallel workers: reseed the start-up sampler."""
        self._startup.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The parameters every trial so far has had (those that can vary)."""
        space = self._intersection.calculate(study)
        return {name: dist for name, dist in space.items() if not dist.single()}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        """Parameters outside the relative space (and all of them during start-up): as TPE proposes them."""
        return self._startup.sample_independent(study, trial, param_name, param_distribution)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """The candidate maximising expected improvement / predicted cost; ``{}`` (random) during start-up."""
        if not search_space:
            return {}
        space = _Space(search_space)
        known = [t for t in study.get_trials(deepcopy=False) if set(search_space) <= set(t.params)]
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        done = [(t, sign * t.value) for t in known if t.state == TrialState.COMPLETE and t.value is not None]
        costed = [(t, cost) for t in known if t.state == TrialState.COMPLETE and (cost := _cost(t)) is not None]
        if len(done) < 2 or len(costed) < self.n_startup_trials:
            return {}
        pending = self._pending() if self._pending is not None else None
        running = [
            t
            for t in known
            if t.state == TrialState.RUNNING and t.number != trial.number and (pending is None or t.number in pending)
        ]
        worst = min(v for _, v in done)
        failed = [(t, worst) for t in known if t.state == TrialState.FAIL]
        observed = done + failed
        score_model = _believer(space, [t.params for t, _ in observed], np.array([v for _, v in observed]), running)
        cost_model = _believer(space, [t.params for t, _ in costed], np.log([c for _, c in costed]), running)
        rng = np.random.default_rng([self.seed, trial.number])
        top = sorted(done, key=lambda pair: -pair[1])[:5]
        local = [space.encode(t.params) + rng.normal(0.0, 0.05, (64, space.width)) for t, _ in top]
        points = space.snap(np.vstack([space.random(rng, self.candidates), *local]))
        mean, sd = score_model.predict(points)
        best = max(v for _, v in done)
        log_cost, _ = cost_model.predict(points)
        value = expected_improvement(mean, sd, best) / np.exp(log_cost)
        return space.decode(points[int(np.argmax(value))])


def _cost(trial: FrozenTrial) -> float | None:
    value = trial.user_attrs.get(COST_ATTR)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) and value > 0 else None


def _believer(
    space: _Space, params: Sequence[dict[str, Any]], y: np.ndarray, running: Sequence[FrozenTrial]
) -> _GaussianProcess:
    """A GP on the observed points, refitted with the running trials at their predicted values."""
    x = np.array([space.encode(p) for p in params])
    model = _GaussianProcess(x, y)
    pending = [t.params for t in running if set(space.space) <= set(t.params)]
    if not pending:
        return model
    px = np.array([space.encode(p) for p in pending])
    guess, _ = model.predict(px)
    return _GaussianProcess(np.vstack([x, px]), np.concatenate([y, guess]))
