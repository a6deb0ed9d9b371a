"""Replay the learning-curve table as a sweep's trials: the sweeper's real strategies, no training.

    python benchmarks/replay.py -m hydra.sweeper.strategy=asha hydra.sweeper.seed=3 hydra.sweep.dir=outputs/replay

Each trial is one configuration of the table that ``benchmarks/learning_curves.py`` wrote (``config_id``; the search
space is a choice over the table's ids, so every strategy searches exactly the configurations that were run). The
trial replays that configuration's epochs through the path a real trial takes: each epoch's metered energy goes into
a :class:`~lightning_greenai.Meter` (a :class:`~lightning_greenai.sensors.fake.FakeSensor` counter that holds the
table's cumulative joules, flagged an estimate when the table's were), its FLOPs into ``Meter.add_flops``, and its
validation score to :func:`~lightning_greenai.report_score`, which waits at a rung for the sweeper's verdict. A trial
pruned at epoch k is therefore billed exactly the energy its configuration metered in its first k epochs, and the
rungs decide from the scores the real runs reached. Deterministic: the same seed gives the same trials, the same
decisions and the same books.

With ``config_id=null`` a trial names the table's hyperparameters instead (``family``, ``optimizer``, ``lr``,
``weight_decay``, ``batch_size``, ``width``, ``depth``; ``SPACE_PARAMS`` is the search space over them) and replays
the configuration nearest them (:func:`nearest_config`), so a search that models its parameters, as TPE does, can learn
from a configuration's neighbours:

    python benchmarks/replay.py -m hydra.sweeper.strategy=optuna config_id=null family=choice(mlp,cnn) ...
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from lightning_greenai import Meter, Method, report_score
from lightning_greenai.sensors.fake import FakeSensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import EXACT, ORDERED, TABLE, load_table, nearest_config


def replay(row: dict[str, Any], *, estimate: bool) -> float:
    """Report one configuration's epochs as a trial does; return the last score it reached (pruned or not)."""
    counter_j = [0.0]
    sensor = FakeSensor(
        "table", lambda: counter_j[0], method=Method.ESTIMATE if estimate else Method.COUNTER, uid="table"
    )
    epochs = len(row["score"])
    curve = zip(row["score"], row["energy_j"], row["mflops"], strict=True)
    score = float(row["score"][0])
    with Meter([sensor], process=False) as meter:  # process=False: the replay's own CPU time is not the trial's
        for epoch, (score, joules, mflops) in enumerate(curve, start=1):
            counter_j[0] += joules  # the epoch as it was metered: training and validation
            meter.add_flops(mflops * 1e6)
            meter.sample()
            if report_score(score, epoch, max_resource=epochs) or meter.should_stop():
                break
    return float(score)


@hydra.main(version_base="1.3", config_path="conf", config_name="replay")
def main(cfg: DictConfig) -> dict[str, float]:
    meta, configs = load_table(cfg.table or TABLE)
    if cfg.config_id is None:
        hyperparameters = {k: cfg[k] for k in (*EXACT, *ORDERED)}
        missing = [k for k, v in hyperparameters.items() if v is None]
        if missing:
            raise ValueError(
                f"config_id is null, so the trial needs all of {list(hyperparameters)}; missing {missing}."
            )
        config_id = nearest_config(configs, hyperparameters)
    else:
        config_id = int(cfg.config_id)
    if config_id not in configs:
        raise KeyError(f"config_id {config_id} is not in the table ({len(configs)} configurations: 0-{max(configs)}).")
    return {"val/acc": replay(configs[config_id], estimate=bool(meta.get("energy_is_estimate", True)))}


if __name__ == "__main__":
    main()
