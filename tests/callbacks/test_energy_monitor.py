import csv
import json
import math
import time
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf

from lightning_greenai import EnergyMonitor, FlopMonitor, GreenAIWarning, Grid, GridConfigError, Method
from lightning_greenai.callbacks.factory import ENV_VAR, auto_callbacks
from lightning_greenai.sensors.fake import ConstantPowerSensor, FakeGPU, FakeNVML, FakeSensor, make_rapl_tree
from lightning_greenai.units import format_energy
from tests.conftest import ClockedModel

J_PER_KWH = 3.6e6


def read_metrics(log_dir: str) -> list[dict[str, str]]:
    with open(Path(log_dir) / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def last(rows, key):
    values = [float(r[key]) for r in rows if r.get(key)]
    return values[-1]


def monitor(clock, power_w=100.0, **grid):
    return EnergyMonitor(
        grid={"country": "DE", **grid},
        sensors=[ConstantPowerSensor("gpu:0", power_w, clock=clock)],
        clock=clock,
        verbose=False,
    )


def test_fit_meters_exact_energy_by_stage_and_logs_it(tiny_trainer, fake_clock, tmp_path):
    mon = monitor(fake_clock)
    trainer = tiny_trainer(
        max_steps=-1,
        max_epochs=1,
        limit_train_batches=4,
        limit_val_batches=2,
        callbacks=[mon],
        logger=CSVLogger(tmp_path),
    )
    trainer.fit(ClockedModel(fake_clock))
    spend = mon.spend
    # 4 training steps x 1 s + 2 validation steps x 0.5 s, at 100 W
    assert spend.energy_j == {"gpu:0": 500.0}
    assert spend.stage_energy_j == {"train": 400.0, "validate": 100.0}
    assert spend.duration_s == 5.0
    rows = read_metrics(trainer.log_dir)
    assert last(rows, "greenai/energy_kwh") == pytest.approx(500.0 / J_PER_KWH)
    assert last(rows, "greenai/device_energy_kwh/gpu_0") == pytest.approx(500.0 / J_PER_KWH)
    assert last(rows, "greenai/co2e_kg") == pytest.approx(500.0 / J_PER_KWH * 365.477 / 1000)
    assert last(rows, "greenai/cost") == pytest.approx(500.0 / J_PER_KWH * 0.20)
    assert last(rows, "greenai/is_estimate") == 0.0
    assert last(rows, "greenai/power_w") == pytest.approx(100.0)
    tag = json.loads((Path(trainer.log_dir) / "price_tag.json").read_text())
    assert tag["energy_kwh"] == pytest.approx(500.0 / J_PER_KWH)
    assert tag["currency"] == "EUR"
    assert tag["is_estimate"] is False
    assert tag["devices"] == [
        {
            "name": "gpu:0",
            "method": "counter",
            "is_estimate": False,
            "energy_kwh": pytest.approx(500.0 / J_PER_KWH),
            "energy_kwh_bounds": pytest.approx([475.0 / J_PER_KWH, 525.0 / J_PER_KWH]),  # 5 % calibration
        }
    ]
    assert tag["energy_kwh_bounds"] == pytest.approx([475.0 / J_PER_KWH, 525.0 / J_PER_KWH])
    assert last(rows, "greenai/energy_kwh_low") == pytest.approx(475.0 / J_PER_KWH)
    assert last(rows, "greenai/energy_kwh_high") == pytest.approx(525.0 / J_PER_KWH)
    assert tag["stages_energy_kwh"]["validate"] == pytest.approx(100.0 / J_PER_KWH)
    hparams = (Path(trainer.log_dir) / "hparams.yaml").read_text()  # the price tag as run fields too
    assert "greenai/price_tag/fit/energy_kwh" in hparams and "greenai/price_tag/fit/is_estimate: false" in hparams


def test_progress_bar_shows_energy(tiny_trainer, fake_clock):
    mon = monitor(fake_clock)
    trainer = tiny_trainer(callbacks=[mon], enable_progress_bar=True)
    trainer.fit(ClockedModel(fake_clock))
    assert trainer.progress_bar_metrics["greenai/energy_wh"] == pytest.approx(500.0 / 3600)
    assert trainer.progress_bar_metrics["greenai/co2e_g"] == pytest.approx(500.0 / J_PER_KWH * 365.477)


def test_price_tag_is_printed_once_with_estimates_flagged(tiny_trainer, fake_clock, capsys):
    sensors = [
        ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock),
        ConstantPowerSensor("cpu:estimate", 10.0, clock=fake_clock, method=Method.ESTIMATE),
    ]
    mon = EnergyMonitor(grid={"country": "FR"}, sensors=sensors, clock=fake_clock)
    tiny_trainer(callbacks=[mon], logger=False).fit(ClockedModel(fake_clock))
    out = capsys.readouterr().out
    assert out.count("lightning-greenai price tag (fit)") == 1
    assert " J *" in out  # the energy that includes an estimate carries the mark
    assert "includes an estimate (cpu:estimate)" in out
    assert mon.spend.is_estimate


