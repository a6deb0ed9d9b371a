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
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(["greenai_energy.country=FR", "greenai_energy.pue=1.3"]))
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
        assert cfg.logger.tracking_uri == f"sqlite:///{os.environ['PWD']}/mlflow.db"


def test_hydra_sweeper_config_documents_every_field():
    from hydra_plugins.greenai_sweeper.config import GreenAISweeperConf

    documented = OmegaConf.load(CONF / "hydra" / "sweeper" / "greenai.yaml")
    schema = OmegaConf.structured(GreenAISweeperConf)
    assert set(documented) - {"defaults"} == set(schema)
    for group in ("budget", "prior_cost", "grid"):
        assert set(documented[group]) == set(schema[group])
