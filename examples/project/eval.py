"""Test a checkpoint: a Trainer built without any callbacks, as the template's eval.py does.

``LIGHTNING_GREENAI=1`` meters it anyway (Lightning's callbacks factory adds the EnergyMonitor)::

    LIGHTNING_GREENAI=1 python examples/project/eval.py ckpt_path=/path/to/best.ckpt
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).parents[1]))


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    trainer = instantiate(cfg.trainer, logger=False)
    trainer.test(model, datamodule, ckpt_path=cfg.ckpt_path)


if __name__ == "__main__":
    main()
