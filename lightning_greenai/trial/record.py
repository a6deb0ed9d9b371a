"""The files a budget sweep shares between its jobs and the sweeper, under ``<sweep.dir>/.greenai/``.

(With ``hydra.sweeper.storage`` the jobs' messages go through a database instead: see ``channel.py``.)
``trials/<job>.json`` (one writer: the job; atomic replace), ``trials/<job>.allowance.json`` (written by the sweeper
before launch), ``STOP`` (written by the sweeper's watchdog), ``ledger.jsonl`` (append-only, the sweeper). Every
file works on a shared filesystem (NFS, Lustre): writes go to a temporary name in the same folder, then
``os.replace``; the ledger is appended with ``fsync``.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from lightning_greenai.spend import Spend

__all__ = [
    "STATE_DIR",
    "Allowance",
    "Message",
    "StopSignal",
    "TrialRecord",
    "TrialStatus",
    "is_scored",
    "job_alive",
    "state_dir",
]

STATE_DIR = ".greenai"


class TrialStatus(str, Enum):
    """What a trial can be, as the job and the ledger record it.

    A ``str`` so that the value written to JSON or SQL is the bare word (``"completed"``) and compares equal to it:
    files written before this type existed read the same.
    """

    RUNNING = "running"  # until its task ends
    COMPLETED = "completed"
    BUDGET_STOPPED = "budget_stopped"  # stopped at its allowance (or, ``partial``, by the sweep's STOP)
    NOT_STARTED = "not_started"  # began after the sweep's STOP
    KILLED = "killed"  # stopped under ``stop_policy=kill``: billed, no score, not a failure
    PRUNED = "pruned"  # stopped at a rung by the search (ASHA, Hyperband, an Optuna pruner): billed, not a failure
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM: billed so far, run again on resume

    def __str__(self) -> str:
        """The bare value (``completed``), in messages and f-strings as in files."""
        return str(self.value)

    @classmethod
    def parse(cls, value: Any) -> TrialStatus | None:
        """The status ``value`` names, or ``None`` if it names none (any type: a damaged file holds anything)."""
        return cls._value2member_map_.get(value) if isinstance(value, str) else None  # type: ignore[return-value]


def is_scored(status: str | None, partial: bool = False) -> bool:
    """Whether a trial's objective may rank as the sweep's best and enter EVP.

    A trial must have completed, or stopped at its own allowance; one stopped by the sweep's STOP signal (``partial``)
    or pruned at a rung trained for less than the others, and one that never started has no score.
    """
    return status == TrialStatus.COMPLETED or (status == TrialStatus.BUDGET_STOPPED and not partial)


def state_dir(sweep_dir: str | os.PathLike[str]) -> Path:
    """Return ``<sweep_dir>/.greenai``."""
    return Path(sweep_dir) / STATE_DIR


def slurm_job_id() -> str | None:
    """The SLURM job this process runs in, as ``sacct -j`` takes it (``<array job>_<task>`` for an array task)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


