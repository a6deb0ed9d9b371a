"""Render a run's or a sweep's summary as a terminal table, JSON, Markdown a paper can paste, and PNG plots."""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path
from typing import Any

from lightning_greenai.hardware import hardware_line
from lightning_greenai.reporting.pareto import AXES as PARETO_AXES
from lightning_greenai.reporting.pareto import cheapest_within, pareto_front, trial_points
from lightning_greenai.reporting.price_tag import PriceTag, interval_text
from lightning_greenai.reporting.slurm import slurm_energy
from lightning_greenai.reporting.summary import RunSummary, SweepSummary
from lightning_greenai.spend import Method, Spend
from lightning_greenai.stats.extrapolate import MIN_SCORES, unfit_reason
from lightning_greenai.trial.record import TrialStatus
from lightning_greenai.units import (
    S_PER_HOUR,
    display_unit,
    format_duration,
    format_energy,
    format_flops,
    format_gpu_time,
    format_mass,
    format_quantity,
    format_water,
    kg_to_g,
    kwh_to_j,
)

__all__ = ["axis_unit", "save_figure", "score_band", "to_json", "to_markdown", "to_text", "write_plots"]


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
        by: dict[str, int] = {}
        for t in summary.trials:
            by[str(t.status)] = by.get(str(t.status), 0) + 1
        scores = summary.scores()
        best = (max if summary.direction == "max" else min)(scores) + 0.0 if scores else None  # -0.0 reads as 0.0
        lines.append(
            f"  sweep: {summary.strategy} search{_cost_aware_label(summary)}, {_count(len(summary.trials), 'trial')} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(by.items()))}); best {best}"
        )
        lines.append(f"  stopped: {summary.stop_reason or 'not yet (still running or interrupted)'}")
        budget = summary.header.get("budget") or {}
        currency = budget.get("currency")
        limits = ", ".join(format_quantity(q, v, currency) for q, v in budget.items() if q != "currency")
        lines.append(f"  budget: {limits or 'unlimited'}")
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
        lines.extend(pareto_lines(summary))
        slurm = slurm_energy(summary.trials)
        if slurm is not None:
            lines.extend(f"  {line}" for line in slurm.lines())
    lines.extend(f"  note: {n}" for n in summary.notes)
    return "\n".join(lines)


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
    if axis == "energy_kwh":  # three significant digits: trials often cost nearly the same
        unit, size = display_unit("energy", kwh_to_j(value))
        return f"{kwh_to_j(value) / size:.3g} {unit}"
    if axis == "co2e_kg":
        return format_mass(kg_to_g(value))
    if axis == "flops":
        return format_flops(value)
    if axis == "money":
        return f"{value:.3g} {currency or ''}".strip()
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
                "evp_note": None if summary.iid else "not i.i.d. search: only the observed best so far is valid",
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
        + (f", costing {cost:.3g} {grid.currency}" if cost is not None else "")
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
            else f"{cost:.3g} {grid.currency}{star}"
            + interval_text(lambda v, unit_for=None: f"{v:.3g}", tag.bounds(grid.money)),
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
        ("GPU-hours", f"{spend.gpu_hours:.3g}"),
        ("Estimated", ", ".join(estimated) or "nothing"),
        ("Carbon intensity", "{} ({})".format(*grid.intensity_text(spend, unit="gCO2e/kWh"))),
    ]
    for stage, p in tag.predictions.items():
        if p["j_per_sample"] is not None or p["flops_per_sample"] is not None:
            figures = [format_energy(p["j_per_sample"]) + star if p["j_per_sample"] is not None else None]
            figures.append(None if p["flops_per_sample"] is None else f"{p['flops_per_sample']:.3g} FLOPs")
            shown = ", ".join(f for f in figures if f)
            rows.append((f"Per {stage} sample (batch {p['batch_size']})", shown))
    table = "| quantity | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    return f"{para}\n\n{table}\n"


