"""The Software Carbon Intensity (ISO/IEC 21031:2024): ``SCI = (E x I + M) per R``, from measured figures.

E is the energy (metered, times the PUE), I the grid's carbon intensity, M the hardware's embodied carbon charged
to the time used (the footprint data's per-GPU-hour and per-host-hour figures), and R the functional unit. SCI for
AI names its units: per token or inference for those who serve a model, per FLOP or per training run for those who
train one. Here:

* ``run``: everything metered, per training run (a sweep's trials, failed and stopped ones included, each a run);
* ``flop``: everything metered, per FLOP counted;
* ``sample`` and ``token``: the serving stage (predict; test or validate stand in) per sample or token it processed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lightning_greenai.grid import Grid, footprint
from lightning_greenai.reporting.standards.facts import NOT_MEASURED, Project, TrainingRun
from lightning_greenai.units import format_number, j_to_kwh

__all__ = ["FUNCTIONAL_UNITS", "SCI", "check_functional_unit", "render_sci", "sci"]

FUNCTIONAL_UNITS = ("token", "sample", "run", "flop")
_SERVING = ("predict", "test", "validate")


def check_functional_unit(unit: str) -> str:
    """Return ``unit`` if SCI knows it.

    Raises:
        ValueError: naming the value and the allowed ones.
    """
    if unit not in FUNCTIONAL_UNITS:
        raise ValueError(f"Unknown SCI functional unit {unit!r}. Allowed: {', '.join(FUNCTIONAL_UNITS)}.")
    return unit


@dataclass(frozen=True)
class SCI:
    """One SCI figure and its terms (``None`` where nothing measured a term).

    Args:
        unit: The functional unit (one of :data:`FUNCTIONAL_UNITS`).
        boundary: What the figure covers, in words.
        energy_kwh: E, kWh drawn from the grid (PUE included).
        energy_kwh_bounds: E's interval, kWh.
        intensity_g_per_kwh: I, gCO2e/kWh.
        embodied_g: M, gCO2e.
        functional_units: R, how many functional units the boundary holds.
        why_not: Why a term is not measured, when one is not.
    """

    unit: str
    boundary: str
    energy_kwh: float | None
    energy_kwh_bounds: tuple[float, float] | None
    intensity_g_per_kwh: float
    embodied_g: float | None
    functional_units: float | None
    why_not: str = ""

    def _per_unit(self, energy_kwh: float | None) -> float | None:
        if energy_kwh is None or self.embodied_g is None or not self.functional_units:
            return None
        return (energy_kwh * self.intensity_g_per_kwh + self.embodied_g) / self.functional_units

    @property
    def value_g(self) -> float | None:
        """SCI in gCO2e per functional unit."""
        return self._per_unit(self.energy_kwh)

    @property
    def bounds_g(self) -> tuple[float, float] | None:
        """SCI at the low and the high end of E's interval."""
        if self.energy_kwh_bounds is None:
            return None
        low, high = (self._per_unit(e) for e in self.energy_kwh_bounds)
        return None if low is None or high is None else (low, high)


def _embodied_g(project: Project, run: TrainingRun) -> float:
    """The embodied carbon charged to ``run``, gCO2e: its GPU-hours and its share of its hosts (one per node)."""
    nodes = (run.tag or {}).get("nodes_energy_kwh")
    hosts = len(nodes) if isinstance(nodes, Mapping) and nodes else 1
    return sum(project.grid.embodied_co2e_g(run.spend, hosts).values())


def _whole(project: Project, unit: str) -> SCI:
    """``run`` or ``flop``: everything metered."""
    grid, total = project.grid, project.total
    kwh = grid.facility_energy_kwh(total)
    bounds = total.total_energy_bounds_j
    embodied = sum(_embodied_g(project, r) for r in project.runs)
    what = "the run, every stage" if project.kind == "run" else f"all {len(project.runs)} trials of the sweep"
    why = ""
    if unit == "run":
        count: float | None = float(len(project.runs))
    else:
        flops = [r.tag.get("flops_by_phase") if r.tag else None for r in project.runs]
        if project.kind == "run" and isinstance(flops[0], Mapping):
            count = sum(float(v or 0.0) for k, v in flops[0].items() if not k.endswith("recompute")) or None
            what += " (FLOPs of every phase: training and evaluation)"
        else:
            count = total.flops or None
            what += " (FLOPs as the ledger books them: training)" if project.kind == "sweep" else ""
        why = "" if count else "no FLOPs were counted (add a FlopMonitor)"
    return SCI(
        unit=unit,
        boundary=what,
        energy_kwh=kwh,
        energy_kwh_bounds=None if bounds is None else (j_to_kwh(bounds[0]) * grid.pue, j_to_kwh(bounds[1]) * grid.pue),
        intensity_g_per_kwh=grid.intensity_for(total),
        embodied_g=embodied,
        functional_units=count,
        why_not=why,
    )


