"""Structured config of ``hydra/sweeper=greenai``, registered in Hydra's ConfigStore on import."""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional  # noqa: UP035 (OmegaConf structured configs need typing generics on 3.10)

from hydra.core.config_store import ConfigStore


@dataclass
class BudgetConf:
    """Limits, any subset; a number in the field's unit, or a string with a unit ("500 Wh", "1e18 FLOPs")."""

    energy_kwh: Any = None
    flops: Any = None
    co2e_kg: Any = None
    money: Any = None
    gpu_hours: Any = None
    wall_hours: Any = None
    currency: Optional[str] = None  # noqa: UP045


@dataclass
class StopWhenConf:
    """Stop a random search when the next trials cannot be expected to buy enough score per unit (any subset)."""

    gain_per_kwh: Optional[float] = None  # noqa: UP045
    gain_per_flop: Optional[float] = None  # noqa: UP045
    gain_per_kg_co2e: Optional[float] = None  # noqa: UP045
    gain_per_money: Optional[float] = None  # noqa: UP045
    gain_per_gpu_hour: Optional[float] = None  # noqa: UP045
    next_trials: int = 10
    confidence: float = 0.95
    min_trials: int = 5


@dataclass
class GridConf:
    """Where the electricity comes from: turns energy into CO2e and money (see lightning_greenai.Grid)."""

    country: Optional[str] = None  # noqa: UP045
    region: Optional[str] = None  # noqa: UP045
    pue: float = 1.0
    intensity_g_per_kwh: Optional[float] = None  # noqa: UP045
    price_per_kwh: Optional[float] = None  # noqa: UP045
    currency: Optional[str] = None  # noqa: UP045
    instance_price_per_h: Optional[float] = None  # noqa: UP045
    # the rest of the footprint (null: the packaged figures of lightning_greenai.grid.footprint)
    embodied_g_per_gpu_hour: Optional[float] = None  # noqa: UP045
    embodied_g_per_host_hour: Optional[float] = None  # noqa: UP045
    embodied_host_basis: str = "cpu"  # cpu: the run's CPU share of the server; server: the whole server, its time
    wue_l_per_kwh: Optional[float] = None  # noqa: UP045
    water_l_per_kwh: Optional[float] = None  # noqa: UP045
    # an hourly carbon-intensity timeline (CSV: a time and a gCO2e/kWh column); hours it lacks use the figure above
    intensity_csv: Optional[str] = None  # noqa: UP045


@dataclass
class RungConf:
    """Where ASHA's (or Hyperband's) rungs lie: min_resource x reduction_factor^k, below max_resource."""

    min_resource: Any = 1.0  # a number in `resource` units, or a quantity ("5 J") for a spend resource
    max_resource: Any = None
    reduction_factor: int = 3
    resource: str = "epochs"


