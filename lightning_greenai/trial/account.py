"""The job side of a budget sweep: one account per trial process, its heartbeat, and the sweeper's signals.

A job is inside a greenai sweep when Hydra's runtime config (``HydraConfig``) says it runs in multirun mode under
the greenai sweeper; the sweep dir and job number come from that config, never from the working directory.

Every meter in the process — :class:`~lightning_greenai.EnergyMonitor`, :class:`~lightning_greenai.FlopMonitor`, a
plain :class:`~lightning_greenai.Meter`, however many trainers or blocks the trial runs — *contributes* its own
cumulative spend to the trial's one :class:`TrialReporter` (the account), under a key of its own. The account adds
each contributor's growth since its previous contribution and alone writes the heartbeat: the sum. So a trial that
trains twice is billed for both, and two meters reading the same counter at the same time (a ``Meter`` around a
``fit`` metered by an ``EnergyMonitor``) bill it once: while a counter has an active owner, only the owner's growth of
it counts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
import warnings
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_greenai.errors import GreenAIWarning
from lightning_greenai.grid import Grid
from lightning_greenai.spend import Method, Spend
from lightning_greenai.trial.channel import Channel, FileChannel, open_channel, read_record
from lightning_greenai.trial.record import Allowance, StopSignal, TrialRecord, TrialStatus
from lightning_greenai.units import SPEND_RESOURCES, format_resource

__all__ = ["TRIAL_ENV", "JobContext", "TrialReporter", "current_trial", "job_context", "sweep_grid"]

_REPORTERS: dict[tuple[str, int], TrialReporter] = {}
# pseudo-counters: wall time, GPU time and the host's CPU share, owned like energy counters
_TIME, _GPU_TIME, _HOST_SHARE = "\0duration", "\0gpu_s", "\0host_share_s"


@dataclass
class _Contributor:
    """What one meter reported last, so the account adds only its growth."""

    last: dict[str, float] = field(default_factory=dict)  # cumulative value by counter uid (and pseudo-counter)
    stages: dict[str, float] = field(default_factory=dict)
    hours: dict[str, float] = field(default_factory=dict)
    flops: float = 0.0
    active: bool = True
    # by counter uid, how far below and above its energy the meter's latest interval reached, while it billed it
    margins: dict[str, tuple[float, float]] = field(default_factory=dict)
    at: float | None = None  # when it last contributed (the account's clock)
    previous_at: float | None = None  # when it contributed before that
    released_at: float | None = None  # when it stopped


class TrialReporter:
    """The account of one trial process: every meter contributes to it, and it writes the trial's heartbeat.

    Args:
        channel: How the sweep's jobs talk to its sweeper (a sweep dir: the files in it).
        job_num: The job's number (``hydra.job.num``).
        heartbeat_s: Minimum seconds between two heartbeat writes (status changes are written at once).
        clock: Monotonic clock.
        warmup: Whether this is the first trial its process runs (it pays the process's one-off start-up costs).
        signal_s: A STOP signal or allowance read this recently is not read again (a database is not asked every
            step); files are always read.
        grid: The sweep's grid (:func:`sweep_grid`), which prices this trial's spend against its CO2e and money
            caps as the sweeper prices it; ``None`` leaves those caps to the sweeper's STOP signal.
        monitor: The metric the trial reports to the sweep (``hydra.sweeper.monitor``, e.g. ``val/acc``), or ``None``.
        resource: What the rungs count: ``epochs`` or ``steps`` (a Lightning trial's), or ``energy_kwh`` or ``flops``
            (this trial's own spend as metered, which a report without a resource takes).
        verdict_patience_s: How long a report at a rung waits for the sweeper's verdict before the trial goes on.
    """

    def __init__(
        self,
        channel: Channel | str | Path,
        job_num: int,
        heartbeat_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        warmup: bool = False,
        signal_s: float = 1.0,
        grid: Grid | None = None,
        monitor: str | None = None,
        resource: str = "epochs",
        verdict_patience_s: float = 300.0,
    ) -> None:
        self.channel = channel if isinstance(channel, Channel) else FileChannel(channel)
        self.job_num = job_num
        self.heartbeat_s, self.signal_s = heartbeat_s, signal_s
        self.grid = grid
        self.monitor, self.resource, self.verdict_patience_s = monitor, resource, verdict_patience_s
        self._clock = clock
        self._last_write: float | None = None
        self._lock = threading.RLock()
        self._write_warned = False
        notes: list[str] = []
        previous = read_record(self.channel, job_num, notes, patience_s=30.0)
        for note in notes:
            warnings.warn(f"{note}: this trial starts its account at zero", GreenAIWarning, stacklevel=2)
        self.record = TrialRecord(job_num=job_num, seq=previous.seq if previous else 0, warmup=warmup)
        # a requeued job (same number, e.g. a preempted Slurm job) continues the spend of its earlier attempt; the
        # sweeper deletes a stale file before it launches a job, so this never bills a new trial for an old one
        self.base = previous.spend if previous is not None else Spend()
        self._written = self.base  # the spend of the record as this process last wrote (or found) it
        self._contributors: dict[Hashable, _Contributor] = {}
        self._owner: dict[str, Hashable] = {}
        self._energy: dict[str, tuple[str, float]] = {}  # uid -> (display name, joules)
        self._methods: dict[str, Method] = {}
        self._stages: dict[str, float] = {}
        self._hourly: dict[str, float] = {}
        self._flops = 0.0
        self._duration_s = 0.0
        self._gpu_s = 0.0
        self._host_share_s = 0.0
        self._is_estimate = False

    # -- the account ---------------------------------------------------------------------------------------------

    @property
    def spend(self) -> Spend:
        """What this process's meters spent, each counter once (the earlier attempt of a requeued job excluded)."""
        with self._lock:
            energy: dict[str, float] = {}
            bounds: dict[str, tuple[float, float]] = {}
            for uid, (name, joules) in self._energy.items():
                energy[name] = energy.get(name, 0.0) + joules
                below = sum(c.margins[uid][0] for c in self._contributors.values() if uid in c.margins)
                above = sum(c.margins[uid][1] for c in self._contributors.values() if uid in c.margins)
                low, high = bounds.get(name, (0.0, 0.0))
                bounds[name] = (low + max(joules - below, 0.0), high + joules + above)
            return Spend(
                energy_j=energy,
                methods=dict(self._methods),
                flops=self._flops,
                duration_s=self._duration_s,
                gpu_s=self._gpu_s,
                is_estimate=self._is_estimate or any(m.is_estimate for m in self._methods.values()),
                stage_energy_j=dict(self._stages),
                energy_bounds_j=bounds,
                hourly_energy_j=dict(self._hourly),
                host_share_s=self._host_share_s,
            )

    @property
    def total(self) -> Spend:
        """The trial's whole spend: an earlier attempt's (requeued job) plus this process's."""
        return self.base + self.spend

    @property
    def last_spend(self) -> Spend:
        """Alias of :attr:`spend` (what this process metered)."""
        return self.spend

    def contribute(
        self, key: Hashable, spend: Spend, *, uids: Mapping[str, str] | None = None, force: bool = False
    ) -> bool:
        """Add what the meter ``key`` spent since its previous contribution; write the heartbeat if one is due.

        Args:
            key: Identifies the meter (one key per meter and metering session).
            spend: The meter's cumulative spend since it started.
            uids: The physical counter behind each of ``spend``'s energy domains (default: the domain name), so two
                meters reading one counter bill it once.
            force: Write the heartbeat now.

        Returns whether the heartbeat was written.
        """
        with self._lock:
            mine = self._contributors.setdefault(key, _Contributor())
            mine.active = True
            mine.previous_at, mine.at = mine.at, self._clock()
            owned = grown = 0.0
            for name, joules in spend.energy_j.items():
                uid = (uids or {}).get(name, name)
                delta = self._grow(key, mine, uid, joules)
                grown += delta
                if self._owner.get(uid) == key:
                    owned += delta
                    previous = self._energy.get(uid, (name, 0.0))[1]
                    self._energy[uid] = (name, previous + delta)
                    low, high = spend.bounds_of(name)
                    mine.margins[uid] = (joules - low, high - joules)
            for name, method in spend.methods.items():
                known = self._methods.get(name)
                if method is Method.UNAVAILABLE and known is not None:
                    continue  # another meter reads it
                self._methods[name] = (
                    method if known is None or known is Method.UNAVAILABLE else Method.worst(known, method)
                )
            share = owned / grown if grown > 0 else 1.0
            for stage, joules in spend.stage_energy_j.items():
                delta = max(joules - mine.stages.get(stage, 0.0), 0.0)
                mine.stages[stage] = joules
                self._stages[stage] = self._stages.get(stage, 0.0) + delta * share
            for hour, joules in spend.hourly_energy_j.items():  # by the same share as the stages
                delta = max(joules - mine.hours.get(hour, 0.0), 0.0)
                mine.hours[hour] = max(joules, mine.hours.get(hour, 0.0))
                self._hourly[hour] = self._hourly.get(hour, 0.0) + delta * share
            self._flops += max(spend.flops - mine.flops, 0.0)
            mine.flops = max(spend.flops, mine.flops)
            delta = self._grow(key, mine, _TIME, spend.duration_s)
            if self._owner.get(_TIME) == key:
                self._duration_s += delta
            delta = self._grow(key, mine, _GPU_TIME, spend.gpu_s)
            if self._owner.get(_GPU_TIME) == key:
                self._gpu_s += delta
            delta = self._grow(key, mine, _HOST_SHARE, spend.host_share_s)
            if self._owner.get(_HOST_SHARE) == key:
                self._host_share_s += delta
            self._is_estimate = self._is_estimate or spend.is_estimate
            return self._write(force=force)

    def _grow(self, key: Hashable, mine: _Contributor, uid: str, value: float) -> float:
        """Return how much ``uid`` grew for meter ``key``, and give ``key`` the counter if no active meter owns it.

        A counter passed on by a meter that stopped is billed to its new owner only for the part of the new owner's
        latest window after the handover (pro rata of time): the part before it, the previous owner billed.
        """
        delta = max(value - mine.last.get(uid, 0.0), 0.0)
        mine.last[uid] = max(value, mine.last.get(uid, 0.0))
        owner = self._owner.get(uid)
        if owner is None or not self._contributors[owner].active:
            before = None if owner is None or owner == key else self._contributors[owner].released_at
            if (
                before is not None
                and mine.previous_at is not None
                and mine.at is not None
                and mine.at > mine.previous_at
            ):
                delta *= min(max((mine.at - before) / (mine.at - mine.previous_at), 0.0), 1.0)
            self._owner[uid] = key
        return delta

    def release(self, key: Hashable) -> None:
        """The meter ``key`` stopped: what it contributed stays, and the counters it owned pass to the next meter."""
        with self._lock:
            mine = self._contributors.get(key)
            if mine is not None:
                mine.active = False
                mine.released_at = self._clock()
            self._write(force=True)

    # -- status and heartbeat ------------------------------------------------------------------------------------

    def set_status(self, status: TrialStatus, objective: float | None = None) -> None:
        """Record the trial's status (and objective) and write the heartbeat now."""
        with self._lock:
            self.record.status = TrialStatus(status)
            if objective is not None:
                self.record.objective = objective
            self._write(force=True)

    def finish(self, status: TrialStatus, objective: float | None = None) -> bool:
        """Write the final record: the latest spend, the final status and the objective (retried for a minute).

        Returns whether it was delivered; the task wrapper sends one that was not back with the job's result.
        """
        with self._lock:
            self.record.status = TrialStatus(status)
            if objective is not None:
                self.record.objective = objective
            return self._write(force=True, patience_s=60.0)

    def _write(self, *, force: bool, patience_s: float = 0.0) -> bool:
        now = self._clock()
        due = self._last_write is None or now - self._last_write >= self.heartbeat_s
        if not (force or due):
            return False
        self._adopt_other_writers()
        self.record.spend = self.total
        self.record.seq += 1
        self.record.updated_at = time.time()
        try:
            self.channel.send_heartbeat(self.record, patience_s=patience_s)
        except OSError as err:
            # the trial goes on: its spend is still in memory and reaches the sweeper with the next good write
            if not self._write_warned:
                self._write_warned = True
                where = self.channel.where("heartbeat", self.job_num)
                warnings.warn(
                    f"Cannot write the trial's heartbeat {where}: {str(err).rstrip('.')}. Until a write succeeds the "
                    "sweeper sees this trial's last written heartbeat; its final record goes back with the job's "
                    "result if it cannot be written either.",
                    GreenAIWarning,
                    stacklevel=3,
                )
            return False
        self._last_write = now
        self._written = self.record.spend
        return True

    def _adopt_other_writers(self) -> None:
        """Fold in what another process of this trial wrote since this one last did (the ranks a DDP spawn started).

        Their account began from this trial's record as it was then: what they added beyond it is theirs, and this
        process's record, written after them, must keep it.
        """
        try:
            latest = read_record(self.channel, self.job_num)
        except OSError:
            return  # the channel is away: the write below says so
        if latest is None or latest.seq <= self.record.seq or latest.pid == os.getpid():
            return
        self.base = self.base + latest.spend.since(self._written)
        self._written = latest.spend
        self.record.seq = latest.seq

    # -- the sweeper's signals -----------------------------------------------------------------------------------

    def stop_request(self) -> StopSignal | None:
        """The sweeper's STOP signal (read at most every ``signal_s``), or ``None``."""
        return self.channel.stop_signal(max_age_s=self.signal_s)

    def prune_request(self, *, max_age_s: float | None = None) -> StopSignal | None:
        """The STOP the sweeper sent this trial alone (its search pruned it at a rung), or ``None``."""
        return self.channel.stop_signal(
            job_num=self.job_num, max_age_s=self.signal_s if max_age_s is None else max_age_s
        )

    def spent_resource(self) -> float:
        """This trial's spend so far on :attr:`resource`, a spend axis (``energy_kwh`` or ``flops``), as metered.

        Raises:
            ValueError: the rungs count epochs or steps, which only the trial knows.
        """
        if self.resource not in SPEND_RESOURCES:
            raise ValueError(
                f"The sweep's rungs count {self.resource}: report_score needs the {self.resource} this trial has "
                f"done (report_score(score, resource)); only a spend resource ({', '.join(SPEND_RESOURCES)}) is "
                "taken from the trial's metering."
            )
        total = self.total
        return float(total.energy_kwh or 0.0) if self.resource == "energy_kwh" else float(total.flops)

    def report_score(self, resource: float | None, score: float, max_resource: float | None = None) -> None:
        """Add a report of the monitored score to the heartbeat; at a rung, wait for the sweeper's verdict.

        ``resource`` ``None``: this trial's spend so far on the sweep's spend resource (:meth:`spent_resource`).

        A report at or past the allowance's ``next_rung`` waits until the sweeper raises it (the trial is promoted)
        or sends this trial a STOP (pruned; :meth:`prune_request` then says so), checking often at first, then every
        half second. A sweeper that stays silent for ``verdict_patience_s`` is warned about once, and the trial goes
        on: a trial never hangs on its sweeper.

        Raises:
            ValueError: a ``resource`` given while the rungs count a spend (it would be read in kWh or FLOPs).
        """
        if resource is not None and self.resource in SPEND_RESOURCES:
            # an epoch count read as kWh (or FLOPs) would jump every rung: 1 epoch is 3.6 MJ
            raise ValueError(
                f"The sweep's rungs count {self.resource}, this trial's spend as metered: call report_score(score) "
                f"without a resource (after Meter.sample()), and the spend is taken. Got resource={resource!r}, "
                f"which would be read as {format_resource(resource, self.resource)}."
            )
        with self._lock:
            if resource is None:
                resource = self.spent_resource()
            self.record.reports.append((float(resource), float(score)))
            if max_resource is not None:
                self.record.max_resource = float(max_resource)
            self._write(force=True)
        deadline, pause = time.monotonic() + self.verdict_patience_s, 0.01
        while self._waits_at(resource):
            if time.monotonic() >= deadline:
                warnings.warn(
                    f"The sweeper gave no verdict on this trial's report at {format_resource(resource, self.resource)} "
                    "within "
                    f"{self.verdict_patience_s:g} s: the trial goes on as if promoted.",
                    GreenAIWarning,
                    stacklevel=2,
                )
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _waits_at(self, resource: float) -> bool:
        """Whether a report at ``resource`` still waits: no STOP for it, and the next rung not raised past it."""
        if self.prune_request(max_age_s=0.0) is not None or self.channel.stop_signal() is not None:
            return False
        next_rung = self.channel.allowance(self.job_num).next_rung
        return next_rung is not None and resource >= next_rung

    def allowance(self) -> Allowance:
        """What this trial may spend, written by the sweeper before launch (empty if none was written).

        Caps in the budget's quantities, priced with :attr:`grid`; the wall budget as a clock time.
        """
        return self.channel.allowance(self.job_num, max_age_s=self.signal_s)

    def nothing_left(self) -> bool:
        """Whether this trial's share of the sweep's budget was already spent before it began."""
        return self.allowance().nothing_left(time.time())

    def policy(self) -> str | None:
        """The sweep's stop policy, from its STOP signal or this trial's allowance."""
        request = self.stop_request()
        if request is not None and request.policy:
            return request.policy
        return self.allowance().policy


#: The environment variable that carries a sweep job's context to processes it starts without Hydra (ddp_spawn).
TRIAL_ENV = "LIGHTNING_GREENAI_TRIAL"


@dataclass(frozen=True)
class JobContext:
    """What a process needs to report to its trial: the sweep, the job, the transport, and the sweep's grid."""

    sweep_dir: str
    job_num: int
    storage: str | None = None
    sweep_id: str | None = None
    heartbeat_s: float = 10.0
    cwd: str | None = None
    grid: dict[str, Any] = field(default_factory=dict)
    monitor: str | None = None  # the metric the trial reports (hydra.sweeper.monitor)
    resource: str = "epochs"  # what a Lightning trial's reports count: epochs or steps

    def export(self) -> None:
        """Put this context in the environment, for the processes this one starts (spawned DDP ranks inherit it)."""
        os.environ[TRIAL_ENV] = json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_environment(cls) -> JobContext | None:
        """The context a parent process exported, or ``None`` (none, or not one we can read)."""
        text = os.environ.get(TRIAL_ENV)
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(**data) if isinstance(data, dict) else None
        except (ValueError, TypeError):
            return None


def _sweep_job() -> Any:
    """Hydra's runtime config when this process is a job of a greenai sweep, else ``None``."""
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
    return cfg


#: the last context read, with the Hydra runtime config object and the environment's text it was read from
_context_cache: tuple[Any, str | None, JobContext | None] | None = None


def job_context() -> JobContext | None:
    """This process's greenai sweep job: from Hydra's runtime config, else from its parent's environment.

    Read once per job: BudgetStopping asks at every batch, and reading Hydra's config took about 0.3 ms, as long as a
    small model's step. Hydra sets a new (read-only) config for each job, so its ``hydra`` node itself is the key;
    the cache holds it, so its identity cannot pass to another job's config.
    """
    global _context_cache
    try:
        from hydra.core.hydra_config import HydraConfig

        runtime = HydraConfig.get() if HydraConfig.initialized() else None
    except ImportError:
        runtime = None
    environment = os.environ.get(TRIAL_ENV)
    cached = _context_cache
    if cached is not None and cached[0] is runtime and cached[1] == environment:
        return cached[2]
    context = _read_job_context()
    _context_cache = (runtime, environment, context)
    return context


def _read_job_context() -> JobContext | None:
    cfg = _sweep_job()
    if cfg is None:
        return JobContext.from_environment()
    from omegaconf import OmegaConf

    grid = OmegaConf.select(cfg, "sweeper.grid", default=None)
    plain = OmegaConf.to_container(grid, resolve=True) if grid is not None else {}
    strategy = OmegaConf.select(cfg, "sweeper.strategy", default=None)
    resource = OmegaConf.select(cfg, f"sweeper.{strategy}.resource", default=None) if strategy else None
    return JobContext(
        sweep_dir=str(cfg.sweep.dir),
        job_num=int(cfg.job.num),
        storage=OmegaConf.select(cfg, "sweeper.storage", default=None),
        sweep_id=OmegaConf.select(cfg, "sweeper.sweep_id", default=None),
        heartbeat_s=float(OmegaConf.select(cfg, "sweeper.heartbeat_s", default=10.0)),
        cwd=OmegaConf.select(cfg, "runtime.cwd", default=None),
        grid={str(k): v for k, v in plain.items()} if isinstance(plain, dict) else {},
        monitor=OmegaConf.select(cfg, "sweeper.monitor", default=None),
        resource=str(resource or "epochs"),
    )


def current_trial() -> TrialReporter | None:
    """Return the account of the greenai sweep job running in this process, or ``None`` outside one."""
    context = job_context()
    if context is None:
        return None
    key = (context.sweep_dir, context.job_num)
    if key not in _REPORTERS:
        channel = open_channel(context.sweep_dir, context.storage, key=context.sweep_id, cwd=context.cwd)
        _REPORTERS[key] = TrialReporter(
            channel,
            key[1],
            heartbeat_s=context.heartbeat_s,
            warmup=not _REPORTERS,
            grid=sweep_grid(),
            monitor=context.monitor,
            resource=context.resource,
        )
    return _REPORTERS[key]


def sweep_grid() -> Grid | None:
    """The grid of the greenai sweep this process is a job of (``hydra.sweeper.grid``), or ``None`` outside one.

    The sweep holds its budget at this grid's figures, so the trial's monitors price with it too.
    """
    context = job_context()
    return None if context is None else Grid.from_config(context.grid, cwd=context.cwd)
