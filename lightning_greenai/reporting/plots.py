"""A run's or a sweep's PNG plots: energy by device, the budget curve, energy per trial, EVP, Pareto, marginal value.

Each plot is written atomically next to its name and never through a symlink; matplotlib is needed only here.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from lightning_greenai.reporting.pareto import cheapest_within, pareto_front, trial_points
from lightning_greenai.reporting.render import EPSILON, axis_unit
from lightning_greenai.reporting.summary import RunSummary, SweepSummary
from lightning_greenai.spend import Method, Spend
from lightning_greenai.trial.record import TrialStatus
from lightning_greenai.units import display_unit, format_quantity

__all__ = ["AXIS_NAMES", "budget_axis", "save_figure", "score_band", "write_plots"]


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
            estimated = [name for name, method in summary.spend.methods.items() if method is Method.ESTIMATE]
            paths.append(_plot_power(plt, timeline, estimated, out / "power.png"))
    return paths


def legend_beside(ax: Any, **kwargs: Any) -> None:
    """Put the legend to the right of the axes, where it can hide no point, line or band.

    The figure widens by the legend's width, so the axes keep their size however long the labels are.
    """
    legend = ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0.0, **kwargs)
    fig = ax.figure
    width_in = legend.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi
    fig.set_figwidth(fig.get_figwidth() + width_in + 0.1)


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
    TrialStatus.PRUNED: ("#a8c", "pruned at a rung"),
    TrialStatus.FAILED: ("#c33", "failed"),
    TrialStatus.INTERRUPTED: ("#999", "interrupted"),
    TrialStatus.NOT_STARTED: ("#ddd", "not started"),
}


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


#: What each budget axis is called on a plot.
AXIS_NAMES = {"energy_kwh": "energy", "co2e_kg": "CO2e", "money": "cost", "flops": "FLOPs", "gpu_hours": "GPU time"}


def budget_axis(summary: SweepSummary) -> str:
    """The axis a sweep's plots draw spend on: its budget's (energy first if it has several), else energy.

    A money budget is drawn in money only when the curve has a price; otherwise energy, which is always measured.
    """
    limits = summary.header.get("budget") or {}
    curve = summary.curve()
    for axis in AXIS_NAMES:
        if limits.get(axis) and curve and all(r.get(axis) is not None for r in curve):
            return axis
    return "energy_kwh"


def _plot_budget_curve(plt: Any, summary: SweepSummary, path: Path) -> Path:
    curve = summary.curve()
    axis = budget_axis(summary)
    rows = [r for r in curve if r["best_so_far"] is not None]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    spent = max((r[axis] for r in curve), default=0.0)
    budget = summary.header.get("budget", {}).get(axis)
    unit, size = axis_unit(
        axis, max(spent, budget or 0.0) if budget and budget < 1.5 * spent else spent, summary.grid.currency
    )
    if rows:
        x = [r[axis] / size for r in rows]
        ax.step(x, [r["best_so_far"] for r in rows], where="post", color="#27a", label="best so far")
        scores = [r["score"] if r["score"] is not None else float("nan") for r in rows]
        ax.plot(x, scores, "o", color="#aaa", ms=4, label="trial score")
    if budget and budget <= 1.5 * spent:
        ax.axvline(budget / size, color="#c33", ls="--", label=f"{AXIS_NAMES[axis]} budget")
    elif budget:
        # far beyond what was spent: drawing it would squash every point into a stripe at the left, and a note on
        # the axes could hide a point, so the legend names it
        ax.plot(
            [],
            [],
            color="#c33",
            ls="--",
            label=f"{AXIS_NAMES[axis]} budget {format_quantity(axis, budget, summary.grid.currency)}\n"
            f"(off the axis: {budget / max(spent, 1e-30):.0f}x the spend)",
        )
    ax.set_xlabel(f"cumulative {AXIS_NAMES[axis]} ({unit})")
    ax.set_ylabel("best score so far (observed)")
    ax.set_title(f"Budget curve: {summary.strategy} search")
    if ax.get_legend_handles_labels()[0]:  # a sweep with no scored trial has no curve to label
        legend_beside(ax)
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
    legend_beside(ax, handles=[Patch(color=_STATUS_COLORS[s][0], label=_STATUS_COLORS[s][1]) for s in shown])
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


def _plot_evp(plt: Any, summary: SweepSummary, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 3.8))
    if not summary.iid:  # the curve of what was run, and why there is no expectation
        ran = [(n, r["best_so_far"]) for n, r in enumerate(summary.curve(), 1) if r["best_so_far"] is not None]
        ax.step(
            [n for n, _ in ran],
            [best for _, best in ran],
            where="post",
            color="#27a",
            label="observed best so far (not i.i.d.: no expectation)",
        )
        cause = (summary.no_evp_reason or "").partition(":")[0]
        ax.set_title(f"Observed best so far ({summary.strategy} search)\nno EVP curve: {cause}", fontsize=10)
    elif len(summary.scores()) < 2:
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
    else:
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
        axis = budget_axis(summary)
        axis = axis if rows[0].get(axis) is not None else "energy_kwh"
        per_trial = rows[0][axis]
        unit, size = axis_unit(axis, rows[-1][axis], summary.grid.currency)
        top = ax.secondary_xaxis(
            "top",
            functions=(lambda x: x * per_trial / size, lambda x: x * size / max(per_trial, 1e-30)),
        )
        top.set_xlabel(f"expected {AXIS_NAMES[axis]} budget ({unit})")
    if not summary.iid or len(summary.scores()) >= 2:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("number of trials n")
        ax.set_ylabel("best validation score")
        legend_beside(ax)
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
        trial = near["trial"]  # ringed and named in the legend: a label on the axes could hide a point
        ax.scatter(
            [trial.cost / size],
            [trial.score],
            s=110,
            facecolors="none",
            edgecolors="#c33",
            label=f"#{trial.job}: cheapest within {epsilon:g} of the best",
        )
    ax.set_xlabel(f"trial energy ({unit})")
    ax.set_ylabel("validation score")
    ax.set_title("Score against each trial's energy")
    legend_beside(ax)
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
    ax.set_title(
        f"Marginal value: score one more {unit} of energy buys,\nby what the search has spent so far", fontsize=10
    )
    legend_beside(ax)
    return save_figure(plt, fig, path)


def _plot_power(plt: Any, timeline: list[list[float]], estimated: list[str], path: Path) -> Path:
    if timeline and timeline[0][0] > 0:  # the first log's energy accrued from the start: draw that interval too
        timeline = [[0.0, 0.0], *timeline]
    times = [p[0] for p in timeline]
    power = [(b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] else float("nan") for a, b in itertools.pairwise(timeline)]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.step(times[1:], power, where="pre", color="#27a")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("power (W)")
    if estimated:  # the power of an estimated device is a model's, not a reading: the plot says so
        names = ", ".join(sorted(estimated))
        ax.set_title(f"Power over time, includes estimates ({names}): a model, not a reading", fontsize=9)
    else:
        ax.set_title("Power over time (all metered devices)")
    return save_figure(plt, fig, path)
