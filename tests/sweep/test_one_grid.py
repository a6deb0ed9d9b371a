"""One grid, not two: a sweep's trials price with the grid its budget is held at, and a resume cannot re-price."""

import json
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from lightning_greenai import EnergyMonitor, Grid
from lightning_greenai.errors import GridConfigError
from lightning_greenai.grid.timeline import ElectricityMaps
from lightning_greenai.sensors.fake import ConstantPowerSensor
from tests.conftest import ClockedModel
from tests.sweep.test_sweeper import finished, report, run

MONITOR_TASK = Path(__file__).with_name("monitor_task.py")
FR = Grid.from_location("FR")


def monitor(clock, **grid):
    return EnergyMonitor(
        sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=clock)], clock=clock, verbose=False, grid=grid
    )


def sweep_grid_is(grid: dict) -> None:
    OmegaConf.update(HydraConfig.get(), "sweeper.grid", grid)


def test_a_trials_monitor_without_a_grid_prices_with_the_sweeps(in_sweep_job, tiny_trainer, fake_clock):
    sweep_grid_is({"country": "FR", "pue": 1.2})
    mon = monitor(fake_clock)
    tiny_trainer(callbacks=[mon], max_steps=2, limit_val_batches=0).fit(ClockedModel(fake_clock))
    assert mon.grid == Grid.from_location("FR", pue=1.2)
    assert mon.price_tag.to_dict()["grid"]["country"] == "FR"


def test_a_trials_monitor_that_sets_the_sweeps_grid_again_is_accepted(in_sweep_job, tiny_trainer, fake_clock):
    sweep_grid_is({"country": "FR"})
    mon = monitor(fake_clock, country="France", pue=1.0)  # another spelling of the same grid
    tiny_trainer(callbacks=[mon], max_steps=2, limit_val_batches=0).fit(ClockedModel(fake_clock))
    assert mon.grid == FR


def test_a_trials_monitor_with_another_grid_is_refused_naming_both(in_sweep_job, tiny_trainer, fake_clock):
    sweep_grid_is({})  # unset: the table's mean
    with pytest.raises(GridConfigError) as err:
        tiny_trainer(callbacks=[monitor(fake_clock, country="FR")], max_steps=2).fit(ClockedModel(fake_clock))
    message = str(err.value)
    assert "EnergyMonitor(grid={'country': 'FR'})" in message and "FR, 67 gCO2e/kWh" in message
    assert "hydra.sweeper.grid: no country (the packaged table's mean), 444 gCO2e/kWh" in message
    assert "price_per_kwh: 0.15 vs None" in message


def test_electricity_maps_in_a_sweeps_trial_is_refused(in_sweep_job, tiny_trainer, fake_clock):
    mon = EnergyMonitor(
        sensors=[ConstantPowerSensor("gpu:0", 1.0, clock=fake_clock)],
        clock=fake_clock,
        electricity_maps=ElectricityMaps("DE", token="t"),
        verbose=False,
    )
    with pytest.raises(GridConfigError, match=r"hydra\.sweeper\.grid\.intensity_csv"):
        tiny_trainer(callbacks=[mon], max_steps=2).fit(ClockedModel(fake_clock))


def test_outside_a_sweep_the_monitor_keeps_its_own_grid(tiny_trainer, fake_clock):
    mon = monitor(fake_clock, country="FR")
    tiny_trainer(callbacks=[mon], max_steps=2, limit_val_batches=0).fit(ClockedModel(fake_clock))
    assert mon.grid == FR
    assert monitor(fake_clock).grid == Grid.from_location()  # unset: the table's mean, PUE 1


def test_a_monitors_checkpoint_key_does_not_change_when_it_takes_the_sweeps_grid(
    in_sweep_job, tiny_trainer, fake_clock
):
    sweep_grid_is({"country": "FR"})
    mon = monitor(fake_clock)
    before = mon.state_key
    tiny_trainer(callbacks=[mon], max_steps=1, limit_val_batches=0).fit(ClockedModel(fake_clock))
    assert mon.grid == FR and mon.state_key == before == monitor(fake_clock).state_key


