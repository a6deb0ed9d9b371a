"""Carbon intensity by the hour: energy filed by UTC hour, a CSV timeline, Electricity Maps (opt-in, cached)."""

import json
import threading
import urllib.parse
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from lightning_greenai import EnergyMonitor, GreenAIWarning, Grid, GridConfigError, Meter, Spend
from lightning_greenai.grid.timeline import ElectricityMaps, ProviderError, hour_key, read_intensity_csv, split_by_hour
from lightning_greenai.reporting.price_tag import PriceTag
from lightning_greenai.sensors.fake import ConstantPowerSensor, FakeClock
from tests.conftest import ClockedModel

RECORDED = Path(__file__).parent / "data" / "electricitymaps_past_range.json"
T0 = datetime(2026, 11, 26, 10, 30, tzinfo=timezone.utc).timestamp()  # half past ten, UTC


def test_energy_is_split_over_the_hours_it_was_spent_in():
    assert split_by_hour(T0, T0 + 3600, 100.0) == pytest.approx({"2026-11-26T10": 50.0, "2026-11-26T11": 50.0})
    assert split_by_hour(T0, T0, 5.0) == {"2026-11-26T10": 5.0}
    assert hour_key(T0) == "2026-11-26T10"


def test_a_meter_files_its_energy_by_utc_hour():
    clock = FakeClock()
    with Meter([ConstantPowerSensor("gpu:0", 100.0, clock=clock)], clock=clock, wall_clock=lambda: T0 + clock()) as m:
        for _ in range(90):  # 90 minutes from 10:30: 30 in the 10 o'clock hour, 60 in the 11 o'clock hour
            clock.advance(60.0)
            m.sample()
    assert m.spend.hourly_energy_j == pytest.approx({"2026-11-26T10": 180_000.0, "2026-11-26T11": 360_000.0})
    spend = Spend.from_dict(m.spend.to_dict())
    assert (spend + spend).hourly_energy_j["2026-11-26T11"] == pytest.approx(720_000.0)


def test_the_grid_prices_each_hour_at_its_intensity_and_the_rest_at_the_yearly_figure(tmp_path):
    csv = tmp_path / "intensity.csv"
    csv.write_text("datetime,carbon_intensity_g_per_kwh\n2026-11-26T10:00Z,100\n2026-11-26T10:30Z,200\n")
    grid = Grid.from_location(country="DE", intensity_csv=csv)
    assert grid.timeline == {"2026-11-26T10": 150.0}  # rows within one hour are averaged
    spend = Spend(energy_j={"gpu:0": 3.6e6}, hourly_energy_j={"2026-11-26T10": 1.2e6, "2026-11-26T11": 2.4e6})
    yearly = Grid.from_location(country="DE").intensity_g_per_kwh
    assert grid.intensity_for(spend) == pytest.approx((150.0 + 2 * yearly) / 3)
    assert grid.co2e_g(spend) == pytest.approx(grid.intensity_for(spend))  # 1 kWh
    figure, source = grid.intensity_text(spend)
    assert figure == f"hourly, mean {grid.intensity_for(spend):.0f} g/kWh"
    assert source.startswith("intensity.csv (user's hourly CSV), 1 of 2 hour(s); the other 1 at Germany")
    tag = PriceTag(spend, grid)
    assert "CO2e (DE, hourly)" in tag.to_text() and "at a mean" in tag.to_text() and "1 of 2 hour(s)" in tag.to_text()
    recorded = tag.to_dict()["grid"]
    assert recorded["timeline"] == {"2026-11-26T10": 150.0}  # only the run's hours are written
    assert Grid(**{k: v for k, v in recorded.items() if k not in ("country",)}).co2e_g(spend) == pytest.approx(
        grid.co2e_g(spend)
    )
    # no timeline: the yearly figure, as before
    assert Grid.from_location(country="DE").co2e_g(spend) == pytest.approx(yearly)


