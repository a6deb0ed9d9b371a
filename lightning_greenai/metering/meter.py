"""The metering core: read every sensor at boundaries and accumulate energy by domain and stage. No Lightning here."""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import psutil

from lightning_greenai.errors import GreenAIWarning
from lightning_greenai.grid.timeline import split_by_hour
from lightning_greenai.sensors.base import CounterGuard, EnergySensor
from lightning_greenai.sensors.estimate import TreeCPUTime
from lightning_greenai.sensors.uncertainty import DEFAULT_ACCURACY, window_bounds
from lightning_greenai.spend import Method, Spend
from lightning_greenai.units import format_energy

if TYPE_CHECKING:
    from lightning_greenai.flops.counter import FlopCount, StepFlops

__all__ = ["CURRENT_TRIAL", "Meter", "TrialAccount", "current_account"]

#: ``Meter(account=...)``'s default: the account of the greenai trial this process runs, looked up once.
CURRENT_TRIAL: Final = "current"


class TrialAccount(Protocol):
    """What a meter needs of a sweep trial's account: add a contribution, and release it when metering ends."""

    def contribute(self, key: Hashable, spend: Spend, *, uids: dict[str, str] | None = ..., force: bool = ...) -> Any:
        """Bill ``spend`` (a running total) under ``key``."""

    def release(self, key: Hashable) -> None:
        """``key`` meters no more: its counters may be claimed by another meter."""


def current_account() -> TrialAccount | None:
    """The account of the greenai trial this process runs (its sweep job's), or ``None`` outside a sweep."""
    from lightning_greenai.trial.account import current_trial

    return current_trial()


class _Domain:
    """Accumulated state of one sensor inside a :class:`Meter`."""

    def __init__(self, sensor: EnergySensor) -> None:
        self.sensor = sensor
        self.method = sensor.method
        self.guard = CounterGuard(sensor)  # turns the sensor's cumulative readings into energy, skipping glitches
        self.energy_j = 0.0
        self.by_stage: dict[str, float] = {}
        # the sensor's own interval, where it keeps one: cumulative (low, high) at the last reading, and summed
        self.last_bounds_j: tuple[float, float] | None = None
        self.low_j = self.high_j = 0.0
        self.has_bounds = False
        self.extrapolated_j = 0.0  # energy charged at the mean power after the sensor failed
        self.failed = False
        self.power_after_failure_w = 0.0


