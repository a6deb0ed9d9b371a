"""A project shaped like the widely used Lightning + Hydra template, metered by lightning-greenai.

Grouped configs (``data/``, ``model/``, ``callbacks/`` as a dict of named callbacks, ``logger/`` as a dict of named
loggers, ``trainer/`` presets, ``hparams_search/``, ``debug/``); ``train.py`` fits, then tests from the best
checkpoint, and returns the metric a search optimises::

    python examples/project/train.py                                  # fit + test, price tag printed per stage
    python examples/project/train.py 'callbacks=[default,greenai]'    # the greenai bundle beside your own
    python examples/project/train.py trainer=ddp_sim                  # 2-process DDP on CPU
    python examples/project/train.py -m hparams_search=digits_greenai # a search that stops at its energy budget
    LIGHTNING_GREENAI=1 python examples/project/eval.py ckpt_path=... # metered without touching the code
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig

sys.path.insert(0, str(Path(__file__).parents[1]))  # examples/digits.py: the data and the model


def instantiate_collection(cfg: Any) -> list[Any]:
    """Instantiate a dict (or list) of configs with a ``_target_`` each, as the template's utilities do."""
    if isinstance(cfg, DictConfig):
        nodes = [cfg] if "_target_" in cfg else list(cfg.values())
    elif isinstance(cfg, ListConfig):
        nodes = list(cfg)
    else:
        return []
    return [instantiate(node) for node in nodes if isinstance(node, DictConfig) and "_target_" in node]


def train(cfg: DictConfig) -> dict[str, float]:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|LeafSpec).*")
    L.seed_everything(cfg.seed, verbose=False)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    trainer = instantiate(
        cfg.trainer,
        callbacks=instantiate_collection(cfg.get("callbacks")),
        logger=instantiate_collection(cfg.get("logger")) or False,
    )
    trainer.fit(model, datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}  # test() replaces them: keep fit's
    trainer.test(model, datamodule, ckpt_path="best")
    return {**metrics, **{k: float(v) for k, v in trainer.callback_metrics.items()}}


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get(cfg.optimized_metric) if cfg.get("optimized_metric") else None


if __name__ == "__main__":
    main()