@pytest.mark.timeout(300)
def test_a_real_sweep_holds_its_co2e_budget_at_the_grid_its_trials_price_at(tmp_path):
    out = tmp_path / "sweep"
    proc = run(
        out, "x=0,1,2", "hydra.sweeper.grid.country=FR", "hydra.sweeper.budget.co2e_kg=1 kgCO2e", task=MONITOR_TASK
    )
    books = report(out)
    assert books["grid"]["country"] == "FR"
    tags = [json.loads((out / str(job) / "price_tag.json").read_text()) for job in finished(out)]
    assert len(tags) == 3
    for tag in tags:
        assert tag["grid"]["country"] == "FR"
        assert tag["grid"]["intensity_g_per_kwh"] == FR.intensity_g_per_kwh
        assert tag["currency"] == "EUR" and tag["cost"] == pytest.approx(tag["facility_energy_kwh"] * 0.15)
    # the sweep's books and its trials' price tags price the same energy at the same figure
    billed_j = sum(sum(e["spend"]["energy_j"].values()) for e in finished(out).values())
    assert books["co2e_kg"] == pytest.approx(billed_j / 3.6e6 * FR.intensity_g_per_kwh / 1000)
    assert sum(t["co2e_kg"] for t in tags) == pytest.approx(books["co2e_kg"], rel=1e-6)
    assert books["currency"] == "EUR" and sum(t["cost"] for t in tags) == pytest.approx(books["money"], rel=1e-6)
    assert "Traceback" not in proc.stderr


@pytest.mark.timeout(300)
def test_a_real_sweep_refuses_a_trial_whose_monitor_prices_at_another_grid(tmp_path):
    out = tmp_path / "sweep"
    proc = run(out, "x=0,1", "+monitor_grid.country=FR", task=MONITOR_TASK, check=False)
    assert proc.returncode != 0
    said = proc.stdout + proc.stderr
    assert "EnergyMonitor(grid={'country': 'FR'}) prices this trial at FR, 67 gCO2e/kWh" in said
    assert "Set the grid once, in hydra.sweeper.grid" in said


@pytest.mark.timeout(300)
def test_a_resume_with_a_changed_grid_is_refused_and_the_same_grid_resumes(tmp_path):
    out = tmp_path / "sweep"
    run(out, "x=0,1,2,3", "hydra.sweeper.grid.country=FR", "hydra.sweeper.max_trials=2")
    changed = run(
        out,
        "x=0,1,2,3",
        "hydra.sweeper.grid.country=FR",
        "hydra.sweeper.grid.pue=1.2",
        "hydra.sweeper.max_trials=2",
        "hydra.sweeper.resume=true",
        check=False,
    )
    assert changed.returncode != 0
    said = changed.stdout + changed.stderr
    assert "The grid changed since this sweep started" in said and "pue: 1 vs 1.2" in said
    assert "Restore hydra.sweeper.grid to what it was (FR, 67 gCO2e/kWh, PUE 1, 0.15 EUR/kWh)" in said
    # nothing was re-priced or lost: the same grid resumes the same books
    same = run(
        out, "x=0,1,2,3", "hydra.sweeper.grid.country=FR", "hydra.sweeper.max_trials=2", "hydra.sweeper.resume=true"
    )
    assert "resuming" in same.stdout and len(finished(out)) == 2


@pytest.mark.timeout(600)
def test_each_trial_and_the_sweep_get_their_own_wandb_run_when_the_task_never_finishes_one(tmp_path, monkeypatch):
    from lightning_greenai.testing import read_wandb_run

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: W&B offline
    out = tmp_path / "sweep"
    run(out, "x=0,1", "+logger=wandb", task=MONITOR_TASK)  # the basic launcher: both trials in one process
    trials = [read_wandb_run(out / str(job) / "wandb") for job in (0, 1)]
    for trial in trials:  # each trial's run is its own, closed, and holds its own metrics only
        assert trial.complete and trial.column("greenai/energy_kwh")
        assert not trial.column("greenai/sweep/best_vs_energy_kwh")
    assert len(list((out / "0" / "wandb").glob("offline-run-*"))) == 1
    sweep = read_wandb_run(out / "wandb")  # the sweep's summary run exists, apart from the trials'
    assert len(sweep.column("greenai/sweep/best_vs_energy_kwh")) == 2
    assert not sweep.column("greenai/energy_kwh")
