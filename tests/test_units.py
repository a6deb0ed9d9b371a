import math

import pytest

from lightning_greenai.errors import BudgetConfigError
from lightning_greenai.units import g_to_kg, j_to_kwh, kg_to_g, kwh_to_j, parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.5 kWh", ("energy_kwh", 0.5, None)),
        ("500 Wh", ("energy_kwh", 0.5, None)),
        ("3.6e6 J", ("energy_kwh", 1.0, None)),
        ("1e18 FLOPs", ("flops", 1e18, None)),
        ("2 PFLOPs", ("flops", 2e15, None)),
        ("2 kgCO2e", ("co2e_kg", 2.0, None)),
        ("500 gCO2e", ("co2e_kg", 0.5, None)),
        ("3 USD", ("money", 3.0, "USD")),
        ("10 GPU-h", ("gpu_hours", 10.0, None)),
        ("30 GPU-min", ("gpu_hours", 0.5, None)),
        ("90 min", ("wall_hours", 1.5, None)),
        ("7200s", ("wall_hours", 2.0, None)),
        ("0 kWh", ("energy_kwh", 0.0, None)),
    ],
)
def test_parse_quantity_units(text, expected):
    quantity, value, currency = parse_quantity(text)
    assert (quantity, currency) == (expected[0], expected[2])
    assert math.isclose(value, expected[1], rel_tol=1e-12)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("5 parsecs", r"Unknown unit 'parsecs'.*Allowed units: kWh"),
        ("-1 kWh", r"must be >= 0, got -1.0"),
        ("nan kWh", r"finite number >= 0, got nan"),
        ("inf FLOPs", r"finite number >= 0, got inf"),
        ("kWh", r"Cannot parse budget 'kWh'"),
        ("12", r"has no unit"),
    ],
)
def test_parse_quantity_rejects_bad_input(text, match):
    with pytest.raises(BudgetConfigError, match=match):
        parse_quantity(text)


def test_conversions_round_trip():
    assert j_to_kwh(3.6e6) == 1.0
    assert kwh_to_j(0.5) == 1.8e6
    assert g_to_kg(1500.0) == 1.5
    assert kg_to_g(2.0) == 2000.0
