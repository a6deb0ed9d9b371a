import math
import multiprocessing
import time

import psutil
import pytest

from lightning_greenai import Grid, GridConfigError, Meter, Method, Spend
from lightning_greenai.grid import tables
from lightning_greenai.sensors.fake import FakeClock


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
        ({"price_per_kwh": 0.1}, r"`price_per_kwh` needs the currency it is in: pass `currency=`, an ISO 4217 code"),
        ({"price_per_kwh": 0.1, "currency": "euro"}, r"got 'euro'"),
        ({"intensity_g_per_kwh": -5}, r"`intensity_g_per_kwh` must be a number >= 0"),
    ],
)
def test_grid_bad_input(kwargs, match):
    with pytest.raises(GridConfigError, match=match):
        Grid.from_location("US", **kwargs)


def test_an_instance_price_without_its_currency_says_what_asked_for_one():
    with pytest.raises(GridConfigError, match=r"`instance_price_per_h` needs the currency it is in"):
        Grid.from_location(instance_price_per_h=2.0)


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


# -- the rest of the footprint: embodied carbon, water, money line by line ------------------------------------------


def test_embodied_carbon_is_per_gpu_hour_and_cpu_hour_and_never_in_the_operational_co2e():
    grid = Grid.from_location("DE")
    # 2 GPUs for 2 h, on a server of which the run used a quarter (its CPU-seconds over the logical CPUs: 0.5 h)
    spend = Spend(
        energy_j={"gpu:0": 3.6e6},
        methods={"gpu:0": Method.COUNTER},
        duration_s=7200.0,
        gpu_s=2 * 7200.0,
        host_share_s=1800.0,
    )
    embodied = grid.embodied_co2e_g(spend, hosts=1)
    # 150 kgCO2e per GPU and 2,500 kgCO2e per server over 6 years (52,560 h): 2 GPUs x 2 h, 0.5 server-hours
    assert embodied["gpu"] == pytest.approx(4 * 150_000 / 52_560)
    assert embodied["host"] == pytest.approx(0.5 * 2_500_000 / 52_560)
    assert grid.co2e_g(spend) == pytest.approx(grid.intensity_g_per_kwh)  # 1 kWh: the electricity alone
    assert "Luccioni et al. 2023" in grid.footprint_source
    # a reserved server: the whole of each host for the metered time
    reserved = Grid.from_location("DE", embodied_host_basis="server")
    assert reserved.embodied_co2e_g(spend, hosts=1)["host"] == pytest.approx(2 * 2_500_000 / 52_560)
    assert reserved.embodied_co2e_g(spend, hosts=2)["host"] == pytest.approx(4 * 2_500_000 / 52_560)
    with pytest.raises(GridConfigError, match=r"`embodied_host_basis` must be 'cpu' .* got 'node'"):
        Grid.from_location("DE", embodied_host_basis="node")


def _burn(seconds: float) -> None:
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        pass


def test_a_meter_measures_the_runs_cpu_share_of_its_host():
    clock = FakeClock()
    with Meter([], clock=clock) as meter:
        deadline = time.process_time() + 0.3
        while time.process_time() < deadline:  # burn 0.3 CPU-seconds in this process
            pass
        clock.advance(1.0)
    cpus = psutil.cpu_count() or 1
    assert meter.spend.host_share_s == pytest.approx(0.3 / cpus, rel=0.5)
    # a child that starts and ends between two readings (a DataLoader worker) is counted: its parent reaped it
    with Meter([], clock=clock) as meter:
        child = multiprocessing.get_context("fork").Process(target=_burn, args=(0.4,))
        child.start()
        child.join()
        clock.advance(1.0)
    assert meter.spend.host_share_s == pytest.approx(0.4 / cpus, rel=0.5)
    assert Meter([], clock=clock, process=False).start().stop().host_share_s == 0.0  # a rank that meters no host


def test_water_is_on_site_wue_times_it_energy_and_off_site_grid_water_times_facility_energy():
    grid = Grid.from_location("FR", pue=1.5, wue_l_per_kwh=0.5)
    water = grid.water_l(kwh(2.0))
    assert water == {"on_site": pytest.approx(1.0), "off_site": pytest.approx(2.0 * 1.5 * 3.75)}
    assert grid.footprint_source.startswith("user (wue_l_per_kwh); otherwise")
    unknown = Spend(methods={"gpu:0": Method.UNAVAILABLE}, duration_s=10.0)
    assert grid.water_l(unknown) is None


def test_money_is_electricity_and_instance_each_line_apart_in_one_currency():
    grid = Grid.from_location("DE", instance_price_per_h=3.0)
    parts = grid.money_parts(kwh(1.0))  # 1 kWh in half an hour
    assert parts == {"electricity": pytest.approx(0.20), "instance": pytest.approx(1.5)}
    assert grid.money(kwh(1.0)) == pytest.approx(sum(parts.values()))
    assert Grid.from_location("DE").money_parts(kwh(1.0)).keys() == {"electricity"}


@pytest.mark.parametrize(
    "name", ["embodied_g_per_gpu_hour", "embodied_g_per_host_hour", "wue_l_per_kwh", "water_l_per_kwh"]
)
@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_a_bad_footprint_figure_is_refused_naming_it(name, value):
    with pytest.raises(GridConfigError, match=f"`{name}` must be"):
        Grid.from_location("DE", **{name: value})


def test_the_price_tag_shows_embodied_water_and_each_cost_line_in_text_and_json():
    from lightning_greenai import PriceTag

    grid = Grid.from_location("DE", instance_price_per_h=2.0)
    spend = Spend(
        energy_j={"gpu:0": 3.6e6},
        methods={"gpu:0": Method.COUNTER},
        duration_s=3600.0,
        gpu_s=3600.0,
        host_share_s=3600.0,
    )  # the whole server's CPUs for the hour
    tag = PriceTag(spend, grid, title="fit")
    text = tag.to_text()
    assert "  embodied CO2e (apart)          50.4 g CO2e (GPUs 2.85 g CO2e, host 47.6 g CO2e)" in text
    assert "  water                          1.80 L on-site, 3.75 L off-site" in text
    assert "  cost                           2.20 EUR (electricity 0.200, instance 2.00)" in text
    data = tag.to_dict()
    assert data["cost_by_line"] == {"electricity": pytest.approx(0.2), "instance": pytest.approx(2.0)}
    assert data["embodied_co2e_kg"] == pytest.approx(0.0504, abs=1e-4)
    assert data["water_l"] == pytest.approx(5.55)
    assert data["co2e_kg"] == pytest.approx(grid.intensity_g_per_kwh / 1000)  # operational only
    assert data["grid"]["wue_l_per_kwh"] == 1.8


def test_a_pue_of_none_is_refused_up_front_not_in_the_middle_of_training():
    with pytest.raises(GridConfigError, match=r"`pue` must be a number >= 1\.0"):
        Grid.from_location("FR", pue=None)


@pytest.mark.parametrize("kwargs", [{"country": 5}, {"region": 3}])
def test_a_location_that_is_not_a_string_is_refused_by_name(kwargs):
    name, value = next(iter(kwargs.items()))
    with pytest.raises(GridConfigError, match=f"`{name}` must be a string .*got {value}"):
        Grid.from_location(**kwargs)
