"""The sweeper's options, validated once: :class:`SweepConfig`, built from ``hydra.sweeper``'s keyword arguments.

Its fields are the fields of ``GreenAISweeperConf`` (the Hydra schema), so an option has one spelling; each holds
the value normalised (a :class:`Budget`, a :class:`Grid`, ``max``/``min``, the strategy resolved from a sampler or
``cost_aware``). Every error names the option, the value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lightning_greenai.budget import Budget
from lightning_greenai.errors import BudgetConfigError
from lightning_greenai.grid import Grid
from lightning_greenai.stats.bands import check_bounds
from lightning_greenai.stats.gain import GainRule
from lightning_greenai.sweep.rungs import RungOptions
from lightning_greenai.sweep.strategies import check_optuna_storage
from lightning_greenai.trial.channel import check_storage
from lightning_greenai.units import QUANTITIES

__all__ = ["COST_AXES", "RUNG_STRATEGIES", "STOP_POLICIES", "STRATEGIES", "SweepConfig"]

STOP_POLICIES = ("graceful", "finish", "kill")
STRATEGIES = ("grid", "random", "optuna", "asha", "hyperband")
#: Strategies that stop trials at rungs from the scores they report (Optuna's with a pruner, too).
RUNG_STRATEGIES = ("asha", "hyperband")
#: Budget axes ``cost_aware`` can weigh proposals by (wall time is not a property of a configuration alone).
COST_AXES = tuple(q for q in QUANTITIES if q != "wall_hours")


@dataclass(frozen=True)
class SweepConfig:
    """``hydra.sweeper``'s options, checked and normalised (see the module docstring); build with :meth:`parse`."""

    budget: Budget
    strategy: str  # grid, random, optuna, asha or hyperband: resolved from sampler, pruner and cost_aware if not given
    max_trials: int | None  # n_trials folded in
    max_batch_size: int | None  # n_jobs folded in
    params: dict[str, str]
    seed: int
    direction: str  # max or min
    score_bounds: tuple[float, float] | None
    stop_when: Any  # as plain Python; see gain_rule
    objective: str | None
    stop_policy: str
    heartbeat_s: float
    poll_s: float
    prior_cost: dict[str, float]  # per-trial cost guess by quantity, in the budget's units
    cost_quantile: float
    trial_allowance: float | None
    max_failure_rate: float
    resume: bool
    grid: Grid
    report: bool
    verbose: bool  # the full price tag table instead of the compact tag
    log_curves: bool
    cost_aware: str | None
    monitor: str | None  # the metric trials report as they train, which asha, hyperband and a pruner decide by
    asha: RungOptions
    hyperband: RungOptions
    pruner: dict[str, Any] | None  # an Optuna pruner config (implies optuna)
    n_trials: int | None  # hydra-optuna-sweeper's spelling of max_trials, as given
    n_jobs: int | None  # hydra-optuna-sweeper's spelling of max_batch_size, as given
    sampler: dict[str, Any] | None  # an Optuna sampler config; None when Optuna's random sampler became ours
    storage: str | None
    study_name: str | None
    search_space: None  # hydra-optuna-sweeper options this sweeper refuses: always None here
    custom_search_space: None
    sweep_id: None  # set by the sweeper on its jobs only

    @property
    def gain_rule(self) -> GainRule | None:
        """``stop_when`` parsed (checked by :meth:`parse`): ``None`` when no threshold is set."""
        return GainRule.parse(self.stop_when)

    @property
    def needs_objective(self) -> bool:
        """A number to optimise is required when a key names it or a strategy learns or ranks by it.

        A plain grid sweep (Hydra's own launcher tests) accepts tasks that return anything.
        """
        return self.objective is not None or self.strategy != "grid"

    @property
    def rungs(self) -> RungOptions | None:
        """The rung options of the strategy (``asha`` or ``hyperband``), ``None`` for the others."""
        return self.asha if self.strategy == "asha" else self.hyperband if self.strategy == "hyperband" else None

    @classmethod
    def parse(
        cls,
        *,
        budget: Mapping[str, Any] | None = None,
        strategy: str | None = None,
        max_trials: int | None = None,
        max_batch_size: int | None = None,
        params: Mapping[str, str] | None = None,
        seed: int = 0,
        direction: str = "max",
        score_bounds: Any = None,
        stop_when: Mapping[str, Any] | None = None,
        objective: str | None = None,
        stop_policy: str = "graceful",
        heartbeat_s: float = 10.0,
        poll_s: float = 1.0,
        prior_cost: Mapping[str, Any] | None = None,
        cost_quantile: float = 0.9,
        trial_allowance: float | None = None,
        max_failure_rate: float = 0.0,
        resume: bool = False,
        grid: Mapping[str, Any] | None = None,
        report: bool = True,
        verbose: bool = False,
        log_curves: bool = True,
        n_trials: int | None = None,
        n_jobs: int | None = None,
        sampler: Any = None,
        cost_aware: str | None = None,
        monitor: str | None = None,
        asha: Mapping[str, Any] | None = None,
        hyperband: Mapping[str, Any] | None = None,
        pruner: Any = None,
        storage: str | None = None,
        study_name: str | None = None,
        search_space: Any = None,
        custom_search_space: str | None = None,
        sweep_id: str | None = None,
    ) -> SweepConfig:
        """Check every option and build the config.

        Raises:
            BudgetConfigError: an option out of range, naming it, the value and what is allowed.
        """
        given = {k: v for k, v in locals().items() if k != "cls"}  # the options as passed, before any is normalised
        parsed_budget = Budget.parse({k: v for k, v in dict(budget or {}).items() if v is not None})
        max_trials = _alias("max_trials", max_trials, "n_trials", n_trials)
        max_batch_size = _alias("max_batch_size", max_batch_size, "n_jobs", n_jobs)
        if isinstance(direction, str):
            direction = {"maximize": "max", "minimize": "min"}.get(direction, direction)
        _refuse_search_space(search_space, custom_search_space)
        strategy, seed, plain_sampler, plain_pruner = _strategy_and_pruner(strategy, seed, sampler, cost_aware, pruner)
        _check_direction_and_storage(direction, storage, sweep_id)
        _check_strategy(strategy)
        _check_monitor(monitor, strategy, plain_pruner)
        _check_choices(stop_policy, direction, max_trials, max_batch_size, seed)
        bounds, plain_stop_when = _check_gain_rule(score_bounds, stop_when, strategy)
        _check_numbers(max_failure_rate, cost_quantile, heartbeat_s, poll_s, trial_allowance)
        _check_flags(resume=resume, report=report, verbose=verbose, log_curves=log_curves)
        _check_it_stops(parsed_budget, max_trials, strategy)
        normalised = {
            "budget": parsed_budget,
            "strategy": strategy,
            "max_trials": max_trials,
            "max_batch_size": max_batch_size,
            "params": dict(params or {}),
            "seed": seed,
            "direction": direction,
            "score_bounds": bounds,
            "stop_when": plain_stop_when,
            # the same units and spellings as the budget: numbers in the field's unit, or strings such as "3 J"
            "prior_cost": Budget.parse({k: v for k, v in dict(prior_cost or {}).items() if v is not None}).limits,
            "grid": _check_grid(parsed_budget, grid, cost_aware),
            "sampler": plain_sampler,
            "storage": storage or None,
            "asha": RungOptions.parse("asha", _plain(asha)),
            "hyperband": RungOptions.parse("hyperband", _plain(hyperband)),
            "pruner": plain_pruner,
        }
        return cls(**{**given, **normalised})


