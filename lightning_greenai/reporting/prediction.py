"""The price of a prediction: energy, CO2e and FLOPs per sample (and per token) of validate, test and predict.

Green AI asks for the cost of inference beside the cost of training. A stage's figures divide what the stage
metered (its energy from the meter's stage split, its forward FLOPs from the FlopMonitor) by the samples it
processed; the batch size is kept with them because per-sample energy depends on it. :func:`break_even` answers
"after how many predictions does serving cost more than training did".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning_greenai.grid import Grid
from lightning_greenai.spend import Spend

__all__ = ["SERVING_ORDER", "break_even", "prediction_costs", "serving_stage"]

#: The stage that stands for serving, best first: predict is serving itself, test and validate are its stand-ins.
SERVING_ORDER = ("predict", "test", "validate")
_FLOPS_KEY = {"validate": "val/forward", "test": "test/forward", "predict": "predict/forward"}


def _per(value: float | None, count: int | None) -> float | None:
    return None if value is None or not count else value / count


def prediction_costs(
    samples: Mapping[str, Mapping[str, Any]],
    stage_energy_j: Mapping[str, float],
    flops_by_phase: Mapping[str, float] | None,
    grid: Grid | None = None,
) -> dict[str, dict[str, Any]]:
    """Per-sample and per-token figures of each evaluation stage that ran.

    Args:
        samples: By stage, the counts of :class:`~lightning_greenai.callbacks.samples.StageSamples` as a mapping.
        stage_energy_j: Energy by stage, all ranks, in joules (``Spend.stage_energy_j``).
        flops_by_phase: The FlopMonitor's totals (``"test/forward"`` ...), if one ran.
        grid: Turns energy into CO2e (PUE included); ``None``: no CO2e.

    Returns:
        By stage: the counts, ``energy_j``, ``flops``, ``j_per_sample``, ``co2e_g_per_sample``, ``flops_per_sample``
        and, with tokens, ``j_per_token`` and ``flops_per_token`` (``None`` where a quantity was not metered).
    """
    out: dict[str, dict[str, Any]] = {}
    for stage, counts in samples.items():
        if stage not in _FLOPS_KEY or not counts.get("batches"):
            continue
        n, tokens = counts.get("samples"), counts.get("tokens")
        energy_j = stage_energy_j.get(stage)
        flops = None if flops_by_phase is None else flops_by_phase.get(_FLOPS_KEY[stage])
        co2e_g = None if energy_j is None or grid is None else grid.co2e_g(Spend(energy_j={stage: energy_j}))
        out[stage] = {
            "samples": n,
            "tokens": tokens,
            "batches": counts.get("batches"),
            "batch_size": counts.get("batch_size"),
            "energy_j": energy_j,
            "flops": flops,
            "j_per_sample": _per(energy_j, n),
            "co2e_g_per_sample": _per(co2e_g, n),
            "flops_per_sample": _per(flops, n),
            "j_per_token": _per(energy_j, tokens),
            "flops_per_token": _per(flops, tokens),
        }
    return out


def serving_stage(costs: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The stage whose per-sample energy stands for serving (predict, else test, else validate), if any has one."""
    return next((s for s in SERVING_ORDER if s in costs and costs[s].get("j_per_sample")), None)


def break_even(spend: Spend, costs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """After how many predictions serving has cost as much as training (its training steps' energy and FLOPs).

    Returns ``None`` when either side is unknown: no training stage metered, or no per-sample energy.
    """
    stage = serving_stage(costs)
    training_j = spend.stage_energy_j.get("train")
    if stage is None or not training_j:
        return None
    figures = costs[stage]
    flops_per_sample = figures.get("flops_per_sample")
    return {
        "stage": stage,
        "training_energy_j": training_j,
        "training_flops": spend.flops or None,
        "j_per_sample": figures["j_per_sample"],
        "predictions_by_energy": training_j / figures["j_per_sample"],
        "predictions_by_flops": spend.flops / flops_per_sample if spend.flops and flops_per_sample else None,
        "batch_size": figures.get("batch_size"),
    }
