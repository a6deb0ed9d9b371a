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
"""

from __future__ import annotations

import functools
import json
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
    config_id = int(cfg.config_id)
    if config_id not in configs:
        raise KeyError(f"config_id {config_id} is not in the table ({len(configs)} configurations: 0-{max(configs)}).")
    return {"val/acc": replay(configs[config_id], estimate=bool(meta.get("energy_is_estimate", True)))}


if __name__ == "__main__":
    main()