def test_fit_validate_test_print_one_compact_tag_and_a_line_each(tiny_trainer, fake_clock, capsys):
    """Issue 22: a fit + validate + test printed three full tables (72 lines) with the same note three times."""
    sensors = [
        ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock),
        ConstantPowerSensor("cpu:estimate", 10.0, clock=fake_clock, method=Method.ESTIMATE),
    ]
    mon = EnergyMonitor(grid={"country": "FR"}, sensors=sensors, clock=fake_clock)
    trainer, model = tiny_trainer(callbacks=[mon, FlopMonitor()]), ClockedModel(fake_clock)
    trainer.fit(model)
    trainer.validate(model)
    trainer.test(model)
    out = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    start = out.index("lightning-greenai price tag (fit)")
    tag = out[start : start + 10]
    assert len([line for line in tag if not line.startswith("[greenai]")]) <= 10
    assert tag[1].startswith("  energy    ") and " J *" in tag[1]
    assert any(line.startswith("  fit       ") and "FLOPs" in line for line in tag)
    assert any("full tag: " in line and "price_tag.json" in line for line in tag)
    updates = [line for line in out if line.startswith("[greenai] + ")]
    assert [line.split(":")[0] for line in updates] == ["[greenai] + validate", "[greenai] + test"]
    assert all("run total" in line and "price_tag.json" in line for line in updates)
    assert sum("includes an estimate" in line for line in out) == 1  # the note once, not once per stage
    assert sum("lightning-greenai price tag" in line for line in out) == 1
    # ledger = printed: the last line's run total is the monitor's total
    assert format_energy(mon.spend.total_energy_j) in updates[-1]


def test_verbose_prints_the_full_table(tiny_trainer, fake_clock, capsys):
    mon = EnergyMonitor(sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)], clock=fake_clock, verbose=True)
    tiny_trainer(callbacks=[mon]).fit(ClockedModel(fake_clock))
    out = capsys.readouterr().out
    assert "lightning-greenai price tag (fit)" in out and "  device" in out and "embodied CO2e (apart)" in out


def test_verbose_none_prints_nothing_and_still_writes_the_tag(tiny_trainer, fake_clock, capsys, tmp_path):
    mon = EnergyMonitor(sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)], clock=fake_clock, verbose=None)
    tiny_trainer(callbacks=[mon]).fit(ClockedModel(fake_clock))
    out = capsys.readouterr().out
    assert "price tag" not in out and "[greenai]" not in out
    assert list(tmp_path.rglob("price_tag.json"))


def test_a_verbose_that_is_not_a_choice_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"`verbose` must be False .* got 'yes'"):
        EnergyMonitor(verbose="yes")


def test_logger_false_still_writes_the_price_tag(tiny_trainer, fake_clock, tmp_path):
    mon = monitor(fake_clock)
    trainer = tiny_trainer(callbacks=[mon], logger=False)
    trainer.fit(ClockedModel(fake_clock))
    assert mon.spend.energy_j["gpu:0"] == pytest.approx(500.0)
    assert (tmp_path / "price_tag.json").exists()


