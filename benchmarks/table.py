"""The learning-curve table of ``benchmarks/learning_curves.py``: read it, and find the configuration nearest a point.

Plain functions with no Hydra app in the module, so a test can import them without ``@hydra.main`` setting Hydra's
version base for the rest of its process (``replay.py``, the Hydra task, imports them from here).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

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