def test_electricity_maps_exports_read_as_they_are(tmp_path):
    csv = tmp_path / "DE_2026_hourly.csv"
    csv.write_text(
        "Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
        "Carbon Intensity gCO₂eq/kWh (Life cycle)\n"
        "2026-11-26 10:00:00,Germany,Germany,DE,350.5,401.25\n"
    )
    assert read_intensity_csv(csv) == {"2026-11-26T10": 401.25}  # life cycle, as the packaged table's


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("when,value\n2026-11-26T10:00Z,1\n", "has no time column"),
        ("datetime;intensity\n2026-11-26T10:00Z;1\n", "has no time column \\(it looks separated by ';'"),
        ("datetime,carbon_intensity_g_per_kwh\nyesterday,1\n", "data row 1: 'yesterday' is not an ISO 8601"),
        ("\n\ndatetime,intensity\n2026-11-26T10:00Z,-3\n", "data row 1: the intensity must be a number >= 0"),
        ("datetime,carbon_intensity_g_per_kwh\n2026-11-26T10:00Z,30 mWh\n", "got '30 mWh'"),
        ("", "is empty"),
        ("datetime,intensity\n2026-11-26T10:00Z,365000\n", "365000 gCO2e/kWh is not a grid's intensity"),
    ],
)
def test_a_bad_timeline_is_refused_by_line_and_value(tmp_path, text, message):
    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    with pytest.raises(GridConfigError, match=message):
        Grid.from_location(intensity_csv=csv)
    with pytest.raises(GridConfigError, match="cannot read the intensity timeline"):
        Grid.from_location(intensity_csv=tmp_path / "missing.csv")


def test_a_timeline_that_is_not_utf8_is_refused_with_what_to_do(tmp_path):
    csv = tmp_path / "latin.csv"
    csv.write_bytes("datetime,intensity,note\n2026-11-26T10:00Z,1,Z\xfcrich\n".encode("latin-1"))
    with pytest.raises(GridConfigError, match=r"is not UTF-8 text .*save it as UTF-8"):
        EnergyMonitor(grid={"country": "CH", "intensity_csv": csv})


def test_a_meter_whose_wall_clock_starts_at_zero_files_the_first_hour_too():
    clock = FakeClock()
    with Meter([ConstantPowerSensor("gpu:0", 1.0, clock=clock)], clock=clock, wall_clock=clock) as m:
        for _ in range(2):
            clock.advance(3600.0)
            m.sample()
    assert m.spend.hourly_energy_j == pytest.approx({"1970-01-01T00": 3600.0, "1970-01-01T01": 3600.0})


