"""Train one configuration of the learning-curve table as a sweep's trial: the replay's check against real training.

    python benchmarks/train_trial.py -m hydra.sweeper.strategy=asha hydra.sweeper.seed=0 hydra.sweep.dir=outputs/real

The same sweep as ``benchmarks/replay.py`` (the same ``config_id`` space, seed and sweeper settings), but each trial
trains its configuration with Lightning on the example's digits, as ``benchmarks/learning_curves.py`` did when it
wrote the table (``run_config``: the same seed, model, data and monitors), with :class:`BudgetStopping` added: it
reports ``val/acc`` to the sweep at each validation end and stops the trial where the sweep prunes it. The energy is
metered now, not read from the table; the scores should be the table's (one thread, the same seed), so the sweep
should take the replay's decisions. ``benchmarks/search_energy.py --real`` runs it and compares the two.
"""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning_curves import CachedDigits, run_config
from table import TABLE, load_table

from lightning_greenai import BudgetStopping


@functools.cache
def digits() -> CachedDigits:
    """The digits, loaded once for every trial a process runs (as the table's run loaded them)."""
    return CachedDigits()


@hydra.main(version_base="1.3", config_path="conf", config_name="train_trial")
def main(cfg: DictConfig) -> dict[str, float]:
    torch.set_num_threads(1)  # as the table was made: one thread, the same scores
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|LeafSpec|GPU available).*")
    meta, configs = load_table(cfg.table or TABLE)
    config_id = int(cfg.config_id)
    if config_id not in configs:
        raise KeyError(f"config_id {config_id} is not in the table ({len(configs)} configurations: 0-{max(configs)}).")
    keys = ("id", "family", "optimizer", "lr", "weight_decay", "batch_size", "width", "depth")
    config = {key: configs[config_id][key] for key in keys}
    line, _ = run_config(config, digits(), int(meta["epochs"]), int(meta["seed"]), extra=[BudgetStopping()])
    return {"val/acc": line["score"][-1]}


if __name__ == "__main__":
    main()