def test_validate_and_test_after_fit_are_added_by_stage(tiny_trainer, fake_clock):
    mon = monitor(fake_clock)
    trainer = tiny_trainer(callbacks=[mon], limit_val_batches=0, limit_test_batches=2)
    model = ClockedModel(fake_clock)
    trainer.fit(model)
    fit_energy = mon.spend.total_energy_j
    trainer.test(model)
    assert mon.spend.stage_energy_j == {"train": fit_energy, "test": 100.0}
    assert mon.spend.total_energy_j == fit_energy + 100.0


def test_checkpoint_resume_continues_the_total(tiny_trainer, fake_clock, tmp_path):
    trainer = tiny_trainer(max_steps=4, limit_val_batches=0, callbacks=[monitor(fake_clock)])
    model = ClockedModel(fake_clock)
    trainer.fit(model)
    ckpt = tmp_path / "four.ckpt"
    trainer.save_checkpoint(ckpt)
    resumed = monitor(fake_clock)
    trainer = tiny_trainer(max_steps=6, limit_val_batches=0, callbacks=[resumed])
    trainer.fit(ClockedModel(fake_clock), ckpt_path=ckpt)
    assert resumed.spend.energy_j == {"gpu:0": pytest.approx(600.0)}
    assert resumed.spend.duration_s == pytest.approx(6.0)


def test_forecast_after_the_first_epoch(tiny_trainer, fake_clock, tmp_path):
    mon = monitor(fake_clock)
    trainer = tiny_trainer(
        max_steps=-1,
        max_epochs=4,
        limit_train_batches=2,
        limit_val_batches=0,
        callbacks=[mon],
        logger=CSVLogger(tmp_path),
    )
    trainer.fit(ClockedModel(fake_clock))
    rows = read_metrics(trainer.log_dir)
    projected = [float(r["greenai/projected_energy_kwh"]) for r in rows if r.get("greenai/projected_energy_kwh")]
    assert projected and all(p == pytest.approx(800.0 / J_PER_KWH) for p in projected)
    assert math.isclose(mon.spend.total_energy_j, 800.0)


def test_a_failing_sensor_does_not_crash_training(tiny_trainer, fake_clock):
    sensors = [FakeSensor("gpu:0", lambda: 50.0 * fake_clock(), fail_after=3)]
    mon = EnergyMonitor(sensors=sensors, clock=fake_clock, verbose=False)
    with pytest.warns(GreenAIWarning, match="failed"):
        tiny_trainer(callbacks=[mon], max_steps=8).fit(ClockedModel(fake_clock))
    assert mon.spend.is_estimate
    assert mon.spend.energy_j["gpu:0"] > 0


def test_discovery_with_fake_nvml_and_fake_rapl(tiny_trainer, fake_clock, tmp_path):
    root = make_rapl_tree(tmp_path / "powercap", packages=(0,))
    gpu = FakeGPU("GPU-1234", energy_mj=lambda: int(fake_clock() * 200_000))  # 200 W
    mon = EnergyMonitor(gpus=[0], nvml=FakeNVML([gpu]), rapl_root=root, clock=fake_clock, verbose=False)
    tiny_trainer(callbacks=[mon], max_steps=3, limit_val_batches=0).fit(ClockedModel(fake_clock))
    spend = mon.spend
    assert spend.energy_j["gpu:0"] == pytest.approx(600.0)
    assert spend.methods == {"gpu:0": Method.COUNTER, "cpu:package-0": Method.COUNTER, "dram:0": Method.COUNTER}
    assert spend.gpu_s == pytest.approx(3.0)
    assert "gpu:0 (counter)" in mon.price_tag.sensors


def test_unknown_country_fails_at_construction():
    with pytest.raises(GridConfigError, match="Did you mean: Germany"):
        EnergyMonitor(grid={"country": "Germny"})


def test_bad_log_interval():
    with pytest.raises(ValueError, match=r"`log_every_n_steps` must be >= 1 or None, got 0"):
        EnergyMonitor(log_every_n_steps=0)


