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
        ("strategy", "bayes", r"Unknown strategy 'bayes'\. Allowed: grid, random, optuna, asha, hyperband\."),
        ("cost_aware", "wall_hours", r"`hydra.sweeper.cost_aware` must name the cost to weigh, .*got 'wall_hours'\."),
        ("verbose", "yes", r"`hydra.sweeper.verbose` must be true or false, got 'yes'\."),
    ],
)
def test_a_bad_value_raises_the_same_error_naming_it(option, value, message):
    with pytest.raises(BudgetConfigError, match=message):
        SweepConfig.parse(budget={"energy_kwh": "1 kWh"}, **{option: value})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"strategy": "asha", "monitor": "val/acc", "asha": {"reduction_factor": 1}},
            r"`hydra.sweeper.asha.reduction_factor` must be an integer >= 2 \(the top 1/reduction_factor of each rung "
            r"goes on; 3 keeps a third\), got 1\.",
            id="reduction_factor<2",
        ),
        pytest.param(
            {"strategy": "hyperband", "monitor": "val/acc", "hyperband": {"min_resource": 10, "max_resource": 9}},
            r"`hydra.sweeper.hyperband.min_resource` \(10 epochs\) must be below max_resource \(9 epochs\): the rungs "
            r"lie between them\. Lower min_resource, raise max_resource, or set it to null for the trials' own "
            r"epochs\.",
            id="min>max",
        ),
        pytest.param(
            {"strategy": "asha", "monitor": "val/acc", "asha": {"min_resource": 0}},
            r"`hydra.sweeper.asha.min_resource` must be a number > 0 \(the epochs of the first rung\), got 0\.",
            id="min=0",
        ),
        pytest.param(  # NaN was caught only as "min_resource (2.00 J) must be below max_resource (nan J)"
            {"strategy": "asha", "monitor": "val/acc", "asha": {"min_resource": 1, "max_resource": float("nan")}},
            r"`hydra.sweeper.asha.max_resource` must be a finite number > 0, or null for the trial's own epochs; "
            r"got nan\.",
            id="max=nan",
        ),
        pytest.param(
            {"strategy": "asha", "monitor": "val/acc", "asha": {"resource": "energy_kwh", "max_resource": "0 J"}},
            r"`hydra.sweeper.asha.max_resource` must be a finite number > 0, or null for the trial's own energy_kwh; "
            r"got '0 J'\.",
            id="max=0J",
        ),
        pytest.param(  # was: "must be a number > 0 (the epochs of the first rung), got '5 J'", with no hint
            {"strategy": "asha", "monitor": "val/acc", "asha": {"min_resource": "5 J", "max_resource": "1 kJ"}},
            r"`hydra.sweeper.asha.min_resource` is '5 J', an amount of energy_kwh, but the rungs count epochs: set "
            r"hydra.sweeper.asha.resource=energy_kwh to count each trial's spend, or give a number of epochs\.",
            id="spend-quantity-under-epochs",
        ),
        pytest.param(
            {"strategy": "asha", "monitor": "val/acc", "asha": {"resource": "joules"}},
            r"`hydra.sweeper.asha.resource` must be one of epochs, steps, energy_kwh, flops, got 'joules'\.",
            id="resource",
        ),
        pytest.param(
            {"strategy": "asha", "monitor": "val/acc", "asha": {"resource": "energy_kwh", "min_resource": "3 min"}},
            r"`hydra.sweeper.asha.min_resource` is '3 min', an amount of wall_hours, but the rungs count energy_kwh: "
            r"give it as energy \(e.g. '5 J'\)\.",
            id="spend-resource-unit",
        ),
        pytest.param(  # was: "Budget limit `energy_kwh` must be >= 0, got -5.555555555555555e-07 (from '-2 J')"
            {"strategy": "asha", "monitor": "val/acc", "asha": {"resource": "energy_kwh", "min_resource": "-2 J"}},
            r"`hydra.sweeper.asha.min_resource` must be more than 0 energy \(e.g. '5 J'\), got '-2 J'\.",
            id="spend-resource-negative",
        ),
        pytest.param(
            {"strategy": "asha", "monitor": "val/acc", "asha": {"resource": "flops", "min_resource": "12 parsecs"}},
            r"`hydra.sweeper.asha.min_resource`: Unknown unit 'parsecs'",
            id="spend-resource-bad-unit",
        ),
        pytest.param(
            {"strategy": "asha"},
            r"hydra.sweeper.strategy=asha stops trials by the score they report as they train: set "
            r"hydra.sweeper.monitor to a metric they log \(e.g. val/acc\)",
            id="no-monitor",
        ),
        pytest.param(
            {"pruner": {"_target_": "optuna.pruners.HyperbandPruner"}},
            r"hydra.sweeper.pruner \(an Optuna pruner\) stops trials by the score they report as they train: set "
            r"hydra.sweeper.monitor",
            id="pruner-no-monitor",
        ),
        pytest.param(
            {"strategy": "random", "monitor": "val/acc", "pruner": {"_target_": "optuna.pruners.HyperbandPruner"}},
            r"`hydra.sweeper.pruner` is an Optuna pruner but strategy is 'random': set hydra.sweeper.strategy=optuna",
            id="pruner-random",
        ),
        pytest.param(
            {"monitor": "val/acc", "pruner": "hyperband"},
            r"`hydra.sweeper.pruner` must be an Optuna pruner config with a _target_",
            id="pruner-no-target",
        ),
    ],
)
def test_a_bad_rung_option_names_it_and_what_is_allowed(options, message):
    with pytest.raises(BudgetConfigError, match=message):
        SweepConfig.parse(budget={"energy_kwh": "1 kWh"}, **options)


def test_a_spend_resource_takes_its_rungs_as_quantities_in_its_canonical_unit():
    config = SweepConfig.parse(
        max_trials=9,
        strategy="asha",
        monitor="val/acc",
        asha={"resource": "energy_kwh", "min_resource": "5 J", "max_resource": "0.125 Wh"},
    )
    assert config.rungs is not None and config.rungs.resource == "energy_kwh"
    assert (config.rungs.min_resource, config.rungs.max_resource) == (pytest.approx(5 / 3.6e6), pytest.approx(1.25e-4))
    flops = SweepConfig.parse(
        max_trials=9, strategy="asha", monitor="val/acc", asha={"resource": "flops", "min_resource": 1e9}
    )
    assert flops.rungs is not None and flops.rungs.min_resource == 1e9
    # a number written as a string (a quoted YAML value) is the bare number it spells, not "a budget with no unit"
    quoted = SweepConfig.parse(
        max_trials=9, strategy="asha", monitor="val/acc", asha={"resource": "flops", "min_resource": "1e9"}
    )
    assert quoted.rungs is not None and quoted.rungs.min_resource == 1e9


def test_the_rung_options_parse_with_the_schemas_defaults():
    config = SweepConfig.parse(max_trials=9, strategy="hyperband", monitor="val/acc", hyperband={"max_resource": 27})
    assert config.rungs == config.hyperband
    assert (config.rungs.min_resource, config.rungs.max_resource, config.rungs.reduction_factor) == (1.0, 27.0, 3)
    pruned = SweepConfig.parse(max_trials=9, monitor="val/acc", pruner={"_target_": "optuna.pruners.NopPruner"})
    assert (pruned.strategy, pruned.rungs) == ("optuna", None)  # a pruner implies optuna, as a sampler does
