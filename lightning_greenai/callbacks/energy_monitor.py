"""EnergyMonitor: meter a Lightning run's energy, CO2e and money, log them live, and print a price tag."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from typing_extensions import override

from lightning_greenai.callbacks.base import BatchCallback
from lightning_greenai.callbacks.flop_monitor import FlopMonitor
from lightning_greenai.callbacks.grid_choice import own_grid, trial_grid
from lightning_greenai.callbacks.outputs import (
    cuda_uuids,
    log_price_tag,
    output_dir,
    own_stage_figures,
    prediction_metrics,
    run_root,
    write_price_tags,
)
from lightning_greenai.callbacks.samples import SampleCounter, TokensKey
from lightning_greenai.errors import GreenAIWarning
from lightning_greenai.exporters.export import SpendExporter
from lightning_greenai.exporters.opentelemetry import OpenTelemetryExporter
from lightning_greenai.exporters.prometheus import PrometheusExporter, check_port
from lightning_greenai.grid import Grid
from lightning_greenai.grid.timeline import ElectricityMaps
from lightning_greenai.hardware import describe_hardware
from lightning_greenai.metering.meter import Meter, TrialAccount
from lightning_greenai.metering.run import RunTotals
from lightning_greenai.reporting import PriceTag
from lightning_greenai.sensors.base import EnergySensor
from lightning_greenai.sensors.discovery import discover_sensors
from lightning_greenai.sensors.rapl import RAPL_ROOT
from lightning_greenai.sensors.shared import check_sharing
from lightning_greenai.spend import Spend
from lightning_greenai.trial.account import current_trial

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = ["EnergyMonitor"]


class EnergyMonitor(BatchCallback):
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

    At the end of ``fit``/``validate``/``test``/``predict`` the price tag is printed (rank 0; see ``verbose``) and
    written as ``price_tag.json`` into ``trainer.log_dir``, every stage's figures in one file.

    Args:
        grid: The electricity grid that prices the run (carbon intensity, PUE, prices, embodied carbon, water): a
            :class:`~lightning_greenai.Grid`, or a mapping of :meth:`Grid.from_location
            <lightning_greenai.Grid.from_location>`'s options (``{"country": "DE", "pue": 1.2}``; a Hydra config of
            them; nulls unset). Left unset in a greenai sweep's trial, the sweep's ``hydra.sweeper.grid`` prices the
            run (set there, the grid is set once for the budget and every trial); set to a grid that prices
            differently, the trial is refused with both named. Outside a sweep, unset means the packaged table's mean
            intensity and PUE 1.
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
        verbose: What the run prints as each entry point ends (rank 0): ``False``, its first a compact tag of at
            most 10 lines (totals, one line per stage, where the full tag is), each later one a line of what it added;
            ``True``, the full table (as ``greenai report`` prints it); ``None``, nothing.
        prometheus: Serve the run's energy, FLOPs and power to Prometheus (opt-in): a port (0: a free one), or a
            :class:`~lightning_greenai.exporters.prometheus.PrometheusExporter`; global rank 0 serves it for as long
            as the process lives.
        opentelemetry: Record them in OpenTelemetry instruments (opt-in): ``True`` for the global meter provider, or
            an :class:`~lightning_greenai.exporters.opentelemetry.OpenTelemetryExporter` (global rank 0).
        clock: Monotonic clock in seconds (tests pass a fake one).

    Raises:
        GridConfigError: unknown country or region (with close matches), an unknown grid option (naming the allowed
            ones), bad PUE, price or currency.

    Example::

        trainer = L.Trainer(callbacks=[EnergyMonitor(grid={"country": "DE"})])
        trainer.fit(model, datamodule)
        print(trainer.callbacks[0].spend.energy_kwh)
    """

    def __init__(
        self,
        grid: Mapping[str, Any] | Grid | None = None,  # Mapping first: LightningCLI then reads a YAML mapping as one
        *,
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
        verbose: bool | None = False,
        prometheus: PrometheusExporter | int | None = None,
        opentelemetry: OpenTelemetryExporter | bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._grid_given, grid = own_grid(grid)  # the options this monitor set itself, and the grid they make
        self._own_place = (grid.country, grid.region)
        if electricity_maps is not None and not isinstance(electricity_maps, ElectricityMaps):
            raise ValueError(
                f"`electricity_maps` must be an ElectricityMaps(zone=..., token=...) or None, got {electricity_maps!r}."
            )
        self._totals = RunTotals(grid, per_device=per_device, electricity_maps=electricity_maps)
        if log_every_n_steps is not None and log_every_n_steps < 1:
            raise ValueError(f"`log_every_n_steps` must be >= 1 or None, got {log_every_n_steps}.")
        self._sensors = None if sensors is None else list(sensors)
        self._gpus = gpus
        self._nvml, self._amdsmi = nvml, amdsmi
        self._rapl_root = rapl_root
        self._cpu_tdp_w, self._gpu_tdp_w = cpu_tdp_w, gpu_tdp_w
        self._gpu_sharing = check_sharing(gpu_sharing)
        self._log_every = log_every_n_steps
        if verbose is not None and not isinstance(verbose, bool):
            raise ValueError(
                f"`verbose` must be False (a compact tag), True (the full table) or None, got {verbose!r}."
            )
        self._prog_bar, self._verbose, self._tag_printed = prog_bar, verbose, False
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
        self._account: TrialAccount | None = None  # a greenai trial's, set up with the meter
        self._owns_sensors = sensors is None
        self._sensor_line = ""
        self._sensor_line_shown = False
        self._restored: Spend | None = None  # a checkpoint's spend, continued only if ``fit`` resumes from it
        self._tags: dict[str, dict[str, Any]] = {}  # every stage's price tag, written together to price_tag.json
        self._flop_monitor_of_last_trainer: FlopMonitor | None = None
        self._currency_logged = False
        self._flops_by_phase: dict[str, float] | None = None
        self._samples = SampleCounter(tokens_key)  # what validate, test and predict processed: per-sample figures
        self._restored_samples: dict[str, Any] | None = None
        self._hardware: dict[str, Any] | None = None  # the machine, for reports that ask for the compute workers
        self._parameters: dict[str, int] | None = None  # the model's parameter count (total, trainable)

    # -- results -----------------------------------------------------------------------------------------------

    @property
    def grid(self) -> Grid:
        """The grid that prices the run (in a sweep's trial, the sweep's unless the monitor set its own)."""
        return self._totals.grid

    @property
    def totals(self) -> RunTotals:
        """The run's totals across entry points, its forecast and metrics (Trainer-free)."""
        return self._totals

    @property
    def spend(self) -> Spend:
        """Everything metered so far on all ranks, plus the spend of the run a resumed ``fit`` continues."""
        return self._totals.latest

    @property
    def price_tag(self) -> PriceTag:
        """The price tag of :attr:`spend`."""
        return PriceTag(
            self._totals.latest,
            self.grid,
            projected=self._totals.projected,
            sensors=self._sensor_line,
            flops_by_phase=self._flops_by_phase,
            samples=self._sample_counts(),
            nodes=self._totals.nodes,
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
        self._account = current_trial()  # the greenai trial's account this run bills, looked up once an entry point
        self._adopt_sweep_grid()
        self._totals.node_rank = trainer.node_rank
        if isinstance(self._prometheus, int) and trainer.is_global_zero:
            self._prometheus = PrometheusExporter.on_port(self._prometheus)
            rank_zero_info(f"lightning-greenai: Prometheus metrics at {self._prometheus.url}")
        if self._opentelemetry is True and trainer.is_global_zero:
            self._opentelemetry = OpenTelemetryExporter()
        if self._meter is not None:
            return
        self._describe_run(trainer, pl_module)
        device = trainer.strategy.root_device
        sync: Callable[[], None] | None = None
        if device.type == "cuda":
            sync = lambda: torch.cuda.synchronize(device)  # noqa: E731 (charge queued kernels to this window)
        sensors, unavailable = self._find_sensors(trainer, device)
        # the run's share of each host (its embodied carbon): the CPU time of the run's processes, by one rank a node
        process = run_root(trainer) if trainer.local_rank == 0 else False
        self._meter = Meter(
            sensors, unavailable=unavailable, clock=self._clock, sync=sync, report=False, process=process
        )

    def _describe_run(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the machine and the model's size for the price tag, and count tokens as a FlopMonitor does."""
        if self._hardware is None and trainer.is_global_zero:
            self._hardware = describe_hardware(self._nvml)
        self._parameters = {
            "total": sum(p.numel() for p in pl_module.parameters()),
            "trainable": sum(p.numel() for p in pl_module.parameters() if p.requires_grad),
        }
        flop_monitor = self._flop_monitor(trainer)
        if self._samples.tokens_key is None and flop_monitor is not None and not self._samples.totals:
            self._samples = SampleCounter(flop_monitor.tokens_key)

    def _find_sensors(self, trainer: pl.Trainer, device: torch.device) -> tuple[list[EnergySensor], list[str]]:
        """The sensors this rank reads (its own GPU; the host's CPU and DRAM on one rank a node), and the unmetered."""
        if self._sensors is not None:
            self._sensor_line = "user-supplied sensors"
            return self._sensors, []
        gpus: Sequence[int] | str | None = self._gpus
        if gpus == "auto":
            gpus = [device.index or 0] if device.type == "cuda" else None
        found = discover_sensors(
            gpus=gpus,
            visible=cuda_uuids() if device.type == "cuda" else None,
            host=trainer.local_rank == 0,
            nvml=self._nvml,
            amdsmi=self._amdsmi,
            rapl_root=self._rapl_root,
            cpu_tdp_w=self._cpu_tdp_w,
            gpu_tdp_w=self._gpu_tdp_w,
            gpu_sharing=self._gpu_sharing,
            clock=self._clock,
            # parallel sweep jobs share the host's CPU package: each is charged its CPU-time share
            apportion_host=self._account is not None,
            process=run_root(trainer),
        )
        self._sensor_line = found.summary()
        if not self._sensor_line_shown:  # once per monitor, not after each of fit, validate and test
            self._sensor_line_shown = True
            for message in found.warnings:
                warnings.warn(message, GreenAIWarning, stacklevel=3)
            rank_zero_info(self._sensor_line)
        return list(found.sensors), list(found.unavailable)

    def _adopt_sweep_grid(self) -> None:
        """In a greenai sweep's trial, price with the sweep's grid, the one its budget is held at (see trial_grid)."""
        sweep = trial_grid(self._grid_given, self.grid, self._totals.electricity_maps)
        if sweep is not None:
            self._totals.grid = sweep

    def _begin(self, trainer: pl.Trainer, stage: str) -> None:
        if not self._active or self._meter is None:
            return
        self._meter.set_stage(stage)  # before start: the first interval belongs to this stage
        if not self._meter.started:
            resumed = self._restored if stage == "train" else None  # only a resumed fit continues the checkpoint's
            if resumed is not None:
                self._samples.resume(self._restored_samples or {})
            self._restored = self._restored_samples = None
            self._totals.begin(resumed)
            self._meter.start()
            if trainer.is_global_zero:  # in a sweep, take this process's counters before a meter started later does
                self._totals.claim(self._account, self._meter)

    def _finish(self, trainer: pl.Trainer, title: str) -> None:
        """Take the final all-rank reading, fold it into what is done, and report. Every rank calls this together."""
        if not self._active or self._meter is None or not self._meter.started:
            return
        self._meter.stop()
        self._gather(trainer)
        self._samples.sync(trainer)  # a collective too: every rank is here
        self._report(trainer, release=True)
        self._log_metrics(trainer, self._totals.latest)
        self._close()
        stopped_early = title == "fit" and trainer.global_step < trainer.estimated_stepping_batches
        projected = self._totals.projected if stopped_early else None  # a finished run's actual total replaces it
        log_dir = output_dir(trainer)  # a collective under DDP: every rank asks
        if trainer.is_global_zero:
            self._publish_tag(trainer, title, projected, log_dir)
        self._totals.projected = None  # the run is over: its actual total replaces the forecast

    def _publish_tag(self, trainer: pl.Trainer, title: str, projected: Spend | None, log_dir: str | None) -> None:
        """Print the stage's price tag and write every stage's into ``price_tag.json`` (rank 0)."""
        flop_monitor = self._flop_monitor(trainer)
        totals = self._totals
        totals.resolve_timeline()  # the stage's hours since the last log step, and a stage that never logs
        tag = PriceTag(
            totals.latest,
            self.grid,
            projected=projected,
            sensors=self._sensor_line,
            title=title,
            flops_by_phase=None if flop_monitor is None else flop_monitor.totals,
            extra={
                "timeline": [list(p) for p in totals.timeline],
                "hardware": self._hardware,
                "parameters": self._parameters,
                "peak_flops_per_s": None if flop_monitor is None else flop_monitor.peak_flops_per_s,
            },
            stage_spend=totals.stage_spend,
            notes=tuple(totals.notes),
            samples=self._sample_counts(),
            nodes=totals.nodes,
        )
        self._flops_by_phase = tag.flops_by_phase
        self._tags[title] = tag.to_dict()
        if log_dir is not None:
            write_price_tags(Path(log_dir) / self._tag_file(trainer), self._tags, title)
        log_price_tag(trainer, tag)
        predictions = prediction_metrics(tag)
        if predictions:
            self._emit(trainer, predictions)
        self._print_tag(tag, title, None if log_dir is None else str(Path(log_dir) / self._tag_file(trainer)))

    def _print_tag(self, tag: PriceTag, title: str, where: str | None) -> None:
        """The full table (verbose), or the compact tag once and a line for each entry point after it."""
        if self._verbose:
            print(tag.to_text())
        elif self._verbose is False and not self._tag_printed:
            print(tag.to_compact_text(own_stage_figures(self._tags), where))
        elif self._verbose is False:
            print(tag.update_line(title, own_stage_figures(self._tags)[title], where))
        self._tag_printed = True

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
            self._totals.note(contention(torch.get_num_threads()) if contention is not None else None)
        self._totals.close()
        self._release_sensors()

    def _release_sensors(self) -> None:
        """Close the sensors this monitor opened and drop its meter."""
        for sensor in self._meter.sensors if self._meter is not None and self._owns_sensors else ():
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
    def batch_hooks_active(self) -> bool:
        return self._active and self._meter is not None

    @override
    def every_n_steps(self, trainer: pl.Trainer) -> int:
        return self._log_every or trainer.log_every_n_steps or 50  # type: ignore[attr-defined]

    @override
    def every_n_steps_work(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Sample every rank's meter, log the totals, and show energy and CO2e in the progress bar."""
        spend = self._sample(trainer)
        if self._prog_bar:
            # Progress bars print 3 decimals: Wh and g stay readable where kWh and kg would show 0.000.
            energy_kwh = spend.energy_kwh
            if energy_kwh is not None:
                pl_module.log("greenai/energy_wh", energy_kwh * 1e3, prog_bar=True, logger=False, batch_size=1)
            co2e_g = self.grid.co2e_g(spend)
            if co2e_g is not None:
                pl_module.log("greenai/co2e_g", co2e_g, prog_bar=True, logger=False, batch_size=1)

    def read_now(self, trainer: pl.Trainer) -> None:
        """Read the sensors and hand the trial its spend now, between scheduled readings (a rung that counts energy).

        One process only: the ranks of a distributed run read together at the scheduled hooks, so there it waits.
        """
        if self._active and self._meter is not None and self._meter.started and trainer.world_size == 1:
            self._sample(trainer)

    @override
    def batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, batch: Any) -> None:
        if stage != "train":
            self._samples.add(stage, batch)  # what validate, test and predict processed: per-sample figures

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
        self._refresh(trainer, self._totals.local(self._meter), sync_flops=False)
        if trainer.world_size == 1:
            self._samples.settle_locally()
        self._report(trainer, release=True)
        self._close()
        failure = f"{type(exception).__name__}: {exception}" if str(exception) else type(exception).__name__
        title = f"{getattr(trainer.state.fn, 'value', None) or 'run'} (interrupted: {failure})"
        if trainer.is_global_zero:
            self._publish_tag(trainer, title, None, output_dir(trainer, collective=False))

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "validate":
            self._finish(trainer, "validate")  # every rank, past the hooks where progress bars read metrics
        self._release_sensors()  # set up but never started (the run ended before its first hook)

    # -- checkpointing -----------------------------------------------------------------------------------------

    @override
    def state_dict(self) -> dict[str, Any]:
        # Called by one rank or all, from any hook (ModelCheckpoint): no collective here. This process's meter is read
        # now; other ranks' counters are as of the last gather (at most log_every_n_steps batches old).
        if self._meter is not None and self._meter.started and not self._meter.stopped:
            self._meter.sample()
            flop_monitor = self._flop_monitor_of_last_trainer
            flops = None if flop_monitor is None else flop_monitor.training_flops
            latest = self._totals.total(self._totals.local(self._meter), flops)
            return {"spend": latest.to_dict(), "samples": self._samples.state_dict()}
        return {"spend": self._totals.latest.to_dict(), "samples": self._samples.state_dict()}

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
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._totals.project(
                total_steps=trainer.estimated_stepping_batches,
                steps_done=trainer.global_step,
                epoch=trainer.current_epoch,
            )
        self._totals.resolve_timeline()
        self._log_metrics(trainer, self._totals.latest)
        return self._totals.latest

    def _gather(self, trainer: pl.Trainer) -> None:
        """Gather every rank's reading (a collective) and refresh the totals from it."""
        assert self._meter is not None
        self._refresh(trainer, self._totals.gather(self._meter))

    def _refresh(self, trainer: pl.Trainer, current: Spend, *, sync_flops: bool = True) -> None:
        """Take a new all-rank reading of the running entry point, with a FlopMonitor's training FLOPs."""
        flop_monitor = self._flop_monitor_of_last_trainer = self._flop_monitor(trainer)
        if flop_monitor is not None and sync_flops:
            flop_monitor.sync(trainer)
        self._totals.refresh(current, None if flop_monitor is None else flop_monitor.training_flops)

    def _report(self, trainer: pl.Trainer, *, release: bool = False) -> None:
        """In a greenai sweep, add what this monitor metered in this process to the trial's account (rank 0)."""
        if trainer.is_global_zero:
            self._totals.report(self._account, release=release)

    @staticmethod
    def _flop_monitor(trainer: pl.Trainer) -> FlopMonitor | None:
        return next((cb for cb in trainer.callbacks if isinstance(cb, FlopMonitor)), None)  # type: ignore[attr-defined]

    def _log_metrics(self, trainer: pl.Trainer, spend: Spend) -> None:
        if trainer.is_global_zero:
            for exporter in (self._prometheus, self._opentelemetry):
                if isinstance(exporter, SpendExporter):
                    exporter.update(spend, source=self._totals.account_key)
        self._totals.record(spend)
        if trainer.loggers:
            self._emit(trainer, self._totals.metrics(spend))

    @rank_zero_only
    def _emit(self, trainer: pl.Trainer, metrics: dict[str, float]) -> None:
        for logger in trainer.loggers:
            if not self._currency_logged and self.grid.currency is not None:
                logger.log_hyperparams({"greenai/currency": self.grid.currency})
            logger.log_metrics(metrics, step=trainer.global_step)
        self._currency_logged = True
