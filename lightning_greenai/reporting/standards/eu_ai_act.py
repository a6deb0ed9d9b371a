"""The EU AI Act's documentation of a model's compute and energy (Art. 53(1)(a), Annex XI §1(2)(d-e)), as measured.

The Code of Practice's Model Documentation Form asks training energy in MWh with at least two significant figures and
how it was obtained, training compute in FLOPs (at least two significant figures), training time with hardware-days,
and inference compute. The Commission's guidelines on general-purpose AI models accept compute estimates within
±30 % and give two estimators: 6 x parameters x training tokens (dense transformers) and accelerators x time x peak
FLOP/s x utilisation. Here the FLOPs FlopMonitor counted are the reference, and each estimator is checked against
them. Figures carry 3 significant figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning_greenai.hardware import hardware_line
from lightning_greenai.reporting.standards.facts import NOT_MEASURED, TESTING, Project, TrainingRun
from lightning_greenai.spend import Method, Spend
from lightning_greenai.units import S_PER_DAY, format_duration, format_number, g_to_kg, j_to_mwh

__all__ = ["TOLERANCE", "estimate_check", "render_eu_ai_act"]

#: How far the guidelines let an estimate lie from the compute used: ±30 %.
TOLERANCE = 0.30
_METHODS = {
    Method.COUNTER: "a hardware energy counter (NVML total energy, RAPL energy_uj), read at each stage's start and end",
    Method.SAMPLED: "measured power polled on a thread and integrated over time",
    Method.ESTIMATE: "an estimate: a power model (power limit or TDP x utilisation, DRAM by GB), no reading",
    Method.UNAVAILABLE: "nothing could be read: unknown, not zero",
}
_NO_TOKENS = (
    f"{NOT_MEASURED}: the training tokens (D) were not counted (the monitors count samples and tokens in validate, "
    "test and predict, not in training); give them with --training-tokens"
)


def _sig(value: float) -> str:
    return format_number(value)


def _mwh(energy_j: float | None) -> str:
    return NOT_MEASURED if energy_j is None else f"{_sig(j_to_mwh(energy_j))} MWh"


def _mwh_interval(bounds: tuple[float, float] | None) -> str:
    if bounds is None or bounds[0] == bounds[1]:
        return ""
    return f" (interval {_sig(j_to_mwh(bounds[0]))} to {_sig(j_to_mwh(bounds[1]))} MWh)"


def estimate_check(estimate: float, counted: float | None) -> str:
    """Whether ``estimate`` lies within ±30 % of the counted FLOPs, with its relative difference."""
    if not counted:
        return "no counted FLOPs to check it against"
    off = estimate / counted - 1.0
    where = "within" if abs(off) <= TOLERANCE + 1e-12 else "outside"  # 130 / 100 - 1 is 0.30000000000000004
    return f"{where} ±30 % of the count ({100 * off:+.0f} %)"


def _estimator_params(run: TrainingRun, counted: float | None, training_tokens: int | None) -> str:
    """The architecture estimator: 6 x N x D."""
    params = run.parameters
    if params is None:
        return f"{NOT_MEASURED}: the price tag has no parameter count (N)"
    if training_tokens is None:
        return f"N = {params:,} parameters; {_NO_TOKENS}"
    estimate = 6.0 * params * training_tokens
    return (
        f"6 x {params:,} parameters x {training_tokens:,} tokens (declared with --training-tokens, not measured) = "
        f"{_sig(estimate)} FLOP: {estimate_check(estimate, counted)}"
    )


def _estimator_hardware(run: TrainingRun, counted: float | None, utilisation: float | None) -> str:
    """The hardware estimator: accelerators x time x peak x utilisation."""
    gpu_s, peak = run.training_gpu_s, run.peak_flops_per_s
    if gpu_s <= 0:
        return f"{NOT_MEASURED}: no accelerator was metered (accelerators x time is 0)"
    if peak is None:
        return (
            f"{_sig(gpu_s)} accelerator-seconds; the peak FLOP/s is {NOT_MEASURED} (the device has no entry in "
            "Lightning's table: give FlopMonitor(peak_flops_per_s=...))"
        )
    implied = (
        "" if not counted else f"; the count implies a utilisation of {100 * counted / (gpu_s * peak):.3g} % (MFU)"
    )
    if utilisation is None:
        return (
            f"{_sig(gpu_s)} accelerator-seconds x {_sig(peak)} FLOP/s peak x utilisation {NOT_MEASURED} (give the "
            f"utilisation you assume with --utilisation){implied}"
        )
    estimate = gpu_s * peak * utilisation
    return (
        f"{_sig(gpu_s)} accelerator-seconds x {_sig(peak)} FLOP/s peak x {utilisation:g} utilisation (declared with "
        f"--utilisation) = {_sig(estimate)} FLOP: {estimate_check(estimate, counted)}{implied}"
    )


def _compute_lines(run: TrainingRun, training_tokens: int | None, utilisation: float | None) -> list[str]:
    counted = run.training_flops
    count = (
        f"{NOT_MEASURED} (no FlopMonitor in the run): the estimators below cannot be checked"
        if counted is None
        else f"{_sig(counted)} FLOP, the reference for the estimates below"
    )
    return [
        f"Training compute ({run.label}):",
        f"- Counted: {count}. FlopMonitor prices every ATen operator of the first step of each batch shape (2 FLOP "
        "per multiply-add of dense products: linear, conv, attention); forward, backward and an estimate of the "
        "optimizer step; recomputation apart.",
        "- Estimator 1, 6 x parameters x tokens (dense transformers): "
        f"{_estimator_params(run, counted, training_tokens)}.",
        f"- Estimator 2, accelerators x time x peak x utilisation: {_estimator_hardware(run, counted, utilisation)}.",
    ]


def _days(seconds: float) -> str:
    return f"{_sig(seconds / S_PER_DAY)} days"


def _hardware_days(gpu_s: float) -> str:
    """Accelerator-days, or "not measured" where no accelerator was metered (a CPU run), as the run's line says."""
    return _sig(gpu_s / S_PER_DAY) if gpu_s > 0 else NOT_MEASURED


