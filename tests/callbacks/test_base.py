"""BatchCallback: the monitors' batch hooks, written once, with a stand-in Trainer."""

from types import SimpleNamespace
from typing import Any

import pytest

from lightning_greenai.callbacks.base import BatchCallback


class _Recorder(BatchCallback):
    """Records when each piece of work runs."""

    def __init__(self, every: int, *, active: bool = True) -> None:
        super().__init__()
        self.every, self.active = every, active
        self.calls: list[str] = []

    def batch_hooks_active(self) -> bool:
        return self.active

    def every_n_steps(self, trainer: Any) -> int:
        return self.every

    def every_n_steps_work(self, trainer: Any, pl_module: Any) -> None:
        self.calls.append("work")

    def batch_start(self, trainer: Any, pl_module: Any, stage: str, batch: Any) -> None:
        self.calls.append(f"start {stage}")

    def batch_end(self, trainer: Any, pl_module: Any, stage: str, batch: Any) -> None:
        self.calls.append(f"end {stage}")


def _train(cb: BatchCallback, trainer: Any, batches: int) -> None:
    for i in range(batches):
        cb.on_train_batch_start(trainer, None, None, i)
        cb.on_train_batch_end(trainer, None, None, None, i)


def test_one_process_works_at_the_due_batch_end() -> None:
    cb = _Recorder(every=2)
    _train(cb, SimpleNamespace(world_size=1), 3)
    assert cb.calls == ["start train", "end train", "start train", "end train", "work", "start train", "end train"]


def test_several_processes_work_at_the_next_batch_start() -> None:
    cb = _Recorder(every=2)
    _train(cb, SimpleNamespace(world_size=2), 2)
    assert "work" not in cb.calls  # due at the second batch's end, but not done there (a progress bar's collective)
    _train(cb, SimpleNamespace(world_size=2), 1)
    assert cb.calls[-3:] == ["work", "start train", "end train"]  # done at the next batch's start, before its work


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_evaluation_batches_name_their_stage(stage: str) -> None:
    cb = _Recorder(every=1)
    hook = {"validate": "validation"}.get(stage, stage)
    getattr(cb, f"on_{hook}_batch_start")(None, None, "batch", 0)
    getattr(cb, f"on_{hook}_batch_end")(None, None, None, "batch", 0)
    assert cb.calls == [f"start {stage}", f"end {stage}"]


def test_an_inactive_callback_does_nothing() -> None:
    cb = _Recorder(every=1, active=False)
    _train(cb, SimpleNamespace(world_size=1), 2)
    cb.on_test_batch_end(None, None, None, None, 0)
    assert cb.calls == [] and cb._batches == 0
