"""Estimated FLOPs of an optimizer step, per trainable parameter element (flagged as an estimate).

Optimizer updates are element-wise, so they are not dispatched as matrix products; this module prices them from
the update rule: each multiply, add, divide and square root per parameter element counts as one FLOP.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_FLOPS_PER_PARAM", "optimizer_step_flops"]

#: FLOPs per element for an optimizer class this table does not know.
DEFAULT_FLOPS_PER_PARAM = 10

# base update cost per element, by class name
_BASE = {
    "SGD": 2,  # p -= lr * g
    "Adam": 12,  # two moment updates, bias corrections, sqrt, eps, divide, scale, subtract
    "AdamW": 12,
    "NAdam": 15,
    "RAdam": 15,
    "Adamax": 11,
    "Adagrad": 6,
    "Adadelta": 12,
    "RMSprop": 8,
    "Rprop": 6,
    "ASGD": 8,
    "LBFGS": DEFAULT_FLOPS_PER_PARAM,
}


def _per_element(name: str, group: dict[str, Any]) -> int:
    flops = _BASE.get(name, DEFAULT_FLOPS_PER_PARAM)
    if group.get("weight_decay"):
        flops += 2
    if name == "SGD" and group.get("momentum"):
        flops += 2 + (2 if group.get("nesterov") else 0)
    if name == "RMSprop" and group.get("momentum"):
        flops += 2
    return flops


def optimizer_step_flops(optimizer: Any) -> tuple[int, bool]:
    """Return ``(flops, known)`` for one step of ``optimizer`` over parameters that have a gradient.

    ``known`` is ``False`` when the optimizer class is not in the table and the default per-element cost was used.
    """
    name = type(optimizer).__name__
    total = 0
    for group in optimizer.param_groups:
        elements = sum(p.numel() for p in group["params"] if getattr(p, "grad", None) is not None)
        total += elements * _per_element(name, group)
    return total, name in _BASE
