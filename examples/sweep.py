"""A budget-limited random search over the digits classifier: ``hydra/sweeper=greenai``.

    python examples/sweep.py -m                                   # the defaults in examples/conf/sweep.yaml
    python examples/sweep.py -m logger=wandb                      # curves in W&B (offline without an API key)
    python examples/sweep.py -m hydra.sweeper.budget.energy_kwh=0.01 hydra/launcher=joblib hydra.launcher.n_jobs=2
    python examples/sweep.py -m hydra.sweep.dir=outputs/s1 hydra.sweeper.resume=true   # continue a stopped sweep

Each trial trains with the ``callbacks=greenai`` bundle (EnergyMonitor, FlopMonitor, BudgetStopping), which reports
its spend to the sweeper and stops it cleanly when the sweep's budget is reached; the task returns the validation
accuracy. When the sweep stops it prints its price tag, writes plots into <sweep dir>/greenai_report, and logs the
budget curves through the same ``logger`` as a run named greenai-sweep.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).parent))
from digits import DigitsClassifier, DigitsDataModule


@hydra.main(version_base="1.3", config_path="conf", config_name="sweep")
def main(cfg: DictConfig) -> float:
    # one line per trial from Hydra is enough: Lightning's start-up notices would repeat for every trial
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|LeafSpec).*")
    L.seed_everything(cfg.seed, verbose=False)
    # One thread: a tiny MLP is fastest on one, and its CPU estimate then holds on a busy machine (threads that wait
    # for each other spin, and CPU time is what the estimate charges: see "How the numbers are measured").
    torch.set_num_threads(cfg.threads)
    single = HydraConfig.get().mode != RunMode.MULTIRUN  # without -m: one trial, whose price tag is worth printing
    trainer = L.Trainer(
        max_epochs=cfg.trainer.max_epochs,
        callbacks=[
            instantiate(c, **({"verbose": False} if single and "verbose" in c else {})) for c in cfg.callbacks.values()
        ],
        logger=instantiate(cfg.logger),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=5,
    )
    trainer.fit(DigitsClassifier(cfg.model.width, cfg.model.lr), DigitsDataModule(cfg.batch_size))
    if type(trainer.logger).__name__ == "WandbLogger":  # jobs may share a process: one W&B run per trial
        trainer.logger.experiment.finish()
    accuracy = float(trainer.callback_metrics["val/acc"])
    if single:
        print(
            f"[greenai] one trial ran (val/acc = {accuracy:.3f}, width {cfg.model.width}, lr {cfg.model.lr}); "
            "its price tag is above. The budget-limited search is a multirun: python examples/sweep.py -m"
        )
    return accuracy


if __name__ == "__main__":
    main()