def _time_lines(project: Project, run: TrainingRun) -> list[str]:
    time_s, gpu_s = run.training_s, run.training_gpu_s
    accelerators = gpu_s / time_s if time_s > 0 else 0.0
    if gpu_s > 0:
        hardware = (
            f"{accelerators:.3g} accelerator(s) metered x {_days(time_s)} = {_sig(gpu_s / S_PER_DAY)} hardware-days"
        )
    else:
        hardware = f"hardware-days {NOT_MEASURED} (no accelerator metered: a CPU run)"
    lines = [f"Training time ({run.label}): {format_duration(time_s)} ({_days(time_s)}); {hardware}."]
    if project.kind == "sweep":
        total = project.total
        wall = f"{format_duration(project.wall_s)} wall time" if project.wall_s else f"wall time {NOT_MEASURED}"
        lines.append(
            f"Whole project ({len(project.runs)} trials): {wall}; {_days(total.duration_s)} of trial time added up; "
            f"hardware-days {_hardware_days(total.gpu_s)}."
        )
    return lines


def _energy_lines(project: Project, run: TrainingRun) -> list[str]:
    training = run.activity(project.training_name)
    pue = project.grid.pue
    if training is None:
        selected = f"{NOT_MEASURED} (no device's energy could be read)"
    else:
        estimate = " (includes an estimate: see the methodology)" if run.spend.is_estimate else ""
        selected = (
            f"{_mwh(training.energy_j)}{_mwh_interval(training.bounds_j)} metered{estimate}; with PUE {pue:g}: "
            f"{_sig(training.facility_kwh / 1e3)} MWh; {_sig(g_to_kg(training.co2e_g))} kgCO2e"
        )
    stages = "train and validation loops" if training is None or training.stages else "the whole trial"
    lines = [f"Training energy ({run.label}, {stages}): {selected}."]
    others = [(r, a) for r, a in project.activities(TESTING) + project.activities("inference") if r is run]
    for _, activity in others:
        lines.append(f"Apart, {activity.name} ({', '.join(activity.stages)}): {_mwh(activity.energy_j)}.")
    if project.kind == "sweep":
        total = project.total
        lines.append(
            f"Whole project (every trial, failed and stopped ones included): {_mwh(total.total_energy_j)}"
            f"{_mwh_interval(total.total_energy_bounds_j)} metered; "
            f"{_sig(g_to_kg(project.grid.co2e_g(total) or 0.0))} kgCO2e."
        )
    return lines


def _whole(count: Any, what: str) -> str:
    """``"512 samples"``, ``"batch 32"``, or that it was not measured."""
    if count is None:
        return f"{what} {NOT_MEASURED}"
    return f"batch {count:,.0f}" if what == "batch" else f"{count:,.0f} {what}"


def _inference_lines(run: TrainingRun) -> list[str]:
    predictions = run.predictions
    stages = [s for s in ("predict", "test", "validate") if s in predictions]
    if not stages:
        return [f"Inference compute: {NOT_MEASURED} (no predict, test or validate stage of {run.label} was priced)."]
    lines = [f"Inference compute (benchmarked on {run.label}'s evaluation stages; predict is serving):"]
    for stage in stages:
        p: Mapping[str, Any] = predictions[stage]
        flops = p.get("flops_per_sample")
        per_sample = f"{_sig(flops)} FLOP per sample" if flops else f"FLOPs per sample {NOT_MEASURED}"
        per_token = (
            f"{_sig(p['flops_per_token'])} FLOP per token ({p.get('tokens'):,} tokens)"
            if p.get("flops_per_token") and p.get("tokens")
            else f"per token {NOT_MEASURED} (no tokens_key)"
        )
        energy = p.get("j_per_sample")
        joules = f"{_sig(energy)} J per sample" if energy is not None else f"energy per sample {NOT_MEASURED}"
        lines.append(
            f"- {stage}: {per_sample}, {per_token}; {joules} ({_whole(p.get('samples'), 'samples')}, "
            f"{_whole(p.get('batch_size'), 'batch')})."
        )
    return lines


