"""SweepConfig: one spelling of the sweeper's options (the Hydra schema's), validated once."""

import dataclasses

import pytest

from hydra_plugins.greenai_sweeper.config import GreenAISweeperConf
from lightning_greenai import BudgetConfigError
from lightning_greenai.sweep.config import SweepConfig

#: What Hydra reads itself and never passes to the sweeper.
HYDRA_KEYS = {"_target_", "_recursive_"}


def test_the_config_has_the_fields_of_the_hydra_schema_and_no_third_spelling():
    schema = {f.name for f in dataclasses.fields(GreenAISweeperConf)} - HYDRA_KEYS
    assert [f.name for f in dataclasses.fields(SweepConfig)] == [
        f.name for f in dataclasses.fields(GreenAISweeperConf) if f.name not in HYDRA_KEYS
    ]
    assert set(SweepConfig.parse.__kwdefaults__) == schema  # parse takes exactly the options Hydra passes


def test_the_schemas_defaults_parse_into_a_frozen_config():
    defaults = {f.name: getattr(GreenAISweeperConf(), f.name) for f in dataclasses.fields(GreenAISweeperConf)}
    options = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in defaults.items()}
    config = SweepConfig.parse(**{k: v for k, v in options.items() if k not in HYDRA_KEYS})
    assert (config.strategy, config.direction, config.gain_rule, config.needs_objective) == ("grid", "max", None, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("poll_s", 0, r"`hydra.sweeper.poll_s` must be a number of seconds >= 0.01 \(0 would spin\), got 0\."),
        ("stop_policy", "later", r"Unknown stop_policy 'later'\. Allowed: graceful, finish, kill\."),
        ("strategy", "bayes", r"Unknown strategy 'bayes'\. Allowed: grid, random, optuna\."),
        ("cost_aware", "wall_hours", r"`hydra.sweeper.cost_aware` must name the cost to weigh, .*got 'wall_hours'\."),
        ("verbose", "yes", r"`hydra.sweeper.verbose` must be true or false, got 'yes'\."),
    ],
)
def test_a_bad_value_raises_the_same_error_naming_it(option, value, message):
    with pytest.raises(BudgetConfigError, match=message):
        SweepConfig.parse(budget={"energy_kwh": "1 kWh"}, **{option: value})
