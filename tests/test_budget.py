import math

import pytest

from lightning_greenai import Budget, BudgetConfigError, Grid, Method, Spend


def spend_kwh(kwh: float, **kwargs) -> Spend:
    return Spend(energy_j={"gpu:0": kwh * 3.6e6}, methods={"gpu:0": Method.COUNTER}, **kwargs)


def test_budget_parse_several_limits():
    b = Budget.parse("0.5 kWh, 1e18 FLOPs, 2 kgCO2e, 3 USD, 10 GPU-h, 90 min")
    assert b.limits == {
        "energy_kwh": 0.5,
        "flops": 1e18,
        "co2e_kg": 2.0,
        "money": 3.0,
        "gpu_hours": 10.0,
        "wall_hours": 1.5,
    }
    assert b.currency == "USD"


def test_budget_parse_mapping_with_units_and_numbers():
    assert Budget.parse({"energy_kwh": "500 Wh", "flops": 1e15}) == Budget(energy_kwh=0.5, flops=1e15)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"joules": 5}, r"Unknown budget key 'joules'. Allowed: energy_kwh, flops"),
        ({"energy_kwh": "2 kgCO2e"}, r"Budget key 'energy_kwh' got '2 kgCO2e', which is a co2e_kg value"),
        ("1 kWh, 2 kWh", r"`energy_kwh` is given twice"),
        ({"currency": "EUR", "money": "3 USD"}, r"mixes currencies EUR and USD"),
        ({"energy_kwh": -1.0}, r"`energy_kwh` must be >= 0, got -1.0"),
        ({"flops": float("nan")}, r"`flops` must be a finite number >= 0, got nan"),
    ],
)
def test_budget_bad_input_is_a_clear_error(spec, match):
    with pytest.raises(BudgetConfigError, match=match):
        Budget.parse(spec)


def test_budget_negative_limit_in_constructor():
    with pytest.raises(BudgetConfigError, match=r"`gpu_hours` must be >= 0, got -2"):
        Budget(gpu_hours=-2)


def test_budget_exceeded_by_names_the_spent_limits():
    grid = Grid(intensity_g_per_kwh=400.0, pue=1.5, price_per_kwh=0.2, currency="EUR")
    budget = Budget(energy_kwh=1.0, co2e_kg=0.5, money=1.0)
    # 0.6 kWh x PUE 1.5 = 0.9 kWh facility energy -> 360 g, 0.18 EUR
    assert budget.exceeded_by(spend_kwh(0.6), grid) == []
    # 0.7 kWh x 1.5 = 1.05 kWh -> energy spent; 420 g < 500 g
    assert budget.exceeded_by(spend_kwh(0.7), grid) == ["energy_kwh"]
    spent = budget.spent(spend_kwh(0.7), grid)
    assert math.isclose(spent["co2e_kg"], 0.42)
    assert math.isclose(spent["money"], 0.21)
    assert math.isclose(budget.fraction_spent(spend_kwh(0.7), grid), 1.05)
    assert math.isclose(budget.remaining(spend_kwh(0.7), grid)["energy_kwh"], -0.05)


def test_budget_flops_gpu_and_wall_time():
    b = Budget(flops=100.0, gpu_hours=1.0, wall_hours=2.0)
    s = Spend(flops=100.0, duration_s=3600.0, gpu_s=3600.0)
    assert b.exceeded_by(s) == ["flops", "gpu_hours"]


def test_budget_co2e_and_money_need_a_grid():
    with pytest.raises(BudgetConfigError, match="needs a grid"):
        Budget(co2e_kg=1.0).exceeded_by(spend_kwh(1.0))
    with pytest.raises(BudgetConfigError, match="needs a price"):
        Budget(money=1.0).exceeded_by(spend_kwh(1.0), Grid(intensity_g_per_kwh=100.0))
    with pytest.raises(BudgetConfigError, match="budget is in USD but the grid prices in EUR"):
        Budget.parse("3 USD").exceeded_by(spend_kwh(1.0), Grid(100.0, price_per_kwh=0.1, currency="EUR"))


def test_unavailable_energy_never_counts_as_spent():
    s = Spend(methods={"gpu:0": Method.UNAVAILABLE})
    assert Budget(energy_kwh=0.0).exceeded_by(s) == []