def _refuse_search_space(search_space: Any, custom_search_space: Any) -> None:
    """hydra-optuna-sweeper's search space options are refused, saying how to write the search space instead."""
    if search_space is not None or custom_search_space is not None:
        raise BudgetConfigError(
            "hydra.sweeper.search_space / custom_search_space are hydra-optuna-sweeper options the greenai sweeper "
            "does not take: write each parameter under hydra.sweeper.params in Hydra's sweep syntax, e.g. "
            "`model.lr: tag(log, interval(1e-4, 1e-1))`, `batch_size: choice(32, 64)`."
        )


def _check_choices(stop_policy: Any, direction: Any, max_trials: Any, max_batch_size: Any, seed: Any) -> None:
    """A known stop policy and direction; counts that are integers >= 1 (or null); an integer seed."""
    if stop_policy not in STOP_POLICIES:
        raise BudgetConfigError(f"Unknown stop_policy {stop_policy!r}. Allowed: {', '.join(STOP_POLICIES)}.")
    if direction not in ("max", "min"):
        raise BudgetConfigError(f"`hydra.sweeper.direction` must be 'max' or 'min', got {direction!r}.")
    for name, value in (("max_trials", max_trials), ("max_batch_size", max_batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise BudgetConfigError(f"`hydra.sweeper.{name}` must be an integer >= 1 or null, got {value!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise BudgetConfigError(f"`hydra.sweeper.seed` must be an integer, got {seed!r}.")


def _check_flags(**flags: Any) -> None:
    """Each switch is true or false (not a string such as "yes")."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise BudgetConfigError(f"`hydra.sweeper.{name}` must be true or false, got {value!r}.")


def _check_it_stops(budget: Budget, max_trials: int | None, strategy: str) -> None:
    """A search that no budget and no max_trials would stop is refused (a grid stops when it is run through)."""
    if budget.is_unlimited and max_trials is None and strategy != "grid":
        raise BudgetConfigError(
            f"The {strategy} strategy with no budget limit and no max_trials would never stop: set "
            "hydra.sweeper.budget.<quantity> or hydra.sweeper.max_trials."
        )


def _strategy(strategy: str | None, seed: Any, sampler: Any, cost_aware: Any) -> tuple[str, Any, Any]:
    """The strategy, seed and sampler a sampler and ``cost_aware`` imply: Optuna's random sampler runs as ours."""
    plain_sampler = _plain(sampler)
    if cost_aware is not None:
        _check_cost_aware(cost_aware, strategy, plain_sampler)
        strategy = "optuna"
    if plain_sampler is not None:
        if not isinstance(plain_sampler, dict) or "_target_" not in plain_sampler:
            raise BudgetConfigError(
                f"`hydra.sweeper.sampler` must be an Optuna sampler config with a _target_, e.g. "
                f"{{_target_: optuna.samplers.TPESampler, seed: 1234}}; got {sampler!r}."
            )
        if str(plain_sampler["_target_"]).endswith("RandomSampler") and strategy in (None, "random", "optuna"):
            # Optuna's random sampler is an i.i.d. search: run it as ours, whose curves may be called "expected"
            return "random", int(plain_sampler.get("seed", seed) or seed), None
        if strategy is None:
            strategy = "optuna"
        elif strategy != "optuna":
            raise BudgetConfigError(
                f"`hydra.sweeper.sampler` is an Optuna sampler but strategy is {strategy!r}: set "
                "hydra.sweeper.strategy=optuna, or remove the sampler."
            )
    return strategy or "grid", seed, plain_sampler


def _strategy_and_pruner(
    strategy: str | None, seed: Any, sampler: Any, cost_aware: Any, pruner: Any
) -> tuple[str, Any, Any, dict[str, Any] | None]:
    """The strategy, seed, sampler and pruner the options imply (see :func:`_strategy` and :func:`_pruner`)."""
    strategy, plain_pruner = _pruner(strategy, pruner)
    resolved, seed, plain_sampler = _strategy(strategy, seed, sampler, cost_aware)
    if plain_pruner is not None and resolved != "optuna":
        raise BudgetConfigError(
            "`hydra.sweeper.pruner` with Optuna's RandomSampler: the greenai sweeper runs that sampler as its own "
            "random search, which no Optuna pruner sees. For random proposals stopped at rungs use "
            "hydra.sweeper.strategy=asha (or hyperband); for Optuna's pruner, another sampler."
        )
    return resolved, seed, plain_sampler, plain_pruner


def _pruner(strategy: str | None, pruner: Any) -> tuple[str | None, dict[str, Any] | None]:
    """An Optuna pruner config goes with the optuna strategy (implied when none was chosen, as by a sampler)."""
    plain = _plain(pruner)
    if plain is None:
        return strategy, None
    if not isinstance(plain, dict) or "_target_" not in plain:
        raise BudgetConfigError(
            f"`hydra.sweeper.pruner` must be an Optuna pruner config with a _target_, e.g. "
            f"{{_target_: optuna.pruners.HyperbandPruner, min_resource: 1}}; got {pruner!r}."
        )
    if strategy is None:  # as a sampler does, the pruner chooses optuna
        return "optuna", plain
    if strategy != "optuna":
        raise BudgetConfigError(
            f"`hydra.sweeper.pruner` is an Optuna pruner but strategy is {strategy!r}: set "
            "hydra.sweeper.strategy=optuna, or remove the pruner (asha and hyperband are the greenai sweeper's own)."
        )
    return strategy, plain


def _check_monitor(monitor: Any, strategy: str, pruner: Any) -> None:
    """A metric name, which a strategy that stops trials at rungs needs."""
    if monitor is not None and (not isinstance(monitor, str) or not monitor):
        raise BudgetConfigError(
            f"`hydra.sweeper.monitor` must name a metric the trials log (e.g. val/acc), or be null; got {monitor!r}."
        )
    if monitor is None and (strategy in RUNG_STRATEGIES or pruner is not None):
        what = f"hydra.sweeper.strategy={strategy}" if pruner is None else "hydra.sweeper.pruner (an Optuna pruner)"
        raise BudgetConfigError(
            f"{what} stops trials by the score they report as they train: set hydra.sweeper.monitor "
            "to a metric they log (e.g. val/acc), which a Lightning trial reports at each validation end through "
            "callbacks=greenai (BudgetStopping), and a plain task through lightning_greenai.report_score."
        )


def _check_direction_and_storage(direction: Any, storage: Any, sweep_id: Any) -> None:
    """One objective's direction; a storage URL without a written password; no sweep id of the user's."""
    if not isinstance(direction, str):
        raise BudgetConfigError(
            f"The greenai sweeper optimises one objective: `hydra.sweeper.direction` must be max or min "
            f"(maximize or minimize), got {direction!r}."
        )
    if storage is not None and not isinstance(storage, str):
        raise BudgetConfigError(f"`hydra.sweeper.storage` must be a database URL or null, got {storage!r}.")
    if storage:
        check_storage(storage)
    if sweep_id is not None:
        raise BudgetConfigError(
            f"hydra.sweeper.sweep_id is set by the sweeper on its jobs (the id its ledger records), got "
            f"{sweep_id!r}: remove it."
        )


def _check_strategy(strategy: str) -> None:
    """A known strategy; for optuna, an Optuna whose storage this sweeper can use (before anything is written)."""
    if strategy not in STRATEGIES:
        raise BudgetConfigError(f"Unknown strategy {strategy!r}. Allowed: {', '.join(STRATEGIES)}.")
    if strategy == "optuna":  # before anything is written: a sweep dir is not left holding a ledger it cannot run
        try:
            import optuna
        except ImportError:
            pass  # OptunaStrategy says how to install it
        else:
            check_optuna_storage(optuna.__version__)


def _check_gain_rule(score_bounds: Any, stop_when: Any, strategy: str) -> tuple[tuple[float, float] | None, Any]:
    """``score_bounds`` checked, and ``stop_when`` as plain Python: a rule for a random search with bounds only."""
    try:
        bounds = check_bounds(_plain(score_bounds), name="hydra.sweeper.score_bounds")
        plain_stop_when = _plain(stop_when)
        gain_rule = GainRule.parse(plain_stop_when)
    except ValueError as err:
        raise BudgetConfigError(str(err)) from None
    if gain_rule is not None and strategy != "random":
        why = {
            "grid": "a grid's trials are not random draws",
            "optuna": "Optuna's depend on the earlier ones",
        }.get(strategy, f"{strategy} stops some trials early, so they are not full trials")
        raise BudgetConfigError(
            f"hydra.sweeper.stop_when needs a random (i.i.d.) search: its bound on what the next trials can add "
            f"holds only for independent draws, and {why}. Set hydra.sweeper.strategy=random, or remove "
            "stop_when."
        )
    if gain_rule is not None and bounds is None:
        raise BudgetConfigError(
            "hydra.sweeper.stop_when needs hydra.sweeper.score_bounds, the range the score can take (e.g. [0, 1] "
            "for accuracy): without it a better score can never be ruled out, so the sweep could never stop."
        )
    return bounds, plain_stop_when


def _check_numbers(
    max_failure_rate: Any, cost_quantile: Any, heartbeat_s: Any, poll_s: Any, trial_allowance: Any
) -> None:
    """The numeric options in their ranges."""
    _check_number("max_failure_rate", max_failure_rate, low=0.0, high=1.0, allowed="a number in [0, 1]")
    _check_number("cost_quantile", cost_quantile, low=0.0, high=1.0, allowed="a quantile in [0, 1], e.g. 0.9")
    _check_number("heartbeat_s", heartbeat_s, low=0.0, high=1e6, allowed="a number of seconds >= 0")
    _check_number("poll_s", poll_s, low=0.01, high=1e6, allowed="a number of seconds >= 0.01 (0 would spin)")
    if trial_allowance is not None:
        _check_number(
            "trial_allowance", trial_allowance, low=1e-9, high=1e6, allowed="a multiple > 0 of a trial's cost, or null"
        )


def _check_grid(budget: Budget, grid: Any, cost_aware: Any) -> Grid:
    """The grid, which must price every limited quantity (and money, for ``cost_aware=money``)."""
    parsed = Grid.from_config(grid)
    budget.check_grid(parsed)
    if cost_aware == "money" and not parsed.prices_money:
        raise BudgetConfigError(
            "`hydra.sweeper.cost_aware=money` needs a price: set hydra.sweeper.grid.price_per_kwh and currency "
            "(or instance_price_per_h), or a country whose price is in the packaged table."
        )
    return parsed


def _check_number(name: str, value: Any, *, low: float, high: float = math.inf, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (low <= value <= high):
        raise BudgetConfigError(f"`hydra.sweeper.{name}` must be {allowed}, got {value!r}.")
    return float(value)


def _alias(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    """Take an option from its hydra-optuna-sweeper spelling too; the two must agree when both are given."""
    if alias_value is None:
        return value
    if value is not None and value != alias_value:
        raise BudgetConfigError(
            f"`hydra.sweeper.{alias}` ({alias_value!r}) is hydra-optuna-sweeper's name for `{name}`, which is "
            f"{value!r}: give one of them."
        )
    return alias_value


def _plain(node: Any) -> Any:
    """A Hydra/OmegaConf node as plain Python (dicts and lists), for fingerprints and instantiation."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:
        return node
    if isinstance(node, DictConfig | ListConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _check_cost_aware(axis: Any, strategy: str | None, sampler: Any) -> None:
    """``cost_aware`` names a cost axis, and goes with the optuna strategy and no sampler of the user's."""
    if axis not in COST_AXES:
        raise BudgetConfigError(
            f"`hydra.sweeper.cost_aware` must name the cost to weigh, one of {', '.join(COST_AXES)}; got {axis!r}."
        )
    if sampler is not None:
        raise BudgetConfigError(
            "`hydra.sweeper.cost_aware` brings its own Optuna sampler (expected improvement per unit of predicted "
            "cost): remove hydra.sweeper.sampler, or cost_aware."
        )
    if strategy not in (None, "optuna"):
        why = "a grid proposes without learning" if strategy == "grid" else "a random search must stay i.i.d."
        raise BudgetConfigError(
            f"`hydra.sweeper.cost_aware` is a proposal rule of the optuna strategy, but strategy is {strategy!r} "
            f"({why}): set hydra.sweeper.strategy=optuna, or remove cost_aware."
        )
