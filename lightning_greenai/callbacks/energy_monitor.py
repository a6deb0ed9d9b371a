"""EnergyMonitor: meter a Lightning run's energy, CO2e and money, log them live, and print a price tag."""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import psutil
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from typing_extensions import override

from lightning_greenai.callbacks.flop_monitor import FlopMonitor
from lightning_greenai.callbacks.samples import SampleCounter, TokensKey
from lightning_greenai.errors import GreenAIWarning, GridConfigError, StateWriteError
from lightning_greenai.exporters.export import SpendExporter
from lightning_greenai.exporters.opentelemetry import OpenTelemetryExporter
from lightning_greenai.exporters.prometheus import PrometheusExporter, check_port
from lightning_greenai.grid import Grid
from lightning_greenai.grid.timeline import ElectricityMaps
from lightning_greenai.hardware import describe_hardware
from lightning_greenai.metering.distributed import gather_records, merge_records, refresh_own
from lightning_greenai.metering.meter import Meter
from lightning_greenai.reporting import PriceTag
from lightning_greenai.sensors.base import EnergySensor
from lightning_greenai.sensors.discovery import discover_sensors
from lightning_greenai.sensors.rapl import RAPL_ROOT
from lightning_greenai.sensors.shared import check_sharing
from lightning_greenai.spend import Spend
from lightning_greenai.trial.account import current_trial, sweep_grid
from lightning_greenai.trial.record import write_json_atomic
from lightning_greenai.units import g_to_kg, j_to_kwh

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = ["EnergyMonitor"]

_STAGE_OF_FN = {"fit": "train", "validate": "validate", "test": "test", "predict": "predict"}
#: The fields of each stage kept in ``price_tag.json["stages"]`` and logged as run fields.
_STAGE_FIELDS = (
    "energy_kwh",
    "co2e_kg",
    "embodied_co2e_kg",
    "water_l",
    "cost",
    "currency",
    "flops",
    "duration_s",
    "gpu_hours",
    "is_estimate",
)


def _run_root(trainer: pl.Trainer) -> psutil.Process | None:
    """The process whose tree is this run on the host: spawned DDP workers are siblings, so their parent is it."""
    from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    if isinstance(launcher, _MultiProcessingLauncher) and trainer.world_size > 1:
        try:
            return psutil.Process().parent()
        except psutil.Error:
            return None
    return None  # this process: with DDP launched as subprocesses, the other ranks are its children


def _output_dir(trainer: pl.Trainer, *, collective: bool = True) -> str | None:
    """Where the run's files go: the logger's folder, else the Hydra job's output dir or ``default_root_dir``.

    A logger that keeps no folder here (MLflow on a database or a server) counts as none. ``trainer.log_dir``
    broadcasts under DDP (every rank must call it); ``collective=False`` avoids it (teardown after
    a failure, when another rank may be gone).
    """
    if trainer.loggers:
        logger = trainer.loggers[0]
        found = trainer.log_dir if collective else (logger.log_dir or logger.save_dir)
        if found is not None:
            return str(found)
        # a logger that keeps no folder here (MLflow on a database or a server): the run's folder, as with none
    root = trainer.default_root_dir
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized() and os.path.abspath(root) == os.getcwd():
            return str(HydraConfig.get().runtime.output_dir)  # not the shared cwd every trial of a sweep has
    except ImportError:
        pass
    return root


def _cuda_uuids() -> list[str] | None:
    """The UUIDs of the GPUs torch sees, in CUDA order (robust to CUDA_DEVICE_ORDER), or None if unknown."""
    try:
        return [f"GPU-{torch.cuda.get_device_properties(i).uuid}" for i in range(torch.cuda.device_count())]
    except (AttributeError, RuntimeError):
        return None


def _key(domain: str) -> str:
    # Some trackers (MLflow) reject ':' in metric names.
    return domain.replace(":", "_").replace("@", "_at_")


