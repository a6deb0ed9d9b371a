"""A Lightning trial metered by an EnergyMonitor on a constant 100 W fake GPU: used by the one-grid and rung tests.

``monitor_grid`` holds the grid arguments the trial's own monitor sets (none by default: it takes the sweep's).
Returns ``{"objective": -(x - 3)^2}``; the price tag lands in the trial's output dir (with no ``logger`` config; one
given, as ``+logger=wandb``, is used and never finished, as many tasks leave it). With ``epochs``, it trains that
many epochs of 2 batches with ``callbacks=greenai``'s BudgetStopping, validating each: ``val/score`` is
``-(x - 3)^2 / 10 + epoch / 100`` (the ranking of x never changes), and the objective its last value; ``flops``
adds a FlopMonitor.
"""

import time

import hydra
import lightning as L
from lightning.pytorch.demos.boring_classes import BoringModel
from omegaconf import DictConfig, OmegaConf

from lightning_greenai import BudgetStopping, EnergyMonitor, FlopMonitor
from lightning_greenai.sensors.fake import ConstantPowerSensor


class ScoredModel(BoringModel):
    """A BoringModel that logs ``val/score``, a learning curve set by ``x``."""

    def __init__(self, x: float) -> None:
        super().__init__()
        self.x = x

    def validation_step(self, batch, batch_idx):
        self.log("val/score", -((self.x - 3.0) ** 2) / 10 + (self.current_epoch + 1) / 100)
        return super().validation_step(batch, batch_idx)


@hydra.main(version_base="1.3", config_path=".", config_name="monitor_task")
def main(cfg: DictConfig) -> dict:
    grid = OmegaConf.to_container(cfg.monitor_grid, resolve=True)
    monitor = EnergyMonitor(
        sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=time.monotonic)], verbose=False, grid=grid
    )
    logger = hydra.utils.instantiate(cfg.logger) if OmegaConf.select(cfg, "logger") is not None else False
    common = dict(
        logger=logger, enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
        accelerator="cpu", devices=1,
    )  # fmt: skip
    if cfg.epochs is None:
        trainer = L.Trainer(callbacks=[monitor], max_steps=cfg.steps, limit_val_batches=0, **common)
        trainer.fit(BoringModel())
        return {"objective": -((cfg.x - 3.0) ** 2)}
    flops = [FlopMonitor()] if cfg.flops else []
    trainer = L.Trainer(
        callbacks=[monitor, *flops, BudgetStopping()], max_epochs=cfg.epochs, limit_train_batches=2,
        limit_val_batches=1, num_sanity_val_steps=0, **common,
    )  # fmt: skip
    trainer.fit(ScoredModel(cfg.x))
    return {"objective": float(trainer.callback_metrics["val/score"])}


if __name__ == "__main__":
    main()