def _methodology_lines(project: Project, spend: Spend) -> list[str]:
    grid = project.grid
    by_method: dict[Method, list[str]] = {}
    for name, method in sorted(spend.methods.items()):
        by_method.setdefault(method, []).append(name)
    devices = [f"{', '.join(names)}: {_METHODS[method]}" for method, names in by_method.items()]
    estimated = spend.estimated_domains
    unavailable = spend.unavailable_domains
    intensity, source = grid.intensity_text(spend, unit="gCO2e/kWh")
    return [
        "Methodology:",
        f"- Sensors: {project.sensors or NOT_MEASURED}; hardware: {hardware_line(dict(project.hardware or {}))}.",
        "- Method per device: " + ("; ".join(devices) if devices else NOT_MEASURED) + ".",
        "- Estimated: "
        + (", ".join(estimated) + " (no sensor there)" if estimated else "nothing: every figure is a reading")
        + (f"; not metered (unknown, not zero): {', '.join(unavailable)}" if unavailable else "")
        + ".",
        "- Error bars: each energy's interval comes from how its device was read (counter period, sampling, 5 % "
        "calibration; an estimate within 2x); intervals add linearly (a worst case).",
        f"- PUE: {grid.pue:g} (energy from the grid = metered energy x PUE; 1 means no facility overhead counted).",
        f"- Carbon intensity: {intensity} ({source}).",
    ]


def _trial_table(project: Project) -> list[str]:
    """Every trial apart, the selected one marked, and the total."""
    rows = [
        "Every trial (energy of every stage it ran):",
        "| trial | status | role | energy (MWh) | training FLOPs | hardware-days | kgCO2e |",
        "|---|---|---|---|---|---|---|",
    ]
    grid = project.grid
    for run in project.runs:
        flops = run.training_flops
        co2e = grid.co2e_g(run.spend)
        rows.append(
            f"| {run.job} | {run.status} | {'selected model' if run.selected else 'other'} | "
            f"{_mwh(run.spend.total_energy_j).removesuffix(' MWh')} | "
            f"{NOT_MEASURED if flops is None else _sig(flops)} | "
            f"{_hardware_days(run.spend.gpu_s)} | {NOT_MEASURED if co2e is None else _sig(g_to_kg(co2e))} |"
        )
    total = project.total
    co2e = grid.co2e_g(total)
    rows.append(
        f"| total | {len(project.runs)} trials | project | {_mwh(total.total_energy_j).removesuffix(' MWh')} | "
        f"{_sig(total.flops) if total.flops else NOT_MEASURED} | {_hardware_days(total.gpu_s)} | "
        f"{NOT_MEASURED if co2e is None else _sig(g_to_kg(co2e))} |"
    )
    return rows


def render_eu_ai_act(project: Project, *, training_tokens: int | None = None, utilisation: float | None = None) -> str:
    """The compute and energy fields of the Model Documentation Form, for a run or a whole sweep.

    Args:
        project: The run or sweep, read by :func:`~lightning_greenai.reporting.standards.facts.project`.
        training_tokens: Tokens the training saw, when the user knows them (nothing counts them): estimator 1's D.
        utilisation: The utilisation the user assumes for estimator 2 (a fraction in (0, 1]).
    """
    run = project.selected
    if project.kind == "run":
        scope = f"one training run ({project.path}); failed or abandoned runs are not recorded outside a greenai sweep"
    else:
        scope = (
            f"a sweep of {len(project.runs)} trials ({project.path}): the selected model's run "
            f"({'none scored' if run is None else run.label}), every other trial apart, failed and stopped ones "
            "included, and the whole project"
        )
    lines = [
        "EU AI Act model documentation (Art. 53(1)(a), Annex XI §1(2)(d-e); Code of Practice, Model Documentation "
        "Form): compute and energy, filled in by lightning-greenai from measured figures (check before submitting)",
        f"Scope: {scope}.",
        "",
    ]
    if run is None:
        lines += [f"Selected model: {NOT_MEASURED} (no trial was scored)."]
    else:
        lines += _compute_lines(run, training_tokens, utilisation)
        lines += ["", *_time_lines(project, run), "", *_energy_lines(project, run), "", *_inference_lines(run)]
    lines += ["", *_methodology_lines(project, project.total)]
    if project.kind == "sweep":
        lines += ["", *_trial_table(project)]
    return "\n".join(lines)
