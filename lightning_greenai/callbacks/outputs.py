"""Where a Lightning run's greenai files go, and what its trackers get: the price tag's file, run fields and metrics.

Trainer-side helpers of :class:`~lightning_greenai.EnergyMonitor`, kept apart so the callback only says when.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import torch

from lightning_greenai.errors import GreenAIWarning, StateWriteError
from lightning_greenai.io import write_json_atomic
from lightning_greenai.reporting import PriceTag

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = [
    "own_stage_figures",
    "STAGE_FIELDS",
    "cuda_uuids",
    "log_price_tag",
    "output_dir",
    "prediction_metrics",
    "run_root",
    "write_price_tags",
]

#: The fields of each stage kept in ``price_tag.json["stages"]`` and logged as run fields.
STAGE_FIELDS = (
    "energy_kwh",
    "co2e_kg",
    "embodied_co2e_kg",
    "water_l",
    "cost",
    "currency",
    "flops",
    "duration_s",
    "gpu_hours",
    "is_estimate",
)


def run_root(trainer: pl.Trainer) -> psutil.Process | None:
    """The process whose tree is this run on the host: spawned DDP workers are siblings, so their parent is it."""
    from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    if isinstance(launcher, _MultiProcessingLauncher) and trainer.world_size > 1:
        try:
            return psutil.Process().parent()
        except psutil.Error:
            return None
    return None  # this process: with DDP launched as subprocesses, the other ranks are its children


def output_dir(trainer: pl.Trainer, *, collective: bool = True) -> str | None:
    """Where the run's files go: the logger's folder, else the Hydra job's output dir or ``default_root_dir``.

    A logger that keeps no folder here (MLflow on a database or a server) counts as none. ``trainer.log_dir``
    broadcasts under DDP (every rank must call it); ``collective=False`` avoids it (teardown after
    a failure, when another rank may be gone).
    """
    if trainer.loggers:
        logger = trainer.loggers[0]
        found = trainer.log_dir if collective else (logger.log_dir or logger.save_dir)
        if found is not None:
            return str(found)
        # a logger that keeps no folder here (MLflow on a database or a server): the run's folder, as with none
    root = trainer.default_root_dir
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized() and os.path.abspath(root) == os.getcwd():
            return str(HydraConfig.get().runtime.output_dir)  # not the shared cwd every trial of a sweep has
    except ImportError:
        pass
    return root


def cuda_uuids() -> list[str] | None:
    """The UUIDs of the GPUs torch sees, in CUDA order (robust to CUDA_DEVICE_ORDER), or None if unknown."""
    try:
        return [f"GPU-{torch.cuda.get_device_properties(i).uuid}" for i in range(torch.cuda.device_count())]
    except (AttributeError, RuntimeError):
        return None


def write_price_tags(path: Path, tags: dict[str, dict[str, Any]], title: str) -> None:
    """Write stage ``title``'s price tag to ``path``, with every stage's main figures under ``"stages"``.

    A file that cannot be written is a warning, not a failed run.
    """
    data = dict(tags[title])
    data["stages"] = {k: {f: v[f] for f in STAGE_FIELDS if f in v} for k, v in tags.items()}
    try:
        write_json_atomic(path, data)
    except StateWriteError as err:
        warnings.warn(str(err), GreenAIWarning, stacklevel=3)


def own_stage_figures(tags: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each entry point's own energy, FLOPs and time, from the running totals its price tag holds (in run order).

    FLOPs are every phase's (training and evaluation, recomputation aside) when a FlopMonitor counted them.
    """
    out: dict[str, dict[str, Any]] = {}
    flops_before = 0.0
    for title, tag in tags.items():
        own = tag.get("this_stage") or tag
        phases = tag.get("flops_by_phase")
        if phases:
            flops = sum(v for k, v in phases.items() if v and not k.endswith("recompute"))
        else:
            flops = tag.get("flops") or 0.0
        out[title] = {
            "energy_kwh": own.get("energy_kwh"),
            "duration_s": own.get("duration_s"),
            "flops": flops - flops_before,
            "is_estimate": tag.get("is_estimate"),
        }
        flops_before = flops
    return out


def log_price_tag(trainer: pl.Trainer, tag: PriceTag) -> None:
    """Put each stage's price tag in every logger's run fields (W&B config, MLflow params, hparams.yaml ...).

    Keys carry the stage (``greenai/price_tag/fit/energy_kwh``, then ``.../test/...``): a tracker that refuses
    to change a param (MLflow) gets each once.
    """
    data = tag.to_dict()
    stage = tag.title.split(" ", 1)[0]
    fields = {f"greenai/price_tag/{stage}/{k}": data[k] for k in STAGE_FIELDS if data.get(k) is not None}
    for logger in trainer.loggers:
        if type(logger).__name__ == "TensorBoardLogger" and data.get("energy_kwh") is not None:
            # with a metric, the fields appear in TensorBoard's HParams view against the run's energy
            logger.log_hyperparams(fields, metrics={f"greenai/price_tag/{stage}/energy_kwh": data["energy_kwh"]})
        else:
            logger.log_hyperparams(fields)


def prediction_metrics(tag: PriceTag) -> dict[str, float]:
    """The price of a prediction of each evaluation stage that ran, as ``greenai/<stage>/<figure>`` metrics."""
    metrics: dict[str, float] = {}
    for stage, figures in tag.predictions.items():
        for key in ("j_per_sample", "co2e_g_per_sample", "j_per_token"):
            if figures.get(key) is not None:
                metrics[f"greenai/{stage}/{key}"] = figures[key]
    return metrics
