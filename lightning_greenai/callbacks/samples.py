"""Count the samples (and tokens) that validate, test and predict process: the denominator of a prediction's price.

One :class:`SampleCounter` per monitor. Samples are the leading dimension of the first tensor in a batch (what
Lightning takes for the batch size); tokens are what the user names with ``tokens_key``. Counts are summed over DDP
ranks at the points where the monitors already synchronise, and kept in checkpoints so that a resumed fit's
per-sample figures divide the resumed energy by the resumed samples.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils._pytree import tree_flatten

from lightning_greenai.errors import GreenAIWarning

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = ["EVAL_STAGES", "SampleCounter", "StageSamples", "TokensKey"]

#: The stages whose work is a prediction, named as the meter names their energy.
EVAL_STAGES = ("validate", "test", "predict")
#: How to find a batch's tokens: a key (mapping or attribute), an index (tuple batch), or a callable returning a count.
TokensKey = str | int | Callable[[Any], Any] | None


@dataclass
class StageSamples:
    """What one evaluation stage processed, over all ranks.

    Attributes:
        samples: Samples seen (``None`` if a batch held no tensor to count them by).
        tokens: Tokens seen (``None`` without ``tokens_key``).
        batches: Batches seen.
        batch_size: The largest batch on one device: per-sample energy depends on it, so it is kept with the figures.
    """

    samples: int | None = 0
    tokens: int | None = None
    batches: int = 0
    batch_size: int = 0

    def __add__(self, other: StageSamples) -> StageSamples:
        return StageSamples(
            samples=None if self.samples is None or other.samples is None else self.samples + other.samples,
            tokens=_add_optional(self.tokens, other.tokens),
            batches=self.batches + other.batches,
            batch_size=max(self.batch_size, other.batch_size),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageSamples:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""

        def number(key: str, default: int | None) -> int | None:
            value = data.get(key, default)
            return None if value is None else int(value)

        return cls(
            samples=number("samples", 0),
            tokens=number("tokens", None),
            batches=int(data.get("batches", 0)),
            batch_size=int(data.get("batch_size", 0)),
        )


def _add_optional(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else a + b


def _check_tokens_key(tokens_key: TokensKey) -> TokensKey:
    if tokens_key is None or callable(tokens_key) or isinstance(tokens_key, (str, int)):
        return tokens_key
    raise TypeError(
        f"`tokens_key` must be a batch key (str), a tuple index (int) or a callable batch -> token count, got "
        f"{type(tokens_key).__name__}: {tokens_key!r}."
    )


def batch_samples(batch: Any) -> int | None:
    """The leading dimension of the first tensor in ``batch`` (any nesting), or ``None`` if it holds no tensor."""
    leaves, _ = tree_flatten(batch)
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor) and leaf.dim() > 0:
            return int(leaf.shape[0])
    return None


class SampleCounter:
    """Count the samples and tokens of each evaluation stage; see the module docstring.

    Args:
        tokens_key: Where a batch keeps its tokens: ``"input_ids"`` (a mapping key or attribute; the tensor's element
            count is the token count), ``0`` (a tuple position), or a callable ``batch -> int | tensor`` (to count
            only real tokens, say ``lambda b: b["attention_mask"].sum()``). ``None``: no per-token figures.

    Raises:
        TypeError: ``tokens_key`` is none of the above.
    """

    def __init__(self, tokens_key: TokensKey = None) -> None:
        self.tokens_key = _check_tokens_key(tokens_key)
        self._local = {stage: StageSamples(tokens=None if tokens_key is None else 0) for stage in EVAL_STAGES}
        self._synced = {stage: StageSamples(tokens=None if tokens_key is None else 0) for stage in EVAL_STAGES}
        self._resumed = {stage: StageSamples(tokens=None) for stage in EVAL_STAGES}
        self._call = {stage: StageSamples(tokens=None if tokens_key is None else 0) for stage in EVAL_STAGES}
        self._warned = False

    def begin_call(self, stage: str) -> None:
        """Start a new call of ``stage``: :attr:`calls` counts from here, :attr:`totals` goes on.

        A call is a ``validate``, ``test`` or ``predict``, or a fit's validation loops together.
        """
        self._call[stage] = StageSamples(tokens=None if self.tokens_key is None else 0)

    def add(self, stage: str, batch: Any) -> None:
        """Count one batch of ``stage`` (``"validate"``, ``"test"`` or ``"predict"``) on this rank."""
        counts = self._local[stage]
        samples = batch_samples(batch)
        if samples is None:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"Cannot tell how many samples a {stage} batch holds (no tensor in it, a {type(batch).__name__}): "
                    "per-sample figures are left out.",
                    GreenAIWarning,
                    stacklevel=3,
                )
            counts.samples = None
        elif counts.samples is not None:
            counts.samples += samples
        counts.batches += 1
        counts.batch_size = max(counts.batch_size, samples or 0)
        if self.tokens_key is not None:
            counts.tokens = (counts.tokens or 0) + self._tokens(batch)

    def _tokens(self, batch: Any) -> int:
        key = self.tokens_key
        if callable(key):
            value = key(batch)
        elif isinstance(key, str) and isinstance(batch, Mapping):
            if key not in batch:
                raise KeyError(f"tokens_key={key!r} is not in the batch; its keys are {sorted(map(str, batch))}.")
            value = batch[key]
        elif isinstance(key, str):
            if not hasattr(batch, key):
                raise KeyError(f"tokens_key={key!r}: a {type(batch).__name__} batch has no such key or attribute.")
            value = getattr(batch, key)
        else:
            if not isinstance(batch, Sequence) or not -len(batch) <= int(key) < len(batch):  # type: ignore[arg-type]
                size = len(batch) if isinstance(batch, Sequence) else "not a sequence"
                raise KeyError(f"tokens_key={key!r}: no such position in a {type(batch).__name__} batch ({size}).")
            value = batch[int(key)]  # type: ignore[arg-type]
        if isinstance(value, torch.Tensor):
            # a tensor of ids counts its elements; a count (a 0-d tensor, a mask's sum) is the count
            return int(value.item()) if value.dim() == 0 else int(value.numel())
        return int(value)

    def sync(self, trainer: pl.Trainer) -> None:
        """Sum every rank's new counts into :attr:`totals`. A collective under DDP: all ranks call it together."""
        rows = [self._local[s] for s in EVAL_STAGES]
        sums = torch.tensor(
            [[-1 if r.samples is None else r.samples, r.tokens or 0, r.batches] for r in rows], dtype=torch.float64
        )
        # per stage: the largest batch, and whether any rank met a batch it could not count (one max-reduce for both)
        maxes = torch.tensor(
            [r.batch_size for r in rows] + [float(r.samples is None) for r in rows], dtype=torch.float64
        )
        if trainer.world_size > 1:
            device = trainer.strategy.root_device
            sums = trainer.strategy.reduce(sums.to(device), reduce_op="sum").cpu()
            maxes = trainer.strategy.reduce(maxes.to(device), reduce_op="max").cpu()
        sizes, unknown = maxes[: len(rows)], maxes[len(rows) :]
        for i, stage in enumerate(EVAL_STAGES):
            samples, tokens, batches = (int(v) for v in sums[i].tolist())
            new = StageSamples(
                samples=None if unknown[i] > 0 else samples,
                tokens=None if self.tokens_key is None else tokens,
                batches=batches,
                batch_size=int(sizes[i]),
            )
            self._synced[stage] = self._synced[stage] + new
            self._call[stage] = self._call[stage] + new
        self._local = {stage: StageSamples(tokens=None if self.tokens_key is None else 0) for stage in EVAL_STAGES}

    def settle_locally(self) -> None:
        """Fold this rank's unsynced counts into the totals without a collective (a single process, or a failure)."""
        for stage in EVAL_STAGES:
            self._synced[stage] = self._synced[stage] + self._local[stage]
            self._call[stage] = self._call[stage] + self._local[stage]
        self._local = {stage: StageSamples(tokens=None if self.tokens_key is None else 0) for stage in EVAL_STAGES}

    @property
    def totals(self) -> dict[str, StageSamples]:
        """Counts by stage over all ranks as of the last sync, a resumed fit's included; stages never run left out."""
        out = {}
        for stage in EVAL_STAGES:
            total = self._resumed[stage] + self._synced[stage]
            if total.batches:
                out[stage] = total
        return out

    @property
    def calls(self) -> dict[str, StageSamples]:
        """Counts by stage over all ranks of each stage's latest call (:meth:`begin_call`), as of the last sync.

        Stages never run are left out.
        """
        return {stage: counts for stage, counts in self._call.items() if counts.batches}

    def state_dict(self) -> dict[str, Any]:
        """Counts for a checkpoint: the totals plus this rank's unsynced counts (no collective: any rank, any hook)."""
        out = {}
        for stage in EVAL_STAGES:
            total = self._resumed[stage] + self._synced[stage] + self._local[stage]
            if total.batches:
                out[stage] = total.to_dict()
        return out

    def resume(self, state: Mapping[str, Any]) -> None:
        """Continue the counts of a checkpoint (a resumed fit: its energy and FLOPs continue too)."""
        self._resumed = {
            stage: StageSamples.from_dict(state[stage]) if stage in state else StageSamples(tokens=None)
            for stage in EVAL_STAGES
        }
