"""One reading of a run or a sweep for the standards' reports: its training runs, split into lifecycle activities."""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_greenai.grid import Grid
from lightning_greenai.io import parse_json
from lightning_greenai.reporting.summary import RunSummary, SweepSummary
from lightning_greenai.spend import Bounds, Spend
from lightning_greenai.trial.record import STATE_DIR

__all__ = ["NOT_MEASURED", "TESTING", "Activity", "Project", "TrainingRun", "project", "trial_tag"]

NOT_MEASURED = "not measured"
#: The activity of the test stage: a model's outputs evaluated (CycloneDX calls it ``validation``).
TESTING = "testing"
#: The meter's stages in each activity; validation loops belong to training (they choose the model).
_STAGES = {"training": ("train", "validate"), TESTING: ("test",), "inference": ("predict",)}
#: The price tag's entry point of each stage, for the stage's own duration.
_ENTRY_POINT = {"train": "fit", "validate": "validate", "test": "test", "predict": "predict"}
#: The FLOPs counters of training (what the guidelines call training compute): no evaluation, no recomputation.
_TRAINING_PHASES = ("train/forward", "train/backward", "train/optimizer")


def _count(value: Any) -> float:
    """A counter's value, 0 where the record is damaged."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    return float(value) if ok else 0.0


@dataclass(frozen=True)
class Activity:
    """A part of a training run's lifecycle and what it measured.

    Args:
        name: ``training`` (``fine-tuning`` when the user says so), ``testing`` or ``inference``.
        stages: The meter's stages it holds (empty: the spend had no split by stage, all of it is training).
        energy_j: Metered (IT) energy, joules.
        bounds_j: The interval the energy lies in, joules (``None``: exact).
        facility_kwh: Energy drawn from the grid, PUE included, kWh.
        co2e_g: The electricity's CO2e, gCO2e (at the run's intensity, PUE included).
    """

    name: str
    stages: tuple[str, ...]
    energy_j: float
    bounds_j: Bounds | None
    facility_kwh: float
    co2e_g: float


@dataclass(frozen=True)
class TrainingRun:
    """One training run: a run's price tag, or one trial of a sweep (its ledger entry, and its price tag if found).

    Args:
        label: ``"the run"`` or ``"trial 3"``.
        job: The trial's job number (``None`` for a run).
        status: ``completed``, ``failed``, ``budget_stopped`` ...
        selected: Whether this run trained the model reported (a run's only one, a sweep's best trial).
        spend: What it spent, every stage.
        tag: Its price tag, ``None`` where none was found (a trial's run folder elsewhere).
        activities: Its activities that measured energy.
    """

    label: str
    job: int | None
    status: str
    selected: bool
    spend: Spend
    tag: Mapping[str, Any] | None
    activities: tuple[Activity, ...]

    def _number(self, key: str) -> float | None:
        """A positive number from its price tag; ``None`` where absent or damaged."""
        value = _count((self.tag or {}).get(key))
        return value or None

    @property
    def parameters(self) -> int | None:
        """The model's parameter count from its price tag."""
        parameters = (self.tag or {}).get("parameters")
        total = parameters.get("total") if isinstance(parameters, Mapping) else None
        return total if isinstance(total, int) and total > 0 else None

    @property
    def peak_flops_per_s(self) -> float | None:
        """Peak dense FLOP/s of one accelerator, as its FlopMonitor knew it (``None``: unknown, e.g. a CPU)."""
        return self._number("peak_flops_per_s")

    @property
    def training_flops(self) -> float | None:
        """Counted training FLOPs (forward, backward, optimizer estimate); ``None`` when nothing counted them."""
        phases = (self.tag or {}).get("flops_by_phase")
        if isinstance(phases, Mapping):
            counted = sum(_count(phases.get(k)) for k in _TRAINING_PHASES)
            return counted or None
        return self.spend.flops or None

    @property
    def stage_seconds(self) -> dict[str, float]:
        """Each entry point's own duration (``fit``, ``test`` ...), from the running totals its price tag keeps."""
        stages = (self.tag or {}).get("stages")
        out: dict[str, float] = {}
        before = 0.0
        for name, figures in (stages or {}).items() if isinstance(stages, Mapping) else ():
            duration = figures.get("duration_s") if isinstance(figures, Mapping) else None
            if isinstance(duration, int | float) and math.isfinite(duration):
                out[str(name)] = max(float(duration) - before, 0.0)
                before = float(duration)
        return out

    @property
    def training_s(self) -> float:
        """Training wall time: the fit's own, or the whole spend's where the price tag does not split it."""
        return self.stage_seconds.get("fit", self.spend.duration_s)

    @property
    def training_gpu_s(self) -> float:
        """Accelerator-seconds of training: the run's GPU-seconds, the fit's share of them where it is known."""
        spend = self.spend
        if spend.duration_s <= 0 or "fit" not in self.stage_seconds:
            return spend.gpu_s
        return spend.gpu_s * min(self.training_s / spend.duration_s, 1.0)

    @property
    def predictions(self) -> dict[str, Mapping[str, Any]]:
        """The price of a prediction by evaluation stage, from its price tag (empty when none was measured)."""
        found = (self.tag or {}).get("predictions")
        if not isinstance(found, Mapping):
            return {}
        # a trial's price tag is read as it is: a damaged figure is dropped, as if nothing had measured it
        return {
            str(stage): {k: v for k, v in figures.items() if _count(v) or v == 0}
            for stage, figures in found.items()
            if isinstance(figures, Mapping)
        }

    def activity(self, name: str) -> Activity | None:
        """Its activity named ``name``, if it measured one."""
        return next((a for a in self.activities if a.name == name), None)


@dataclass(frozen=True)
class Project:
    """What a run or a sweep measured, as the standards' reports read it.

    Args:
        kind: ``"run"`` or ``"sweep"``.
        path: The folder (or price tag) reported on.
        grid: Where the electricity came from.
        runs: Every training run: a run's one, or each trial of a sweep in launch order.
        training_name: ``training``, or ``fine-tuning`` when the user said the training was that.
        created: When the measured figures were written (the price tag's or the ledger's time), UTC.
        notes: What the reader should know (damaged records, a sweep still running ...).
        hardware: The machine record (price tag or ledger header).
        sensors: Which sensors were used and why (the price tag's line).
        wall_s: A sweep's wall time, every session's (``None`` for a run, or unknown).
    """

    kind: str
    path: Path
    grid: Grid
    runs: tuple[TrainingRun, ...]
    training_name: str
    created: datetime.datetime
    notes: tuple[str, ...] = ()
    hardware: Mapping[str, Any] | None = None
    sensors: str = ""
    wall_s: float | None = None

    @property
    def selected(self) -> TrainingRun | None:
        """The run that trained the model reported: a run's only one, a sweep's best trial (``None``: none scored)."""
        return next((r for r in self.runs if r.selected), None)

    @property
    def total(self) -> Spend:
        """Every run's spend added up: the whole project."""
        return sum((r.spend for r in self.runs), Spend())

    def activities(self, name: str) -> list[tuple[TrainingRun, Activity]]:
        """Every run's activity named ``name``, with its run."""
        return [(r, a) for r in self.runs for a in r.activities if a.name == name]


def _activities(spend: Spend, grid: Grid, training_name: str) -> tuple[Activity, ...]:
    """Split ``spend`` by the meter's stages into activities; without a split, all of it is training."""
    total_j = spend.total_energy_j
    if total_j is None:
        return ()
    facility_kwh = grid.facility_energy_kwh(spend) or 0.0
    co2e_g = grid.co2e_g(spend) or 0.0
    bounds = spend.total_energy_bounds_j
    staged = sum(spend.stage_energy_j.values())
    groups = {training_name: _STAGES["training"], TESTING: _STAGES[TESTING], "inference": _STAGES["inference"]}
    if staged <= 0:
        groups = {training_name: ()}
    out = []
    for name, stages in groups.items():
        share = 1.0 if not stages else sum(spend.stage_energy_j.get(s, 0.0) for s in stages) / staged
        if share <= 0:
            continue
        present = tuple(s for s in stages if spend.stage_energy_j.get(s, 0.0) > 0)
        out.append(
            Activity(
                name=name,
                stages=present,
                energy_j=total_j * share,
                bounds_j=None if bounds is None or bounds[0] == bounds[1] else (bounds[0] * share, bounds[1] * share),
                facility_kwh=facility_kwh * share,
                co2e_g=co2e_g * share,
            )
        )
    return tuple(out)


def trial_tag(sweep: Path, job: int) -> dict[str, Any] | None:
    """The newest price tag of trial ``job``, if its run folder is ``<sweep dir>/<job>`` (Hydra's default subdir)."""
    found = []
    for path in sorted((sweep / str(job)).glob("**/price_tag.json")):
        try:
            tag = parse_json(path.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(tag, dict):
            found.append((path.stat().st_mtime, str(path), tag))
    return max(found, key=lambda t: (t[0], t[1]))[2] if found else None


def _written_at(path: Path) -> datetime.datetime:
    """When ``path`` was last written, UTC, to the second."""
    try:
        stamp = path.stat().st_mtime
    except OSError:
        stamp = 0.0
    return datetime.datetime.fromtimestamp(int(stamp), tz=datetime.timezone.utc)


def _run_project(summary: RunSummary, training_name: str) -> Project:
    tag = summary.tag
    spend = summary.spend
    run = TrainingRun("the run", None, "completed", True, spend, tag, _activities(spend, summary.grid, training_name))
    hardware = tag.get("hardware")
    return Project(
        kind="run",
        path=summary.path,
        grid=summary.grid,
        runs=(run,),
        training_name=training_name,
        created=_written_at(summary.path),
        notes=tuple(summary.notes),
        hardware=hardware if isinstance(hardware, Mapping) else None,
        sensors=str(tag.get("sensors") or ""),
    )


def _best_job(summary: SweepSummary) -> int | None:
    scores = summary.scores()
    if not scores:
        return None
    best = max(scores) if summary.direction == "max" else min(scores)
    return next((t.job_num for t in summary.ranked_trials() if t.objective == best), None)


def _sweep_project(summary: SweepSummary, training_name: str) -> Project:
    best = _best_job(summary)
    grid = summary.grid
    runs = []
    for trial in summary.trials:
        tag = trial_tag(summary.path, trial.job_num)
        runs.append(
            TrainingRun(
                f"trial {trial.job_num}",
                trial.job_num,
                str(trial.status),
                trial.job_num == best,
                trial.spend,
                tag,
                _activities(trial.spend, grid, training_name),
            )
        )
    selected_tag = next((r.tag for r in runs if r.selected and r.tag is not None), None) or {}
    hardware = summary.header.get("hardware")
    return Project(
        kind="sweep",
        path=summary.path,
        grid=grid,
        runs=tuple(runs),
        training_name=training_name,
        created=_written_at(summary.path / STATE_DIR / "ledger.jsonl"),
        notes=tuple(summary.notes),
        hardware=hardware if isinstance(hardware, Mapping) else None,
        sensors=str(selected_tag.get("sensors") or ""),
        wall_s=summary.wall_s,
    )


def project(summary: RunSummary | SweepSummary, training_type: str | None = None) -> Project:
    """Read ``summary`` for the standards' reports.

    ``training_type``: what the training was (``--training-type``); ``fine-tuning`` names the training activity so.
    """
    said = (training_type or "").strip().lower().replace("_", "-")
    name = "fine-tuning" if said in ("fine-tuning", "finetuning") else "training"
    if isinstance(summary, RunSummary):
        return _run_project(summary, name)
    return _sweep_project(summary, name)