def write_plots(summary: RunSummary | SweepSummary, out_dir: str | Path, *, within: Path | None = None) -> list[Path]:
    """Write the PNG plots into ``out_dir`` and return their paths (needs matplotlib: pip install matplotlib).

    With ``within``, ``out_dir`` must be inside that folder once symlinks are resolved (a report never writes outside
    the folder it was given); a file is never written through a symlink (each plot replaces the path itself).

    Raises:
        ValueError: ``out_dir`` leads outside ``within``.
    """
    out = Path(out_dir)
    if within is not None:
        root, target = within.resolve(), out.resolve()
        if out.is_symlink() or (target != root and root not in target.parents):
            raise ValueError(
                f"Refusing to write plots to {out}: it leads outside {within} ({target}). Remove the link, or name a "
                "folder with --plots."
            )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = [_plot_devices(plt, summary.spend, out / "energy_by_device.png")]
    if isinstance(summary, SweepSummary):
        if summary.trials:
            paths.append(_plot_budget_curve(plt, summary, out / "budget_curve.png"))
            paths.append(_plot_trial_energy(plt, summary, out / "energy_per_trial.png"))
        if summary.scores():
            paths.append(_plot_evp(plt, summary, out / "evp.png"))
        if len(summary.scores()) >= 2 and trial_points(summary, "energy_kwh"):
            paths.append(_plot_pareto(plt, summary, out / "pareto.png"))
        marginal = summary.marginal_value()
        if marginal:
            paths.append(_plot_marginal(plt, summary, marginal, out / "marginal_value.png"))
    else:
        timeline = summary.tag.get("timeline") or []
        if len(timeline) >= 2:
            paths.append(_plot_power(plt, timeline, out / "power.png"))
    return paths


def save_figure(plt: Any, fig: Any, path: Path) -> Path:
    """Lay out, save as PNG (120 dpi) and close a figure; the file replaces ``path`` (never written through a link)."""
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


_STATUS_COLORS: dict[str, tuple[str, str]] = {
    TrialStatus.COMPLETED: ("#4a7", "completed"),
    TrialStatus.BUDGET_STOPPED: ("#e93", "stopped by the budget"),
    TrialStatus.KILLED: ("#b55", "killed at the budget"),
    TrialStatus.FAILED: ("#c33", "failed"),
    TrialStatus.INTERRUPTED: ("#999", "interrupted"),
    TrialStatus.NOT_STARTED: ("#ddd", "not started"),
}


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


