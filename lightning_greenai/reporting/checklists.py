"""Reports that fill in what venues and model cards ask: ``greenai report DIR --format neurips|acl|...``.

Every field comes from the sweep's ledger or the run's price tag, gathered once by :func:`facts`; a field nothing
measured says "not measured" instead of being left out or guessed. Formats:

* ``neurips``: the NeurIPS paper checklist's compute question (Q8 a-c: compute workers, compute per run and in
  total, and the whole project's compute *including failed and stopped trials*), with Q6 (how hyperparameters were
  chosen) and Q7 (error bars).
* ``acl``: the ACL Responsible NLP checklist, section C (C1 parameters, budget, infrastructure; C2 search and best
  values; C3 statistics, max or mean; C4 packages).
* ``showyourwork``: Dodge et al.'s reproducibility checklist, with the expected-validation-performance table.
* ``hf-card``: the Hugging Face model card's ``co2_eq_emissions`` block (emissions in grams).
* ``latex``: a paragraph and a table for a paper, estimator named and estimates flagged.

And what regulators and standards read (:mod:`lightning_greenai.reporting.standards`):

* ``eu-ai-act``: the AI Act's model documentation of compute and energy, the guidelines' estimators checked against
  the counted FLOPs.
* ``sci``: the Software Carbon Intensity, per ``--functional-unit`` token, sample, run or flop.
* ``cyclonedx`` and ``spdx``: a CycloneDX 1.6 ML-BOM and an SPDX 3.0.1 document (JSON), energy and CO2e by activity.
"""

from __future__ import annotations

import math
from importlib import metadata
from typing import Any

from lightning_greenai.hardware import hardware_line
from lightning_greenai.reporting.standards.eu_ai_act import render_eu_ai_act
from lightning_greenai.reporting.standards.facts import NOT_MEASURED, project, trial_tag
from lightning_greenai.reporting.standards.sbom import render_cyclonedx, render_spdx
from lightning_greenai.reporting.standards.sci import FUNCTIONAL_UNITS, check_functional_unit, render_sci
from lightning_greenai.reporting.summary import RunSummary, SweepSummary
from lightning_greenai.spend import Spend
from lightning_greenai.units import (
    display_unit,
    format_duration,
    format_energy,
    format_flops,
    format_gpu_time,
    format_mass,
    format_money,
    format_number,
    format_quantity,
    kwh_to_j,
)

__all__ = ["FORMATS", "FUNCTIONAL_UNITS", "NOT_MEASURED", "facts", "render_checklist"]

#: Every format of ``greenai report --format``: venues' checklists and a model card, then regulators' and standards'.
FORMATS = ("neurips", "acl", "showyourwork", "hf-card", "latex", "eu-ai-act", "sci", "cyclonedx", "spdx")
#: The formats whose output is JSON: notes go in no comment there (JSON has none); they are in the text formats.
_JSON_FORMATS = ("cyclonedx", "spdx")
_STRATEGY = {
    "random": "random search: i.i.d. uniform draws from the search space (log-uniform where tagged log)",
    "grid": "grid search: every combination of the listed values",
    "optuna": "Optuna (model-based: each trial chosen from the earlier ones)",
    "asha": "ASHA: random draws, each trial stopped at a rung where it scored outside the top of the earlier trials",
    "hyperband": "asynchronous Hyperband: ASHA in brackets that start at successive rungs",
}