@dataclass
class TrialRecord:
    """A trial's heartbeat: its cumulative spend, a sequence number, and its status as the job sees it."""

    job_num: int
    seq: int = 0
    status: TrialStatus = TrialStatus.RUNNING
    spend: Spend = field(default_factory=Spend)
    objective: float | None = None
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    updated_at: float = field(default_factory=time.time)
    warmup: bool = False  # the first trial of its process: it pays the process's one-off start-up costs
    partial: bool = False  # stopped by the sweep's STOP signal: its score is not comparable with the others'
    slurm_job: str | None = field(default_factory=slurm_job_id)  # the SLURM job (array task) it ran as
    #: the monitored score as reported, ``(resource, score)`` in order: the sweep's strategy decides at its rungs
    reports: list[tuple[float, float]] = field(default_factory=list)
    max_resource: float | None = None  # the resource the trial runs to (a Lightning trial's max_epochs), if known

    def __post_init__(self) -> None:
        self.status = TrialStatus(self.status)  # a bare word ("completed") names its status

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "job_num": self.job_num,
            "seq": self.seq,
            "status": self.status.value,
            "spend": self.spend.to_dict(),
            "objective": self.objective,
            "pid": self.pid,
            "host": self.host,
            "updated_at": self.updated_at,
            "warmup": self.warmup,
            "partial": self.partial,
            "slurm_job": self.slurm_job,
        } | ({"reports": [list(r) for r in self.reports], "max_resource": self.max_resource} if self.reports else {})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRecord:
        """Rebuild from :meth:`to_dict`.

        Raises:
            ValueError: ``data`` is not a heartbeat (wrong shape, a NaN or negative amount, an unknown status).
        """
        if not isinstance(data, dict):
            raise ValueError(f"a heartbeat is a JSON object, got {type(data).__name__}")
        try:
            raw_status = str(data.get("status", TrialStatus.RUNNING))
            status = TrialStatus.parse(raw_status)
            objective = data.get("objective")
            if objective is not None and (isinstance(objective, bool) or not math.isfinite(float(objective))):
                raise ValueError(f"objective {objective!r} is not a finite number")
            record = cls(
                job_num=int(data["job_num"]),
                seq=int(data.get("seq", 0)),
                status=status or TrialStatus.RUNNING,
                spend=Spend.from_dict(data.get("spend", {})),
                objective=None if objective is None else float(objective),
                pid=int(data.get("pid", 0)),
                host=str(data.get("host", "")),
                updated_at=float(data.get("updated_at", 0.0)),
                warmup=bool(data.get("warmup", False)),
                partial=bool(data.get("partial", False)),
                slurm_job=None if data.get("slurm_job") is None else str(data["slurm_job"]),
                reports=read_reports(data.get("reports", [])),
                max_resource=_finite_or_none(data.get("max_resource"), "max_resource"),
            )
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"not a heartbeat: {type(err).__name__}: {err}") from err
        if status is None:
            raise ValueError(f"unknown status {raw_status!r}")
        return record


def _finite_or_none(value: Any, name: str) -> float | None:
    """``value`` as a finite float (``None`` stays ``None``); anything else is damage, named."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} {value!r} is not a finite number")
    return float(value)


def read_reports(data: Any) -> list[tuple[float, float]]:
    """A heartbeat's or ledger's reports, ``[[resource, score], ...]``, as pairs of finite floats.

    Raises:
        ValueError: not a list of number pairs (a damaged message).
    """
    pairs = data if isinstance(data, list) else None
    if pairs is None or not all(isinstance(p, list | tuple) and len(p) == 2 and None not in p for p in pairs):
        raise ValueError(f"reports {data!r} are not [[resource, score], ...]")
    return [(_finite(resource, "resource"), _finite(score, "score")) for resource, score in pairs]


def _finite(value: Any, name: str) -> float:
    found = _finite_or_none(value, name)
    if found is None:
        raise ValueError(f"{name} is missing")
    return found


class _JsonMapping(Mapping[str, Any]):
    """A message that also reads as its JSON object (``to_json``): by key, and equal to the dict it was sent as."""

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def __len__(self) -> int:
        return len(self.to_json())


def _number(value: Any) -> float | None:
    """A finite number as a float; anything else (absent, damaged) ``None``."""
    finite = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if finite else None


def _caps(limits: Any) -> dict[str, float] | None:
    """A mapping of caps by budget quantity as floats, or ``None`` if ``limits`` is not one (damaged: ignored)."""
    if not isinstance(limits, dict):
        return None
    try:
        return {str(k): float(v) for k, v in limits.items()}
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, eq=False)
class Allowance(_JsonMapping):
    """What one trial may spend, written by the sweeper before launch (and raised when a sibling finishes).

    Caps are in the budget's own quantities (``energy_kwh``, ``co2e_kg`` ...): ``trial`` its own allowance
    (``trial_allowance`` x its estimate), ``sweep`` its share of what is left of the sweep's budget. Wall time is a
    clock time, ``deadline_unix_s``, so a job's start-up counts as on the sweep's clock. ``policy`` is the sweep's
    ``stop_policy``. ``next_rung``, under a strategy that stops trials at rungs (ASHA, Hyperband, an Optuna pruner):
    the resource (epochs, steps) from which the trial's next report waits for the sweeper's verdict; the sweeper
    raises it past each rung the trial is promoted through (``None``: no rung left, it runs to its end). Wire form:
    ``{"policy": ..., "trial": {...}, "sweep": {...}, "deadline_unix_s": ..., "next_rung": ...}``, the absent parts
    left out.
    """

    policy: str | None = None
    trial: Mapping[str, float] | None = None
    sweep: Mapping[str, float] | None = None
    deadline_unix_s: float | None = None
    next_rung: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The wire form (absent parts left out; ``policy`` always written)."""
        out: dict[str, Any] = {"policy": self.policy}
        if self.trial is not None:
            out["trial"] = dict(self.trial)
        if self.sweep is not None:
            out["sweep"] = dict(self.sweep)
        if self.deadline_unix_s is not None:
            out["deadline_unix_s"] = self.deadline_unix_s
        if self.next_rung is not None:
            out["next_rung"] = self.next_rung
        return out

    @classmethod
    def from_json(cls, data: Any) -> Allowance:
        """Read the wire form leniently: a damaged part is left out (the job then falls back on the STOP signal).

        Anything but a JSON object is no allowance; a plain mapping of limits (no ``trial``, ``sweep`` or
        ``policy`` key) is the trial's own.
        """
        if not isinstance(data, dict):
            return cls()
        if not any(k in data for k in ("trial", "sweep", "policy")):
            data = {"trial": data}
        policy = data.get("policy")
        return cls(
            policy=None if policy is None else str(policy),
            trial=_caps(data.get("trial")),
            sweep=_caps(data.get("sweep")),
            deadline_unix_s=_number(data.get("deadline_unix_s")),
            next_rung=_number(data.get("next_rung")),
        )

    def nothing_left(self, now_unix_s: float) -> bool:
        """Whether the trial's share of the sweep's budget was spent already (a cap at zero, or the deadline past)."""
        return any(limit <= 0.0 for limit in (self.sweep or {}).values()) or (
            self.deadline_unix_s is not None and now_unix_s >= self.deadline_unix_s
        )


