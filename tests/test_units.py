import math

import pytest

from lightning_greenai import Grid, GridConfigError
from lightning_greenai.errors import BudgetConfigError
from lightning_greenai.units import check_currency, g_to_kg, j_to_kwh, kg_to_g, kwh_to_j, parse_quantity


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
        ("5 parsecs", r"Unknown unit 'parsecs'.*Allowed units: mJ, J, kJ"),
        ("3 Mwh", r"Ambiguous unit 'Mwh'.*'MWh' \(mega\) or 'mWh' \(milli\)"),
        ("3 MJ", None),
        ("3 mj", r"Ambiguous unit 'mj'.*'MJ' \(mega\) or 'mJ' \(milli\)"),
        ("5 XYZ", r"Unknown unit 'XYZ'.*ISO 4217"),
        ("5 KWD", None),  # Kuwaiti dinar is a currency: accepted as money
        ("-1 kWh", r"must be >= 0, got -1.0"),
        ("nan kWh", r"finite number >= 0, got nan"),
        ("inf FLOPs", r"finite number >= 0, got inf"),
        ("kWh", r"Cannot parse budget 'kWh'"),
        ("12", r"has no unit"),
    ],
)
def test_parse_quantity_rejects_bad_input(text, match):
    if match is None:
        parse_quantity(text)
        return
    with pytest.raises(BudgetConfigError, match=match):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # SI prefixes are case-sensitive: m is milli, M is mega (30 mWh was once read as 30 MWh)
        ("30 mWh", ("energy_kwh", 30e-6, None)),
        ("30 MWh", ("energy_kwh", 30e3, None)),
        ("50 mJ", ("energy_kwh", 50e-3 / 3.6e6, None)),
        ("50 MJ", ("energy_kwh", 50e6 / 3.6e6, None)),
        # other cases are accepted where only one unit fits (they once became money in currency "KWH" / "MIN")
        ("5 KWH", ("energy_kwh", 5.0, None)),
        ("5 kwh", ("energy_kwh", 5.0, None)),
        ("10 MIN", ("wall_hours", 10 / 60, None)),
        ("3 mins", ("wall_hours", 0.05, None)),
        ("2 hrs", ("wall_hours", 2.0, None)),
        ("2 PFLOP", ("flops", 2e15, None)),
        ("2 pflops", ("flops", 2e15, None)),
        ("1 GWh", ("energy_kwh", 1e6, None)),
        ("5 eur", ("money", 5.0, "EUR")),
        ("5 EUR", ("money", 5.0, "EUR")),
        ("10 GPU hours", ("gpu_hours", 10.0, None)),
        ("10 gpuh", ("gpu_hours", 10.0, None)),
        ("250 mgCO2e", ("co2e_kg", 250e-6, None)),
        ("2 TCO2E", ("co2e_kg", 2000.0, None)),
    ],
)
def test_parse_quantity_case_rules(text, expected):
    quantity, value, currency = parse_quantity(text)
    assert (quantity, currency) == (expected[0], expected[2])
    assert math.isclose(value, expected[1], rel_tol=1e-12)


@pytest.mark.parametrize("currency", ["EURO", "eur", "ABC", "KWH", 3])
def test_a_currency_must_be_an_iso_4217_code(currency):
    with pytest.raises(BudgetConfigError, match=r"ISO 4217"):
        check_currency(currency)
    with pytest.raises(GridConfigError, match=r"ISO 4217"):
        Grid(100.0, price_per_kwh=0.1, currency=currency)


def test_conversions_round_trip():
    assert j_to_kwh(3.6e6) == 1.0
    assert kwh_to_j(0.5) == 1.8e6
    assert g_to_kg(1500.0) == 1.5
    assert kg_to_g(2.0) == 2000.0


def test_display_units_by_magnitude_and_forced(monkeypatch):
    from lightning_greenai.units import format_energy, format_flops, format_mass, set_display_units

    assert [format_energy(j) for j in (500.0, 5_000.0, 5e6, 5e9)] == ["500 J", "1.39 Wh", "1.39 kWh", "1.39 MWh"]
    assert format_mass(0.5) == "0.500 g CO2e" and format_mass(2500.0) == "2.50 kg CO2e"
    assert format_flops(3.04e7) == "30.4 MFLOPs"
    try:
        set_display_units(energy="kWh", flops="GFLOPs")
        assert format_energy(500.0) == "0.000139 kWh"  # one unit for every figure, as asked
        assert format_flops(3.04e7) == "0.0304 GFLOPs"
    finally:
        set_display_units(energy=None, flops=None)
    with pytest.raises(BudgetConfigError, match=r"Unknown energy unit 'kwh'. Allowed: J, Wh, kWh, MWh"):
        set_display_units(energy="kwh")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.2, "1.20"),
        (0.3434, "0.343"),
        (12.345, "12.3"),
        (123.45, "123"),
        (1234.5, "1230"),
        (9.996, "10.0"),  # the rounding carries: still three figures
        (0.000139, "0.000139"),
        (999_499.0, "999000"),
        (0.0, "0"),
        (-3.2, "-3.20"),
        pytest.param(2.5e-7, "2.50e-07", id="tiny"),
        pytest.param(1.5e9, "1.50e+09", id="huge"),
        pytest.param(math.inf, "inf", id="inf"),
    ],
)
def test_format_number_keeps_three_significant_figures(value, text):
    from lightning_greenai.units import format_number

    assert format_number(value) == text


@pytest.mark.parametrize(
    ("kind", "value", "text"),
    [
        ("energy", 1234.0, "0.343 Wh"),  # not 1230 J: a figure of 1,000 or more reads one unit up
        ("energy", 999.7, "0.278 Wh"),  # 1000 J as rounded
        ("energy", 3599.9, "1.00 Wh"),
        ("energy", 0.5, "0.500 J"),
        ("energy", 7.2e12, "2000 MWh"),  # the top unit keeps its figure
        ("co2e", 999.7, "1.00 kg CO2e"),  # not 1000 g: the unit is chosen on the figure as shown
        ("co2e", 1.5e6, "1.50 t CO2e"),
        ("flops", 999_950.0, "1.00 MFLOPs"),
        ("gpu_time", 90.0, "1.50 GPU-min"),
        ("gpu_time", 7200.0, "2.00 GPU-h"),
        ("water", 1.8, "1.80 L"),
        ("money", 2.2, "2.20 EUR"),
        ("duration", 0.518, "0.518 s"),
        ("duration", 59.6, "0:01:00"),
        ("duration", 3725.0, "1:02:05"),
    ],
)
def test_every_kind_of_figure_uses_the_one_rule(kind, value, text):
    from lightning_greenai import units

    fmt = {
        "energy": units.format_energy,
        "co2e": units.format_mass,
        "flops": units.format_flops,
        "gpu_time": units.format_gpu_time,
        "water": units.format_water,
        "money": lambda v: units.format_money(v, "EUR"),
        "duration": units.format_duration,
    }[kind]
    assert fmt(value) == text
