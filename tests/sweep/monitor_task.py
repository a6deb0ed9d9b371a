"""A Lightning trial metered by an EnergyMonitor on a constant 100 W fake GPU: used by the one-grid tests.

``monitor_grid`` holds the grid arguments the trial's own monitor sets (none by default: it takes the sweep's).
Returns ``{"objective": -(x - 3)^2}``; the price tag lands in the trial's output dir (with no ``logger`` config; one
given, as ``+logger=wandb``, is used and never finished, as many tasks leave it).
"""

import time

import hydra
import lightning as L
from lightning.pytorch.demos.boring_classes import BoringModel
from omegaconf import DictConfig, OmegaConf

from lightning_greenai import EnergyMonitor
from lightning_greenai.sensors.fake import ConstantPowerSensor


@hydra.main(version_base="1.3", config_path=".", config_name="monitor_task")
def main(cfg: DictConfig) -> dict:
    grid = OmegaConf.to_container(cfg.monitor_grid, resolve=True)
    monitor = EnergyMonitor(
        sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=time.monotonic)], verbose=False, grid=grid
    )
    logger = hydra.utils.instantiate(cfg.logger) if OmegaConf.select(cfg, "logger") is not None else False
    trainer = L.Trainer(
        callbacks=[monitor], logger=logger, max_steps=cfg.steps, limit_val_batches=0, enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, accelerator="cpu", devices=1,
    )  # fmt: skip
    trainer.fit(BoringModel())
    return {"objective": -((cfg.x - 3.0) ** 2)}


if __name__ == "__main__":
    main()