@dataclass
class GreenAISweeperConf:
    """Every field is documented in conf/hydra/sweeper/greenai.yaml and the README."""

    _target_: str = "hydra_plugins.greenai_sweeper.greenai_sweeper.GreenAISweeper"
    # the sweeper builds what it needs itself (an Optuna sampler from its config, when the search starts)
    _recursive_: bool = False
    # limits, any subset: energy_kwh, flops, co2e_kg, money (+ currency), gpu_hours, wall_hours; numbers or "500 Wh"
    budget: BudgetConf = field(default_factory=BudgetConf)
    # grid, random (i.i.d., seeded), optuna, asha or hyperband; null: optuna with a sampler or pruner, else grid
    strategy: Optional[str] = None  # noqa: UP045
    max_trials: Optional[int] = None  # noqa: UP045
    max_batch_size: Optional[int] = None  # noqa: UP045
    # search space as in hydra.sweeper.params of the basic sweeper
    params: Optional[Dict[str, str]] = None  # noqa: UP006, UP045
    seed: int = 0
    # max or min (Optuna's maximize / minimize too)
    direction: str = "max"
    # the range the score can take, e.g. [0, 1] for accuracy: gives the expected best its confidence band
    score_bounds: Optional[Any] = None  # noqa: UP045
    # stop when the next trials cannot be expected to buy enough: gain_per_kwh, gain_per_flop, gain_per_kg_co2e,
    # gain_per_money, gain_per_gpu_hour (score per unit), next_trials, confidence, min_trials; random search only
    stop_when: StopWhenConf = field(default_factory=StopWhenConf)
    # key of the objective when the task returns a dict
    objective: Optional[str] = None  # noqa: UP045
    # graceful (stop running trials cleanly), finish (let them finish), kill (abort them)
    stop_policy: str = "graceful"
    heartbeat_s: float = 10.0
    poll_s: float = 1.0
    # per-trial cost guess by quantity, used before trials have finished
    prior_cost: BudgetConf = field(default_factory=BudgetConf)
    cost_quantile: float = 0.9
    # each trial may spend this multiple of the estimated per-trial cost (null: no per-trial limit)
    trial_allowance: Optional[float] = None  # noqa: UP045
    max_failure_rate: float = 0.0
    resume: bool = False
    # country, region, pue, intensity_g_per_kwh, price_per_kwh, currency, instance_price_per_h
    grid: GridConf = field(default_factory=GridConf)
    # print the price tag and write plots (greenai_report/) when the sweep stops
    report: bool = True
    # false: the compact price tag (at most 10 lines); true: the full table, as `greenai report <sweep dir>` prints it
    verbose: bool = False
    # push the budget curves (and EVP for random search) to the app's `logger` config as run "greenai-sweep"
    log_curves: bool = True
    # weigh Optuna's proposals by cost: expected improvement per unit of the predicted cost on this axis (energy_kwh,
    # flops, co2e_kg, money, gpu_hours), the cost model learned from the ledger's measured spend; implies optuna
    cost_aware: Optional[str] = None  # noqa: UP045
    # the metric trials report as they train (e.g. val/acc), better as `direction` says: asha, hyperband and an
    # Optuna pruner stop trials by it
    monitor: Optional[str] = None  # noqa: UP045
    # strategy=asha: stop a trial at a rung (min_resource x reduction_factor^k) outside the top 1/reduction_factor
    asha: RungConf = field(default_factory=RungConf)
    # strategy=hyperband: asha in brackets that start at successive rungs
    hyperband: RungConf = field(default_factory=RungConf)
    # an Optuna pruner ({_target_: optuna.pruners.HyperbandPruner, ...}), fed the trials' reports; implies optuna
    pruner: Any = None
    # hydra-optuna-sweeper's spellings, so its configs work as written: n_trials is max_trials, n_jobs is
    # max_batch_size, sampler an Optuna sampler (_target_ and its arguments); storage a database URL that carries the
    # sweep's signals (heartbeats, allowances, STOP; keyed by the sweep dir) and Optuna's study, study_name the study's
    n_trials: Optional[int] = None  # noqa: UP045
    n_jobs: Optional[int] = None  # noqa: UP045
    sampler: Any = None
    storage: Optional[str] = None  # noqa: UP045
    study_name: Optional[str] = None  # noqa: UP045
    search_space: Any = None
    custom_search_space: Optional[str] = None  # noqa: UP045
    # set by the sweeper on its jobs: the id in its ledger that keys its signals in a storage; never set it yourself
    sweep_id: Optional[str] = None  # noqa: UP045


# The schema; hydra/sweeper=greenai is the YAML shipped in lightning_greenai/conf/hydra/sweeper/greenai.yaml (found
# through the search-path plugin), which extends this schema with documented defaults. A YAML and a ConfigStore
# entry of the same name would trigger Hydra's deprecated automatic schema matching.
ConfigStore.instance().store(
    group="hydra/sweeper", name="greenai_schema", node=GreenAISweeperConf, provider="lightning_greenai"
)
