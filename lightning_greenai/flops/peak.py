"""Peak dense FLOP/s of an accelerator, for MFU: Lightning's table (dense, non-sparse figures) or the user's."""

from __future__ import annotations

import warnings
from typing import Any

import torch

__all__ = ["peak_flops_per_s", "precision_dtype"]


def precision_dtype(precision: str) -> torch.dtype | str:
    """Map a Lightning precision string to the dtype its matrix products run in."""
    p = str(precision)
    if p.startswith("bf16"):
        return torch.bfloat16
    if p.startswith("16"):
        return torch.float16
    if p.startswith("64"):
        return torch.float64
    if p.startswith("transformer-engine") or p.startswith("8"):
        return torch.int8
    # torch.backends.cuda.matmul.allow_tf32 = True sets this precision to "high" too (and reading that flag
    # raises on CPU-only builds)
    return "tfloat32" if torch.get_float32_matmul_precision() != "highest" else torch.float32


def peak_flops_per_s(device: torch.device, dtype: torch.dtype | str, user_peak: float | None = None) -> float | None:
    """Return the peak dense FLOP/s of one ``device`` in ``dtype``, ``user_peak`` if given, or ``None`` if unknown.

    CPUs have no entry: MFU is not reported for them unless the user gives a peak.
    """
    if user_peak is not None:
        return float(user_peak)
    if device.type != "cuda":
        return None
    from lightning.fabric.utilities.throughput import get_available_flops

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            flops: Any = get_available_flops(device, dtype)
        except (AssertionError, RuntimeError):  # an unknown name makes Lightning query the (absent) device
            return None
    return None if flops is None else float(flops)