@dataclass(frozen=True, eq=False)
class StopSignal(_JsonMapping):
    """The sweep's STOP signal: no new trial starts, and running ones stop as ``policy`` says.

    ``policy`` is the sweep's ``stop_policy`` (``graceful``, ``kill``; under ``finish`` running trials finish);
    ``kind`` why: ``budget`` (spent) or ``interrupt`` (the sweep was interrupted: its trials run again on resume).
    Sent to one job, kind ``prune``: the search stopped that trial at a rung (``reason`` says why), gracefully.
    Wire form: ``{"policy": ..., "kind": ..., "reason": ...}``, an absent kind or reason left out. A STOP that is
    not a JSON object (written by hand: ``echo STOP > STOP``) still stops the sweep, gracefully.
    """

    policy: str | None = "graceful"
    kind: str | None = None
    reason: str | None = None

    @property
    def interrupted(self) -> bool:
        """Whether the sweep itself was interrupted (its trials are run again on resume)."""
        return self.kind == "interrupt"

    @property
    def pruned(self) -> bool:
        """Whether the search stopped this one trial at a rung (ASHA, Hyperband, an Optuna pruner)."""
        return self.kind == "prune"

    def to_json(self) -> dict[str, Any]:
        """The wire form (``policy`` always written)."""
        out: dict[str, Any] = {"policy": self.policy}
        if self.kind is not None:
            out["kind"] = self.kind
        if self.reason is not None:
            out["reason"] = self.reason
        return out

    @classmethod
    def from_json(cls, data: Any) -> StopSignal:
        """Read the wire form; anything but a JSON object is a STOP present, graceful."""
        if not isinstance(data, dict):
            return cls(reason="STOP signal present")
        policy, kind, reason = data.get("policy"), data.get("kind"), data.get("reason")
        return cls(
            policy=None if policy is None else str(policy),
            kind=None if kind is None else str(kind),
            reason=None if reason is None else str(reason),
        )


#: What travels on a sweep's channel: a job's heartbeat, its allowance, the sweep's STOP signal.
Message = TrialRecord | Allowance | StopSignal


def job_alive(record: TrialRecord) -> bool | None:
    """Whether the job that wrote ``record`` still runs: its process (on this host), its SLURM job (``squeue``).

    ``None`` when this host cannot tell (another host, no SLURM job).
    """
    if record.host == socket.gethostname() and record.pid > 0:
        import psutil

        try:  # a zombie (dead, not yet reaped: its parent, the sweeper, died too) is not alive
            return bool(psutil.Process(record.pid).status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False
    if record.slurm_job and shutil.which("squeue"):
        import subprocess

        try:
            done = subprocess.run(
                ["squeue", "-h", "-j", record.slurm_job, "-o", "%T"], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode != 0:
            return False if "Invalid job id" in done.stderr else None
        return bool(done.stdout.strip())  # squeue lists only jobs pending, running or completing
    return None
