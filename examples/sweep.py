"""A budget-limited random search over the digits classifier: ``hydra/sweeper=greenai``.

    python examples/sweep.py -m                                   # the defaults in examples/conf/sweep.yaml
    python examples/sweep.py -m hydra.sweeper.budget.energy_kwh=0.01 hydra/launcher=joblib hydra.launcher.n_jobs=2
    python examples/sweep.py -m hydra.sweep.dir=outputs/s1 hydra.sweeper.resume=true   # continue a stopped sweep

Each trial trains with EnergyMonitor, FlopMonitor and BudgetStopping, which report its spend to the sweeper and
stop it cleanly when the sweep's budget is reached; the task returns the validation accuracy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).parent))
from digits import DigitsClassifier, DigitsDataModule

from lightning_greenai import BudgetStopping, EnergyMonitor, FlopMonitor


@hydra.main(version_base="1.3", config_path="conf", config_name="sweep")
def main(cfg: DictConfig) -> float:
    L.seed_everything(cfg.seed, verbose=False)
    trainer = L.Trainer(
        max_epochs=cfg.trainer.max_epochs,
        callbacks=[EnergyMonitor(country=cfg.country, verbose=False), FlopMonitor(), BudgetStopping()],
        default_root_dir=HydraConfig.get().runtime.output_dir,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=5,
    )
    trainer.fit(DigitsClassifier(cfg.model.width, cfg.model.lr), DigitsDataModule(cfg.batch_size))
    return float(trainer.callback_metrics["val/acc"])


if __name__ == "__main__":
    main()
