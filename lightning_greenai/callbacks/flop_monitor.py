"""FlopMonitor: count the FLOPs a Lightning run really performs, by stage and phase, with MFU where known."""

from __future__ import annotations

import collections
import time
import warnings
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from lightning_greenai.callbacks.base import BatchCallback
from lightning_greenai.callbacks.samples import SampleCounter, StageSamples, TokensKey
from lightning_greenai.errors import GreenAIWarning
from lightning_greenai.flops.counter import FlopCount, StepFlops, batch_signature
from lightning_greenai.flops.optimizer import optimizer_step_flops
from lightning_greenai.flops.peak import peak_flops_per_s, precision_dtype
from lightning_greenai.reporting.prediction import prediction_costs
from lightning_greenai.spend import Spend

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = ["FlopMonitor"]

#: The counters kept, in the order they are reduced across ranks.
KEYS = (
    "train/forward",
    "train/backward",
    "train/optimizer",
    "train/recompute",
    "val/forward",
    "test/forward",
    "predict/forward",
)
_TRAINING = ("train/forward", "train/backward", "train/optimizer")
#: The forward FLOPs of each evaluation stage, by the stage's name in :class:`SampleCounter`.
_EVALUATION = {"validate": "val/forward", "test": "test/forward", "predict": "predict/forward"}
#: The counters' prefix of each stage.
_PHASE = {"train": "train", "validate": "val", "test": "test", "predict": "predict"}


