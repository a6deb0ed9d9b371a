"""The job side of a budget sweep: find the sweep, write heartbeats, see a STOP request or the trial's allowance.

A job is inside a greenai sweep when Hydra's runtime config (``HydraConfig``) says it runs in multirun mode under
the greenai sweeper; the sweep dir and job number come from that config, never from the working directory.
The monitors (and a plain :class:`~lightning_greenai.Meter`) call :func:`current_trial` and report through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning_greenai.budget.files import TrialRecord, read_json, state_dir, write_json_atomic
from lightning_greenai.spend import Spend

__all__ = ["TrialReporter", "current_trial"]

_REPORTERS: dict[tuple[str, int], TrialReporter] = {}


class TrialReporter:
    """Write one trial's heartbeat file and read the sweeper's signals for it.

    Args:
        sweep_dir: The sweep's folder (``hydra.sweep.dir``).
        job_num: The job's number (``hydra.job.num``).
        heartbeat_s: Minimum seconds between two heartbeat writes (status changes are written at once).
        clock: Monotonic clock.
    """

    def __init__(
        self,
        sweep_dir: str | Path,
        job_num: int,
        heartbeat_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sweep_dir = Path(sweep_dir)
        self.job_num = job_num
        self.heartbeat_s = heartbeat_s
        self._clock = clock
        self._last_write: float | None = None
        previous = TrialRecord.load(self.sweep_dir, job_num)
        self.record = TrialRecord(job_num=job_num, seq=previous.seq if previous else 0)
        # a requeued job (same number, e.g. a preempted Slurm job) continues the spend of its earlier attempt
        self.base = previous.spend if previous is not None else Spend()
        self.last_spend = Spend()

    def update(
        self, spend: Spend, *, status: str | None = None, objective: float | None = None, force: bool = False
    ) -> bool:
        """Record the trial's cumulative spend; write it if a heartbeat is due, the status changed, or ``force``.

        Returns whether the file was written.
        """
        changed = status is not None and status != self.record.status
        self.last_spend = spend
        self.record.spend = self.base + spend
        if status is not None:
            self.record.status = status
        if objective is not None:
            self.record.objective = objective
        now = self._clock()
        due = self._last_write is None or now - self._last_write >= self.heartbeat_s
        if not (force or changed or due):
            return False
        self.record.seq += 1
        self.record.updated_at = time.time()
        write_json_atomic(TrialRecord.path(self.sweep_dir, self.job_num), self.record.to_dict())
        self._last_write = now
        return True

    def finish(self, status: str, objective: float | None = None) -> None:
        """Write the final record: the latest spend, the final status and the objective."""
        self.update(self.last_spend, status=status, objective=objective, force=True)

    def stop_request(self) -> dict[str, Any] | None:
        """The sweeper's STOP signal (``{"policy": ..., "reason": ...}``), or ``None``."""
        path = state_dir(self.sweep_dir) / "STOP"
        if not path.exists():
            return None
        return read_json(path) or {"policy": "graceful", "reason": "STOP file present"}

    def allowance(self) -> dict[str, float] | None:
        """This trial's own spending limits, written by the sweeper before launch, or ``None``."""
        data = read_json(state_dir(self.sweep_dir) / "trials" / f"{self.job_num}.allowance.json")
        return None if data is None else {str(k): float(v) for k, v in data.items()}


def current_trial() -> TrialReporter | None:
    """Return the reporter of the greenai sweep job running in this process, or ``None`` outside one."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        from omegaconf import OmegaConf
    except ImportError:
        return None
    if not HydraConfig.initialized():
        return None
    cfg: Any = HydraConfig.get()
    if cfg.mode != RunMode.MULTIRUN or "greenai" not in str(OmegaConf.select(cfg, "sweeper._target_", default="")):
        return None
    key = (str(cfg.sweep.dir), int(cfg.job.num))
    if key not in _REPORTERS:
        heartbeat_s = float(OmegaConf.select(cfg, "sweeper.heartbeat_s", default=10.0))
        _REPORTERS[key] = TrialReporter(key[0], key[1], heartbeat_s=heartbeat_s)
    return _REPORTERS[key]
