"""FLOP metering: count the FLOPs a step really performs, once per input signature, and price them.

:class:`FlopCounter` watches the ATen operators of a block (fused kernels included); :class:`StepFlops` caches the
count per step signature; :func:`optimizer_step_flops` estimates optimizer updates; :func:`peak_flops_per_s`
gives the dense peak used for MFU. The :class:`~lightning_greenai.FlopMonitor` callback drives them from Lightning.
"""

from lightning_greenai.flops.counter import FlopCount, FlopCounter, StepFlops, batch_signature
from lightning_greenai.flops.optimizer import optimizer_step_flops
from lightning_greenai.flops.peak import peak_flops_per_s, precision_dtype

__all__ = [
    "FlopCount",
    "FlopCounter",
    "StepFlops",
    "batch_signature",
    "optimizer_step_flops",
    "peak_flops_per_s",
    "precision_dtype",
]