class FlopMonitor(BatchCallback):
    r"""Count the FLOPs a run performs — forward, backward and optimizer, training and evaluation apart.

    No ``flops_per_batch`` to write: the first step of each distinct signature (input shapes and dtypes, stage,
    grad mode, which parameters train, precision) runs under a :class:`~lightning_greenai.flops.FlopCounter` that
    prices the ATen operators it dispatches, fused kernels included; later steps with that signature reuse the
    count. FLOPs are 2 per multiply-add of dense matrix products (linear, conv, attention's two products over the full
    score matrix, RNN gate products); bias, norms, activations and softmax are not counted. Optimizer FLOPs are an
    estimate per parameter element (see :mod:`lightning_greenai.flops.optimizer`). Recomputation (activation
    checkpointing, flash attention's backward) is kept apart as ``train/recompute``: hardware FLOPs, not model FLOPs.

    Logged keys (every ``log_every_n_steps`` training batches, all ranks summed):

    =========================== ==========================================================================
    ``greenai/flops``           training FLOPs so far (forward + backward + optimizer estimate)
    ``greenai/flops_per_step``  training FLOPs per optimizer step over the last window
    ``greenai/flops_per_s``     training FLOPs per second of training-step time over the last window
    ``greenai/mfu``             ``flops_per_s / (peak x world size)``; only where the peak is known (not on CPU)
    =========================== ==========================================================================

    And the price of a prediction, when ``validate``, ``test`` or ``predict`` ends (validation in a fit: when the
    fit ends): ``greenai/<stage>/flops_per_sample`` and, with ``tokens_key``, ``greenai/<stage>/flops_per_token``.
    Each call has its own: a second ``predict`` on the same trainer is priced alone, not averaged with the first
    (:attr:`totals` and :attr:`samples` go on adding up every call).

    Args:
        causal_halving: Count causal attention as half the full products.
        peak_flops_per_s: Peak dense FLOP/s of one device, for MFU (default: Lightning's table for known GPUs).
        log_every_n_steps: Log every this many training batches (default: the trainer's).
        prog_bar: Show ``greenai/flops_per_s`` (and MFU) in the progress bar.
        tokens_key: Where a batch keeps its tokens, for per-token figures: a key (``"input_ids"``: its element count),
            a tuple position, or a callable ``batch -> count`` such as ``lambda b: b["attention_mask"].sum()``.

    Example::

        trainer = L.Trainer(callbacks=[FlopMonitor()])
        trainer.fit(model, dm)
        trainer.callbacks[0].totals   # {"train/forward": ..., "train/backward": ..., "val/forward": ...}
    """

    def __init__(
        self,
        *,
        causal_halving: bool = False,
        peak_flops_per_s: float | None = None,
        log_every_n_steps: int | None = None,
        prog_bar: bool = False,
        tokens_key: TokensKey = None,
    ) -> None:
        if log_every_n_steps is not None and log_every_n_steps < 1:
            raise ValueError(f"`log_every_n_steps` must be >= 1 or None, got {log_every_n_steps}.")
        if peak_flops_per_s is not None and not peak_flops_per_s > 0:
            raise ValueError(f"`peak_flops_per_s` must be > 0 or None, got {peak_flops_per_s}.")
        super().__init__()
        self._steps = StepFlops(causal_halving)
        self._peak_arg = peak_flops_per_s
        self._log_every = log_every_n_steps
        self._prog_bar = prog_bar
        self._local = dict.fromkeys(KEYS, 0.0)  # this rank, since the last sync
        self._base = dict.fromkeys(KEYS, 0.0)  # all ranks, synced, metered in this process
        self._resumed = dict.fromkeys(KEYS, 0.0)  # the counts of the run a resumed fit continues
        self._restored: dict[str, float] | None = None  # a checkpoint's counts, continued only if fit resumes
        self._account_key = object()
        self._optimizer_estimated = False
        self._warned: set[str] = set()
        self._params_key: Hashable = None
        self._step_time_s = 0.0
        self._t0 = 0.0
        self._window: tuple[float, float, int] = (0.0, 0.0, 0)  # (train flops, step time, optimizer steps)
        self._optimizer_steps = 0
        self._peak: float | None = None
        self._stage_prefix = "train"
        self._samples = SampleCounter(tokens_key)
        self._restored_samples: dict[str, Any] | None = None
        self._call_start = dict.fromkeys(_EVALUATION.values(), 0.0)  # each stage's FLOPs when its latest call began

    # -- results -----------------------------------------------------------------------------------------------

    @property
    def totals(self) -> dict[str, float]:
        """FLOPs by ``stage/phase`` over all ranks (as of the latest sync), a resumed fit's checkpoint included."""
        return {k: self._resumed[k] + self._base[k] + self._local[k] for k in KEYS}

    @property
    def training_flops(self) -> float:
        """Training model FLOPs: forward + backward + the optimizer estimate."""
        totals = self.totals
        return sum(totals[k] for k in _TRAINING)

    @property
    def spend(self) -> Spend:
        """Training FLOPs as a :class:`~lightning_greenai.Spend` (the optimizer share is an estimate)."""
        return Spend(flops=self.training_flops)

    @property
    def peak_flops_per_s(self) -> float | None:
        """Peak dense FLOP/s of one device, as MFU uses it: the argument, Lightning's table, or ``None`` (unknown).

        Known once a stage has started (``setup``); the price tag keeps it for the EU AI Act's compute estimate.
        """
        return self._peak

    @property
    def tokens_key(self) -> TokensKey:
        """Where a batch keeps its tokens (``None``: no per-token figures)."""
        return self._samples.tokens_key

    @property
    def samples(self) -> dict[str, StageSamples]:
        """Samples (and tokens) that validate, test and predict processed, all ranks, as of the latest sync."""
        return self._samples.totals

    @property
    def predictions(self) -> dict[str, dict[str, Any]]:
        """FLOPs per sample (and per token) of the latest call of each evaluation stage that ran.

        A fit's validation loops together are one call; :attr:`totals` and :attr:`samples` add up every call.
        """
        counts = {stage: c.to_dict() for stage, c in self._samples.calls.items()}
        totals = self.totals
        flops = {key: totals[key] - self._call_start[key] for key in _EVALUATION.values()}
        return prediction_costs(counts, {}, flops)

    @property
    def uncounted_ops(self) -> collections.Counter[str]:
        """FLOP-heavy operators that have no formula, with how often they ran in counted steps."""
        return self._steps.uncounted

    # -- hooks -------------------------------------------------------------------------------------------------

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._peak = peak_flops_per_s(trainer.strategy.root_device, precision_dtype(trainer.precision), self._peak_arg)

    def _params(self, pl_module: pl.LightningModule) -> Hashable:
        return tuple(p.requires_grad for p in pl_module.parameters())

    def _begin(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, batch: Any) -> None:
        if self._params_key is None:
            self._params_key = self._params(pl_module)
        key = (
            stage,
            batch_signature(batch),
            pl_module.training,
            torch.is_grad_enabled(),
            self._params_key,
            str(trainer.precision),
        )
        self._steps.begin(key)
        self._t0 = time.perf_counter()

    def _end(self, stage: str) -> FlopCount:
        count = self._steps.end()
        self._warn_uncounted(count)
        if stage == "train":
            self._local["train/forward"] += count.forward
            self._local["train/backward"] += count.backward
            self._local["train/recompute"] += count.recompute
        else:
            self._local[f"{stage}/forward"] += count.forward
        return count

    def _warn_uncounted(self, count: FlopCount) -> None:
        new = [op for op in count.uncounted if op not in self._warned]
        if new:
            self._warned.update(new)
            warnings.warn(
                f"FlopMonitor cannot price {', '.join(sorted(new))}: their FLOPs are NOT in the totals (listed in "
                "`uncounted_ops`, with call counts).",
                GreenAIWarning,
                stacklevel=2,
            )

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._restored is not None:
            self._resumed = self._restored  # only a resumed fit continues the checkpoint's counts
            self._samples.resume(self._restored_samples or {})
        self._restored = self._restored_samples = None
        self._begin_call("validate")  # the fit's validation loops, priced when the fit ends

    @override
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != "fit":
            self._restored = self._restored_samples = None  # validate/test/predict count on top of this run's
            self._begin_call("validate")

    @override
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restored = self._restored_samples = None
        self._begin_call("test")

    @override
    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restored = self._restored_samples = None
        self._begin_call("predict")

    def _begin_call(self, stage: str) -> None:
        """Price the evaluation stage's coming call on its own (its FLOPs and samples from here)."""
        key = _EVALUATION[stage]
        self._call_start[key] = self.totals[key]
        self._samples.begin_call(stage)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._params_key = self._params(pl_module)  # fine-tuning callbacks unfreeze at epoch starts

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        flops, known = optimizer_step_flops(optimizer)
        self._local["train/optimizer"] += flops
        self._optimizer_steps += 1
        if not known and type(optimizer).__name__ not in self._warned:
            self._warned.add(type(optimizer).__name__)
            warnings.warn(
                f"FlopMonitor has no FLOP rule for {type(optimizer).__name__}; its steps are estimated at the "
                "default cost per parameter element.",
                GreenAIWarning,
                stacklevel=2,
            )

    @override
    def every_n_steps(self, trainer: pl.Trainer) -> int:
        return self._log_every or trainer.log_every_n_steps or 50  # type: ignore[attr-defined]

    @override
    def every_n_steps_work(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Sync every rank's counts, log them, and show the rate in the progress bar."""
        metrics = self._sync_and_log(trainer, pl_module)
        if self._prog_bar:
            for key in ("greenai/flops_per_s", "greenai/mfu"):
                if key in metrics:
                    pl_module.log(key, metrics[key], prog_bar=True, logger=False, batch_size=1)

    @override
    def batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, batch: Any) -> None:
        self._begin(trainer, pl_module, _PHASE[stage], batch)

    @override
    def batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, batch: Any) -> None:
        self._end(_PHASE[stage])
        if stage == "train":
            self._step_time_s += time.perf_counter() - self._t0
        else:
            self._samples.add(stage, batch)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "validate":  # every rank, past the hooks where progress bars read metrics
            self._sync(trainer)
            self._log_predictions(trainer)
            self._report(trainer, release=True)

    @override
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sync(trainer)
        self._log_predictions(trainer)
        self._report(trainer, release=True)

    @override
    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sync(trainer)
        self._log_predictions(trainer)
        self._report(trainer, release=True)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sync_and_log(trainer, pl_module)
        self._log_predictions(trainer)
        self._report(trainer, release=True)

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._steps.abort()
        # no collectives here (another rank may be gone): rank 0 bills what was synced, and its own unsynced counts
        if trainer.world_size == 1:
            for key in KEYS:
                self._base[key] += self._local[key]
            self._local = dict.fromkeys(KEYS, 0.0)
            self._samples.settle_locally()
        self._report(trainer, release=True)

    # -- checkpointing -----------------------------------------------------------------------------------------

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"totals": self.totals, "samples": self._samples.state_dict()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # held until the entry point starts: see on_fit_start
        self._restored = {k: float(state_dict["totals"].get(k, 0.0)) for k in KEYS}
        self._restored_samples = dict(state_dict.get("samples", {}))

    # -- syncing and logging -----------------------------------------------------------------------------------

    def sync(self, trainer: pl.Trainer) -> None:
        """Sum every rank's new counts into :attr:`totals`. A collective: all ranks call it at the same hook."""
        self._sync(trainer)

    def _sync(self, trainer: pl.Trainer) -> None:
        local = torch.tensor([self._local[k] for k in KEYS], dtype=torch.float64)
        extra = torch.tensor([self._step_time_s, float(self._optimizer_steps)], dtype=torch.float64)
        if trainer.world_size > 1:
            device = trainer.strategy.root_device
            local = trainer.strategy.reduce(local.to(device), reduce_op="sum").cpu()
            extra = trainer.strategy.reduce(extra.to(device), reduce_op="mean").cpu()
        for key, value in zip(KEYS, local.tolist(), strict=True):
            self._base[key] += value
        self._local = dict.fromkeys(KEYS, 0.0)
        self._synced_step_time_s, self._synced_optimizer_steps = extra.tolist()
        self._samples.sync(trainer)

    def read_now(self, trainer: pl.Trainer) -> None:
        """Hand the trial its FLOPs counted so far now, between scheduled syncs (a rung that counts FLOPs).

        One process only: the ranks of a distributed run sync together at the scheduled hooks, so there it waits.
        """
        if trainer.world_size == 1:
            self._sync(trainer)
            self._report(trainer)

    def _sync_and_log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        self._sync(trainer)
        flops = self.training_flops
        step_time, steps = self._synced_step_time_s, self._synced_optimizer_steps
        prev_flops, prev_time, prev_steps = self._window
        self._window = (flops, step_time, int(steps))
        metrics: dict[str, float] = {"greenai/flops": flops}
        if steps > prev_steps:
            metrics["greenai/flops_per_step"] = (flops - prev_flops) / (steps - prev_steps)
        if step_time > prev_time:
            rate = (flops - prev_flops) / (step_time - prev_time)
            metrics["greenai/flops_per_s"] = rate
            if self._peak:
                metrics["greenai/mfu"] = rate / (self._peak * trainer.world_size)
        self._emit(trainer, metrics)
        self._report(trainer)
        return metrics

    def _log_predictions(self, trainer: pl.Trainer) -> None:
        """Log the FLOPs per sample (and per token) of each evaluation stage that ran."""
        metrics: dict[str, float] = {}
        for stage, figures in self.predictions.items():
            for key in ("flops_per_sample", "flops_per_token"):
                if figures.get(key) is not None:
                    metrics[f"greenai/{stage}/{key}"] = figures[key]
        if metrics:
            self._emit(trainer, metrics)

    def _report(self, trainer: pl.Trainer, *, release: bool = False) -> None:
        """In a greenai sweep, add the training FLOPs counted in this process to the trial's account (rank 0).

        The EnergyMonitor leaves FLOPs to this contribution, so they are billed once whatever monitors run.
        """
        from lightning_greenai.trial.account import current_trial

        if not trainer.is_global_zero:
            return
        reporter = current_trial()
        if reporter is None:
            return
        metered = sum(self._base[k] + self._local[k] for k in _TRAINING)
        reporter.contribute(self._account_key, Spend(flops=metered), force=release)
        if release:
            reporter.release(self._account_key)

    @rank_zero_only
    def _emit(self, trainer: pl.Trainer, metrics: dict[str, float]) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