class Meter:
    """Meter the energy, time and FLOPs of a piece of work, reading cumulative sensors at boundaries.

    Call :meth:`start`, then :meth:`sample` whenever a figure is wanted (the Lightning callbacks do it at hook
    boundaries), then :meth:`stop`. Also a context manager for a plain PyTorch loop::

        with Meter() as meter:
            for batch in loader:
                ...
                meter.sample()  # optional: live figures, and keeps RAPL wrap-around detectable
        print(meter.spend.energy_kwh)

    A sensor that raises mid-run is warned about once; the energy it counted so far is kept, and from then on it
    is extrapolated at its mean power so far, flagged as an estimate. A glitched reading (not a number, below the
    last good one, or above it by more than the device's maximum power allows) is skipped and warned about once
    (:class:`~lightning_greenai.sensors.base.CounterGuard`). A window shorter than a counter's update
    period is priced as instantaneous power times time, also flagged.

    Args:
        sensors: The sensors to read; ``None`` discovers them at :meth:`start` (every visible GPU, CPU, DRAM).
        unavailable: Domains that could not be metered; they appear as ``unavailable`` in :attr:`spend`.
        clock: Monotonic clock in seconds.
        sync: Called before each reading, e.g. ``torch.cuda.synchronize`` so queued kernels are charged.
        stage: The initial stage name (``"train"``, ``"validate"``, ``"test"``, ``"predict"``, or your own).
        report: Whether to write this meter's spend as the heartbeat of a greenai sweep trial; ``None`` does so
            when running inside one (the Lightning monitors pass ``False``: they report all ranks' spend themselves).
        account: The trial's account this meter reports to and asks whether to stop: by default
            (:data:`CURRENT_TRIAL`) the current greenai trial's, looked up once here (``None`` outside a sweep);
            ``None`` for none. Unused when ``report`` is ``False``.
        wall_clock: Seconds since the epoch, to file energy under the UTC hour it was spent in.
        process: Whose CPU time is the run's share of its host (for the host's embodied carbon): this process tree
            by default (``None``), another root (DDP's spawned ranks: their parent), or ``False`` for none (a rank
            that does not meter its host).
    """

    def __init__(
        self,
        sensors: Sequence[EnergySensor] | None = None,
        *,
        unavailable: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
        sync: Callable[[], None] | None = None,
        stage: str = "train",
        report: bool | None = None,
        wall_clock: Callable[[], float] = time.time,
        process: psutil.Process | bool | None = None,
        account: TrialAccount | Literal["current"] | None = CURRENT_TRIAL,
    ) -> None:
        if isinstance(account, str) and account != CURRENT_TRIAL:
            raise ValueError(f"`account` must be a trial's account, {CURRENT_TRIAL!r} or None, got {account!r}.")
        self._given = None if sensors is None else list(sensors)
        self._given_unavailable = list(unavailable)
        self._unavailable = list(unavailable)
        self._clock = clock
        self._wall_clock = wall_clock
        self._last_wall_s: float | None = None
        self._hourly: dict[str, float] = {}
        root = psutil.Process() if process is None or process is True else process or None
        self._cpu_s = None if root is None else TreeCPUTime(root)
        self._cpu_start_s: float | None = None
        self._host_share_s = 0.0
        self._sync = sync
        self._stage = stage
        self._domains: list[_Domain] = []
        self._owns_sensors = sensors is None
        self._start_s: float | None = None
        self._last_s: float | None = None
        self._flops = 0.0
        self._step_flops: StepFlops | None = None
        if report is False:
            account = None
        elif account == CURRENT_TRIAL:
            account = current_account()
        self._account: Any = account  # a TrialAccount (should_stop hands it to the trial's stop rules)
        self._stopped = False
        self._session: object = object()
        self._last_flops: FlopCount | None = None
        self._lock = threading.RLock()  # sample() may be called from several threads
        self.discovery: Any = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called."""
        return self._start_s is not None

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called after the latest :meth:`start`."""
        return self._stopped

    def start(self) -> Meter:
        """Open the sensors (discovering them if none were given) and take the first reading.

        Starting a meter that was stopped begins a new measurement: :attr:`spend` then covers the new one only.
        """
        with self._lock:
            if self.started and not self._stopped:
                return self
            if self._stopped:
                self._reset()
            sensors = self._given
            if sensors is None:
                from lightning_greenai.sensors.discovery import discover_sensors

                # parallel sweep jobs share the host's CPU package: each is charged its CPU-time share
                self.discovery = discover_sensors(clock=self._clock, apportion_host=self._account is not None)
                for message in self.discovery.warnings:
                    warnings.warn(message, GreenAIWarning, stacklevel=2)
                sensors = self.discovery.sensors
                self._unavailable = [*self._given_unavailable, *self.discovery.unavailable]
            self._domains = [_Domain(s) for s in sensors]
            self._start_s = self._clock()
            self._read()
            self._stopped = False
            self._session = object()  # the account's key for this measurement
            self._heartbeat()  # claims its counters in the trial's account from the start
            return self

    def _reset(self) -> None:
        self._domains = []
        self._start_s = self._last_s = None
        self._flops = 0.0
        self._last_flops = None
        self._unavailable = list(self._given_unavailable)
        self._hourly, self._last_wall_s = {}, None
        self._cpu_start_s, self._host_share_s = None, 0.0
        if self._cpu_s is not None:
            self._cpu_s = TreeCPUTime(tree=self._cpu_s.tree)

    def stop(self) -> Spend:
        """Take a final reading, close the sensors this meter opened, and return the spend."""
        with self._lock:
            if not self.started:
                raise RuntimeError("Meter.stop() called before Meter.start().")
            if not self._stopped:
                self._read()
                self._stopped = True
                if self._owns_sensors:
                    for domain in self._domains:
                        domain.sensor.close()
                self._heartbeat(force=True)
                if self._account is not None:
                    self._account.release(self._session)
            return self.spend

    def __enter__(self) -> Meter:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- readings ----------------------------------------------------------------------------------------------

    @property
    def stage(self) -> str:
        """The stage new energy is charged to."""
        return self._stage

    def set_stage(self, stage: str) -> None:
        """Charge energy so far to the current stage, then switch to ``stage``."""
        with self._lock:
            if stage == self._stage:
                return
            if self.started and not self._stopped:
                self._read()
            self._stage = stage

    def sample(self) -> Spend:
        """Read every sensor now and return the cumulative spend (and, in a sweep, write a heartbeat if due)."""
        with self._lock:
            if not self.started:
                self.start()
            elif not self._stopped:
                self._read()
            self._heartbeat()
            return self.spend

    def _heartbeat(self, force: bool = False) -> None:
        if self._account is not None:
            self._account.contribute(self._session, self.spend, uids=self.domain_uids(), force=force)

    def should_stop(self) -> bool:
        """Whether this trial of a greenai sweep must stop: the sweep's budget or this trial's allowance is spent.

        A plain loop checks it (e.g. every step) and ends cleanly; always ``False`` outside a sweep. Under the sweep's
        ``stop_policy=kill`` it raises :class:`~lightning_greenai.errors.TrialKilledError` instead.
        """
        if self._account is None or not self.started:
            return False
        from lightning_greenai.trial.stopping import record_stop, stop_reason  # the sweep's stop rules

        found = stop_reason(self._account, self._account.total, None)
        if found is None:
            return False
        record_stop(self._account, found[1], found[0])
        return True

    def add_flops(self, flops: float) -> None:
        """Add FLOPs performed, e.g. an optimizer step's estimate from ``optimizer_step_flops``."""
        if isinstance(flops, bool) or not isinstance(flops, int | float) or not math.isfinite(flops) or flops < 0:
            raise ValueError(f"`flops` must be a finite number >= 0, got {flops!r}.")
        with self._lock:
            self._flops += flops

    @contextmanager
    def count_flops(self, signature: Hashable | None = None, *, causal_halving: bool = False) -> Iterator[None]:
        """Count the model FLOPs (forward + backward) of the block and add them to this meter.

        The same counter as :class:`~lightning_greenai.FlopMonitor`'s. With a ``signature`` (e.g. the input shapes),
        the block is counted the first time and the count reused for later blocks with the same signature, so
        metering is almost free; without one, every block is counted (slower, exact for dynamic code). A
        ``torch.compile``d model runs eagerly inside a counted block and stays compiled after it::

            with meter.count_flops(signature=tuple(x.shape)):
                loss_fn(model(x), y).backward()
        """
        from lightning_greenai.flops.counter import FlopCounter, StepFlops

        if signature is None:
            with FlopCounter(causal_halving) as counter:
                yield
            count = counter.count
        else:
            if self._step_flops is None:
                self._step_flops = StepFlops(causal_halving)
            with self._step_flops.step(signature):
                yield
            count = self._step_flops.last
        with self._lock:
            self._last_flops = count
            self._flops += count.model

    @property
    def last_flops(self) -> FlopCount | None:
        """The count of the latest :meth:`count_flops` block (forward, backward, recompute, uncounted operators)."""
        return self._last_flops

    def _read(self) -> None:
        if self._sync is not None:
            self._sync()
        # the CPU and DRAM estimates, apportioned counters and the host share read the run's process tree once
        with nullcontext() if self._cpu_s is None else self._cpu_s.tree.reading():
            self._read_sensors()
            self._read_cpu()

    def _read_sensors(self) -> None:
        now, wall_s = self._clock(), self._wall_clock()
        dt = 0.0 if self._last_s is None else now - self._last_s
        grown = 0.0
        for domain in self._domains:
            delta = self._read_domain(domain, dt, now)
            grown += delta
            if delta:
                domain.energy_j += delta
                domain.by_stage[self._stage] = domain.by_stage.get(self._stage, 0.0) + delta
                if domain.failed:
                    domain.extrapolated_j += delta
            self._read_bounds(domain, delta)
        since_s = wall_s if self._last_wall_s is None else self._last_wall_s
        for hour, joules in split_by_hour(since_s, wall_s, grown).items():
            self._hourly[hour] = self._hourly.get(hour, 0.0) + joules
        self._last_s, self._last_wall_s = now, wall_s

    def _read_cpu(self) -> None:
        """The run's share of its host so far: its processes' CPU-seconds since start over the logical CPUs."""
        if self._cpu_s is None:
            return
        cpu_s = self._cpu_s()
        if self._cpu_start_s is None:
            self._cpu_start_s = cpu_s
        self._host_share_s = max(self._host_share_s, (cpu_s - self._cpu_start_s) / (psutil.cpu_count() or 1))

    @staticmethod
    def _read_bounds(domain: _Domain, delta: float) -> None:
        """Grow the domain's own interval by the sensor's, or by ``delta`` where the sensor keeps none."""
        if domain.failed:
            return  # what is extrapolated from now on gets an estimate's interval of its own
        read = getattr(domain.sensor, "read_energy_bounds_j", None)
        try:
            bounds = None if read is None else read()  # None: the sensor keeps no interval of its own
            low, high = (math.nan, math.nan) if bounds is None else (float(bounds[0]), float(bounds[1]))
        except Exception:
            low = high = math.nan
        if not (math.isfinite(low) and math.isfinite(high)):  # none, or an unreadable one: the energy's own growth
            domain.low_j += delta
            domain.high_j += delta
            return
        if domain.last_bounds_j is not None:
            domain.low_j += max(low - domain.last_bounds_j[0], 0.0)
            domain.high_j += max(high - domain.last_bounds_j[1], 0.0)
            domain.has_bounds = True
        domain.last_bounds_j = (low, high)

    def _read_domain(self, domain: _Domain, dt: float, now: float) -> float:
        if domain.failed:
            return domain.power_after_failure_w * dt
        try:
            value = float(domain.sensor.read_energy_j())
        except Exception as err:
            domain.failed = True
            domain.method = Method.ESTIMATE
            elapsed = (self._last_s or 0.0) - (self._start_s or 0.0)
            domain.power_after_failure_w = domain.energy_j / elapsed if elapsed > 0 else 0.0
            warnings.warn(
                f"Energy sensor {domain.sensor.name!r} failed ({type(err).__name__}: {err}). "
                f"The {format_energy(domain.energy_j)} counted so far are kept; from now on it is extrapolated at "
                f"{domain.power_after_failure_w:.1f} W and flagged as an estimate.",
                GreenAIWarning,
                stacklevel=3,
            )
            return domain.power_after_failure_w * dt
        return domain.guard.step(value, now)

    # -- results -----------------------------------------------------------------------------------------------

    @property
    def sensors(self) -> list[EnergySensor]:
        """The sensors being read."""
        return [d.sensor for d in self._domains]

    @property
    def duration_s(self) -> float:
        """Seconds between start and the latest reading."""
        if self._start_s is None or self._last_s is None:
            return 0.0
        return self._last_s - self._start_s

    @property
    def glitches(self) -> dict[str, int]:
        """How many readings of each domain were skipped as glitches (see :class:`CounterGuard`)."""
        return {d.sensor.name: d.guard.glitches for d in self._domains}

    def domain_uids(self) -> dict[str, str]:
        """Map each domain name to the unique id of its physical counter."""
        return {d.sensor.name: d.sensor.uid for d in self._domains}

    def stage_energy_by_domain(self) -> dict[str, dict[str, float]]:
        """Energy in joules by domain, then by stage."""
        return {d.sensor.name: dict(d.by_stage) for d in self._domains}

    @property
    def spend(self) -> Spend:
        """What was spent from :meth:`start` up to the latest reading."""
        duration_s = self.duration_s
        energy: dict[str, float] = {}
        bounds: dict[str, tuple[float, float]] = {}
        methods: dict[str, Method] = dict.fromkeys(self._unavailable, Method.UNAVAILABLE)
        stages: dict[str, float] = {}
        for d in self._domains:
            name, method, energy_j = d.sensor.name, d.method, d.energy_j
            period = float(getattr(d.sensor, "update_period_s", 0.0))
            read_power = getattr(d.sensor, "read_power_w", None)
            power_w: float | None = None
            if 0.0 < duration_s < period and not d.failed:
                # too short for the counter to be trusted (it may not have ticked): flagged, priced as power x time
                # where it did not tick, and its interval takes the power for its edges
                method = Method.ESTIMATE
                try:
                    power_w = None if read_power is None else float(read_power())
                except Exception:
                    power_w = None
                if energy_j == 0.0 and power_w is not None:
                    energy_j = power_w * duration_s
                    stages[self._stage] = stages.get(self._stage, 0.0) + energy_j
            energy[name] = energy.get(name, 0.0) + energy_j
            unread_high_j = d.guard.unread_high_j(self._last_s) if self._last_s is not None and not d.failed else 0.0
            low, high = self._bounds(d, energy_j, duration_s, power_w, unread_high_j)
            previous = bounds.get(name, (0.0, 0.0))
            bounds[name] = (previous[0] + low, previous[1] + high)
            methods[name] = method
            for stage, value in d.by_stage.items():
                stages[stage] = stages.get(stage, 0.0) + value
        gpu_count = sum(1 for name in energy if name.startswith("gpu:"))
        return Spend(
            energy_j=energy,
            methods=methods,
            flops=self._flops,
            duration_s=duration_s,
            gpu_s=gpu_count * duration_s,
            is_estimate=any(m.is_estimate for m in methods.values()),
            stage_energy_j=stages,
            energy_bounds_j=bounds,
            hourly_energy_j=dict(self._hourly),
            host_share_s=self._host_share_s,
        )

    @staticmethod
    def _bounds(
        d: _Domain, energy_j: float, duration_s: float, power_w: float | None, unread_high_j: float
    ) -> tuple[float, float]:
        """The interval of one domain's energy over the window (:mod:`lightning_greenai.sensors.uncertainty`)."""
        sensor = d.sensor
        low, high = window_bounds(
            sensor.method,  # a failed sensor's measured part keeps its own rules; the extrapolated part is added below
            energy_j - d.extrapolated_j,
            duration_s,
            sensor_bounds=(d.low_j, d.high_j) if d.has_bounds else None,
            accuracy=float(getattr(sensor, "accuracy", DEFAULT_ACCURACY)),
            resolution_j=float(getattr(sensor, "resolution_j", 0.0)),
            update_period_s=float(getattr(sensor, "update_period_s", 0.0)),
            power_w=power_w,
            unread_high_j=unread_high_j,
        )
        if d.extrapolated_j:
            ext_low, ext_high = window_bounds(Method.ESTIMATE, d.extrapolated_j, duration_s)
            low, high = low + ext_low, high + ext_high
        return low, high
