"""What a sweep's ledger says happened: its trials, the jobs still open, and the wall time of every session.

A sweep can run in several sessions (a crash, Ctrl-C or SIGTERM, then ``hydra.sweeper.resume=true``). Each session
begins with a ``header`` or ``resumed`` event; one that ended cleanly has a ``stopped`` event, one that crashed ends
at its last sign of life (its last event, or the last heartbeat of a trial it launched). Their wall times add up, so
a wall-time budget counts the crashed session too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightning_greenai.grid import Grid
from lightning_greenai.spend import Spend
from lightning_greenai.trial.record import TrialRecord, TrialStatus, is_scored, read_reports

__all__ = ["History", "Session", "Trial", "curve_axes", "limits_in_force", "replay"]


@dataclass
class Trial(Mapping[str, Any]):
    """One job of a sweep: what the sweeper knows of it, and what the reports read from the ledger.

    It also reads as its ledger form (:meth:`to_json`: the ``finished`` event with the launch's overrides), by key.
    """

    job_num: int
    overrides: list[str]
    status: TrialStatus = TrialStatus.RUNNING
    objective: float | None = None
    spend: Spend = field(default_factory=Spend)
    error: str | None = None
    warmup: bool = False
    partial: bool = False
    strategy_id: int | None = None
    rerun_of: int | None = None
    slurm_job: str | None = None
    finished_at: float | None = None  # the clock time of its ``finished`` event
    recovered: bool = False  # finished while the sweeper was down: recorded by the resume
    #: its reports of the monitored score, ``(resource, score)`` in order (a pruned trial keeps those it reached)
    reports: list[tuple[float, float]] = field(default_factory=list)
    max_resource: float | None = None  # how far it said it would train

    @property
    def ranks(self) -> bool:
        """Whether its score may rank as the sweep's best and enter EVP (see ``is_scored``)."""
        return self.objective is not None and is_scored(self.status, self.partial)

    @property
    def failed_unmetered(self) -> bool:
        """Whether it failed before metering anything (no energy, FLOPs or time): a trial no budget can see."""
        spend = self.spend
        return self.status == TrialStatus.FAILED and not (spend.total_energy_j or spend.flops or spend.duration_s)

    def take_heartbeat(self, record: TrialRecord | None) -> None:
        """Take the spend, warm-up flag, SLURM job and reports of its last heartbeat (none: nothing was metered)."""
        self.spend = record.spend if record is not None else Spend()
        self.warmup = record.warmup if record is not None else False
        self.slurm_job = record.slurm_job if record is not None else None
        self.reports = list(record.reports) if record is not None else []
        self.max_resource = record.max_resource if record is not None else None

    def finished_event(self) -> dict[str, Any]:
        """The fields of this trial's ``finished`` ledger event."""
        return (
            {
                "job": self.job_num,
                "status": str(self.status),
                "objective": self.objective,
                "spend": self.spend.to_dict(),
                "error": self.error,
                "warmup": self.warmup,
                "partial": self.partial,
            }
            | ({"slurm_job": self.slurm_job} if self.slurm_job else {})
            | self._reports_fields()
        )

    def _reports_fields(self) -> dict[str, Any]:
        """Its reports in the ``finished`` event, when it made any."""
        if not self.reports:
            return {}
        return {"reports": [list(r) for r in self.reports], "max_resource": self.max_resource}

    def to_json(self) -> dict[str, Any]:
        """Its ledger form: the ``finished`` event (as the ledger holds it) and the overrides it was launched with."""
        return (
            {"event": "finished"}
            | ({} if self.finished_at is None else {"time": self.finished_at})
            | self.finished_event()
            | ({"recovered": True} if self.recovered else {})
            | {"overrides": list(self.overrides)}
        )

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def __len__(self) -> int:
        return len(self.to_json())


@dataclass
class Session:
    """One run of the sweeper on this sweep dir."""

    start: float  # wall-clock time of its header or resumed event
    end: float | None = None  # its stopped event; None if it crashed
    last: float = 0.0  # its last event
    jobs: list[int] = field(default_factory=list)

    def elapsed_s(self, last_alive: Mapping[int, float]) -> float:
        """Its wall time; a crashed session ends at its last event or the last heartbeat of a job it launched."""
        end = self.end
        if end is None:
            end = max([self.last, *(last_alive.get(j, self.start) for j in self.jobs)])
        return max(end - self.start, 0.0)


@dataclass
class History:
    """The state of a sweep as its ledger left it."""

    finished: dict[int, Trial]  # job number -> trial with a ``finished`` event
    open: dict[int, Trial]  # launched, never finished: the session that ran them ended first
    proposed: int  # jobs the strategy proposed (reruns excluded), so a resumed strategy continues its sequence
    rerun: set[int]  # interrupted jobs a later session already ran again
    sessions: list[Session]

    def elapsed_s(self, last_alive: Mapping[int, float]) -> float:
        """Wall time of every session (``last_alive``: job number -> its last heartbeat's time)."""
        return sum(session.elapsed_s(last_alive) for session in self.sessions)


def replay(events: Sequence[dict[str, Any]]) -> History:
    """Rebuild a sweep's history from its well-formed ledger events (:class:`~.ledger.Ledger` reads only those).

    The one reading of a ledger: the sweeper resumes from it, and the reports summarise it.
    """
    launched: dict[int, Trial] = {}
    finished: dict[int, Trial] = {}
    rerun: set[int] = set()
    proposed = 0
    sessions: list[Session] = []
    for event in events:
        kind, when = event["event"], float(event.get("time", 0.0))
        if kind in ("header", "resumed") or not sessions:
            sessions.append(Session(start=when, last=when))
        session = sessions[-1]
        if not event.get("recovered"):  # a resume's record of a crashed session's job: written after the downtime
            session.last = max(session.last, when)
        if kind == "launched":
            job = int(event["job"])
            launched[job] = Trial(
                job, list(event["overrides"]), strategy_id=event.get("strategy_id"), rerun_of=event.get("rerun_of")
            )
            session.jobs.append(job)
            if event.get("rerun_of") is None:
                proposed += 1
            else:
                rerun.add(int(event["rerun_of"]))
        elif kind == "finished":
            trial = launched.get(int(event["job"]), Trial(int(event["job"]), []))
            trial.status, trial.objective = TrialStatus(event["status"]), event.get("objective")
            trial.spend, trial.error = Spend.from_dict(event.get("spend", {})), event.get("error")
            trial.warmup, trial.partial = bool(event.get("warmup", False)), bool(event.get("partial", False))
            trial.slurm_job = event.get("slurm_job") if isinstance(event.get("slurm_job"), str) else None
            trial.finished_at = float(event["time"]) if "time" in event else None
            trial.recovered = bool(event.get("recovered", False))
            trial.reports = read_reports(event.get("reports", []))
            recorded_max = event.get("max_resource")
            trial.max_resource = float(recorded_max) if isinstance(recorded_max, int | float) else None
            finished[trial.job_num] = trial
        elif kind == "stopped":
            session.end = when
    open_ = {job: trial for job, trial in launched.items() if job not in finished}
    return History(finished, open_, proposed, rerun, sessions)


def limits_in_force(events: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The event that holds the budget and ``max_trials`` the sweep's latest session ran with.

    The header's, or the last ``resumed`` event's that records them: a resume may raise or lower the budget.
    """
    found = None
    for event in events:
        if event.get("event") == "header" or (event.get("event") == "resumed" and "budget" in event):
            found = event
    return found


def curve_axes(grid: Grid) -> dict[str, Callable[[Spend], float | None]]:
    """How the budget curve prices a cumulative spend on each budget axis, with the sweep's grid.

    The axes of :func:`~lightning_greenai.stats.curve.budget_curve` as ``budget_curve.csv`` and the reports show them,
    in this order.
    """

    def co2e_kg(spend: Spend) -> float | None:
        co2e_g = grid.co2e_g(spend)
        return None if co2e_g is None else co2e_g / 1000

    return {
        "energy_kwh": lambda spend: spend.energy_kwh,
        "flops": lambda spend: spend.flops,
        "co2e_kg": co2e_kg,
        "money": grid.money,
        "gpu_hours": lambda spend: spend.gpu_hours,
    }
