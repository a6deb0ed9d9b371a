from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from lightning_greenai import EnergyMonitor

CONF = Path(__file__).parents[1] / "conf"


def test_callbacks_config_instantiates_an_energy_monitor_with_overrides():
    cfg = OmegaConf.load(CONF / "callbacks" / "greenai.yaml")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(["greenai_energy.country=FR", "greenai_energy.pue=1.3"]))
    monitor = instantiate(cfg.greenai_energy)
    assert isinstance(monitor, EnergyMonitor)
    assert (monitor.grid.country, monitor.grid.pue) == ("FR", 1.3)
