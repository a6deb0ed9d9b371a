import math

import pytest

from lightning_greenai import Grid, GridConfigError, Method, Spend
from lightning_greenai.grid import tables


def kwh(value: float) -> Spend:
    return Spend(energy_j={"gpu:0": value * 3.6e6}, methods={"gpu:0": Method.COUNTER}, duration_s=1800.0)


@pytest.mark.parametrize("code", ["DE", "de", "DEU", "Germany"])
def test_country_lookup_by_code_or_name(code):
    assert Grid.from_location(code).country == "DE"


def test_unknown_country_lists_close_matches():
    with pytest.raises(GridConfigError, match=r"Unknown country 'Germny'. Did you mean: Germany"):
        Grid.from_location("Germny")


def test_unknown_region_lists_close_matches():
    with pytest.raises(
        GridConfigError, match=r"Unknown region 'aws:eu-west-7'. Did you mean: .*aws:eu-west-1.*Allowed: aws:ap"
    ):
        Grid.from_location(region="aws:eu-west-7")


def test_region_maps_to_its_country():
    grid = Grid.from_location(region="gcp:europe-west4")
    assert grid.country == "NL"
    assert grid.intensity_g_per_kwh == tables.country("NL").intensity_g_per_kwh


def test_co2e_and_money_use_pue_intensity_price_and_instance_price():
    grid = Grid.from_location("FR", pue=1.2, price_per_kwh=0.25, currency="EUR", instance_price_per_h=2.0)
    spend = kwh(10.0)
    assert math.isclose(grid.co2e_g(spend), 10.0 * 1.2 * 67.39)
    assert math.isclose(grid.money(spend), 10.0 * 1.2 * 0.25 + 0.5 * 2.0)


def test_country_default_price_and_its_currency():
    grid = Grid.from_location("DE")
    assert (grid.price_per_kwh, grid.currency) == (0.20, "EUR")
    assert Grid.from_location("IN").money(kwh(1.0)) is None  # no price in the table: not priced, not 0


def test_default_grid_is_the_table_mean_and_says_so():
    grid = Grid.from_location()
    assert 300 < grid.intensity_g_per_kwh < 600
    assert "no country given" in grid.intensity_source


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pue": 0.9}, r"`pue` must be a number >= 1.0"),
        ({"pue": float("nan")}, r"`pue` must be a number >= 1.0"),
        ({"price_per_kwh": -0.1, "currency": "EUR"}, r"`price_per_kwh` must be a number >= 0"),
        ({"price_per_kwh": 0.1}, r"`currency` must be an ISO 4217 currency code"),
        ({"price_per_kwh": 0.1, "currency": "euro"}, r"got 'euro'"),
        ({"intensity_g_per_kwh": -5}, r"`intensity_g_per_kwh` must be a number >= 0"),
    ],
)
def test_grid_bad_input(kwargs, match):
    with pytest.raises(GridConfigError, match=match):
        Grid.from_location("US", **kwargs)


def test_data_files_state_source_and_year():
    for name in ("carbon_intensity.csv", "cloud_regions.csv", "electricity_price.csv"):
        note = tables.source_note(name)
        assert "Source" in note or "Sources" in note
    assert "2021" in tables.source_note("carbon_intensity.csv")
    assert "2023" in tables.source_note("electricity_price.csv")


def test_unavailable_energy_gives_no_co2e():
    assert Grid.from_location("US").co2e_g(Spend(methods={"gpu:0": Method.UNAVAILABLE})) is None


@pytest.mark.parametrize(("alias", "iso2"), [("UK", "GB"), ("uk", "GB"), ("USA", "US"), ("Great Britain", "GB")])
def test_common_country_aliases(alias, iso2):
    assert Grid.from_location(alias).country == iso2
