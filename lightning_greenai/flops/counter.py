"""Count the FLOPs a block of PyTorch code really performs, by watching the ATen operators it dispatches.

:class:`FlopCounter` is a ``TorchDispatchMode``: it sees every operator below autograd, so fused kernels (SDPA,
mkldnn and cuDNN RNNs) are priced by their own formulas instead of escaping the count, and the backward that
actually runs is counted (an input that needs no gradient gets none; a frozen weight gets no weight gradient).
Operators running inside the autograd engine are backward; those running there with grad mode on are an
activation-checkpoint recompute (hardware FLOPs, not model FLOPs).

:class:`StepFlops` counts a step once per *signature* (input shapes and dtypes, train/eval, grad mode, which
parameters train) and reuses the count, so metering costs nothing after the first step of each shape.

A counted block runs ``torch.compile``d code eagerly (dynamo's ``force_eager`` stance, entered by every
:class:`FlopCounter`) so that compilation is not disabled: calls after the block compile and run as they would
without metering, whether the block was a bare ``FlopCounter``, a :class:`StepFlops` step, ``Meter.count_flops`` or
the :class:`~lightning_greenai.FlopMonitor`'s counted step.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from lightning_greenai.flops.formulas import FORMULAS, is_heavy, looks_heavy

__all__ = ["FlopCount", "FlopCounter", "StepFlops", "batch_signature"]

aten = torch.ops.aten
#: ATen operators that reshape or move data between operands of different shapes without arithmetic on them.
_LIGHT = frozenset(
    [aten.cat, aten.stack, aten.index, aten.index_select, aten.gather, aten.scatter, aten.embedding, aten.where,
     aten.masked_fill, aten.copy_, aten._to_copy, aten.slice_scatter, aten.select_scatter, aten.index_put,
     aten.constant_pad_nd, aten.masked_select, aten.embedding_dense_backward, aten.nll_loss_forward,
     aten.nll_loss_backward, aten.mse_loss, aten.mse_loss_backward, aten._log_softmax_backward_data,
     aten._softmax_backward_data, aten.native_layer_norm_backward, aten.native_batch_norm_backward,
     aten.native_group_norm_backward, aten.expand, aten.view, aten.add, aten.sub, aten.mul, aten.div,
     aten.glu_backward]
)  # fmt: skip
#: Name parts of ATen operator families that move, pick, scatter, pool, pad or resample data without contracting
#: operands: their operand shapes can still match a product's by chance (a pooling backward's gradient and input).
_LIGHT_FAMILIES = ("pool", "unpool", "pad", "index", "scatter", "gather", "sampler", "upsample", "ctc", "embedding")


def _is_light(func: Any) -> bool:
    """Whether ``func`` is an ATen operator known to do no matrix product, whatever its operands' shapes."""
    if func.namespace != "aten":
        return False
    if func.overloadpacket in _LIGHT:
        return True
    return any(part.startswith(_LIGHT_FAMILIES) for part in func.overloadpacket.__name__.split("_") if part)


@dataclass
class FlopCount:
    """FLOPs of one counted block, by phase, with the heavy operators that could not be priced."""

    forward: int = 0
    backward: int = 0
    recompute: int = 0
    uncounted: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def model(self) -> int:
        """Model FLOPs: forward plus backward (the price tag's figure)."""
        return self.forward + self.backward

    @property
    def hardware(self) -> int:
        """Hardware FLOPs: model FLOPs plus recomputation."""
        return self.model + self.recompute

    def __iadd__(self, other: FlopCount) -> FlopCount:
        self.forward += other.forward
        self.backward += other.backward
        self.recompute += other.recompute
        self.uncounted.update(other.uncounted)
        return self


def _eager_stance() -> Any:
    """Run ``torch.compile``d code eagerly while a block is counted, leaving dynamo's cache untouched.

    Under a dispatch mode dynamo would skip the frame it meets and remember the skip for good: the model would then
    run eagerly for the whole run. With the ``force_eager`` stance it is not asked at all; the next step compiles.
    Returns the entered context (``None`` on a torch without stances, before 2.6).
    """
    set_stance = getattr(getattr(torch, "compiler", None), "set_stance", None)
    if set_stance is None:
        return None
    stance = set_stance("force_eager")
    stance.__enter__()
    return stance