def _versions() -> dict[str, str]:
    out = {}
    for name in ("lightning-greenai", "torch", "lightning", "hydra-core", "opda"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _co2e_g(summary: RunSummary | SweepSummary, spend: Spend) -> float | None:
    return summary.grid.co2e_g(spend)


def _spend_line(summary: RunSummary | SweepSummary, spend: Spend) -> str:
    """Energy, CO2e, FLOPs, time and GPU time of a spend, estimates flagged."""
    star = " (includes an estimate)" if spend.is_estimate else ""
    parts = [
        f"{format_energy(spend.total_energy_j)}{star}",
        format_mass(_co2e_g(summary, spend)),
        f"{format_flops(spend.flops)}" if spend.flops else f"FLOPs {NOT_MEASURED}",
        format_duration(spend.duration_s),
    ]
    if spend.gpu_s:
        parts.append(format_gpu_time(spend.gpu_s))
    money = summary.grid.money(spend)
    if money is not None:
        parts.append(format_money(money, summary.grid.currency))
    return ", ".join(parts)


def _parameters_of_best(summary: SweepSummary, job: int | None) -> dict[str, int] | None:
    """The parameter count in the best trial's price tag, if its run folder is ``<sweep dir>/<job>``.

    That is Hydra's default ``hydra.sweep.subdir`` (the job number); elsewhere the count is not found.
    """
    tag = None if job is None else trial_tag(summary.path, job)
    parameters = None if tag is None else tag.get("parameters")
    return dict(parameters) if isinstance(parameters, dict) and parameters else None


def facts(summary: RunSummary | SweepSummary) -> dict[str, Any]:
    """Every field the formats use, from the ledger or the price tag, ``None`` where nothing measured it."""
    spend = summary.spend
    grid = summary.grid
    methods = ", ".join(f"{name} ({method.value})" for name, method in sorted(spend.methods.items()))
    out: dict[str, Any] = {
        "kind": "sweep" if isinstance(summary, SweepSummary) else "run",
        "spend": spend,
        "measurement": methods or NOT_MEASURED,
        "estimated": spend.estimated_domains,
        "location": grid.country or grid.region or "the table's world mean",
        "intensity": "{} ({})".format(*grid.intensity_text(spend, unit="gCO2e/kWh")),
        "pue": grid.pue,
        "co2e_g": _co2e_g(summary, spend),
        "versions": _versions(),
    }
    if isinstance(summary, RunSummary):
        tag = summary.tag
        out.update(
            hardware=hardware_line(tag.get("hardware")),
            parameters=tag.get("parameters"),
            per_run=spend,
            reported=spend,
            unreported=None,
            trials=None,
        )
        return out
    header = summary.header
    ranked = summary.ranked_trials()
    reported = sum((t.spend for t in ranked), Spend())
    unreported = [t for t in summary.trials if not t.ranks]
    statuses: dict[str, int] = {}
    for t in summary.trials:
        statuses[str(t.status)] = statuses.get(str(t.status), 0) + 1
    scores = summary.scores()
    better = max if summary.direction == "max" else min
    best = next((t for t in ranked if t.objective == better(scores)), None) if scores else None
    search = header.get("search", {})
    evp = summary.evp() if summary.iid else []
    out.update(
        hardware=hardware_line(header.get("hardware")),
        parameters=_parameters_of_best(summary, None if best is None else best.job_num),
        per_run=reported.scaled(1 / len(ranked)) if ranked else None,
        reported=reported,
        unreported=sum((t.spend for t in unreported), Spend()) if unreported else None,
        trials={
            "count": len(summary.trials),
            "ranked": len(ranked),
            "statuses": statuses,
            "strategy": _STRATEGY.get(summary.strategy, summary.strategy),
            "seed": search.get("seed"),
            "space": list(search.get("arguments", [])) or NOT_MEASURED,
            "criterion": (
                f"the {'highest' if summary.direction == 'max' else 'lowest'} "
                f"{search.get('objective') or 'value the task returns'} (validation score)"
            ),
            "best": None if best is None else {"job": best.job_num, "score": best.objective,
                                               "overrides": best.overrides},
            "budget": header.get("budget") or {},
            "stop_reason": summary.stop_reason or "not stopped (running or interrupted)",
            "mean": sum(scores) / len(scores) if scores else None,
            "sd": (sum((s - sum(scores) / len(scores)) ** 2 for s in scores) / len(scores)) ** 0.5 if scores else None,
            "evp": evp[-1] if evp else None,
            "band_method": summary.method_of_bands if evp else None,
            "confidence": summary.confidence,
            "iid": summary.iid,
            "no_evp": summary.no_evp_reason,
            "direction": summary.direction,
        },
    )  # fmt: skip
    return out


def _budget_text(budget: dict[str, Any]) -> str:
    currency = budget.get("currency")
    limits = [format_quantity(q, v, currency) for q, v in budget.items() if q != "currency" and v is not None]
    return ", ".join(limits) or "none (max_trials only)"


def _params_text(parameters: dict[str, int] | None) -> str:
    if not parameters:
        return NOT_MEASURED
    return f"{parameters['total']:,} ({parameters['trainable']:,} trainable)"


def _search_lines(f: dict[str, Any]) -> list[str]:
    t = f["trials"]
    if t is None:
        return [f"Hyperparameter search: {NOT_MEASURED} (a single run; the greenai sweeper records searches)."]
    best = t["best"]
    if best is None:
        chosen = NOT_MEASURED
    else:
        chosen = f"trial {best['job']}, score {best['score']:.4g}: {' '.join(best['overrides'])}"
    return [
        f"Hyperparameter search: {t['strategy']}, seed {t['seed']}; {t['count']} trials "
        f"({', '.join(f'{k} {v}' for k, v in sorted(t['statuses'].items()))}).",
        "Search space (bounds): " + ("; ".join(t["space"]) if isinstance(t["space"], list) else t["space"]) + ".",
        f"Selection criterion: {t['criterion']}.",
        f"Best configuration: {chosen}.",
    ]


def _statistics_line(f: dict[str, Any]) -> str:
    t = f["trials"]
    if t is None:
        return f"Statistics: {NOT_MEASURED} (a single run: the reported score is that run's)."
    if t["mean"] is None:
        return f"Statistics: {NOT_MEASURED} (no trial of the sweep was scored)."
    extreme = "maximum" if t["direction"] == "max" else "minimum"
    text = (
        f"The reported score is the {extreme} over {t['ranked']} scored trials (not a mean); across trials the "
        f"score's mean is {t['mean']:.4g} and its SD {t['sd']:.2g}."
    )
    evp = t["evp"]
    if evp is not None:
        band = (
            f"[{evp['expected_lo']:.4g}, {evp['expected_hi']:.4g}]"
            if evp.get("expected_lo") is not None
            else f"(median best {evp['median']:.4g} [{evp['median_lo']:.4g}, {evp['median_hi']:.4g}])"
        )
        text += (
            f" Expected best of {int(evp['n'])} trials (Dodge et al. 2019): {evp['expected']:.4g} "
            f"± {evp['sd']:.2g} SD; "
            f"{100 * t['confidence']:g} % simultaneous confidence band (Lourie, Cho & He 2024, "
            f"{'Learned-Miller-DeStefano' if t['band_method'] == 'ld' else 'Kolmogorov-Smirnov'}): {band}."
        )
    elif not t["iid"]:
        text += f" Expected validation performance is not reported: {t['no_evp']}."
    return text


def _compute_lines(f: dict[str, Any], summary: RunSummary | SweepSummary) -> tuple[str, str, str]:
    per_run = f["per_run"]
    per = _spend_line(summary, per_run) if per_run is not None else NOT_MEASURED
    total = _spend_line(summary, f["reported"])
    if f["kind"] == "run":
        project = f"{NOT_MEASURED}: one run (a sweep with the greenai sweeper accounts for failed and stopped runs)"
    elif f["unreported"] is None and not summary.notes:
        project = f"no more than the reported experiments: every one of the {f['trials']['count']} trials is reported"
    elif f["unreported"] is None:
        project = (
            f"every one of the {f['trials']['count']} trials read from the ledger is reported, but parts of the "
            "ledger could not be read (see the notes): the project may have used more"
        )
    else:
        extra = f["unreported"]
        project = (
            f"{_spend_line(summary, f['spend'])} in all, of which "
            f"{format_energy(extra.total_energy_j, unit_for=f['spend'].total_energy_j)} in "
            f"{f['trials']['count'] - f['trials']['ranked']} trials that failed, were stopped or never started "
            "(not in the reported results)"
        )
    return per, total, project


def _neurips(summary: RunSummary | SweepSummary, f: dict[str, Any]) -> str:
    per, total, project = _compute_lines(f, summary)
    what = "per trial (mean of the scored trials)" if f["kind"] == "sweep" else "of the run"
    return "\n".join(
        [
            "NeurIPS paper checklist: answers filled in by lightning-greenai (check them before submitting)",
            "",
            "Q8 Experiments compute resources",
            f"(a) Compute workers: {f['hardware']}. Energy measured per device: {f['measurement']}.",
            f"(b) Compute {what}: {per}. Total of the reported experiments: {total}.",
            f"(c) Full project compute: {project}.",
            f"    Carbon: {format_mass(f['co2e_g'])} at {f['intensity']}, PUE {f['pue']:g}, location {f['location']}.",
            "",
            "Q6 Experimental setting (hyperparameters and how they were chosen)",
            *_search_lines(f),
            "",
            "Q7 Statistical significance (error bars)",
            _statistics_line(f),
        ]
    )


def _acl(summary: RunSummary | SweepSummary, f: dict[str, Any]) -> str:
    _, total, project = _compute_lines(f, summary)
    gpu_s = f["spend"].gpu_s
    versions = ", ".join(f"{k} {v}" for k, v in f["versions"].items())
    return "\n".join(
        [
            "ACL Responsible NLP checklist, section C (computational experiments): filled in by lightning-greenai",
            "",
            f"C1 Number of parameters: {_params_text(f['parameters'])}. Total computational budget: "
            f"{format_gpu_time(gpu_s)} ({'no GPU metered' if not gpu_s else 'metered'}); {total}; whole "
            f"project: {project}. Computing infrastructure: {f['hardware']}.",
            "C2 " + " ".join(_search_lines(f)),
            "C3 " + _statistics_line(f),
            f"C4 Packages: {versions or NOT_MEASURED}.",
        ]
    )


def _showyourwork(summary: RunSummary | SweepSummary, f: dict[str, Any]) -> str:
    per, total, project = _compute_lines(f, summary)
    t = f["trials"]
    lines = [
        'Reproducibility checklist (Dodge et al. 2019, "Show Your Work"): filled in by lightning-greenai',
        "",
        "For all reported experimental results:",
        f"- Description of computing infrastructure: {f['hardware']}",
        f"- Average runtime / estimated energy cost per trial: {per}",
        f"- Number of parameters: {_params_text(f['parameters'])}",
        f"- Total compute of the reported results: {total}; whole project: {project}",
        "",
        "For all experiments with hyperparameter search:",
    ]
    if t is None:
        lines.append(f"- {NOT_MEASURED} (a single run)")
        return "\n".join(lines)
    lines += [
        f"- Number of training and evaluation runs: {t['count']} trials, {t['ranked']} scored",
        *[f"- {line}" for line in _search_lines(f)[1:]],
        f"- Method of choosing hyperparameter values: {t['strategy']}",
        f"- Summary statistics: {_statistics_line(f)}",
        f"- Budget set: {_budget_text(t['budget'])}; stopped: {t['stop_reason']}",
    ]
    rows = summary.evp() if isinstance(summary, SweepSummary) and summary.iid else []
    if rows:
        band = "expected" if rows[0].get("expected_lo") is not None else "median"
        unit, size = display_unit("energy", kwh_to_j(max(r["energy_kwh"] for r in rows)))  # one unit: the column's
        lines += [
            "",
            f"Expected validation performance (Dodge et al.) with its {100 * t['confidence']:g} % band ({band} best):",
            f"| n | expected | SD | {band} band | energy ({unit}) |",
            "|---|---|---|---|---|",
            *[
                f"| {int(r['n'])} | {r['expected']:.4g} | {r['sd']:.2g} | [{r[f'{band}_lo']:.4g}, "
                f"{r[f'{band}_hi']:.4g}] | {format_number(kwh_to_j(r['energy_kwh']) / size)} |"
                for r in rows
            ],
        ]
    return "\n".join(lines)


def _hf_card(summary: RunSummary | SweepSummary, f: dict[str, Any], training_type: str | None) -> str:
    co2e_g = f["co2e_g"]
    methods = "measured" if not f["estimated"] else f"partly estimated ({', '.join(f['estimated'])})"
    version = f["versions"].get("lightning-greenai", "")
    if f["kind"] == "sweep":
        what = "all trials of the hyperparameter search"
    else:
        stages = ", ".join(summary.tag.get("stages") or {}) if isinstance(summary, RunSummary) else ""
        what = f"every stage metered in the run ({stages})" if stages else "the run"
    emissions = "null  # not measured" if co2e_g is None else f"{co2e_g:.6g}  # grams CO2e, {what}"
    return "\n".join(
        [
            "co2_eq_emissions:",
            f"  emissions: {emissions}",
            f'  source: "lightning-greenai {version}: energy {methods}, {f["intensity"]}, PUE {f["pue"]:g}"',
            f'  training_type: "{training_type or NOT_MEASURED}"',
            f'  geographical_location: "{f["location"]}"',
            f'  hardware_used: "{f["hardware"]}"',
        ]
    )


def _latex(summary: RunSummary | SweepSummary, f: dict[str, Any]) -> str:
    spend = f["spend"]
    star = "$^*$" if spend.is_estimate else ""

    def tex(text: str) -> str:
        return text.replace("%", r"\%").replace("_", r"\_").replace("&", r"\&").replace("#", r"\#")

    t = f["trials"]
    search = "" if t is None else f" over a hyperparameter search of {t['count']} trials ({tex(t['strategy'])})"
    money = summary.grid.money(spend)
    rows = [
        ("Energy", f"{format_energy(spend.total_energy_j)}{star}"),
        ("Energy (kWh)", f"{format_number(spend.energy_kwh or 0.0)}{star}"),  # one fixed unit, to compare papers
        ("CO2e", f"{format_mass(f['co2e_g'])}{star}"),
        ("FLOPs", format_flops(spend.flops) if spend.flops else NOT_MEASURED),
        ("GPU time", format_gpu_time(spend.gpu_s)),
        ("Cost", NOT_MEASURED if money is None else f"{format_money(money, summary.grid.currency)}{star}"),
        ("Hardware", tex(f["hardware"])),
        ("Carbon intensity", tex(f["intensity"])),
    ]
    paragraph = (
        f"All experiments{search} used {format_energy(spend.total_energy_j)}{star} of electricity, "
        f"{format_mass(f['co2e_g']).replace('CO2e', 'CO$_2$e')}{star} at {tex(f['intensity'])} and PUE {f['pue']:g}, "
        "measured with "
        f"lightning-greenai ({tex(f['measurement'])})."
    )
    if f["estimated"]:
        paragraph += f" Figures marked $^*$ include an estimate ({tex(', '.join(f['estimated']))}): no sensor there."
    if t is not None and t["evp"] is not None:
        evp = t["evp"]
        paragraph += (
            f" The expected best validation score of {int(evp['n'])} trials is {evp['expected']:.4g} "
            f"(Dodge et al., 2019); {_band_tex(evp, t['confidence'])} (Lourie et al., 2024)."
        )
    table = "\n".join(
        [
            r"\begin{table}[t]",
            r"\centering",
            r"\begin{tabular}{ll}",
            r"\hline",
            r"Quantity & Value \\",
            r"\hline",
            *[f"{tex(a).replace('CO2e', 'CO$_2$e')} & {b.replace('CO2e', 'CO$_2$e')} \\\\" for a, b in rows],
            r"\hline",
            r"\end{tabular}",
            r"\caption{Compute used, measured with lightning-greenai.}",
            r"\end{table}",
        ]
    )
    return f"{paragraph}\n\n{table}\n"


def _band_tex(evp: dict[str, Any], confidence: float) -> str:
    """The band of the last EVP row for the LaTeX paragraph: the expected best's, else the median best's."""
    level = f"{100 * confidence:g}\\,\\% simultaneous confidence band"
    if evp.get("expected_lo") is not None:
        return f"its {level} is [{evp['expected_lo']:.4g}, {evp['expected_hi']:.4g}]"
    hi = "no upper bound" if not math.isfinite(evp["median_hi"]) else f"{evp['median_hi']:.4g}"
    return f"the median best is {evp['median']:.4g}, {level} [{evp['median_lo']:.4g}, {hi}]"


def render_checklist(
    summary: RunSummary | SweepSummary,
    fmt: str,
    *,
    training_type: str | None = None,
    functional_unit: str | None = None,
    training_tokens: int | None = None,
    utilisation: float | None = None,
) -> str:
    """The report in ``fmt`` (one of :data:`FORMATS`).

    Args:
        summary: The run or sweep.
        fmt: The format.
        training_type: What the training was (``pre-training``, ``fine-tuning`` ...): the model card's field, and
            the name of the training activity in ``cyclonedx`` and ``spdx``.
        functional_unit: SCI's R (``sci`` only): one of :data:`FUNCTIONAL_UNITS`; ``run`` when not given.
        training_tokens: The tokens the training saw, for ``eu-ai-act``'s 6 x N x D estimator (nothing counts them).
        utilisation: The accelerators' utilisation assumed for ``eu-ai-act``'s hardware estimator, in (0, 1].

    Raises:
        ValueError: an unknown format or functional unit, naming the allowed ones; an option the format does not
            take; training tokens or a utilisation out of range.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Unknown report format {fmt!r}. Allowed: {', '.join(FORMATS)}.")
    _check_options(fmt, functional_unit, training_tokens, utilisation)
    if fmt in ("eu-ai-act", "sci", "cyclonedx", "spdx"):
        return _standard(summary, fmt, training_type, functional_unit, training_tokens, utilisation)
    f = facts(summary)
    if fmt == "neurips":
        text = _neurips(summary, f)
    elif fmt == "acl":
        text = _acl(summary, f)
    elif fmt == "showyourwork":
        text = _showyourwork(summary, f)
    elif fmt == "hf-card":
        text = _hf_card(summary, f, training_type)
    else:
        text = _latex(summary, f)
    return _with_notes(summary, fmt, text)


def _check_options(fmt: str, unit: str | None, tokens: int | None, utilisation: float | None) -> None:
    """Refuse an option the format does not read, and values out of range, naming what is allowed."""
    if unit is not None and fmt != "sci":
        raise ValueError(f"--functional-unit applies to --format sci, not {fmt}.")
    if unit is not None:
        check_functional_unit(unit)
    if (tokens is not None or utilisation is not None) and fmt != "eu-ai-act":
        raise ValueError(f"--training-tokens and --utilisation apply to --format eu-ai-act, not {fmt}.")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens <= 0):
        raise ValueError(f"--training-tokens must be a whole number > 0, got {tokens!r}.")
    if utilisation is not None and not (isinstance(utilisation, int | float) and 0 < utilisation <= 1):
        raise ValueError(f"--utilisation must be a fraction in (0, 1] (0.4 for 40 %), got {utilisation!r}.")


def _standard(
    summary: RunSummary | SweepSummary,
    fmt: str,
    training_type: str | None,
    unit: str | None,
    tokens: int | None,
    utilisation: float | None,
) -> str:
    """A regulator's or a standard's report, from one reading of the run or sweep."""
    read = project(summary, training_type)
    if fmt == "cyclonedx":
        return render_cyclonedx(read)
    if fmt == "spdx":
        return render_spdx(read)
    if fmt == "sci":
        text = render_sci(read, unit or "run")
    else:
        text = render_eu_ai_act(read, training_tokens=tokens, utilisation=utilisation)
    return _with_notes(summary, fmt, text)


def _with_notes(summary: RunSummary | SweepSummary, fmt: str, text: str) -> str:
    """``text`` and the summary's notes, as comments where the format has them."""
    if not summary.notes or fmt in _JSON_FORMATS:
        return text
    comment = "#" if fmt == "hf-card" else "%" if fmt == "latex" else ""
    prefix = f"{comment} " if comment else ""
    notes = [f"{prefix}Note (lightning-greenai): {note}" for note in summary.notes]
    return "\n".join([text.rstrip("\n"), "", *notes])