def _plot_devices(plt: Any, spend: Spend, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = sorted(spend.energy_j)
    unit, size = display_unit("energy", max(spend.energy_j.values(), default=0.0))
    values = [spend.energy_j[n] / size for n in names]
    bars = ax.barh(names, values, color=["#c98" if spend.methods.get(n) is Method.ESTIMATE else "#4a7" for n in names])
    for bar, name in zip(bars, names, strict=True):
        if spend.methods.get(name) is Method.ESTIMATE:
            bar.set_hatch("//")
    ax.set_xlabel(f"energy ({unit})")
    ax.set_title("Energy by device (hatched: estimate)")
    return save_figure(plt, fig, path)


def _plot_budget_curve(plt: Any, summary: SweepSummary, path: Path) -> Path:
    curve = summary.curve()
    rows = [r for r in curve if r["best_so_far"] is not None]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    spent_kwh = max((r["energy_kwh"] for r in curve), default=0.0)
    budget = summary.header.get("budget", {}).get("energy_kwh")
    unit, size = axis_unit(
        "energy_kwh", max(spent_kwh, budget or 0.0) if budget and budget < 1.5 * spent_kwh else spent_kwh
    )
    if rows:
        x = [r["energy_kwh"] / size for r in rows]
        ax.step(x, [r["best_so_far"] for r in rows], where="post", color="#27a", label="best so far")
        scores = [r["score"] if r["score"] is not None else float("nan") for r in rows]
        ax.plot(x, scores, "o", color="#aaa", ms=4, label="trial score")
    if budget and budget <= 1.5 * spent_kwh:
        ax.axvline(budget / size, color="#c33", ls="--", label="energy budget")
    elif budget:
        # far beyond what was spent: drawing it would squash every point into a stripe at the left
        ax.annotate(
            f"budget {format_quantity('energy_kwh', budget)} →\n({budget / max(spent_kwh, 1e-30):.0f}x the spend)",
            xy=(1.0, 0.5),
            xycoords="axes fraction",
            ha="right",
            va="center",
            color="#c33",
            fontsize=8,
        )
    ax.set_xlabel(f"cumulative energy ({unit})")
    ax.set_ylabel("best score so far (observed)")
    ax.set_title(f"Budget curve: {summary.strategy} search")
    if ax.get_legend_handles_labels()[0]:  # a sweep with no scored trial has no curve to label
        ax.legend(loc="lower right")
    return save_figure(plt, fig, path)


def _plot_trial_energy(plt: Any, summary: SweepSummary, path: Path) -> Path:
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 3.5))
    jobs = [t.job_num for t in summary.trials]
    energy_j = [t.spend.total_energy_j or 0.0 for t in summary.trials]
    unit, size = display_unit("energy", max(energy_j, default=0.0))
    statuses = [str(t.status) for t in summary.trials]
    ax.bar(jobs, [e / size for e in energy_j], color=[_STATUS_COLORS.get(s, ("#999", s))[0] for s in statuses])
    shown = [s for s in _STATUS_COLORS if s in statuses]
    ax.legend(
        handles=[Patch(color=_STATUS_COLORS[s][0], label=_STATUS_COLORS[s][1]) for s in shown],
        loc="upper left",
        fontsize=8,
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial (launch order)")
    ax.set_ylabel(f"energy ({unit})")
    ax.set_title("Energy per trial")
    return save_figure(plt, fig, path)


def score_band(summary: SweepSummary, rows: list[dict[str, Any]]) -> tuple[str, list[float], list[float], str]:
    """The curve to draw for EVP rows and its confidence band: ``(key, low, high, label)``.

    The expected best with its band when the score's bounds are known; otherwise the median best with its band (the
    expected best has none without bounds).
    """
    level = f"{100 * summary.confidence:g} % band (Lourie et al.)"
    if rows and rows[0].get("expected_lo") is not None:
        return "expected", [r["expected_lo"] for r in rows], [r["expected_hi"] for r in rows], level
    return "median", [r["median_lo"] for r in rows], [r["median_hi"] for r in rows], level + ", median best"


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


def _plot_evp(plt: Any, summary: SweepSummary, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 3.8))
    if len(summary.scores()) < 2:
        ax.text(
            0.5,
            0.5,
            "One scored trial: the expected best of n trials\nneeds at least two (run more trials).",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_title("Expected validation performance")
        ax.set_xticks([])
        ax.set_yticks([])
    elif summary.iid:
        rows = summary.evp()
        n = [r["n"] for r in rows]
        key, lo, hi, label = score_band(summary, rows)
        ax.fill_between(n, lo, hi, color="#27a", alpha=0.2, label=label)
        if key == "median":
            ax.plot(n, [r["median"] for r in rows], color="#27a", ls=":", label="median best")
        ax.plot(n, [r["expected"] for r in rows], color="#27a", label="expected best (Dodge et al.)")
        ax.plot(n, [r["unbiased"] for r in rows], color="#e93", ls="--", label="unbiased (Tang et al.)")
        extra = summary.extrapolated_rows()
        if extra:
            far = [r["n"] for r in extra]
            ax.axvline(far[0], color="#999", ls=":", lw=0.8)  # the trials run: measured left, extrapolated right
            ax.fill_between(far, [r["lo"] for r in extra], [r["hi"] for r in extra], color="#7a2", alpha=0.15)
            ax.plot(
                far,
                [r["expected"] for r in extra],
                color="#7a2",
                ls="--",
                label="extrapolated (quadratic tail, ≈95 % interval)",
            )
        ax.set_title("Expected validation performance", pad=30)
        per_trial_kwh = rows[0]["energy_kwh"]
        unit, size = axis_unit("energy_kwh", rows[-1]["energy_kwh"])
        top = ax.secondary_xaxis(
            "top",
            functions=(lambda x: x * per_trial_kwh / size, lambda x: x * size / max(per_trial_kwh, 1e-30)),
        )
        top.set_xlabel(f"expected energy budget ({unit})")
    else:
        rows = [r for r in summary.curve() if r["best_so_far"] is not None]
        ax.step(
            range(1, len(rows) + 1),
            [r["best_so_far"] for r in rows],
            where="post",
            color="#27a",
            label="observed best so far (not i.i.d.: no expectation)",
        )
        ax.set_title(f"Observed best so far ({summary.strategy} search)")
    if len(summary.scores()) >= 2:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("number of trials n")
        ax.set_ylabel("best validation score")
        ax.legend(loc="lower right", fontsize=8)
    return save_figure(plt, fig, path)


def _plot_pareto(plt: Any, summary: SweepSummary, path: Path, epsilon: float = EPSILON) -> Path:
    """Each trial's score against its own energy, the Pareto front highlighted."""
    points = trial_points(summary, "energy_kwh")
    front = pareto_front(points, summary.direction)
    unit, size = axis_unit("energy_kwh", max(p.cost for p in points))
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.scatter([p.cost / size for p in points], [p.score for p in points], color="#999", s=18, label="trial")
    ax.plot(
        [p.cost / size for p in front],
        [p.score for p in front],
        color="#27a",
        marker="o",
        drawstyle="steps-post",
        label="Pareto front",
    )
    near = cheapest_within(points, epsilon, summary.direction)
    if near is not None and near["trial"].job != near["best"].job:
        trial = near["trial"]
        ax.annotate(
            f"#{trial.job}: within {epsilon:g} of the best",
            (trial.cost / size, trial.score),
            textcoords="offset points",
            xytext=(8, -14),
            fontsize=8,
        )
    ax.set_xlabel(f"trial energy ({unit})")
    ax.set_ylabel("validation score")
    ax.set_title("Score against each trial's energy")
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(plt, fig, path)


def _plot_marginal(plt: Any, summary: SweepSummary, rows: list[dict[str, Any]], path: Path) -> Path:
    """What one more kWh buys against the kWh spent: the plug-in estimate and the stop rule's upper bound."""
    unit, size = axis_unit("energy_kwh", rows[-1]["spent"])
    per = size  # gain per display unit = gain per kWh x kWh per display unit
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(
        [r["spent"] / size for r in rows],
        [r["expected_gain_per_unit"] * per for r in rows],
        color="#27a",
        marker="o",
        ms=3,
        label="expected (EVP rise per trial / trial cost)",
    )
    bounded = [r for r in rows if r["upper_gain_per_unit"] is not None]
    if bounded:
        ax.plot(
            [r["spent"] / size for r in bounded],
            [r["upper_gain_per_unit"] * per for r in bounded],
            color="#e93",
            ls="--",
            label=f"95 % upper bound, next {summary.next_trials} trials (stop_when's)",
        )
    threshold = (summary.header.get("stop_when") or {}).get("gain_per_kwh")
    if threshold:
        ax.axhline(threshold * per, color="#c33", lw=0.8, label=f"stop_when.gain_per_kwh = {threshold:g}")
    if any(r["expected_gain_per_unit"] > 0 for r in rows):
        ax.set_yscale("log")
    ax.set_xlabel(f"energy spent ({unit})")
    ax.set_ylabel(f"score gained per {unit}")
    ax.set_title("What the next unit of energy buys")
    ax.legend(loc="upper right", fontsize=8)
    return save_figure(plt, fig, path)


def _plot_power(plt: Any, timeline: list[list[float]], path: Path) -> Path:
    if timeline and timeline[0][0] > 0:  # the first log's energy accrued from the start: draw that interval too
        timeline = [[0.0, 0.0], *timeline]
    times = [p[0] for p in timeline]
    power = [(b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] else float("nan") for a, b in itertools.pairwise(timeline)]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.step(times[1:], power, where="pre", color="#27a")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("power (W)")
    ax.set_title("Power over time (all metered devices)")
    return save_figure(plt, fig, path)
