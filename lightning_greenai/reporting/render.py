"""Render a run's or a sweep's summary as a terminal table, JSON and Markdown a paper can paste (plots: ``plots``)."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from lightning_greenai.hardware import hardware_line
from lightning_greenai.reporting.early_stop import EarlyStopping
from lightning_greenai.reporting.pareto import AXES as PARETO_AXES
from lightning_greenai.reporting.pareto import cheapest_within, pareto_front, trial_points
from lightning_greenai.reporting.price_tag import PriceTag, interval_text
from lightning_greenai.reporting.slurm import slurm_energy
from lightning_greenai.reporting.summary import RunSummary, SweepSummary
from lightning_greenai.stats.extrapolate import MIN_SCORES, unfit_reason
from lightning_greenai.units import (
    S_PER_HOUR,
    display_unit,
    format_duration,
    format_energy,
    format_flops,
    format_gpu_time,
    format_mass,
    format_money,
    format_number,
    format_quantity,
    format_water,
    kg_to_g,
    kwh_to_j,
)

__all__ = ["axis_unit", "early_stop_lines", "to_compact_text", "to_json", "to_markdown", "to_text"]


def _count(n: int | float, noun: str) -> str:
    """``1 trial``, ``2 trials``."""
    return f"{int(n)} {noun}{'' if int(n) == 1 else 's'}"


def _tag(summary: RunSummary | SweepSummary) -> PriceTag:
    if isinstance(summary, SweepSummary):
        return PriceTag(summary.spend, summary.grid, title="sweep", wall_s=summary.wall_s)
    tag = summary.tag
    return PriceTag(
        summary.spend,
        summary.grid,
        title=str(tag.get("title", "run")),
        flops_by_phase=tag.get("flops_by_phase"),
        samples=tag.get("predictions"),  # its counts: the figures are derived again, in one place
        notes=tuple(tag.get("notes", ())),
    )


def serving_lines(tag: PriceTag, volumes: tuple[int, ...] = (1_000, 1_000_000, 1_000_000_000)) -> list[str]:
    """Training against serving: what ``volumes`` predictions cost beside the training steps, and the break-even."""
    even = tag.break_even
    if even is None:
        return []
    figures = tag.predictions[even["stage"]]
    star = " *" if tag.spend.is_estimate else ""
    stand_in = "" if even["stage"] == "predict" else f", {even['stage']} standing in for serving"
    lines = [f"  training against serving (batch {figures['batch_size']}{stand_in}):"]
    training_flops = f", {format_flops(even['training_flops'])}" if even["training_flops"] else ""
    lines.append(f"    {'training steps':<26}{format_energy(even['training_energy_j'])}{star}{training_flops}")
    for n in volumes:
        energy_j = n * even["j_per_sample"]
        co2e = figures["co2e_g_per_sample"]
        flops = figures["flops_per_sample"]
        extra = "".join(
            [
                "" if co2e is None else f", {format_mass(n * co2e)}",
                "" if flops is None else f", {format_flops(n * flops)}",
            ]
        )
        lines.append(f"    {f'{n:,} predictions':<26}{format_energy(energy_j)}{star}{extra}")
    by_flops = even["predictions_by_flops"]
    lines.append(
        f"    {'break-even':<26}{even['predictions_by_energy']:,.0f} predictions by energy"
        + ("" if by_flops is None else f", {by_flops:,.0f} by FLOPs")
    )
    return lines


def to_text(summary: RunSummary | SweepSummary) -> str:
    """The price tag table (a run's: with training against serving), and for a sweep its trials and best score."""
    tag = _tag(summary)
    lines = [tag.to_text(), *serving_lines(tag)]
    if isinstance(summary, SweepSummary):
        facts = _sweep_facts(summary)
        lines.append(f"  sweep: {summary.strategy} search{_cost_aware_label(summary)}, {facts['trials']}")
        lines.append(f"  stopped: {facts['stopped']}")
        lines.append(f"  budget: {facts['budget']}")
        evp = summary.evp()
        if evp and summary.iid:
            last = evp[-1]
            lines.append(
                f"  expected best of {_count(last['n'], 'trial')}: {last['expected']:.4g} ± {last['sd']:.2g} "
                f"(Dodge et al.), {last['unbiased']:.4g} (Tang et al.)"
            )
            lines.append(f"  {band_line(summary, last)}")
            lines.append(f"  {extrapolation_line(summary)}")
            marginal = summary.marginal_value()
            if marginal:
                lines.append(f"  {marginal_line(summary, marginal)}")
        elif summary.no_evp_reason:
            lines.append(f"  no EVP curve: {summary.no_evp_reason}; the budget curve (observed best so far) holds")
        stopping = summary.early_stopping()
        if stopping is not None:
            lines.extend(f"  {line}" for line in early_stop_lines(stopping))
        lines.extend(pareto_lines(summary))
        slurm = slurm_energy(summary.trials)
        if slurm is not None:
            lines.extend(f"  {line}" for line in slurm.lines())
    lines.extend(f"  note: {n}" for n in summary.notes)
    return "\n".join(lines)


def to_compact_text(summary: SweepSummary, where: str | None = None) -> str:
    """The price tag a sweep prints by default: at most 10 lines (:meth:`PriceTag.to_compact_text` with its trials).

    Energy with its interval, CO2e and cost, wall time (and the trials' time), FLOPs, the trials and the best score,
    why it stopped and the budget, SLURM's energy beside ours when the trials ran as SLURM jobs, the estimate flag,
    and ``where`` the full tag is; :func:`to_text` is the full one.
    """
    tag = dataclasses.replace(_tag(summary), notes=tuple(summary.notes))
    facts = _sweep_facts(summary)
    rows = {"sweep": f"{summary.strategy} search{_cost_aware_label(summary)}, {facts['trials']}"}
    stopping = summary.early_stopping()
    if stopping is not None:  # what stopping early bought, beside the trials it stopped
        rows["pruned"] = _pruned_text(stopping, compact=True)
    rows["stopped"] = f"{facts['stopped']}; budget {facts['budget']}"
    slurm = slurm_energy(summary.trials)
    if slurm is not None:  # the one independent check of the energy figure: kept in the short tag
        rows["SLURM"] = slurm.lines()[0].removeprefix("SLURM: ")
    return tag.to_compact_text(where=where, rows=rows)


def _run_to_end_text(stopping: EarlyStopping) -> str:
    """``≈36.0 J, 1.80x the 20.0 J spent``: what the same trials run to the end would have needed."""
    ratio = stopping.saving_ratio
    spent = format_energy(stopping.energy_j)
    times = "" if ratio is None else f", {format_number(ratio)}x the {spent} spent"
    return f"≈{format_energy(stopping.full_energy_j)}{times}"


def _pruned_text(stopping: EarlyStopping, *, compact: bool = False) -> str:
    """``2 of 4 trials at rungs, 2.00 J of the sweep's 20.0 J``; compact (the tag says the total): with the estimate."""
    energy = format_energy(stopping.pruned_energy_j)
    pruned = f"{stopping.pruned} of {_count(stopping.trials, 'trial')} at rungs, {energy}"
    if not compact:
        return f"{pruned} of the sweep's {format_energy(stopping.energy_j)}"
    if not stopping.estimated:  # a ratio of 1.00x would read as 'stopping early saved nothing'
        return f"{pruned}; run to the end not estimated (no max_resource)"
    ratio = stopping.saving_ratio
    times = "" if ratio is None else f", {format_number(ratio)}x the spend"
    return f"{pruned}; run to the end ≈{format_energy(stopping.full_energy_j)}{times} (estimate)"


def early_stop_lines(stopping: EarlyStopping) -> list[str]:
    """The rung table in words: the trials reaching each rung and pruned there, and what stopping early saved."""
    lines = [f"early stopping ({stopping.strategy}): pruned {_pruned_text(stopping)}"]
    width = max((len(row.label(stopping.resource)) for row in stopping.rows), default=0) + 2
    for row in stopping.rows:
        energy = f" ({format_energy(row.pruned_energy_j)})" if row.pruned else ""
        lines.append(f"  {row.label(stopping.resource):<{width}}reached by {row.reached}, pruned {row.pruned}{energy}")
    saved = stopping.full_energy_j - stopping.energy_j
    if not stopping.estimated:
        lines.append(f"the same trials run to the end: {stopping.estimate_method}")
    else:
        lines.append(
            f"the same trials run to the end: {_run_to_end_text(stopping)} ({format_energy(saved)} saved); "
            f"{stopping.estimate_method}"
        )
    lines.extend(f"note: {note}" for note in stopping.notes)
    return lines


def _sweep_facts(summary: SweepSummary) -> dict[str, str]:
    """The trials by status with the best score, why the sweep stopped, and its budget, as the price tags say them."""
    by: dict[str, int] = {}
    for t in summary.trials:
        by[str(t.status)] = by.get(str(t.status), 0) + 1
    scores = summary.scores()
    best = f"{(max if summary.direction == 'max' else min)(scores) + 0.0:.4g}" if scores else "none"  # not -0
    budget = summary.header.get("budget") or {}
    currency = budget.get("currency")
    limits = ", ".join(format_quantity(q, v, currency) for q, v in budget.items() if q != "currency")
    return {
        "trials": f"{_count(len(summary.trials), 'trial')} ({', '.join(f'{k} {v}' for k, v in sorted(by.items()))}); "
        f"best {best}",
        "stopped": summary.stop_reason or "not yet (still running or interrupted)",
        "budget": limits or "unlimited",
    }


def _cost_aware_label(summary: SweepSummary) -> str:
    axis = summary.header.get("search", {}).get("cost_aware")
    return f" (cost-aware: expected improvement per unit of predicted {axis})" if axis else ""


def marginal_line(summary: SweepSummary, rows: list[dict[str, Any]]) -> str:
    """What the last trial's energy bought, and the most the next trials can (``stop_when.next_trials``), per unit."""
    from lightning_greenai.stats.gain import gain_upper_bound

    next_trials = summary.next_trials
    unit, size = axis_unit("energy_kwh", rows[-1]["spent"])
    end = rows[-1]
    text = (
        f"the last trial's energy bought {end['expected_gain_per_unit'] * size:.3g} score per {unit} "
        f"(expected best of {end['n']} -> {end['n'] + 1} trials)"
    )
    if summary.score_bounds is None:
        return text + "; set score_bounds for a bound on what the next trials can add"
    bound = gain_upper_bound(
        summary.scores(), next_trials=next_trials, bounds=summary.score_bounds, direction=summary.direction
    )
    per_trial = summary.mean_trial_cost()["energy_kwh"]
    return text + f"; the next {next_trials} at most {bound / (next_trials * per_trial) * size:.3g} per {unit} (95 %)"


def extrapolation_line(summary: SweepSummary) -> str:
    """What 2x and 4x the trials run are expected to reach, and the best reachable score, in words."""
    fit = summary.extrapolation()
    big_n = len(summary.scores())
    if fit is None:
        reason = unfit_reason(summary.scores(), summary.direction)
        if reason is not None and big_n < MIN_SCORES:
            return f"extrapolation past the trials run {reason}"
        return f"no extrapolation past the trials run: {reason or 'the scores are too large to compute with'}"
    per_trial_kwh = summary.mean_trial_cost().get("energy_kwh", 0.0)
    level = f"≈{100 * fit.level:g} %"
    parts = []
    for n in (2 * big_n, fit.n[-1]):
        expected, lo, hi = fit.at(n)
        parts.append(
            f"{n} trials (≈{format_quantity('energy_kwh', n * per_trial_kwh)}) {expected:.4g} [{lo:.4g}, {hi:.4g}]"
        )
    bound = "" if summary.score_bounds is None else ", capped by score_bounds"
    return (
        f"extrapolated expected best (quadratic tail of the top {fit.tail_size} scores, Lourie, He & Cho 2025; "
        f"{level} model-based interval): {'; '.join(parts)}; best reachable ≈ {fit.best_reachable:.4g} "
        f"[{fit.best_lo:.4g}, {fit.best_hi:.4g}]{bound}"
    )


def band_line(summary: SweepSummary, row: dict[str, Any]) -> str:
    """The confidence band of one EVP row, in words."""
    level = f"{100 * summary.confidence:g} %"
    method = "Learned-Miller-DeStefano" if summary.method_of_bands == "ld" else "Kolmogorov-Smirnov"

    def edge(value: float) -> str:
        return f"{value:.4g}" if math.isfinite(value) else "unbounded without score_bounds"

    median = f"median best {row['median']:.4g} [{edge(row['median_lo'])}, {edge(row['median_hi'])}]"
    if row.get("expected_lo") is None:
        expected = "expected best: no band without score_bounds (the range the score can take)"
    else:
        expected = f"expected best [{row['expected_lo']:.4g}, {row['expected_hi']:.4g}]"
    return f"{level} simultaneous bands (Lourie et al., {method}): {expected}; {median}"


#: Default closeness to the best score for "the cheapest trial within epsilon of the best", in score units.
EPSILON = 0.01


def pareto_summary(summary: SweepSummary, epsilon: float = EPSILON) -> dict[str, Any]:
    """The Pareto front of score against each trial's own cost, per budget axis, and the cheapest trial near the best.

    "Near": within ``epsilon`` (score units) of the best score.
    """
    out: dict[str, Any] = {}
    for axis in PARETO_AXES:
        points = trial_points(summary, axis)
        if not points or not any(p.cost for p in points):
            continue
        near = cheapest_within(points, epsilon, summary.direction)
        assert near is not None
        out[axis] = {
            "front": [
                {"job": p.job, "score": p.score, "cost": p.cost, "overrides": list(p.overrides)}
                for p in pareto_front(points, summary.direction)
            ],
            "cheapest_within_epsilon": {
                "epsilon": epsilon,
                "job": near["trial"].job,
                "score": near["trial"].score,
                "cost": near["trial"].cost,
                "best_job": near["best"].job,
                "best_score": near["best"].score,
                "best_cost": near["best"].cost,
                "saving": near["saving"],
            },
        }
    return out


def _cost_text(axis: str, value: float, currency: str | None) -> str:
    if axis == "energy_kwh":
        return format_energy(kwh_to_j(value))
    if axis == "co2e_kg":
        return format_mass(kg_to_g(value))
    if axis == "flops":
        return format_flops(value)
    if axis == "money":
        return format_money(value, currency)
    return format_gpu_time(value * S_PER_HOUR)


def pareto_lines(summary: SweepSummary, axis: str = "energy_kwh", epsilon: float = EPSILON) -> list[str]:
    """Accuracy against a trial's own cost in words: the front, and the cheapest trial close to the best."""
    data = pareto_summary(summary, epsilon).get(axis)
    if data is None or len(summary.scores()) < 2:
        return []
    currency = summary.grid.currency
    name = {"energy_kwh": "energy", "co2e_kg": "CO2e", "gpu_hours": "GPU time"}.get(axis, axis)
    front = ", ".join(
        f"#{p['job']} {p['score']:.4g} at {_cost_text(axis, p['cost'], currency)}" for p in data["front"][:6]
    )
    more = f" (+{len(data['front']) - 6} more)" if len(data["front"]) > 6 else ""
    lines = [
        f"  score against each trial's {name}: Pareto front of {_count(len(data['front']), 'trial')}: {front}{more}"
    ]
    near = data["cheapest_within_epsilon"]
    if near["job"] == near["best_job"]:
        lines.append(f"  cheapest within {epsilon:g} of the best: the best trial itself (#{near['job']})")
    elif near["score"] == near["best_score"]:
        lines.append(
            f"  cheapest within {epsilon:g} of the best: #{near['job']}, as good as #{near['best_job']} at "
            f"{_cost_text(axis, near['cost'], currency)} against {_cost_text(axis, near['best_cost'], currency)}"
        )
    else:
        saving = "" if near["saving"] is None else f", {100 * near['saving']:.0f} % less than the best's"
        lines.append(
            f"  cheapest within {epsilon:g} of the best: #{near['job']} {near['score']:.4g} at "
            f"{_cost_text(axis, near['cost'], currency)}{saving} {_cost_text(axis, near['best_cost'], currency)} "
            f"(#{near['best_job']}, {near['best_score']:.4g})"
        )
    return lines


def to_json(summary: RunSummary | SweepSummary) -> str:
    """Everything as JSON."""
    out: dict[str, Any] = {"kind": "sweep" if isinstance(summary, SweepSummary) else "run", "path": str(summary.path)}
    out["price_tag"] = _tag(summary).to_dict() if isinstance(summary, SweepSummary) else summary.tag
    if isinstance(summary, SweepSummary):
        out.update(
            {
                "stop_reason": summary.stop_reason,
                "strategy": summary.strategy,
                "iid": summary.iid,
                "budget": summary.header.get("budget"),
                "trials": [t.to_json() for t in summary.trials],
                "curve": summary.curve(),
                "evp": summary.evp() if summary.iid else None,
                "pareto": pareto_summary(summary),
                "marginal_value": summary.marginal_value(),
                "evp_band": (
                    {
                        "confidence": summary.confidence,
                        "method": summary.method_of_bands,
                        "score_bounds": summary.score_bounds,
                        "estimator": "Lourie, Cho & He 2024 (opda): exact, simultaneous, distribution-free",
                    }
                    if summary.iid and summary.scores()
                    else None
                ),
                "evp_extrapolated": _extrapolation_json(summary),
                "slurm": None if (slurm := slurm_energy(summary.trials)) is None else slurm.to_dict(),
                "evp_note": summary.evp_note,
                "early_stopping": None if (stopping := summary.early_stopping()) is None else stopping.to_dict(),
            }
        )
    out["notes"] = summary.notes
    return json.dumps(out, indent=2, default=str)


def to_markdown(summary: RunSummary | SweepSummary) -> str:
    """A paragraph and a table to paste into a paper's compute statement."""
    spend, grid = summary.spend, summary.grid
    tag = _tag(summary)
    estimated = spend.estimated_domains
    devices = ", ".join(f"{k} ({m.value})" for k, m in sorted(spend.methods.items())) or "none metered"
    what = "The sweep" if isinstance(summary, SweepSummary) else "The run"
    trials = f" of {_count(len(summary.trials), 'trial')}" if isinstance(summary, SweepSummary) else ""
    stages = ", ".join(spend.stage_energy_j)
    trials += f" (stages: {stages})" if stages else ""
    cost = tag.cost
    para = (
        f"{what}{trials} used {format_energy(spend.total_energy_j)} of electricity "
        f"({format_mass(tag.co2e_g)} at {grid.intensity_for(spend):.0f} gCO2e/kWh, PUE {grid.pue:g}), "
        f"{format_flops(spend.flops) if spend.flops else 'FLOPs not measured'} and "
        + (
            f"{format_duration(tag.duration_s)} of metered time"
            if tag.wall_s is None
            else f"{format_duration(tag.duration_s)} of wall time ({format_duration(spend.duration_s)} of trial time)"
        )
        + (f", costing {format_money(cost, grid.currency)}" if cost is not None else "")
        + f". Energy was measured with lightning-greenai: {devices}."
        + (f" Figures marked * include an estimate ({', '.join(estimated)})." if estimated else "")
    )
    star = " *" if spend.is_estimate else ""
    rows = [
        ("FLOPs", format_flops(spend.flops) if spend.flops else "not measured"),
        (
            "Energy",
            format_energy(spend.total_energy_j) + star + interval_text(format_energy, spend.total_energy_bounds_j),
        ),
        ("CO2e", format_mass(tag.co2e_g) + star + interval_text(format_mass, tag.bounds(grid.co2e_g))),
        ("Embodied CO2e (hardware, apart)", format_mass(sum(tag.embodied_co2e_g.values()))),
        (
            "Water",
            "unknown"
            if tag.water_l is None
            else format_water(grid.water_total_l(spend))
            + star
            + interval_text(format_water, tag.bounds(grid.water_total_l)),
        ),
        (
            "Cost",
            "not priced"
            if cost is None
            else f"{format_money(cost, grid.currency)}{star}" + interval_text(format_money, tag.bounds(grid.money)),
        ),
        (
            "Hardware",
            hardware_line(
                summary.header.get("hardware") if isinstance(summary, SweepSummary) else summary.tag.get("hardware")
            ),
        ),
        ("Measured per device", devices),
        ("Duration", format_duration(tag.duration_s)),
        *([] if tag.wall_s is None else [("Trial time (sum)", format_duration(spend.duration_s))]),
        ("GPU time", format_gpu_time(spend.gpu_s)),
        ("Estimated", ", ".join(estimated) or "nothing"),
        ("Carbon intensity", "{} ({})".format(*grid.intensity_text(spend, unit="gCO2e/kWh"))),
    ]
    for stage, p in tag.predictions.items():
        if p["j_per_sample"] is not None or p["flops_per_sample"] is not None:
            figures = [format_energy(p["j_per_sample"]) + star if p["j_per_sample"] is not None else None]
            figures.append(None if p["flops_per_sample"] is None else format_flops(p["flops_per_sample"]))
            shown = ", ".join(f for f in figures if f)
            rows.append((f"Per {stage} sample (batch {p['batch_size']})", shown))
    table = "| quantity | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    stopping = summary.early_stopping() if isinstance(summary, SweepSummary) else None
    return f"{para}\n\n{table}\n" + ("" if stopping is None else f"\n{early_stop_markdown(stopping)}")


def early_stop_markdown(stopping: EarlyStopping) -> str:
    """The rung table a paper can paste, with a sentence on what stopping early saved."""
    para = (
        f"Early stopping ({stopping.strategy}): {stopping.pruned} of {_count(stopping.trials, 'trial')} were pruned at "
        f"rungs; they used {format_energy(stopping.pruned_energy_j)} of the sweep's "
        f"{format_energy(stopping.energy_j)}. "
        + (
            f"Run to the end, the same trials would have needed {_run_to_end_text(stopping)} "
            f"({stopping.estimate_method})."
            if stopping.estimated
            else f"What they would have needed run to the end is {stopping.estimate_method}."
        )
    )
    rows = "\n".join(
        f"| {row.label(stopping.resource)} | {row.reached} | {row.pruned} | {format_energy(row.pruned_energy_j)} |"
        for row in stopping.rows
    )
    head = "| rung | trials reaching it | pruned there | energy of those pruned |\n|---|---|---|---|"
    return f"{para}\n\n{head}\n{rows}\n"


def axis_unit(quantity: str, largest: float, currency: str | None = None) -> tuple[str, float]:
    """``(label, divisor)`` to show a budget quantity's values (in its canonical unit) on one axis or in one table.

    The unit comes from :func:`~lightning_greenai.units.display_unit` for the largest value, as every figure's does.
    """
    if quantity == "energy_kwh":
        name, size = display_unit("energy", kwh_to_j(largest))
        return name, size / kwh_to_j(1.0)  # kWh per displayed unit
    if quantity == "co2e_kg":
        name, size = display_unit("co2e", kg_to_g(largest))
        return f"{name} CO2e", size / kg_to_g(1.0)
    if quantity == "flops":
        return display_unit("flops", largest)
    if quantity == "gpu_hours":
        name, size = display_unit("gpu_time", largest * S_PER_HOUR)
        return name, size / S_PER_HOUR
    return (currency or "currency") if quantity == "money" else quantity, 1.0


def _extrapolation_json(summary: SweepSummary) -> dict[str, Any] | None:
    fit = summary.extrapolation()
    if fit is None:
        return None
    return {
        "rows": summary.extrapolated_rows(),
        "best_reachable": fit.best_reachable,
        "best_reachable_interval": [fit.best_lo, fit.best_hi],
        "tail_size": fit.tail_size,
        "alpha": fit.alpha,
        "level": fit.level,
        "estimator": (
            "quadratic tail (Lourie, He & Cho 2025) fitted by maximum product spacing; interval: parametric "
            "bootstrap, model-based (holds as far as the quadratic tail does)"
        ),
    }
