"""The price tag of a run: energy by device and stage, CO2e, money, time, FLOPs, as text and JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_greenai.grid import Grid
from lightning_greenai.reporting.prediction import break_even, prediction_costs
from lightning_greenai.spend import Spend
from lightning_greenai.units import (
    format_duration,
    format_energy,
    format_flops,
    format_gpu_time,
    format_mass,
    format_money,
    format_water,
    g_to_kg,
    j_to_kwh,
    kwh_to_j,
)

__all__ = ["PriceTag"]

_MARK = "*"


def interval_text(fmt: Callable[..., str], bounds: tuple[float, float] | None) -> str:
    """`` (low to high)`` for a figure with an interval (both in the high end's unit); nothing for a point."""
    if bounds is None:
        return ""
    low, high = fmt(bounds[0], unit_for=bounds[1]), fmt(bounds[1], unit_for=bounds[1])
    return "" if low == high else f" ({low} to {high})"


@dataclass(frozen=True)
class PriceTag:
    """What a run cost, ready to print (:meth:`to_text`) or save (:meth:`to_dict`, :meth:`write_json`).

    Args:
        spend: What the run spent.
        grid: The grid constants that turn energy into CO2e and money.
        projected: The projected spend of the whole run, when a forecast was made.
        sensors: One line on which sensors were used and why.
        title: What was metered (``"fit"``, ``"validate"``, ...).
        flops_by_phase: FLOPs by ``stage/phase`` from a :class:`~lightning_greenai.FlopMonitor`, if one ran.
        extra: More fields for the JSON.
        stage_spend: What the last stage (``title``) spent on its own, when ``spend`` is a running total that also
            holds earlier stages (``test`` after ``fit``).
        notes: What the reader should know about how far to trust the figures (a busy machine, say).
        samples: By evaluation stage, the samples (and tokens) it processed: the price of a prediction (see
            :mod:`lightning_greenai.reporting.prediction`).
        nodes: In a run on several nodes, the node of each device (``"node 1 (host)"``): the energy by node.
        wall_s: The elapsed wall time, when it is not ``spend.duration_s``: a sweep's, whose spend adds up its
            trials' times (trials that run together overlap). It is then the duration, and the sum is
            ``trial_time_sum_s``.
    """

    spend: Spend
    grid: Grid
    projected: Spend | None = None
    sensors: str = ""
    title: str = "run"
    flops_by_phase: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    stage_spend: Spend | None = None
    notes: tuple[str, ...] = ()
    samples: Mapping[str, Mapping[str, Any]] | None = None
    nodes: Mapping[str, str] | None = None
    wall_s: float | None = None

    @property
    def duration_s(self) -> float:
        """How long it took: the wall time when given, else the spend's metered time."""
        return self.spend.duration_s if self.wall_s is None else self.wall_s

    @property
    def node_energy_j(self) -> dict[str, float]:
        """Energy by node, in joules (empty for a run on one node)."""
        out: dict[str, float] = {}
        for name, energy_j in self.spend.energy_j.items():
            if self.nodes and name in self.nodes:
                out[self.nodes[name]] = out.get(self.nodes[name], 0.0) + energy_j
        return dict(sorted(out.items()))

    @property
    def predictions(self) -> dict[str, dict[str, Any]]:
        """Per-sample (and per-token) energy, CO2e and FLOPs of each evaluation stage that ran."""
        if not self.samples:
            return {}
        return prediction_costs(self.samples, self.spend.stage_energy_j, self.flops_by_phase, self.grid)

    @property
    def break_even(self) -> dict[str, Any] | None:
        """After how many predictions serving has cost what training did (``None`` if either is unknown)."""
        return break_even(self.spend, self.predictions)

    @property
    def co2e_g(self) -> float | None:
        """Emissions in gCO2e."""
        return self.grid.co2e_g(self.spend)

    @property
    def cost(self) -> float | None:
        """Cost in :attr:`Grid.currency`."""
        return self.grid.money(self.spend)

    @property
    def embodied_co2e_g(self) -> dict[str, float]:
        """The hardware's embodied carbon (``gpu``, ``host``), gCO2e: apart from the electricity's CO2e."""
        return self.grid.embodied_co2e_g(self.spend, hosts=max(len(self.node_energy_j), 1))

    def bounds(self, figure: Callable[[Spend], float | None]) -> tuple[float, float] | None:
        """``figure`` (energy, CO2e, money, water ...) priced at the low and the high end of every device's energy."""
        low, high = figure(self.spend.bound("low")), figure(self.spend.bound("high"))
        return None if low is None or high is None else (low, high)

    @property
    def water_l(self) -> dict[str, float] | None:
        """Water in litres (``on_site``, ``off_site``); ``None`` when the energy is unknown."""
        return self.grid.water_l(self.spend)

    def to_dict(self) -> dict[str, Any]:
        """Return the price tag as JSON-serialisable data. ``is_estimate`` flags every figure derived from energy."""
        spend, grid = self.spend, self.grid
        co2e_g = self.co2e_g
        out: dict[str, Any] = {
            "title": self.title,
            "energy_kwh": spend.energy_kwh,
            "energy_kwh_bounds": self.bounds(lambda s: s.energy_kwh),
            "co2e_kg_bounds": None if (co2e := self.bounds(grid.co2e_g)) is None else tuple(map(g_to_kg, co2e)),
            "cost_bounds": self.bounds(grid.money) if grid.prices_money else None,
            "water_l_bounds": self.bounds(grid.water_total_l),
            "facility_energy_kwh": grid.facility_energy_kwh(spend),
            "co2e_kg": None if co2e_g is None else g_to_kg(co2e_g),
            "cost": self.cost,
            "cost_by_line": grid.money_parts(spend) if grid.prices_money else None,
            "currency": grid.currency,
            "embodied_co2e_kg": g_to_kg(sum(self.embodied_co2e_g.values())),
            "embodied_co2e_kg_by_part": {k: g_to_kg(v) for k, v in self.embodied_co2e_g.items()},
            "water_l": grid.water_total_l(spend),
            "water_l_by_part": self.water_l,
            "is_estimate": spend.is_estimate,
            "estimated_domains": spend.estimated_domains,
            "unavailable_domains": spend.unavailable_domains,
            "duration_s": self.duration_s,
            **({} if self.wall_s is None else {"trial_time_sum_s": spend.duration_s}),
            "gpu_hours": spend.gpu_hours,
            "flops": spend.flops,
            "power_w": spend.power_w,
            "devices": [
                {
                    "name": name,
                    "method": method.value,
                    "is_estimate": method.is_estimate,
                    "energy_kwh": None if name not in spend.energy_j else j_to_kwh(spend.energy_j[name]),
                    "energy_kwh_bounds": None
                    if name not in spend.energy_j
                    else [j_to_kwh(b) for b in spend.bounds_of(name)],
                }
                for name, method in sorted(spend.methods.items())
            ],
            "stages_energy_kwh": {k: j_to_kwh(v) for k, v in spend.stage_energy_j.items()},
            "nodes_energy_kwh": {k: j_to_kwh(v) for k, v in self.node_energy_j.items()},
            "grid": grid.to_dict(hours=spend.hourly_energy_j),
            "sensors": self.sensors,
            "spend": spend.to_dict(),
        }
        if self.projected is not None:
            projected_co2e_g = grid.co2e_g(self.projected)
            out["projected"] = {
                "energy_kwh": self.projected.energy_kwh,
                "co2e_kg": None if projected_co2e_g is None else g_to_kg(projected_co2e_g),
                "cost": grid.money(self.projected),
                "duration_s": self.projected.duration_s,
            }
        if self.stage_spend is not None:
            stage_co2e_g = grid.co2e_g(self.stage_spend)
            out["this_stage"] = {
                "energy_kwh": self.stage_spend.energy_kwh,
                "co2e_kg": None if stage_co2e_g is None else g_to_kg(stage_co2e_g),
                "cost": grid.money(self.stage_spend),
                "duration_s": self.stage_spend.duration_s,
            }
        if self.notes:
            out["notes"] = list(self.notes)
        predictions = self.predictions
        if predictions:
            out["predictions"] = predictions
            out["break_even"] = self.break_even
        if self.flops_by_phase is not None:
            out["flops_by_phase"] = dict(self.flops_by_phase)
            out["flops_optimizer_is_estimate"] = True
        out.update(self.extra)
        return out

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` to ``path`` atomically (temp file + rename) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))
        os.replace(tmp, path)
        return path

    def to_compact_text(
        self,
        stages: Mapping[str, Mapping[str, Any]] | None = None,
        where: str | None = None,
        rows: Mapping[str, str] | None = None,
    ) -> str:
        """The tag a run or a sweep prints by default: at most 10 lines, the totals and a line per stage or row.

        ``stages`` are the entry points so far (``fit``, ``validate``, ``test``, ``predict``), each as its
        :meth:`to_dict`; ``rows`` more lines by label (a sweep's trials and why it stopped); ``where`` is the full
        tag's file, named with ``greenai report`` in the last line.
        """
        spend, grid = self.spend, self.grid
        est = f" {_MARK}" if spend.is_estimate else ""
        names = ", ".join(stages) if stages else self.title
        lines = [f"lightning-greenai price tag ({names})"]
        energy = format_energy(spend.total_energy_j) + est + interval_text(format_energy, spend.total_energy_bounds_j)
        lines.append(f"  {'energy':<9} {energy}")
        intensity, _ = grid.intensity_text(spend)
        cost = "not priced" if self.cost is None else f"{format_money(self.cost, grid.currency)}{est}"
        place = grid.country or grid.region or "table mean"
        lines.append(f"  {'carbon':<9} {format_mass(self.co2e_g)}{est} ({place}, {intensity}); cost {cost}")
        performed = sum(v for k, v in (self.flops_by_phase or {}).items() if v and not k.endswith("recompute"))
        flops = performed or spend.flops
        compute = format_flops(flops) if flops else "not counted (add a FlopMonitor)"
        trials = "" if self.wall_s is None else f" (trial time {format_duration(spend.duration_s)})"
        lines.append(f"  {'time':<9} {format_duration(self.duration_s)}{trials}; FLOPs {compute}")
        for name, stage in (stages or {}).items():
            lines.append(f"  {name:<9} {_stage_line(stage)}")
        lines.extend(f"  {label:<9} {text}" for label, text in (rows or {}).items())
        flags = []
        if spend.is_estimate:
            flags.append(f"{_MARK} includes an estimate ({', '.join(spend.estimated_domains)}): approximate")
        if spend.unavailable_domains:
            flags.append(f"not metered: {', '.join(spend.unavailable_domains)}")
        if self.notes:
            flags.append(f"{len(self.notes)} note{'s' if len(self.notes) > 1 else ''} in the full tag")
        if flags:
            lines.append("  " + "; ".join(flags))
        if where is not None:
            lines.append(f"  full tag: {where} (or: greenai report {Path(where).parent})")
        return "\n".join(lines)

    def update_line(self, stage: str, stage_tag: Mapping[str, Any], where: str | None = None) -> str:
        """One line for an entry point after the run's first: what it added, and the run's new totals."""
        spend = self.spend
        est = f" {_MARK}" if spend.is_estimate else ""
        total = format_energy(spend.total_energy_j) + est + interval_text(format_energy, spend.total_energy_bounds_j)
        line = f"[greenai] + {stage}: {_stage_line(stage_tag)}; run total {total}, {format_mass(self.co2e_g)}"
        return line if where is None else f"{line} -> {where}"

    def to_text(self) -> str:
        """Return the price tag as a table. Figures that include an estimate carry a ``*``."""
        spend, grid = self.spend, self.grid
        est = f" {_MARK}" if spend.is_estimate else ""
        devices: list[tuple[str, str, str]] = []
        for name, method in sorted(spend.methods.items()):
            mark = f" {_MARK}" if method.is_estimate else ""
            energy = format_energy(spend.energy_j.get(name))
            if name in spend.energy_j:
                energy += interval_text(format_energy, spend.bounds_of(name))
            devices.append((name, method.value + mark, energy))
        width = max([len(d[0]) for d in devices] + [14])
        rule = "-" * (width + 36)
        heading = f"lightning-greenai price tag ({self.title})"
        if self.stage_spend is not None:
            heading = f"lightning-greenai price tag ({self.title}; running total of this run's stages so far)"
        lines = [heading, rule, f"  {'device':<{width}}  {'method':<13}  energy"]
        lines.extend(f"  {n:<{width}}  {m:<13}  {e}" for n, m, e in devices)
        lines.append(rule)

        def row(label: str, value: str) -> None:
            lines.append(f"  {label:<{width + 15}}  {value}")

        self._energy_rows(row, est)
        self._footprint_rows(row, est)
        self._compute_rows(row)
        self._prediction_rows(row, est)
        if self.projected is not None:
            p_cost = grid.money(self.projected)
            cost_text = "" if p_cost is None else f", {format_money(p_cost, grid.currency)}"
            row(
                "projected run",
                f"{format_energy(self.projected.total_energy_j)}, {format_mass(grid.co2e_g(self.projected))}"
                f"{cost_text}{est}",
            )
        lines.extend(self._footer())
        return "\n".join(lines)

    def _energy_rows(self, row: Callable[[str, str], None], est: str) -> None:
        """Energy with its interval; the last stage's part of a running total; with PUE; by stage and node."""
        spend, grid = self.spend, self.grid
        row(
            "energy",
            format_energy(spend.total_energy_j) + est + interval_text(format_energy, spend.total_energy_bounds_j),
        )
        if self.stage_spend is not None:
            stage_name, stage = self.title.split(" ", 1)[0], self.stage_spend
            row(
                f"  of which {stage_name}",
                f"{format_energy(stage.total_energy_j)}{est} in {format_duration(stage.duration_s)}",
            )
        if grid.pue != 1.0:
            facility_kwh = grid.facility_energy_kwh(spend)
            row(f"with PUE {grid.pue:g}", format_energy(None if facility_kwh is None else kwh_to_j(facility_kwh)) + est)
        if spend.stage_energy_j:
            row("by stage", ", ".join(f"{k} {format_energy(v)}" for k, v in spend.stage_energy_j.items()))
        if self.node_energy_j:
            row("by node", ", ".join(f"{k} {format_energy(v)}" for k, v in self.node_energy_j.items()))

    def _footprint_rows(self, row: Callable[[str, str], None], est: str) -> None:
        """CO2e (yearly or hourly intensity), embodied carbon apart, water on and off site, and cost by line."""
        spend, grid = self.spend, self.grid
        where = grid.country or grid.region or "table mean"
        intensity, _ = grid.intensity_text(spend)
        hourly = grid.priced_hourly(spend)
        row(
            f"CO2e ({where}, {'hourly' if hourly else intensity})",
            format_mass(self.co2e_g)
            + est
            + interval_text(format_mass, self.bounds(grid.co2e_g))
            + (f" at a mean {grid.intensity_for(spend):.0f} g/kWh" if hourly else ""),
        )
        embodied = self.embodied_co2e_g
        row(
            "embodied CO2e (apart)",
            f"{format_mass(sum(embodied.values()))} (GPUs {format_mass(embodied['gpu'])}, "
            f"host {format_mass(embodied['host'])})",
        )
        water = self.water_l
        if water is not None:
            total = interval_text(format_water, self.bounds(grid.water_total_l))
            row(
                "water",
                f"{format_water(water['on_site'])} on-site, {format_water(water['off_site'])} off-site{est}{total}",
            )
        cost, parts = self.cost, grid.money_parts(spend)
        by_line = ""
        if len(parts) == 2:  # both lines priced: each apart
            by_line = f" (electricity {format_money(parts['electricity'])}, instance {format_money(parts['instance'])})"
        interval = interval_text(format_money, self.bounds(grid.money))
        row(
            "cost",
            "not priced (set price_per_kwh= and currency=)"
            if cost is None
            else f"{format_money(cost, grid.currency)}{est}{interval}{by_line}",
        )

    def _compute_rows(self, row: Callable[[str, str], None]) -> None:
        """Duration (and a sweep's trial time), GPU time, training FLOPs and FLOPs by phase."""
        spend = self.spend
        row("duration", format_duration(self.duration_s))
        if self.wall_s is not None:
            row("trial time (sum)", format_duration(spend.duration_s))
        if spend.gpu_s:
            row("GPU time", format_gpu_time(spend.gpu_s))
        if spend.flops:
            row("FLOPs (training)", format_flops(spend.flops))
        if self.flops_by_phase:
            phases = self.flops_by_phase
            row(
                "  by phase",
                ", ".join(
                    f"{k} {format_flops(v)}{' (estimate)' if k.endswith('optimizer') else ''}"
                    for k, v in phases.items()
                    if v and not k.endswith("recompute")
                ),
            )
            if phases.get("train/recompute"):
                row("  recompute (hardware)", format_flops(phases["train/recompute"]))

    def _footer(self) -> list[str]:
        """What the figures rest on: the estimate flag, what was not metered, intervals, notes and sources."""
        spend, grid = self.spend, self.grid
        lines = []
        if spend.is_estimate:
            lines.append(
                f"  {_MARK} includes an estimate ({', '.join(spend.estimated_domains)}): a model, a share of a shared "
                "device or a window too short for its counter, not a reading; treat as approximate"
            )
        if spend.unavailable_domains:
            lines.append(f"  not metered (unknown, not zero): {', '.join(spend.unavailable_domains)}")
        lines.append(
            "  (a to b): the interval a figure lies in, from how each device was read (counter period, sampling, "
            "5 % calibration; an estimate within 2x)"
        )
        lines.extend(f"  note: {note}" for note in self.notes)
        lines.append(f"  intensity: {grid.intensity_text(spend)[1]}; price: {grid.price_source}")
        lines.append(f"  embodied and water: {grid.footprint_source}")
        return lines

    def _prediction_rows(self, row: Callable[[str, str], None], est: str) -> None:
        """The price of a prediction, per stage, and the break-even against training."""
        predictions = self.predictions
        for i, (stage, p) in enumerate(predictions.items()):
            per_sample = [f"{format_energy(p['j_per_sample'])}{est}" if p["j_per_sample"] is not None else None]
            if p["flops_per_sample"] is not None:
                per_sample.append(format_flops(p["flops_per_sample"]))
            shown = [x for x in per_sample if x]
            counted = "samples uncounted" if p["samples"] is None else f"{p['samples']:,} samples"
            what = f"{', '.join(shown)} per sample" if shown and p["samples"] else "not metered"
            row("price of a prediction" if i == 0 else "", f"{stage}: {what} ({counted}, batch {p['batch_size']})")
            per_token = []
            if p["j_per_token"] is not None:
                per_token.append(f"{format_energy(p['j_per_token'])}{est}")
            if p["flops_per_token"] is not None:
                per_token.append(format_flops(p["flops_per_token"]))
            if per_token and p["tokens"]:
                row("", f"  {', '.join(per_token)} per token ({p['tokens']:,} tokens)")
        even = self.break_even
        if even is not None:
            row(
                "serving = training after",
                f"{even['predictions_by_energy']:,.0f} predictions (training steps "
                f"{format_energy(even['training_energy_j'])} / {format_energy(even['j_per_sample'])} per "
                f"{even['stage']} sample)",
            )


def _stage_line(stage: Mapping[str, Any]) -> str:
    """One entry point's energy, FLOPs and time, from its :meth:`PriceTag.to_dict`."""
    energy_kwh, flops = stage.get("energy_kwh"), stage.get("flops")
    mark = f" {_MARK}" if stage.get("is_estimate") else ""
    parts = [format_energy(None if energy_kwh is None else kwh_to_j(energy_kwh)) + mark]
    if flops:
        parts.append(format_flops(flops))
    parts.append(format_duration(float(stage.get("duration_s") or 0.0)))
    return ", ".join(parts)