class EnergyMonitor(Callback):
    r"""Meter the energy of a run from real sensors, price it in CO2e and money, and report it.

    Each rank meters its own GPU (by UUID) and one rank per node meters the host's CPU and DRAM; logged totals are
    gathered across ranks on every rank, so nothing is counted twice. Where no sensor can be read, CPU and DRAM
    energy are estimated and every figure that includes an estimate is flagged.

    Logged keys (to every attached logger, every ``log_every_n_steps`` training batches and at stage ends):

    ====================================== =========================================================================
    ``greenai/energy_kwh``                 energy so far, all ranks, in kWh (includes estimates when
                                           ``greenai/is_estimate`` is 1)
    ``greenai/energy_kwh_low``, ``_high``  the interval the energy lies in, from how each device was read
                                           (:mod:`lightning_greenai.sensors.uncertainty`); ``greenai/co2e_kg_low``
                                           and ``_high`` likewise
    ``greenai/power_w``                    mean power since the previous log, in W
    ``greenai/co2e_kg``                    emissions so far, kg CO2e (energy x PUE x intensity)
    ``greenai/cost``                       cost so far in the grid's currency (logged as hyperparameter
                                           ``greenai/currency``); only when a price is known
    ``greenai/embodied_co2e_kg``           the hardware's embodied carbon for the run's share of it, kg CO2e, apart
                                           from the electricity's (:mod:`lightning_greenai.grid.footprint`)
    ``greenai/water_l``                    water, on-site (WUE x IT energy) plus off-site (the grid's), litres
    ``greenai/is_estimate``                1 if any figure above includes an estimate, else 0
    ``greenai/device_energy_kwh/<dev>``    energy per device (``gpu_0``, ``cpu_package-0``, ``dram_0``,
                                           ``cpu_estimate`` ...), in kWh
    ``greenai/projected_energy_kwh``,      projected totals of the whole fit, once the first epoch (or 5 % of the
    ``greenai/projected_co2e_kg``,         steps) is done; flagged like the totals
    ``greenai/projected_cost``
    ``greenai/<stage>/j_per_sample``,      the price of a prediction, for ``validate``, ``test`` and ``predict``,
    ``greenai/<stage>/co2e_g_per_sample``, logged when the stage ends (validation in a fit: when the fit ends); with
    ``greenai/<stage>/j_per_token``        ``tokens_key``, per token too. The price tag has them with the batch size.
    ====================================== =========================================================================

    The progress bar shows ``greenai/energy_wh`` and ``greenai/co2e_g`` (smaller units, readable at 3 decimals).

    At the end of ``fit``/``validate``/``test``/``predict`` the price tag is printed once (rank 0) and written as
    ``price_tag.json`` into ``trainer.log_dir``.

    Args:
        country: ISO 3166 code or name of the country whose grid powers the run (carbon intensity and price). This
            and the grid arguments after it (to ``intensity_csv``) describe the :class:`~lightning_greenai.Grid`;
            left unset in a greenai sweep's trial, the sweep's ``hydra.sweeper.grid`` prices the run (set there, the
            grid is set once for the budget and every trial); set to a grid that prices differently, the trial is
            refused with both named. Outside a sweep, unset means the packaged table's mean intensity and PUE 1.
        region: A cloud region instead of a country, e.g. ``"aws:eu-west-1"``.
        pue: Power usage effectiveness of the data centre (>= 1; unset: 1.0, or the sweep's).
        intensity_g_per_kwh: Override the carbon intensity, gCO2e/kWh.
        price_per_kwh: Electricity price per kWh in ``currency`` (defaults to the country's indicative price).
        currency: ISO 4217 code of the prices.
        instance_price_per_h: An hourly machine price added to the cost (the price tag shows each line apart).
        embodied_g_per_gpu_hour: A GPU's embodied carbon per hour of use, gCO2e (default: the packaged figure, see
            :mod:`lightning_greenai.grid.footprint`); shown apart from the electricity's CO2e.
        embodied_g_per_host_hour: A server's (without GPUs) embodied carbon per hour of use, gCO2e.
        embodied_host_basis: ``"cpu"`` charges the server by the run's CPU share of it (default), ``"server"`` whole
            for the run's time (a reserved machine).
        wue_l_per_kwh: The facility's on-site water per kWh of IT energy (WUE), litres.
        water_l_per_kwh: The grid's off-site water per kWh generated, litres.
        intensity_csv: An hourly carbon-intensity timeline (a CSV with a time and an intensity column, see
            :func:`~lightning_greenai.grid.timeline.read_intensity_csv`): each hour's energy is priced at its figure.
        electricity_maps: Hourly intensity from Electricity Maps' API (opt-in: an
            :class:`~lightning_greenai.grid.timeline.ElectricityMaps` with a token; cached, one request per hour).
        sensors: Sensors to read instead of discovering them (the same on every rank: you decide what each meters).
        gpus: ``"auto"`` meters the rank's own CUDA device (none when training on CPU); a list gives NVML-visible
            indices explicitly; ``None`` meters no GPU.
        nvml: The NVML module to use (``"auto"`` imports ``pynvml``); tests pass a
            :class:`~lightning_greenai.sensors.fake.FakeNVML`.
        amdsmi: The ``amdsmi`` module for AMD GPUs, looked for when NVML meters none (``"auto"`` imports it); tests
            pass a :class:`~lightning_greenai.sensors.fake.FakeAMDSMI`.
        rapl_root: The powercap sysfs root.
        cpu_tdp_w: CPU package power for the estimate used when RAPL cannot be read.
        gpu_tdp_w: GPU board power for GPUs that report neither energy nor power.
        gpu_sharing: How a GPU that other processes use is attributed: ``"auto"`` (a MIG slice by its compute
            fraction, a GPU other processes run on when the fit starts by SM utilisation), ``"exclusive"`` (the
            whole GPU) or ``"shared"`` (always by SM utilisation, e.g. under MPS where other jobs may start later).
            A share is an estimate, with bounds; see :mod:`lightning_greenai.sensors.shared`.
        log_every_n_steps: Log every this many training batches (default: the trainer's ``log_every_n_steps``).
        prog_bar: Show energy and CO2e in the progress bar.
        per_device: Log each device's energy too.
        tokens_key: Where a batch keeps its tokens, for per-token figures: a key (``"input_ids"``), a tuple position,
            or a callable ``batch -> count`` (see :class:`~lightning_greenai.callbacks.samples.SampleCounter`); by
            default a FlopMonitor's on the same trainer.
        verbose: Print the price tag at the end.
        prometheus: Serve the run's energy, FLOPs and power to Prometheus (opt-in): a port (0: a free one), or a
            :class:`~lightning_greenai.exporters.prometheus.PrometheusExporter`; global rank 0 serves it for as long
            as the process lives.
        opentelemetry: Record them in OpenTelemetry instruments (opt-in): ``True`` for the global meter provider, or
            an :class:`~lightning_greenai.exporters.opentelemetry.OpenTelemetryExporter` (global rank 0).
        clock: Monotonic clock in seconds (tests pass a fake one).

    Raises:
        GridConfigError: unknown country or region (with close matches), bad PUE, price or currency.

    Example::

        trainer = L.Trainer(callbacks=[EnergyMonitor(country="DE")])
        trainer.fit(model, datamodule)
        print(trainer.callbacks[0].spend.energy_kwh)
    """

    def __init__(
        self,
        country: str | None = None,
        region: str | None = None,
        *,
        pue: float | None = None,
        intensity_g_per_kwh: float | None = None,
        price_per_kwh: float | None = None,
        currency: str | None = None,
        instance_price_per_h: float | None = None,
        embodied_g_per_gpu_hour: float | None = None,
        embodied_g_per_host_hour: float | None = None,
        embodied_host_basis: Literal["cpu", "server"] | None = None,
        wue_l_per_kwh: float | None = None,
        water_l_per_kwh: float | None = None,
        intensity_csv: str | Path | None = None,
        electricity_maps: ElectricityMaps | None = None,
        sensors: Sequence[EnergySensor] | None = None,
        gpus: Sequence[int] | Literal["auto"] | None = "auto",
        nvml: Any = "auto",
        amdsmi: Any = "auto",
        rapl_root: str | Path = RAPL_ROOT,
        cpu_tdp_w: float | None = None,
        gpu_tdp_w: float | None = None,
        gpu_sharing: Literal["auto", "exclusive", "shared"] = "auto",
        log_every_n_steps: int | None = None,
        prog_bar: bool = True,
        per_device: bool = True,
        tokens_key: TokensKey = None,
        verbose: bool = True,
        prometheus: PrometheusExporter | int | None = None,
        opentelemetry: OpenTelemetryExporter | bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        given = {
            "country": country,
            "region": region,
            "pue": pue,
            "intensity_g_per_kwh": intensity_g_per_kwh,
            "price_per_kwh": price_per_kwh,
            "currency": currency,
            "instance_price_per_h": instance_price_per_h,
            "embodied_g_per_gpu_hour": embodied_g_per_gpu_hour,
            "embodied_g_per_host_hour": embodied_g_per_host_hour,
            "embodied_host_basis": embodied_host_basis,
            "wue_l_per_kwh": wue_l_per_kwh,
            "water_l_per_kwh": water_l_per_kwh,
            "intensity_csv": intensity_csv,
        }
        self._grid_given = {k: v for k, v in given.items() if v is not None}  # what this monitor set itself
        self.grid = Grid.from_config(self._grid_given)
        self._own_place = (self.grid.country, self.grid.region)
        if electricity_maps is not None and not isinstance(electricity_maps, ElectricityMaps):
            raise ValueError(
                f"`electricity_maps` must be an ElectricityMaps(zone=..., token=...) or None, got {electricity_maps!r}."
            )
        self._electricity_maps = electricity_maps
        self._timeline_warned = False
        if log_every_n_steps is not None and log_every_n_steps < 1:
            raise ValueError(f"`log_every_n_steps` must be >= 1 or None, got {log_every_n_steps}.")
        self._sensors = None if sensors is None else list(sensors)
        self._gpus = gpus
        self._nvml, self._amdsmi = nvml, amdsmi
        self._rapl_root = rapl_root
        self._cpu_tdp_w, self._gpu_tdp_w = cpu_tdp_w, gpu_tdp_w
        self._gpu_sharing = check_sharing(gpu_sharing)
        self._log_every = log_every_n_steps
        self._prog_bar, self._per_device, self._verbose = prog_bar, per_device, verbose
        self._clock = clock
        if prometheus is not None and not isinstance(prometheus, PrometheusExporter):
            check_port(prometheus, name="prometheus", allowed="a PrometheusExporter, or None")
        self._prometheus = prometheus
        if opentelemetry is not None and not isinstance(opentelemetry, (bool, OpenTelemetryExporter)):
            raise ValueError(
                f"`opentelemetry` must be True, False, None or an OpenTelemetryExporter, got {opentelemetry!r}."
            )
        self._opentelemetry = opentelemetry or None
        self._auto = False  # set by the callbacks_factory entry point
        self._active = True
        self._meter: Meter | None = None
        self._owns_sensors = sensors is None
        self._sensor_line = ""
        self._sensor_line_shown = False
        self._restored: Spend | None = None  # a checkpoint's spend, continued only if ``fit`` resumes from it
        self._resumed = Spend()  # the spend of the run a resumed fit continues (not metered in this process)
        self._done = Spend()  # what this monitor metered in earlier entry points (fit, then test ...), all ranks
        self._current = Spend()  # what the running entry point metered so far, all ranks
        self._uids: dict[str, str] = {}  # domain name -> physical counter, for the trial's account
        self._nodes: dict[str, str] = {}  # domain name -> its node, in a run on several nodes
        self._node_rank = 0
        self._account_key = object()
        self._stage_start = Spend()  # the running total when the current entry point began
        self._tags: dict[str, dict[str, Any]] = {}  # every stage's price tag, written together to price_tag.json
        self._latest = Spend()  # the run's total so far: resumed + done + current
        self._projected: Spend | None = None
        self._records: list[dict[str, Any]] = []  # every rank's reading at the last gather
        self._notes: list[str] = []  # for the price tag: how far to trust its figures
        self._flop_monitor_of_last_trainer: FlopMonitor | None = None
        self._batches = 0
        self._due = False  # a sample is due at the next training batch's start
        self._last_log: tuple[float, float] | None = None  # (duration_s, energy_j) at the previous log
        self._currency_logged = False
        self._flops_by_phase: dict[str, float] | None = None
        self._timeline: list[tuple[float, float]] = []  # (duration_s, energy_j) at each log, for power plots
        self._samples = SampleCounter(tokens_key)  # what validate, test and predict processed: per-sample figures
        self._restored_samples: dict[str, Any] | None = None
        self._hardware: dict[str, Any] | None = None  # the machine, for reports that ask for the compute workers
        self._parameters: dict[str, int] | None = None  # the model's parameter count (total, trainable)

    # -- results -----------------------------------------------------------------------------------------------

    @property
    def spend(self) -> Spend:
        """Everything metered so far on all ranks, plus the spend of the run a resumed ``fit`` continues."""
        return self._latest

    @property
    def price_tag(self) -> PriceTag:
        """The price tag of :attr:`spend`."""
        return PriceTag(
            self._latest,
            self.grid,
            projected=self._projected,
            sensors=self._sensor_line,
            flops_by_phase=self._flops_by_phase,
            samples=self._sample_counts(),
            nodes=self._nodes,
        )

    def _sample_counts(self) -> dict[str, dict[str, Any]]:
        return {stage: counts.to_dict() for stage, counts in self._samples.totals.items()}

    @property
    def state_key(self) -> str:
        """One key per configuration, so two monitors in a checkpoint do not collide (the automatic one apart)."""
        # from the monitor's own settings: a trial's monitor that takes its sweep's grid keeps the key it had at init,
        # so its checkpoint restores outside the sweep too
        extra = {k: v for k, v in self._grid_given.items() if k not in ("country", "region")}
        return self._generate_state_key(country=self._own_place[0], region=self._own_place[1], auto=self._auto, **extra)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._auto and any(isinstance(cb, EnergyMonitor) and not cb._auto for cb in trainer.callbacks):  # type: ignore[attr-defined]
            self._active = False  # the user passed their own monitor: the auto-registered one steps aside
            return
        self._adopt_sweep_grid()
        self._node_rank = trainer.node_rank
        if isinstance(self._prometheus, int) and trainer.is_global_zero:
            self._prometheus = PrometheusExporter.on_port(self._prometheus)
            rank_zero_info(f"lightning-greenai: Prometheus metrics at {self._prometheus.url}")
        if self._opentelemetry is True and trainer.is_global_zero:
            self._opentelemetry = OpenTelemetryExporter()
        if self._meter is not None:
            return
        if self._hardware is None and trainer.is_global_zero:
            self._hardware = describe_hardware(self._nvml)
        self._parameters = {
            "total": sum(p.numel() for p in pl_module.parameters()),
            "trainable": sum(p.numel() for p in pl_module.parameters() if p.requires_grad),
        }
        flop_monitor = self._flop_monitor(trainer)
        if self._samples.tokens_key is None and flop_monitor is not None and not self._samples.totals:
            self._samples = SampleCounter(flop_monitor.tokens_key)  # count tokens as the FlopMonitor does
        device = trainer.strategy.root_device
        sync: Callable[[], None] | None = None
        if device.type == "cuda":
            sync = lambda: torch.cuda.synchronize(device)  # noqa: E731 (charge queued kernels to this window)
        if self._sensors is not None:
            sensors, unavailable, self._sensor_line = self._sensors, [], "user-supplied sensors"
        else:
            gpus: Sequence[int] | str | None = self._gpus
            if gpus == "auto":
                gpus = [device.index or 0] if device.type == "cuda" else None
            found = discover_sensors(
                gpus=gpus,
                visible=_cuda_uuids() if device.type == "cuda" else None,
                host=trainer.local_rank == 0,
                nvml=self._nvml,
                amdsmi=self._amdsmi,
                rapl_root=self._rapl_root,
                cpu_tdp_w=self._cpu_tdp_w,
                gpu_tdp_w=self._gpu_tdp_w,
                gpu_sharing=self._gpu_sharing,
                clock=self._clock,
                # parallel sweep jobs share the host's CPU package: each is charged its CPU-time share
                apportion_host=current_trial() is not None,
                process=_run_root(trainer),
            )
            sensors, unavailable, self._sensor_line = found.sensors, found.unavailable, found.summary()
            if not self._sensor_line_shown:  # once per monitor, not after each of fit, validate and test
                self._sensor_line_shown = True
                for message in found.warnings:
                    warnings.warn(message, GreenAIWarning, stacklevel=2)
                rank_zero_info(self._sensor_line)
        # the run's share of each host (its embodied carbon): the CPU time of the run's processes, by one rank a node
        process = _run_root(trainer) if trainer.local_rank == 0 else False
        self._meter = Meter(
            sensors, unavailable=unavailable, clock=self._clock, sync=sync, report=False, process=process
        )

    def _adopt_sweep_grid(self) -> None:
        """In a greenai sweep's trial, price with the sweep's grid: the one its budget is held at (one grid, not two).

        A monitor that sets no grid takes the sweep's; one that sets a grid pricing differently is refused, naming
        both, since its price tag and the sweep's books would disagree.
        """
        sweep = sweep_grid()
        if sweep is None:
            return
        own = ", ".join(f"{k}={v!r}" for k, v in self._grid_given.items())
        if self._electricity_maps is not None:
            raise GridConfigError(
                "EnergyMonitor(electricity_maps=...) runs in a greenai sweep, which holds its budget at "
                f"hydra.sweeper.grid ({sweep.describe()}), not at Electricity Maps' hours. Give the sweep the hourly "
                "figures instead: hydra.sweeper.grid.intensity_csv=<a CSV exported from Electricity Maps>."
            )
        if self._grid_given and self.grid.differences(sweep):
            raise GridConfigError(
                f"EnergyMonitor({own}) prices this trial at {self.grid.describe()}, but its greenai sweep holds the "
                f"budget at hydra.sweeper.grid: {sweep.describe()} ({'; '.join(self.grid.differences(sweep))}; the "
                "monitor's vs the sweep's). Set the grid once, in hydra.sweeper.grid (e.g. "
                f"hydra.sweeper.grid.{next(iter(self._grid_given))}=...), and remove it from the monitor: a trial's "
                "EnergyMonitor that sets no grid prices with the sweep's."
            )
        self.grid = sweep

    def _begin(self, trainer: pl.Trainer, stage: str) -> None:
        if not self._active or self._meter is None:
            return
        self._meter.set_stage(stage)  # before start: the first interval belongs to this stage
        if not self._meter.started:
            if stage == "train" and self._restored is not None:
                self._resumed = self._restored  # only a resumed fit continues the checkpoint's total
                self._samples.resume(self._restored_samples or {})
            self._restored = self._restored_samples = None
            self._stage_start = self._resumed + self._done
            self._meter.start()
            self._last_log = None
            self._claim(trainer)

    def _finish(self, trainer: pl.Trainer, title: str) -> None:
        """Take the final all-rank reading, fold it into what is done, and report. Every rank calls this together."""
        if not self._active or self._meter is None or not self._meter.started:
            return
        self._meter.stop()
        self._gather(trainer)
        self._samples.sync(trainer)  # a collective too: every rank is here
        self._report(trainer, release=True)
        self._log_metrics(trainer, self._latest)
        self._close()
        stopped_early = title == "fit" and trainer.global_step < trainer.estimated_stepping_batches
        projected = self._projected if stopped_early else None  # a finished run's actual total replaces it
        log_dir = _output_dir(trainer)  # a collective under DDP: every rank asks
        if trainer.is_global_zero:
            self._publish_tag(trainer, title, projected, log_dir)
        self._projected = None  # the run is over: its actual total replaces the forecast

    def _publish_tag(self, trainer: pl.Trainer, title: str, projected: Spend | None, log_dir: str | None) -> None:
        """Print the stage's price tag and write every stage's into ``price_tag.json`` (rank 0)."""
        flop_monitor = self._flop_monitor(trainer)
        self._resolve_timeline(self._latest)  # the stage's hours since the last log step, and a stage that never logs
        stage_spend = self._latest.since(self._stage_start)
        tag = PriceTag(
            self._latest,
            self.grid,
            projected=projected,
            sensors=self._sensor_line,
            title=title,
            flops_by_phase=None if flop_monitor is None else flop_monitor.totals,
            extra={
                "timeline": [list(p) for p in self._timeline],
                "hardware": self._hardware,
                "parameters": self._parameters,
            },
            stage_spend=stage_spend if self._stage_start.total_energy_j or self._stage_start.duration_s else None,
            notes=tuple(self._notes),
            samples=self._sample_counts(),
            nodes=self._nodes,
        )
        self._flops_by_phase = tag.flops_by_phase
        self._tags[title] = tag.to_dict()
        if log_dir is not None:
            data = dict(self._tags[title])
            data["stages"] = {k: {f: v[f] for f in _STAGE_FIELDS if f in v} for k, v in self._tags.items()}
            try:
                write_json_atomic(Path(log_dir) / self._tag_file(trainer), data)
            except StateWriteError as err:
                warnings.warn(str(err), GreenAIWarning, stacklevel=2)
        self._log_price_tag(trainer, tag)
        self._log_predictions(trainer, tag)
        if self._verbose:
            print(tag.to_text())

    def _tag_file(self, trainer: pl.Trainer) -> str:
        """``price_tag.json``; a second monitor on the same trainer writes ``price_tag-1.json`` and so on."""
        monitors = [cb for cb in trainer.callbacks if isinstance(cb, EnergyMonitor) and cb._active]  # type: ignore[attr-defined]
        index = next((i for i, cb in enumerate(monitors) if cb is self), 0)
        return "price_tag.json" if index == 0 else f"price_tag-{index}.json"

    def _close(self) -> None:
        """Fold the entry point's spend into what is done and release the sensors."""
        if self._meter is None:
            return
        for sensor in self._meter.sensors:
            contention = getattr(sensor, "contention_note", None)
            note = contention(torch.get_num_threads()) if contention is not None else None
            if note is not None and note not in self._notes:
                self._notes.append(note)
        self._done = self._done + self._current
        self._current = Spend()
        if self._owns_sensors:
            for sensor in self._meter.sensors:
                sensor.close()
        self._meter = None

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._begin(trainer, "train")

    @override
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._begin(trainer, "validate")

    @override
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._begin(trainer, "test")

    @override
    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._begin(trainer, "predict")

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._active or self._meter is None:
            return
        self._batches += 1
        every = self._log_every or trainer.log_every_n_steps or 50  # type: ignore[attr-defined]
        self._due = self._batches % every == 0
        if trainer.world_size == 1:
            self._sample_if_due(trainer, pl_module)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # Under DDP a sample (a collective) waits for the next batch's start: progress bars read metrics on rank 0
        # only in *_end hooks, which may issue a collective (a sync_dist metric) that ours on the other ranks would
        # cross, and every rank would wait forever.
        if self._active and self._meter is not None:
            self._sample_if_due(trainer, pl_module)

    def _sample_if_due(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._due:
            return
        self._due = False
        spend = self._sample(trainer)
        if self._prog_bar:
            # Progress bars print 3 decimals: Wh and g stay readable where kWh and kg would show 0.000.
            energy_kwh = spend.energy_kwh
            if energy_kwh is not None:
                pl_module.log("greenai/energy_wh", energy_kwh * 1e3, prog_bar=True, logger=False, batch_size=1)
            co2e_g = self.grid.co2e_g(spend)
            if co2e_g is not None:
                pl_module.log("greenai/co2e_g", co2e_g, prog_bar=True, logger=False, batch_size=1)

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
        if self._active and self._meter is not None:
            self._samples.add("validate", batch)

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
        if self._active and self._meter is not None:
            self._samples.add("test", batch)

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
        if self._active and self._meter is not None:
            self._samples.add("predict", batch)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._active and self._meter is not None and trainer.state.fn == "fit":
            self._meter.set_stage("train")  # local: a validate run's price tag comes at teardown (no collective here)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish(trainer, "fit")

    @override
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish(trainer, "test")

    @override
    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish(trainer, "predict")

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # The run failed or was interrupted (Ctrl-C, SIGTERM): keep what was measured, bill it, and print the price
        # tag so far, without collectives (another rank may be gone): under DDP that is the latest all-rank snapshot.
        if not self._active or self._meter is None or not self._meter.started:
            return
        self._meter.stop()
        self._refresh(
            trainer,
            merge_records(refresh_own(self._records, self._meter, node=self._node_rank), self._uids, self._nodes),
            sync_flops=False,
        )
        if trainer.world_size == 1:
            self._samples.settle_locally()
        self._report(trainer, release=True)
        self._close()
        failure = f"{type(exception).__name__}: {exception}" if str(exception) else type(exception).__name__
        title = f"{getattr(trainer.state.fn, 'value', None) or 'run'} (interrupted: {failure})"
        if trainer.is_global_zero:
            self._publish_tag(trainer, title, None, _output_dir(trainer, collective=False))

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "validate":
            self._finish(trainer, "validate")  # every rank, past the hooks where progress bars read metrics
        if self._meter is not None:  # set up but never started (the run ended before its first hook)
            if self._owns_sensors:
                for sensor in self._meter.sensors:
                    sensor.close()
            self._meter = None

    # -- checkpointing -----------------------------------------------------------------------------------------

    @override
    def state_dict(self) -> dict[str, Any]:
        # Called by one rank or all, from any hook (ModelCheckpoint): no collective here. This process's meter is read
        # now; other ranks' counters are as of the last gather (at most log_every_n_steps batches old).
        if self._meter is not None and self._meter.started and not self._meter.stopped:
            self._meter.sample()
            current = merge_records(
                refresh_own(self._records, self._meter, node=self._node_rank), self._uids, self._nodes
            )
            latest = self._resumed + self._done + current
            flop_monitor = self._flop_monitor_of_last_trainer
            if flop_monitor is not None:
                latest = dataclasses.replace(latest, flops=flop_monitor.training_flops)
            return {"spend": latest.to_dict(), "samples": self._samples.state_dict()}
        return {"spend": self._latest.to_dict(), "samples": self._samples.state_dict()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Held until the entry point starts: resuming fit continues the checkpoint's total; validate, test and
        # predict from a checkpoint (``test(ckpt_path="best")``) meter their own spend on top of this run's.
        self._restored = Spend.from_dict(state_dict["spend"])
        self._restored_samples = dict(state_dict.get("samples", {}))

    # -- sampling and logging ----------------------------------------------------------------------------------

    def _sample(self, trainer: pl.Trainer) -> Spend:
        assert self._meter is not None
        self._meter.sample()
        self._gather(trainer)  # collectives: every rank samples at the same hooks
        self._report(trainer)
        self._projected = self._project(trainer, self._latest)
        self._resolve_timeline(self._latest)
        self._log_metrics(trainer, self._latest)
        return self._latest

    def _resolve_timeline(self, spend: Spend) -> None:
        """Add the hours ``spend`` was spent in to the grid's timeline, from Electricity Maps where it is opted in."""
        provider = self._electricity_maps
        if provider is None or not spend.hourly_energy_j:
            return
        try:
            found = provider.intensities(spend.hourly_energy_j)
        except OSError as err:
            if not self._timeline_warned:
                self._timeline_warned = True
                warnings.warn(
                    f"{err}; the hours it could not give are priced at {self.grid.intensity_source}",
                    GreenAIWarning,
                    stacklevel=2,
                )
            found = {}
        self.grid = self.grid.with_timeline(found, provider.source)

    def _gather(self, trainer: pl.Trainer) -> None:
        """Gather every rank's reading (a collective) and refresh the totals from it."""
        assert self._meter is not None
        self._records = gather_records(self._meter, node=self._node_rank)
        self._refresh(trainer, merge_records(self._records, self._uids, self._nodes))

    def _refresh(self, trainer: pl.Trainer, current: Spend, *, sync_flops: bool = True) -> None:
        """Take a new all-rank reading of the running entry point."""
        self._current = current
        self._latest = self._with_flops(trainer, self._resumed + self._done + current, sync=sync_flops)

    def _claim(self, trainer: pl.Trainer) -> None:
        """In a sweep, take this process's counters in the trial's account now, before a meter started later does."""
        reporter = current_trial() if trainer.is_global_zero and self._meter is not None else None
        if reporter is None or self._meter is None:
            return
        local = self._meter.domain_uids()
        self._uids.update({name: uid for name, uid in local.items() if name not in self._uids})
        zeros = Spend(energy_j=dict.fromkeys(local, 0.0))
        reporter.contribute(self._account_key, dataclasses.replace(zeros + self._done, flops=0.0), uids=self._uids)

    def _report(self, trainer: pl.Trainer, *, release: bool = False) -> None:
        """In a greenai sweep, add what this monitor metered in this process to the trial's account (rank 0).

        FLOPs are left to the FlopMonitor's own contribution, and a resumed checkpoint's spend to the earlier attempt's
        record: the account bills each once.
        """
        if not trainer.is_global_zero:
            return
        reporter = current_trial()
        if reporter is None:
            return
        metered = dataclasses.replace(self._done + self._current, flops=0.0)
        reporter.contribute(self._account_key, metered, uids=self._uids, force=release)
        if release:
            reporter.release(self._account_key)

    @staticmethod
    def _flop_monitor(trainer: pl.Trainer) -> FlopMonitor | None:
        callbacks = trainer.callbacks  # type: ignore[attr-defined]
        return next((cb for cb in callbacks if isinstance(cb, FlopMonitor)), None)

    def _with_flops(self, trainer: pl.Trainer, spend: Spend, *, sync: bool = True) -> Spend:
        """Carry the training FLOPs of a FlopMonitor on the same trainer, so one spend holds energy and FLOPs."""
        flop_monitor = self._flop_monitor_of_last_trainer = self._flop_monitor(trainer)
        if flop_monitor is None:
            return spend
        if sync:
            flop_monitor.sync(trainer)
        return dataclasses.replace(spend, flops=flop_monitor.training_flops)

    def _project(self, trainer: pl.Trainer, spend: Spend) -> Spend | None:
        if trainer.state.fn != "fit" or trainer.sanity_checking:
            return self._projected
        total = trainer.estimated_stepping_batches
        done = trainer.global_step
        if not (done > 0 and 0 < total < float("inf")):
            return self._projected
        if trainer.current_epoch < 1 and done < 0.05 * total:
            return self._projected
        return spend.scaled(total / done)

    def _log_metrics(self, trainer: pl.Trainer, spend: Spend) -> None:
        if trainer.is_global_zero:
            for exporter in (self._prometheus, self._opentelemetry):
                if isinstance(exporter, SpendExporter):
                    exporter.update(spend, source=self._account_key)
        if spend.total_energy_j is not None:
            self._timeline.append((spend.duration_s, spend.total_energy_j))
            if len(self._timeline) > 2000:  # bounded memory on long runs: keep every other point
                self._timeline = self._timeline[::2]
        if not trainer.loggers:
            return
        metrics = self._metrics(spend)
        self._emit(trainer, metrics)

    def _metrics(self, spend: Spend) -> dict[str, float]:
        metrics: dict[str, float] = {"greenai/is_estimate": float(spend.is_estimate)}
        energy_j = spend.total_energy_j
        if energy_j is not None:
            metrics["greenai/energy_kwh"] = j_to_kwh(energy_j)
            low_j, high_j = spend.total_energy_bounds_j or (energy_j, energy_j)
            metrics["greenai/energy_kwh_low"], metrics["greenai/energy_kwh_high"] = j_to_kwh(low_j), j_to_kwh(high_j)
            if self._last_log is not None and spend.duration_s > self._last_log[0]:
                metrics["greenai/power_w"] = (energy_j - self._last_log[1]) / (spend.duration_s - self._last_log[0])
            self._last_log = (spend.duration_s, energy_j)
        co2e_g = self.grid.co2e_g(spend)
        if co2e_g is not None:
            metrics["greenai/co2e_kg"] = g_to_kg(co2e_g)
            for side in ("low", "high"):
                metrics[f"greenai/co2e_kg_{side}"] = g_to_kg(self.grid.co2e_g(spend.bound(side)) or 0.0)
        hosts = max(len(set(self._nodes.values())), 1)
        metrics["greenai/embodied_co2e_kg"] = g_to_kg(sum(self.grid.embodied_co2e_g(spend, hosts).values()))
        water = self.grid.water_l(spend)
        if water is not None:
            metrics["greenai/water_l"] = sum(water.values())
        cost = self.grid.money(spend)
        if cost is not None:
            metrics["greenai/cost"] = cost
        if self._per_device:
            for name, value in spend.energy_j.items():
                # not under greenai/energy_kwh/: no key may be a path prefix of another (MLflow's file store)
                metrics[f"greenai/device_energy_kwh/{_key(name)}"] = j_to_kwh(value)
        if self._projected is not None:
            p_energy = self._projected.energy_kwh
            if p_energy is not None:
                metrics["greenai/projected_energy_kwh"] = self.grid.pue * p_energy
            p_co2e = self.grid.co2e_g(self._projected)
            if p_co2e is not None:
                metrics["greenai/projected_co2e_kg"] = g_to_kg(p_co2e)
            p_cost = self.grid.money(self._projected)
            if p_cost is not None:
                metrics["greenai/projected_cost"] = p_cost
        return metrics

    @staticmethod
    def _log_price_tag(trainer: pl.Trainer, tag: PriceTag) -> None:
        """Put each stage's price tag in every logger's run fields (W&B config, MLflow params, hparams.yaml ...).

        Keys carry the stage (``greenai/price_tag/fit/energy_kwh``, then ``.../test/...``): a tracker that refuses
        to change a param (MLflow) gets each once.
        """
        data = tag.to_dict()
        stage = tag.title.split(" ", 1)[0]
        fields = {f"greenai/price_tag/{stage}/{k}": data[k] for k in _STAGE_FIELDS if data.get(k) is not None}
        for logger in trainer.loggers:
            if type(logger).__name__ == "TensorBoardLogger" and data.get("energy_kwh") is not None:
                # with a metric, the fields appear in TensorBoard's HParams view against the run's energy
                logger.log_hyperparams(fields, metrics={f"greenai/price_tag/{stage}/energy_kwh": data["energy_kwh"]})
            else:
                logger.log_hyperparams(fields)

    def _log_predictions(self, trainer: pl.Trainer, tag: PriceTag) -> None:
        """Log the price of a prediction of each evaluation stage that ran (rank 0, at a stage's end)."""
        metrics: dict[str, float] = {}
        for stage, figures in tag.predictions.items():
            for key in ("j_per_sample", "co2e_g_per_sample", "j_per_token"):
                if figures.get(key) is not None:
                    metrics[f"greenai/{stage}/{key}"] = figures[key]
        if metrics:
            self._emit(trainer, metrics)

    @rank_zero_only
    def _emit(self, trainer: pl.Trainer, metrics: dict[str, float]) -> None:
        for logger in trainer.loggers:
            if not self._currency_logged and self.grid.currency is not None:
                logger.log_hyperparams({"greenai/currency": self.grid.currency})
            logger.log_metrics(metrics, step=trainer.global_step)
        self._currency_logged = True