def test_factory_is_opt_in(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert auto_callbacks() == []
    monkeypatch.setenv(ENV_VAR, "1")
    monkeypatch.setenv(f"{ENV_VAR}_COUNTRY", "SE")
    (cb,) = auto_callbacks()
    assert isinstance(cb, EnergyMonitor) and cb.grid.country == "SE"


def test_factory_entry_point_adds_a_monitor_to_every_trainer(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, "true")
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False)
    assert sum(isinstance(cb, EnergyMonitor) for cb in trainer.callbacks) == 1


def test_explicit_monitor_wins_over_the_factory(monkeypatch, tiny_trainer, fake_clock):
    monkeypatch.setenv(ENV_VAR, "1")
    mine = monitor(fake_clock)
    trainer = tiny_trainer(callbacks=[mine], max_steps=2, limit_val_batches=0)
    (auto,) = [cb for cb in trainer.callbacks if isinstance(cb, EnergyMonitor) and cb is not mine]
    trainer.fit(ClockedModel(fake_clock))
    assert mine.spend.energy_j == {"gpu:0": 200.0}
    assert auto.spend.total_energy_j is None  # stepped aside: nothing metered twice


def test_lightning_cli_yaml_config(tmp_path, monkeypatch):
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel

    (tmp_path / "cfg").mkdir()
    config = tmp_path / "cfg" / "greenai.yaml"
    config.write_text(
        "trainer:\n"
        f"  default_root_dir: {tmp_path}\n"
        "  max_steps: 2\n"
        "  limit_val_batches: 0\n"
        "  enable_progress_bar: false\n"
        "  logger: false\n"
        "  enable_checkpointing: false\n"
        "  callbacks:\n"
        "    - class_path: lightning_greenai.EnergyMonitor\n"
        "      init_args:\n"
        "        grid:\n"
        "          country: DE\n"
        "          pue: 1.2\n"
        "        verbose: false\n"
    )
    monkeypatch.setattr("sys.argv", ["cli", "fit", f"--config={config}"])
    cli = LightningCLI(BoringModel, BoringDataModule, save_config_callback=None)
    (mon,) = [cb for cb in cli.trainer.callbacks if isinstance(cb, EnergyMonitor)]
    assert (mon.grid.country, mon.grid.pue) == ("DE", 1.2)
    assert mon.spend.duration_s > 0


def test_no_network_connection_is_attempted(tiny_trainer, fake_clock, tmp_path, monkeypatch):
    import socket

    attempts = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    mon = EnergyMonitor(grid={"country": "DE"}, rapl_root=tmp_path / "none", clock=fake_clock, verbose=False)
    tiny_trainer(callbacks=[mon], max_steps=2).fit(ClockedModel(fake_clock))
    assert attempts == []
    assert mon.spend.total_energy_j is not None


def test_discovery_line_is_logged_once(tiny_trainer, fake_clock, tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO)
    mon = EnergyMonitor(rapl_root=tmp_path / "none", clock=fake_clock, verbose=False)
    tiny_trainer(callbacks=[mon], max_steps=1).fit(ClockedModel(fake_clock))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("lightning-greenai sensors:")]
    assert len(lines) == 1
    assert "cpu:estimate (estimate)" in lines[0]


def test_a_fit_that_raises_still_prints_and_writes_its_price_tag(tiny_trainer, fake_clock, tmp_path, capsys):
    class Crashes(ClockedModel):
        def training_step(self, batch, batch_idx):
            if batch_idx == 3:
                raise RuntimeError("out of memory")
            return super().training_step(batch, batch_idx)

    mon = EnergyMonitor(sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)], clock=fake_clock)
    trainer = tiny_trainer(callbacks=[mon], logger=CSVLogger(tmp_path), max_steps=10)
    with pytest.raises(RuntimeError, match="out of memory"):
        trainer.fit(Crashes(fake_clock))
    assert mon.spend.energy_j == {"gpu:0": 300.0}  # the three steps that ran
    out = capsys.readouterr().out
    assert "price tag (fit (interrupted: RuntimeError: out of memory))" in out
    tag = json.loads((Path(trainer.log_dir) / "price_tag.json").read_text())
    assert tag["energy_kwh"] == pytest.approx(300.0 / J_PER_KWH)
    assert tag["title"].startswith("fit (interrupted")