class FlopCounter(TorchDispatchMode):
    """Count FLOPs of the operators dispatched while active (see the module docstring).

    While active, ``torch.compile``d code runs eagerly (so its operators are seen) and stays compiled afterwards.

    Args:
        causal_halving: Count causal attention as half the full L x S products (off: the full products run).

    Example::

        >>> import torch
        >>> with FlopCounter() as counter:
        ...     _ = torch.nn.Linear(16, 32)(torch.randn(4, 16))
        >>> counter.count.forward
        4096
    """

    def __init__(self, causal_halving: bool = False) -> None:
        super().__init__()
        self.causal_halving = causal_halving
        self.count = FlopCount()
        self._depth = 0  # the mode re-enters itself to decompose composite operators: the stance is the outermost's
        self._stance: Any = None

    def __enter__(self) -> FlopCounter:
        if self._depth == 0:
            self._stance = _eager_stance()
        self._depth += 1
        try:
            super().__enter__()
        except BaseException:
            self._leave()
            raise
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        try:
            super().__exit__(exc_type, exc_value, traceback)
        finally:
            self._leave()

    def _leave(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._stance is not None:
            stance, self._stance = self._stance, None
            stance.__exit__(None, None, None)

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        formula = FORMULAS.get(func.overloadpacket)
        if formula is None:
            # Under inference mode composite operators (linear, matmul, conv2d, lstm, sdpa) arrive whole: run
            # their decomposition so that the products inside come through this mode and are counted.
            with self:  # inside this handler the mode is off: turn it on for the decomposition's operators
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        if formula is None:
            name = str(func)
            # by name (matmul, conv, fft ...) or by what it did (a contraction of weight-sized operands, any name)
            if is_heavy(name) or (not _is_light(func) and looks_heavy(args, kwargs, out)):
                self.count.uncounted[name] += 1
            return out
        model, recompute = formula(args, kwargs, out, self.causal_halving)
        if torch._C._current_graph_task_id() == -1:
            self.count.forward += model
            self.count.recompute += recompute
        elif torch.is_grad_enabled():  # a forward re-run inside backward: activation checkpointing
            self.count.recompute += model + recompute
        else:
            self.count.backward += model
            self.count.recompute += recompute
        return out


def batch_signature(batch: Any) -> tuple[Hashable, ...]:
    """Return the shapes, dtypes and devices of every tensor in ``batch`` (any nesting), plus non-tensor types."""
    leaves, spec = tree_flatten(batch)
    parts: list[Hashable] = [str(spec)]
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            parts.append((tuple(leaf.shape), leaf.dtype, leaf.device.type))
        else:
            parts.append(type(leaf).__name__)
    return tuple(parts)


class StepFlops:
    """Count each distinct step signature once and reuse the count for every later step with it.

    Args:
        causal_halving: Passed to :class:`FlopCounter`.
    """

    def __init__(self, causal_halving: bool = False) -> None:
        self.causal_halving = causal_halving
        self.cache: dict[Hashable, FlopCount] = {}
        self.uncounted: collections.Counter[str] = collections.Counter()
        self._counter: FlopCounter | None = None
        self._key: Hashable = None

    def begin(self, key: Hashable) -> bool:
        """Start a step. Returns ``True`` if this signature is new and the step is being counted now."""
        self._key = key
        if key in self.cache or self._counter is not None:
            return False
        self._counter = FlopCounter(self.causal_halving)
        self._counter.__enter__()
        return True

    def end(self) -> FlopCount:
        """End the step and return its count (counted now, or reused from the cache)."""
        if self._counter is not None:
            counter, self._counter = self._counter, None
            counter.__exit__(None, None, None)
            self.cache[self._key] = counter.count
            self.uncounted.update(counter.count.uncounted)
        return self.cache.get(self._key, FlopCount())

    def abort(self) -> None:
        """Leave the counting mode without caching (the step raised)."""
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self._counter = None

    @contextmanager
    def step(self, key: Hashable) -> Iterator[None]:
        """Count (or reuse the count of) the block as one step with signature ``key``; read it with :meth:`last`."""
        self.begin(key)
        try:
            yield
        except BaseException:
            self.abort()
            raise
        self._last = self.end()

    @property
    def last(self) -> FlopCount:
        """The count of the latest :meth:`step` block."""
        return getattr(self, "_last", FlopCount())