def _serving_stage(run: TrainingRun) -> tuple[str, Mapping[str, Any]] | None:
    predictions = run.predictions
    return next(((s, predictions[s]) for s in _SERVING if s in predictions), None)


def _serving(project: Project, unit: str) -> SCI:
    """``sample`` or ``token``: the serving stage of the selected model's run."""
    grid = project.grid
    run = project.selected
    found = None if run is None else _serving_stage(run)
    if run is None or found is None:
        where = "no trial was scored" if run is None else f"no predict, test or validate stage of {run.label} ran"
        return SCI(unit, f"the serving stage ({where})", None, None, grid.intensity_g_per_kwh, None, None, where)
    stage, figures = found
    spend = run.spend
    stage_j = spend.stage_energy_j.get(stage)
    total_j = spend.total_energy_j or 0.0
    share = stage_j / total_j if stage_j and total_j else 0.0
    seconds = run.stage_seconds.get(stage)
    time_share = seconds / spend.duration_s if seconds is not None and spend.duration_s > 0 else share
    embodied = _embodied_g(project, run) * time_share
    bounds = spend.total_energy_bounds_j
    count = figures.get("samples" if unit == "sample" else "tokens")
    why = "" if count else f"no {unit}s were counted in {stage}" + (" (give tokens_key)" if unit == "token" else "")
    kwh = (grid.facility_energy_kwh(spend) or 0.0) * share if share else None
    return SCI(
        unit=unit,
        boundary=f"the {stage} stage of {run.label} (the serving stage: predict, else test, else validate)",
        energy_kwh=kwh,
        energy_kwh_bounds=None
        if bounds is None or kwh is None
        else (j_to_kwh(bounds[0]) * grid.pue * share, j_to_kwh(bounds[1]) * grid.pue * share),
        intensity_g_per_kwh=grid.intensity_for(spend),
        embodied_g=embodied,
        functional_units=float(count) if count else None,
        why_not=why,
    )


def sci(project: Project, unit: str) -> SCI:
    """The SCI of ``project`` per ``unit`` (one of :data:`FUNCTIONAL_UNITS`).

    Raises:
        ValueError: an unknown unit, naming the allowed ones.
    """
    check_functional_unit(unit)
    return _whole(project, unit) if unit in ("run", "flop") else _serving(project, unit)


def _embodied_source(grid: Grid) -> str:
    """Where the embodied figures come from (the footprint source without its water part)."""
    source = grid.footprint_source
    return footprint.EMBODIED_SOURCE if source.startswith(footprint.EMBODIED_SOURCE) else source


def _g(value: float) -> str:
    return f"{format_number(value)} gCO2e"


def render_sci(project: Project, unit: str) -> str:
    """SCI with E, I, M and R named, and its interval where the energy has one."""
    figure = sci(project, unit)
    grid = project.grid
    intensity, source = grid.intensity_text(project.total, unit="gCO2e/kWh")
    energy = NOT_MEASURED if figure.energy_kwh is None else f"{format_number(figure.energy_kwh)} kWh"
    if figure.energy_kwh_bounds is not None and figure.energy_kwh is not None:
        low, high = (format_number(b) for b in figure.energy_kwh_bounds)
        energy += f" (interval {low} to {high} kWh)"
    count = figure.functional_units
    amount = f"{count:,.0f}" if count and count.is_integer() and count < 1e15 else format_number(count or 0.0)
    r_text = NOT_MEASURED + f" ({figure.why_not})" if not count else f"{amount} {unit}(s)"
    value = figure.value_g
    if value is None:
        result = f"{NOT_MEASURED} ({figure.why_not or 'a term is not measured'})"
    else:
        result = f"{_g(value)} per {unit}"
        if figure.bounds_g is not None:
            result += f" (interval {_g(figure.bounds_g[0])} to {_g(figure.bounds_g[1])})"
    embodied = NOT_MEASURED if figure.embodied_g is None else _g(figure.embodied_g)
    return "\n".join(
        [
            "Software Carbon Intensity (SCI, ISO/IEC 21031:2024): SCI = (E x I + M) per R, filled in by "
            "lightning-greenai",
            f"Boundary: {figure.boundary}.",
            f"E (energy, metered x PUE {grid.pue:g}): {energy}.",
            f"I (carbon intensity, location-based): {format_number(figure.intensity_g_per_kwh)} gCO2e/kWh "
            f"({source}{'; ' + intensity if intensity.startswith('hourly') else ''}).",
            f"M (embodied carbon of the hardware, for the time used): {embodied} ({_embodied_source(grid)}).",
            f"R (functional unit, per {unit}): {r_text}.",
            f"SCI: {result}.",
        ]
    )