def test_a_validate_only_run_has_no_train_stage(tiny_trainer, fake_clock):
    mon = monitor(fake_clock)
    tiny_trainer(callbacks=[mon]).validate(ClockedModel(fake_clock))
    assert mon.spend.stage_energy_j == {"validate": 100.0}


def test_a_predict_only_run_has_no_train_stage(tiny_trainer, fake_clock):
    class Predicts(ClockedModel):
        def predict_step(self, batch, batch_idx):
            self.clock.advance(0.5)
            return super().predict_step(batch, batch_idx)

    mon = monitor(fake_clock)
    tiny_trainer(callbacks=[mon], limit_predict_batches=2).predict(Predicts(fake_clock))
    assert mon.spend.stage_energy_j == {"predict": 100.0}


def test_two_monitors_write_two_price_tags(tiny_trainer, fake_clock, tmp_path):
    de, fr = (
        monitor(fake_clock),
        EnergyMonitor(
            grid={"country": "FR"},
            sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)],
            clock=fake_clock,
            verbose=False,
        ),
    )
    trainer = tiny_trainer(callbacks=[de, fr], logger=CSVLogger(tmp_path))
    trainer.fit(ClockedModel(fake_clock))
    tags = {p.name: json.loads(p.read_text()) for p in Path(trainer.log_dir).glob("price_tag*.json")}
    assert sorted(tags) == ["price_tag-1.json", "price_tag.json"]
    assert tags["price_tag.json"]["grid"]["country"] == "DE"
    assert tags["price_tag-1.json"]["grid"]["country"] == "FR"


def test_the_sensor_line_is_shown_once_for_fit_validate_and_test(
    tiny_trainer, fake_clock, tmp_path, caplog, monkeypatch
):
    mon = EnergyMonitor(
        rapl_root=make_rapl_tree(tmp_path / "powercap", [1_000_000]), nvml=None, clock=fake_clock, verbose=False
    )
    trainer = tiny_trainer(callbacks=[mon], limit_test_batches=1)
    model = ClockedModel(fake_clock)
    with caplog.at_level("INFO"):
        trainer.fit(model)
        trainer.validate(model)
        trainer.test(model)
    assert sum("sensors:" in r.getMessage() or "RAPL" in r.getMessage() for r in caplog.records) == 1


def test_lightning_greenai_env_with_the_users_own_default_monitor(monkeypatch, tiny_trainer, fake_clock):
    monkeypatch.setenv(ENV_VAR, "1")
    mine = EnergyMonitor(
        sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)], clock=fake_clock, verbose=False
    )
    trainer = tiny_trainer(callbacks=[mine], max_steps=2, limit_val_batches=0, enable_checkpointing=True)
    trainer.fit(ClockedModel(fake_clock))  # no "more than one stateful callback" error: the auto one is keyed apart
    assert mine.spend.energy_j == {"gpu:0": 200.0}
    assert sum(isinstance(cb, EnergyMonitor) for cb in trainer.callbacks) == 2


def test_logger_false_in_a_sweep_writes_into_the_trials_output_dir(
    in_sweep_job, tiny_trainer, fake_clock, tmp_path, monkeypatch
):
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    out = tmp_path / "multirun" / "7"
    cfg = HydraConfig.get()
    OmegaConf.update(cfg, "runtime", {"output_dir": str(out)}, force_add=True)
    OmegaConf.update(cfg, "sweeper.grid", {"country": "DE"})  # the monitor's own grid, set once for the sweep
    monkeypatch.chdir(tmp_path)
    mon = monitor(fake_clock)
    L.Trainer(
        callbacks=[mon], logger=False, max_steps=2, limit_val_batches=0, enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, accelerator="cpu", devices=1,
    ).fit(ClockedModel(fake_clock))  # fmt: skip
    assert (out / "price_tag.json").exists()
    assert not (tmp_path / "price_tag.json").exists()


