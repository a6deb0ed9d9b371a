import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lightning_greenai import BudgetStopping, EnergyMonitor, FlopMonitor

CONF = Path(__file__).parents[1] / "conf"


def test_callbacks_config_instantiates_the_bundle_with_overrides():
    cfg = OmegaConf.load(CONF / "callbacks" / "greenai.yaml")
    overrides = ["greenai_energy.grid.country=FR", "greenai_energy.grid.pue=1.3"]
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    monitor = instantiate(cfg.greenai_energy)
    assert isinstance(monitor, EnergyMonitor)
    assert (monitor.grid.country, monitor.grid.pue) == ("FR", 1.3)
    assert isinstance(instantiate(cfg.greenai_flops), FlopMonitor)
    assert isinstance(instantiate(cfg.greenai_budget), BudgetStopping)


@pytest.mark.parametrize(
    ("logger", "target"),
    [
        ("csv", "lightning.pytorch.loggers.CSVLogger"),
        ("tensorboard", "lightning.pytorch.loggers.TensorBoardLogger"),
        ("mlflow", "lightning.pytorch.loggers.MLFlowLogger"),
        ("wandb", "lightning.pytorch.loggers.WandbLogger"),
    ],
)
def test_packaged_configs_compose_from_any_app(tmp_path, logger, target, monkeypatch):
    (tmp_path / "app.yaml").write_text("defaults:\n  - _self_\nx: 1\n")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: W&B must go offline
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        cfg = compose("app", overrides=["+callbacks=greenai", f"+logger={logger}", "+greenai/grid=FR"])
    assert cfg.logger._target_ == target
    assert cfg.greenai.grid.country == "FR"
    assert cfg.callbacks.greenai_energy._target_ == "lightning_greenai.EnergyMonitor"
    if logger == "wandb":
        assert cfg.logger.offline is True
    if logger == "mlflow":
        assert cfg.logger.tracking_uri == f"sqlite:///{os.getcwd()}/mlflow.db"  # outside a Hydra run


def test_hydra_sweeper_config_documents_every_field():
    from hydra_plugins.greenai_sweeper.config import GreenAISweeperConf

    documented = OmegaConf.load(CONF / "hydra" / "sweeper" / "greenai.yaml")
    schema = OmegaConf.structured(GreenAISweeperConf)
    assert set(documented) - {"defaults"} == set(schema)
    for group in ("budget", "prior_cost", "grid"):
        assert set(documented[group]) == set(schema[group])


GRIDS = sorted(p.stem for p in (CONF / "greenai" / "grid").glob("*.yaml"))


@pytest.mark.parametrize("preset", GRIDS)
def test_every_grid_preset_composes_into_the_sweep_example(preset):
    from lightning_greenai.sweep.engine import BudgetSweep

    examples = Path(__file__).parents[1] / "examples" / "conf"
    with initialize_config_dir(config_dir=str(examples), version_base="1.3"):
        cfg = compose("sweep", overrides=[f"greenai/grid={preset}"], return_hydra_config=True)
    monitor = instantiate(cfg.callbacks.greenai_energy)
    sweeper_grid = OmegaConf.to_container(cfg.hydra.sweeper.grid, resolve=True)
    sweep = BudgetSweep(budget={"energy_kwh": "30 J"}, grid=sweeper_grid)
    assert monitor.grid == sweep.grid  # the trials and the sweeper price with the same grid
    assert monitor.grid.country is not None  # a region resolves to its country's intensity
    assert monitor.grid.pue == cfg.greenai.grid.pue


def test_every_grid_preset_is_listed_in_the_apps_help(tmp_path):
    import subprocess
    import sys

    example = Path(__file__).parents[1] / "examples" / "sweep.py"
    out = subprocess.run([sys.executable, str(example), "--help"], capture_output=True, text=True, timeout=120).stdout
    listed = next(line for line in out.splitlines() if line.startswith("greenai/grid:"))
    assert sorted(x.strip() for x in listed.split(":", 1)[1].split(",")) == GRIDS
