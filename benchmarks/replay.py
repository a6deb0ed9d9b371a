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

import functools
import json
import math
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from lightning_greenai import Meter, Method, report_score
from lightning_greenai.sensors.fake import FakeSensor

TABLE = Path(__file__).resolve().parent / "data" / "digits_curves.jsonl"


@functools.cache
def load_table(path: str | Path = TABLE) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """The table's metadata and its configurations by id."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    meta = rows[0] if rows and "table" in rows[0] else {}
    return meta, {int(r["id"]): r for r in rows if "id" in r}


#: The search space over the table's hyperparameters (Hydra sweep syntax), as ``learning_curves.SPACE`` drew them:
#: the ordered ones on the scale they were drawn on (batch size and width log, depth linear), so TPE can model them
#: (Hydra's ``interval`` is of floats, so batch size, width and depth are proposed as floats: the nearest is replayed).
SPACE_PARAMS = {
    "family": "choice(mlp,cnn)",
    "optimizer": "choice(adam,sgd)",
    "lr": "tag(log,interval(1e-4,0.3))",
    "weight_decay": "tag(log,interval(1e-6,0.1))",
    "batch_size": "tag(log,interval(16,256))",
    "width": "tag(log,interval(4,256))",
    "depth": "interval(1,3)",
}
#: Categorical hyperparameters a configuration must match exactly.
EXACT = ("family", "optimizer")
#: Ordered hyperparameters: (low, high, log scale) over the whole space, each family's own range within it.
ORDERED = {
    "lr": (1e-4, 0.3, True),
    "weight_decay": (1e-6, 0.1, True),
    "batch_size": (16, 256, True),
    "width": (4, 256, True),
    "depth": (1, 3, False),
}
FAMILY_RANGES = {"mlp": {"width": (16, 256), "depth": (1, 3)}, "cnn": {"width": (4, 32), "depth": (1, 2)}}


def _unit(key: str, value: float, family: str) -> float:
    """``value`` on [0, 1] over the space's range of ``key`` (log where drawn log), first clamped to its family's."""
    low, high, log = ORDERED[key]
    lo, hi = FAMILY_RANGES.get(family, {}).get(key, (low, high))
    value = min(max(float(value), lo), hi)
    if log:
        return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return (value - low) / (high - low)


def nearest_config(configs: dict[int, dict[str, Any]], hyperparameters: dict[str, Any]) -> int:
    """The id of the table's configuration nearest ``hyperparameters`` (all of ``EXACT`` and ``ORDERED``).

    Only configurations with the same family and optimizer qualify (the table has all four pairs). Among them the
    distance is Euclidean over the ordered hyperparameters, each mapped to [0, 1] over the space's range: learning
    rate, weight decay, batch size and width on a log scale, depth linearly; a width or depth outside its family's
    range (a CNN of width 128) counts as the range's end. Ties go to the lowest id.
    """
    family, optimizer = str(hyperparameters["family"]), str(hyperparameters["optimizer"])
    wanted = {k: _unit(k, hyperparameters[k], family) for k in ORDERED}
    best: tuple[float, int] | None = None
    for config_id, row in sorted(configs.items()):
        if row["family"] != family or row["optimizer"] != optimizer:
            continue
        distance = math.sqrt(sum((wanted[k] - _unit(k, row[k], family)) ** 2 for k in ORDERED))
        if best is None or distance < best[0]:
            best = (distance, config_id)
    if best is None:
        raise KeyError(f"No configuration in the table is a {family} with {optimizer}.")
    return best[1]


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