def test_logger_false_outside_hydra_writes_under_the_trainers_default_root_dir(tiny_trainer, fake_clock, tmp_path,
                                                                             monkeypatch):  # fmt: skip
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    mon = monitor(fake_clock)
    trainer = tiny_trainer(callbacks=[mon], logger=False, default_root_dir=root, max_steps=2, limit_val_batches=0)
    trainer.fit(ClockedModel(fake_clock))
    trainer.test(ClockedModel(fake_clock), verbose=False)
    assert set(json.loads((root / "price_tag.json").read_text())["stages"]) == {"fit", "test"}
    assert list(elsewhere.iterdir()) == []  # nothing in the current folder


class BusyModel(ClockedModel):
    """Each training step also spends 50 ms of this process's CPU time, whatever the machine's speed: the fit's CPU
    share is then above the kernel's 10 ms accounting tick, not a race against it."""

    def training_step(self, batch, batch_idx):
        start = time.process_time()
        while time.process_time() - start < 0.05:
            pass
        return super().training_step(batch, batch_idx)


def test_embodied_carbon_and_water_are_logged_and_in_price_tag_json_apart_from_co2e(tiny_trainer, fake_clock, tmp_path):
    # a reserved server: charged whole for the metered time (the default, by CPU share, is in test_grid.py)
    mon = monitor(fake_clock, wue_l_per_kwh=2.0, embodied_g_per_gpu_hour=100.0, embodied_host_basis="server")
    trainer = tiny_trainer(max_steps=-1, max_epochs=1, limit_train_batches=4, limit_val_batches=0,
                           callbacks=[mon], logger=CSVLogger(tmp_path), log_every_n_steps=1)  # fmt: skip
    trainer.fit(BusyModel(fake_clock))
    rows = read_metrics(trainer.log_dir)
    kwh = 400.0 / J_PER_KWH  # 4 steps x 1 s at 100 W
    assert last(rows, "greenai/water_l") == pytest.approx(kwh * (2.0 + 3.75))
    # the GPU for its 4 s at the given 100 g/h, and a server for 4 s at the packaged 2,500 kg over 6 years
    embodied_g = 4.0 / 3600 * (100.0 + 2_500_000 / 52_560)
    assert last(rows, "greenai/embodied_co2e_kg") == pytest.approx(embodied_g / 1000)
    tag = json.loads((Path(trainer.log_dir) / "price_tag.json").read_text())
    assert tag["water_l"] == pytest.approx(kwh * 5.75)
    assert tag["stages"]["fit"]["embodied_co2e_kg"] == pytest.approx(embodied_g / 1000)
    assert tag["co2e_kg"] == pytest.approx(kwh * 365.477 / 1000)  # the electricity's alone
    assert tag["spend"]["host_share_s"] > 0  # the fit's CPU share of this machine, for the default basis


def test_the_grid_is_a_grid_or_a_mapping_of_its_options():
    grid = Grid.from_location("FR", pue=1.1)
    assert EnergyMonitor(grid=grid).grid is grid
    assert EnergyMonitor(grid={"country": "FR", "pue": 1.1, "region": None}).grid == grid  # nulls are unset
    assert EnergyMonitor(grid=OmegaConf.create({"country": "FR", "pue": 1.1})).grid == grid  # a Hydra config


@pytest.mark.parametrize(
    ("grid", "named"),
    [
        ("DE", r"`grid` must be a Grid, a mapping of Grid.from_location's options \(country, region, pue, .*got 'DE'"),
        ({"contry": "DE"}, r"Unknown grid option\(s\) \['contry'\]. Allowed: country, region"),
        ({"pue": 0.5}, r"`pue` must be a number >= 1.0 .*got 0.5"),
    ],
)
def test_a_bad_grid_names_the_value_and_what_is_allowed(grid, named):
    with pytest.raises(GridConfigError, match=named):
        EnergyMonitor(grid=grid)