class Replay(BaseHTTPRequestHandler):
    """Electricity Maps' past-range endpoint, answering with the recorded response re-dated to the asked hours.

    ``body`` replaces the answer (a damaged one) when set; a path under ``/moved`` is redirected to the same path
    without it.
    """

    requests: ClassVar[list[dict]] = []
    status = 200
    body: bytes | None = None
    published = datetime(2100, 1, 1, tzinfo=timezone.utc)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path.startswith("/moved/"):  # moved on the same server
            self.send_response(301)
            self.send_header("Location", self.path.removeprefix("/moved"))
            self.end_headers()
            return
        query = dict(urllib.parse.parse_qsl(url.query))
        Replay.requests.append({"path": url.path, "token": self.headers.get("auth-token"), **query})
        if Replay.status != 200:
            self.send_error(Replay.status, "Unauthorized")
            return
        if Replay.body is not None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(Replay.body)
            return
        recorded = json.loads(RECORDED.read_text())
        start = datetime.strptime(query["start"], "%Y-%m-%dT%H:%MZ").replace(tzinfo=timezone.utc)
        end = datetime.strptime(query["end"], "%Y-%m-%dT%H:%MZ").replace(tzinfo=timezone.utc)
        data, hour, i = [], start, 0
        while hour < end and hour <= Replay.published:
            entry = dict(recorded["data"][i % len(recorded["data"])])
            entry["datetime"] = hour.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            data.append(entry)
            hour, i = hour + timedelta(hours=1), i + 1
        body = json.dumps({"zone": query["zone"], "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def priced_by(api: ElectricityMaps, clock: FakeClock) -> EnergyMonitor:
    """A monitor of a 100 W fake GPU in Germany, priced by the hour through ``api``."""
    gpu = ConstantPowerSensor("gpu:0", 100.0, clock=clock)
    return EnergyMonitor(grid={"country": "DE"}, electricity_maps=api, sensors=[gpu], clock=clock, verbose=False)


@pytest.fixture
def electricity_maps_api():
    Replay.requests, Replay.status, Replay.body = [], 200, None
    Replay.published = datetime(2100, 1, 1, tzinfo=timezone.utc)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Replay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v3"
    server.shutdown()
    server.server_close()


def test_electricity_maps_is_asked_once_per_hour_and_cached_for_every_job(electricity_maps_api, tmp_path):
    hours = ["2026-11-26T10", "2026-11-26T11", "2026-11-26T12"]
    job = ElectricityMaps("DE", token="secret", url=electricity_maps_api, cache_dir=tmp_path)
    assert job.intensities(hours) == {"2026-11-26T10": 412.0, "2026-11-26T11": 398.0, "2026-11-26T12": 371.0}
    [asked] = Replay.requests
    assert asked == {
        "path": "/v3/carbon-intensity/past-range",
        "token": "secret",
        "zone": "DE",
        "start": "2026-11-26T10:00Z",
        "end": "2026-11-26T13:00Z",
    }
    # another job of the sweep (another instance, same cache): no request for hours already known
    other = ElectricityMaps("DE", token="secret", url=electricity_maps_api, cache_dir=tmp_path)
    assert other.intensities(hours[1:]) == {"2026-11-26T11": 398.0, "2026-11-26T12": 371.0}
    assert len(Replay.requests) == 1 and other.requests == 0
    # an hour not published yet is asked again only after an hour
    Replay.published = datetime(2026, 11, 26, 13, tzinfo=timezone.utc)
    now = datetime(2026, 11, 26, 14, 10, tzinfo=timezone.utc).timestamp()
    assert other.intensities(["2026-11-26T14"], now_s=now) == {}
    assert other.intensities(["2026-11-26T14"], now_s=now + 600) == {}
    assert len(Replay.requests) == 2
    Replay.published = datetime(2026, 11, 26, 14, tzinfo=timezone.utc)
    assert other.intensities(["2026-11-26T14"], now_s=now + 3700) == {"2026-11-26T14": 412.0}
    assert len(Replay.requests) == 3


def test_electricity_maps_is_opt_in_and_says_what_went_wrong(electricity_maps_api, tmp_path, monkeypatch):
    monkeypatch.delenv("ELECTRICITYMAPS_TOKEN", raising=False)
    with pytest.raises(GridConfigError, match="needs an API token"):
        ElectricityMaps("DE")
    Replay.status = 401
    api = ElectricityMaps("DE", token="wrong", url=electricity_maps_api, cache_dir=tmp_path)
    with pytest.raises(OSError, match="Electricity Maps answered 401"):
        api.intensities(["2026-11-26T10"])
    gone = ElectricityMaps("DE", token="t", url="http://127.0.0.1:9/v3", cache_dir=tmp_path / "other", timeout_s=2)
    with pytest.raises(OSError, match="could not be reached"):
        gone.intensities(["2026-11-26T10"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>busy</html>", "not JSON"),
        (b'{"data": 5}', "without a list of data"),
        (b"[1, 2]", "without a list of data"),
    ],
)
def test_a_damaged_answer_is_a_clear_error_and_not_asked_again_within_the_hour(
    electricity_maps_api, tmp_path, body, message
):
    Replay.body = body
    api = ElectricityMaps("DE", token="t", url=electricity_maps_api, cache_dir=tmp_path)
    with pytest.raises(OSError, match=message):
        api.intensities(["2026-11-26T10"], now_s=T0)
    assert api.intensities(["2026-11-26T10"], now_s=T0 + 60) == {}  # asked a minute ago: not again
    assert len(Replay.requests) == 1


def test_entries_without_a_time_or_an_intensity_are_left_to_the_yearly_figure(electricity_maps_api, tmp_path):
    Replay.body = json.dumps(
        {
            "data": [
                {"carbonIntensity": 300},
                {"datetime": "yesterday", "carbonIntensity": 1},
                {"datetime": "2026-11-26T11:00:00.000Z", "carbonIntensity": -4},
                {"datetime": "2026-11-26T10:00:00.000Z", "carbonIntensity": 250},
            ]
        }
    ).encode()
    api = ElectricityMaps("DE", token="t", url=electricity_maps_api, cache_dir=tmp_path)
    assert api.intensities(["2026-11-26T10", "2026-11-26T11"], now_s=T0) == {"2026-11-26T10": 250.0}


def test_an_answer_with_no_usable_entry_is_said(electricity_maps_api, tmp_path):
    Replay.body = json.dumps({"data": [{"datetime": "2026-11-26T10:00:00.000Z", "carbonIntensity": 1e12}]}).encode()
    api = ElectricityMaps("DE", token="t", url=electricity_maps_api, cache_dir=tmp_path)
    with pytest.raises(OSError, match="answered 1 entries, none with a time and an intensity between 0 and 3000"):
        api.intensities(["2026-11-26T10"], now_s=T0)


def test_a_cache_that_cannot_be_written_is_kept_in_memory(electricity_maps_api, tmp_path):
    api = ElectricityMaps("DE", token="t", url=electricity_maps_api, cache_dir=tmp_path)
    api.cache_path.mkdir(parents=True)  # a folder where the cache file should be
    for _ in range(3):
        assert api.intensities(["2026-11-26T10"], now_s=T0) == {"2026-11-26T10": 412.0}
    assert len(Replay.requests) == 1
    assert not list(tmp_path.glob(".*.tmp*"))  # no temporary file left behind


def test_a_stage_that_never_logs_is_priced_by_the_hour_too(electricity_maps_api, tmp_path, tiny_trainer, fake_clock):
    api = ElectricityMaps("DE", token="t", url=electricity_maps_api, cache_dir=tmp_path / "cache")
    monitor = priced_by(api, fake_clock)
    trainer = tiny_trainer(callbacks=[monitor], log_every_n_steps=50)
    trainer.test(ClockedModel(fake_clock))  # test alone: no training log step at all
    tag = json.loads((Path(trainer.log_dir) / "price_tag.json").read_text())
    assert tag["grid"]["timeline"] and tag["grid"]["timeline_source"].startswith("Electricity Maps")


def test_a_damaged_cache_is_asked_again_where_it_is_damaged(electricity_maps_api, tmp_path):
    api = ElectricityMaps("DE", token="t", url=electricity_maps_api, cache_dir=tmp_path)
    api.cache_path.write_text(
        json.dumps({"hours": {"2026-11-26T10": "abc", "2026-11-26T11": -1, "2026-11-26T12": 371}, "asked": [1]})
    )
    found = api.intensities(["2026-11-26T10", "2026-11-26T11", "2026-11-26T12"], now_s=T0)
    assert found == {"2026-11-26T10": 412.0, "2026-11-26T11": 398.0, "2026-11-26T12": 371.0}
    assert Replay.requests[0]["start"] == "2026-11-26T10:00Z" and Replay.requests[0]["end"] == "2026-11-26T12:00Z"


def test_a_fit_whose_provider_fails_warns_once_asks_once_and_keeps_the_yearly_figure(
    electricity_maps_api, tmp_path, tiny_trainer, fake_clock
):
    Replay.status = 500
    api = ElectricityMaps("DE", token="t", url=electricity_maps_api, cache_dir=tmp_path / "cache")
    monitor = priced_by(api, fake_clock)
    with pytest.warns(GreenAIWarning, match="Electricity Maps answered 500") as caught:
        tiny_trainer(callbacks=[monitor], max_steps=6, log_every_n_steps=1).fit(ClockedModel(fake_clock))
    assert sum("Electricity Maps" in str(w.message) for w in caught) == 1
    assert len(Replay.requests) == 1  # not at every log step
    yearly = Grid.from_location(country="DE").intensity_g_per_kwh
    assert monitor.price_tag.co2e_g == pytest.approx(monitor.spend.energy_kwh * yearly)


def test_a_fit_priced_by_electricity_maps_says_so(electricity_maps_api, tmp_path, tiny_trainer, fake_clock):
    api = ElectricityMaps("DE", token="secret", url=electricity_maps_api, cache_dir=tmp_path / "cache")
    monitor = priced_by(api, fake_clock)
    trainer = tiny_trainer(callbacks=[monitor], max_steps=5)
    trainer.fit(ClockedModel(fake_clock))
    tag = json.loads((Path(trainer.log_dir) / "price_tag.json").read_text())
    hours = list(tag["spend"]["hourly_energy_j"])
    assert hours and set(tag["grid"]["timeline"]) == set(hours)
    assert tag["grid"]["timeline_source"] == "Electricity Maps, zone DE, hourly (life-cycle)"
    expected_g = sum(j / 3.6e6 * tag["grid"]["timeline"][h] for h, j in tag["spend"]["hourly_energy_j"].items()) * (
        tag["energy_kwh"] * 3.6e6 / sum(tag["spend"]["hourly_energy_j"].values())
    )
    assert tag["co2e_kg"] * 1e3 == pytest.approx(expected_g)
    assert len(Replay.requests) <= len(hours)  # one request per hour at most, however often the monitor priced it
    assert "CO2e (DE, hourly)" in monitor.price_tag.to_text()


def test_the_default_never_calls_the_network(tiny_trainer, fake_clock, tmp_path):
    monitor = EnergyMonitor(
        grid={"country": "DE"},
        sensors=[ConstantPowerSensor("gpu:0", 10.0, clock=fake_clock)],
        clock=fake_clock,
        verbose=False,
    )
    trainer = tiny_trainer(callbacks=[monitor], max_steps=2)
    trainer.fit(ClockedModel(fake_clock))
    tag = json.loads((Path(trainer.log_dir) / "price_tag.json").read_text())
    assert tag["grid"]["timeline"] == {} and tag["grid"]["timeline_source"] == ""


def test_a_cached_intensity_is_bounded_like_the_apis_answers(electricity_maps_api, tmp_path):
    api = ElectricityMaps("DE", token="t", url=electricity_maps_api, cache_dir=tmp_path)
    api.cache_path.write_text(json.dumps({"hours": {"2026-11-26T10": 1e9, "2026-11-26T11": 3000.0}, "asked": {}}))
    found = api.intensities(["2026-11-26T10", "2026-11-26T11"], now_s=T0)
    assert found == {"2026-11-26T10": 412.0, "2026-11-26T11": 3000.0}  # 1e9 g/kWh is not a grid's: asked again
    assert [(r["start"], r["end"]) for r in Replay.requests] == [("2026-11-26T10:00Z", "2026-11-26T11:00Z")]


def test_a_deeply_nested_cache_is_asked_again_and_the_fit_goes_on(
    electricity_maps_api, tmp_path, tiny_trainer, fake_clock
):
    api = ElectricityMaps("DE", token="t", url=electricity_maps_api, cache_dir=tmp_path / "cache")
    api.cache_path.parent.mkdir(parents=True)
    api.cache_path.write_text('{"hours": ' + "[" * 100_000 + "]" * 100_000 + "}")  # it raised RecursionError
    monitor = priced_by(api, fake_clock)
    tiny_trainer(callbacks=[monitor], max_steps=3).fit(ClockedModel(fake_clock))
    assert Replay.requests and monitor.price_tag.grid.timeline  # priced by the hour from a fresh answer
    assert json.loads(api.cache_path.read_text())["hours"]  # and the cache rewritten


class Redirect(BaseHTTPRequestHandler):
    """Answers every request with a redirect to ``Redirect.to`` (the path and query kept)."""

    to = ""

    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", Redirect.to + self.path)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def redirecting_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_the_token_never_follows_a_redirect_to_another_host(electricity_maps_api, redirecting_api, tmp_path, host):
    # the replay server listens on 127.0.0.1: "localhost" reaches it under another host name, 127.0.0.1 on another port
    Redirect.to = electricity_maps_api.replace("127.0.0.1", host).removesuffix("/v3")
    api = ElectricityMaps("DE", token="secret", url=redirecting_api + "/v3", cache_dir=tmp_path)
    with pytest.raises(ProviderError, match=r"redirected to http://.*, another host: not followed"):
        api.intensities(["2026-11-26T10"], now_s=T0)
    assert Replay.requests == []  # the token never reached the other server


def test_a_redirect_on_the_same_host_is_followed_with_the_token(electricity_maps_api, tmp_path):
    api = ElectricityMaps(
        "DE", token="secret", url=electricity_maps_api.replace("/v3", "/moved/v3"), cache_dir=tmp_path
    )
    assert api.intensities(["2026-11-26T10"], now_s=T0) == {"2026-11-26T10": 412.0}
    assert [(r["path"], r["token"]) for r in Replay.requests] == [("/v3/carbon-intensity/past-range", "secret")]
