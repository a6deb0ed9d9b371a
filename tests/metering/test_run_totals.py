"""RunTotals without a Trainer: totals across entry points, the forecast, the account and the metrics."""

from collections.abc import Hashable
from typing import Any

import pytest

from lightning_greenai import Grid, Meter, Spend
from lightning_greenai.metering.run import MAX_TIMELINE_POINTS, RunTotals
from lightning_greenai.sensors.fake import ConstantPowerSensor, FakeClock


def _metered(clock: FakeClock, power_w: float = 100.0, seconds: float = 10.0) -> Meter:
    meter = Meter([ConstantPowerSensor("gpu:0", power_w, clock=clock)], clock=clock, report=False).start()
    clock.advance(seconds)
    meter.sample()
    return meter


def test_entry_points_add_up_and_a_resumed_spend_is_continued() -> None:
    clock = FakeClock()
    totals = RunTotals(Grid.from_location("DE"))
    totals.begin(Spend(energy_j={"gpu:0": 500.0}, duration_s=5.0))
    meter = _metered(clock)
    assert totals.refresh(totals.gather(meter), flops=7.0).energy_j == {"gpu:0": 1500.0}
    assert totals.latest.flops == 7.0
    assert totals.stage_spend is not None and totals.stage_spend.energy_j == {"gpu:0": 1000.0}
    assert totals.metered.energy_j == {"gpu:0": 1000.0} and totals.metered.flops == 0.0  # not the resumed part
    totals.close()
    assert totals.current == Spend() and totals.done.energy_j == {"gpu:0": 1000.0}
    totals.begin()  # a test after the fit: starts from the fit's total
    assert totals.stage_start.energy_j == {"gpu:0": 1500.0}
    clock2 = FakeClock()
    totals.refresh(totals.local(_metered(clock2, power_w=10.0, seconds=2.0)))
    assert totals.latest.energy_j == {"gpu:0": 1520.0}


def test_stage_spend_is_none_for_the_first_entry_point() -> None:
    totals = RunTotals(Grid.from_location("DE"))
    totals.begin()
    totals.refresh(Spend(energy_j={"gpu:0": 10.0}, duration_s=1.0))
    assert totals.stage_spend is None


@pytest.mark.parametrize(
    ("total_steps", "steps_done", "epoch", "expected_j"),
    [
        (100, 10, 0, 1000.0),  # 10 % of the steps: scaled by 10
        (100, 4, 0, None),  # under 5 % in the first epoch: no forecast yet
        (100, 4, 1, 2500.0),  # a whole epoch done
        (float("inf"), 10, 3, None),  # an endless fit cannot be projected
        (100, 0, 0, None),
    ],
)
def test_projection_waits_for_enough_of_the_fit(
    total_steps: float, steps_done: int, epoch: int, expected_j: float | None
) -> None:
    totals = RunTotals(Grid.from_location("DE"))
    totals.refresh(Spend(energy_j={"gpu:0": 100.0}, duration_s=1.0))
    projected = totals.project(total_steps=total_steps, steps_done=steps_done, epoch=epoch)
    assert (None if projected is None else projected.total_energy_j) == expected_j
    assert totals.projected is projected


def test_metrics_name_every_figure_and_power_since_the_last_call() -> None:
    grid = Grid.from_location("DE", pue=1.5, instance_price_per_h=1.0, currency="EUR")
    totals = RunTotals(grid)
    first = totals.metrics(Spend(energy_j={"gpu:0": 3.6e6, "cpu:package-0": 0.0}, duration_s=10.0))
    assert first["greenai/energy_kwh"] == pytest.approx(1.0)
    assert first["greenai/energy_kwh_low"] == first["greenai/energy_kwh_high"] == pytest.approx(1.0)
    assert first["greenai/co2e_kg"] == pytest.approx(grid.co2e_g(Spend(energy_j={"gpu:0": 3.6e6})) / 1e3)
    assert first["greenai/is_estimate"] == 0.0
    assert "greenai/power_w" not in first  # no earlier call to measure power since
    assert first["greenai/device_energy_kwh/cpu_package-0"] == 0.0  # ':' is no metric name character
    assert "greenai/cost" in first and "greenai/embodied_co2e_kg" in first
    second = totals.metrics(Spend(energy_j={"gpu:0": 3.6e6 + 1000.0}, duration_s=20.0))
    assert second["greenai/power_w"] == pytest.approx(100.0)
    assert not any(k.startswith("greenai/projected") for k in second)


def test_metrics_of_the_forecast_are_at_the_facility() -> None:
    totals = RunTotals(Grid.from_location("DE", pue=1.5), per_device=False)
    totals.refresh(Spend(energy_j={"gpu:0": 3.6e6}, duration_s=1.0))
    totals.project(total_steps=10, steps_done=5, epoch=1)
    metrics = totals.metrics(totals.latest)
    assert metrics["greenai/projected_energy_kwh"] == pytest.approx(3.0)  # 2 kWh x PUE 1.5
    assert "greenai/projected_co2e_kg" in metrics
    assert not any(k.startswith("greenai/device_energy_kwh") for k in metrics)


def test_timeline_is_bounded() -> None:
    totals = RunTotals(Grid.from_location())
    for i in range(MAX_TIMELINE_POINTS + 1):
        totals.record(Spend(energy_j={"gpu:0": float(i)}, duration_s=float(i)))
    totals.record(Spend())  # no energy: no point
    assert len(totals.timeline) == MAX_TIMELINE_POINTS // 2 + 1
    assert totals.timeline[0] == (0.0, 0.0)


def test_notes_are_kept_once() -> None:
    totals = RunTotals(Grid.from_location())
    for note in ("busy CPU", None, "busy CPU"):
        totals.note(note)
    assert totals.notes == ["busy CPU"]


class _Account:
    """A trial account that records what it is given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Hashable, Any]] = []

    def contribute(
        self, key: Hashable, spend: Spend, *, uids: dict[str, str] | None = None, force: bool = False
    ) -> None:
        self.calls.append(("contribute", key, (spend, dict(uids or {}), force)))

    def release(self, key: Hashable) -> None:
        self.calls.append(("release", key, None))


def test_the_account_is_claimed_then_billed_then_released() -> None:
    clock = FakeClock()
    totals = RunTotals(Grid.from_location())
    meter = _metered(clock)
    account = _Account()
    totals.claim(account, meter)
    kind, key, (claimed, uids, force) = account.calls[0]
    assert (kind, key, claimed.energy_j, force) == ("contribute", totals.account_key, {"gpu:0": 0.0}, False)
    assert uids == meter.domain_uids()
    totals.refresh(totals.gather(meter), flops=5.0)
    totals.report(account, release=True)
    _, _, (billed, _, force) = account.calls[1]
    assert (billed.energy_j, billed.flops, force) == ({"gpu:0": 1000.0}, 0.0, True)  # FLOPs: the FlopMonitor's
    assert account.calls[2] == ("release", totals.account_key, None)


def test_no_account_outside_a_sweep() -> None:
    totals = RunTotals(Grid.from_location())
    totals.claim(None, _metered(FakeClock()))
    totals.report(None, release=True)
    assert totals.uids == {}
