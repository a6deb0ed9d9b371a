"""BatchCallback: the batch hooks of the greenai monitors, written once.

Every monitor does the same two things per batch: some per-stage work at a batch's start and end (count FLOPs,
count samples), and a periodic, possibly collective, piece of work every N training batches (sample the meter,
sync FLOPs, check the budget). Subclasses say what, in :meth:`BatchCallback.batch_start`,
:meth:`BatchCallback.batch_end` and :meth:`BatchCallback.every_n_steps_work`; the hooks here say when.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightning.pytorch.callbacks import Callback
from typing_extensions import override

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = ["BatchCallback", "Stage"]

#: A batch's stage: ``"train"``, ``"validate"``, ``"test"`` or ``"predict"``.
Stage = str


class BatchCallback(Callback):
    """A callback with per-stage batch work and a periodic piece of work every N training batches.

    The periodic work may be a collective. Under DDP it runs at the *next* training batch's start, not at a batch's
    end: progress bars read metrics on rank 0 only in ``*_end`` hooks, which may issue a collective (a ``sync_dist``
    metric) that ours on the other ranks would cross, and every rank would wait forever. On one process it runs at
    the batch's end, so the last batch's figures are not left for a batch that never comes.
    """

    def __init__(self) -> None:
        self._batches = 0  # training batches seen while active
        self._due = False  # the periodic work is due at the next training batch's start

    # -- what subclasses say -------------------------------------------------------------------------------------

    def batch_hooks_active(self) -> bool:
        """Whether the batch hooks do anything now (a monitor not set up, or stepped aside, does nothing)."""
        return True

    def every_n_steps(self, trainer: pl.Trainer) -> int:
        """Run :meth:`every_n_steps_work` every this many training batches."""
        return 1

    def every_n_steps_work(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The periodic work; every rank runs it at the same batch, so it may be a collective."""

    def batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: Stage, batch: Any) -> None:
        """Work at the start of each batch of ``stage``."""

    def batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: Stage, batch: Any) -> None:
        """Work at the end of each batch of ``stage`` (for ``"train"``, before the periodic work is counted)."""

    # -- when ----------------------------------------------------------------------------------------------------

    def _work_if_due(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._due:
            self._due = False
            self.every_n_steps_work(trainer, pl_module)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.batch_hooks_active():
            self._work_if_due(trainer, pl_module)
            self.batch_start(trainer, pl_module, "train", batch)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.batch_hooks_active():
            return
        self.batch_end(trainer, pl_module, "train", batch)
        self._batches += 1
        self._due = self._batches % self.every_n_steps(trainer) == 0
        if trainer.world_size == 1:
            self._work_if_due(trainer, pl_module)

    def _eval_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: Stage, batch: Any) -> None:
        if self.batch_hooks_active():
            self.batch_start(trainer, pl_module, stage, batch)

    def _eval_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: Stage, batch: Any) -> None:
        if self.batch_hooks_active():
            self.batch_end(trainer, pl_module, stage, batch)

    @override
    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._eval_batch_start(trainer, pl_module, "validate", batch)

    @override
    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._eval_batch_end(trainer, pl_module, "validate", batch)

    @override
    def on_test_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._eval_batch_start(trainer, pl_module, "test", batch)

    @override
    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._eval_batch_end(trainer, pl_module, "test", batch)

    @override
    def on_predict_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._eval_batch_start(trainer, pl_module, "predict", batch)

    @override
    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._eval_batch_end(trainer, pl_module, "predict", batch)
