"""The ``greenai`` command: ``greenai report DIR`` and ``greenai compare DIR_A DIR_B``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_greenai.reporting.checklists import FORMATS, FUNCTIONAL_UNITS, render_checklist
from lightning_greenai.reporting.plots import AXIS_NAMES, legend_beside, save_figure, score_band, write_plots
from lightning_greenai.reporting.render import axis_unit, to_json, to_markdown, to_text
from lightning_greenai.reporting.summary import NothingToReportError, RunSummary, SweepSummary, load
from lightning_greenai.reporting.verdict import compare_at_budgets
from lightning_greenai.stats.bands import check_bounds
from lightning_greenai.units import DISPLAY_UNITS, format_number, set_display_units

__all__ = ["compare", "main"]

UNITS = ("energy_kwh", "flops", "co2e_kg", "money", "gpu_hours")


def compare(a: SweepSummary, b: SweepSummary, unit: str, out: Path | None, labels: Sequence[str] | None = None) -> str:
    """Both sweeps' best score against one budget axis; write ``compare.png`` into ``out`` if given.

    An i.i.d. sweep (a random search run to the end) is drawn as its expected best of n trials at n x its mean trial
    cost, with a band; any other sweep as its observed best so far against its cumulative spend, with the reason it
    has no expectation (``SweepSummary.no_evp_reason``): its scores are no sample to take an expectation over.
    ``labels`` name the two sweeps in every line and in the plot's legend (default: their folders' names).

    Raises:
        ValueError: a sweep has no figure on that axis (``money`` for a sweep priced in no currency).
    """
    if unit != "money" and not any(summary.mean_trial_cost().get(unit) for summary in (a, b)):
        raise ValueError(f"neither sweep metered {unit} (every trial cost 0 on it): choose another --unit.")
    curves = []
    for summary in (a, b):
        if summary.scores() and unit not in summary.mean_trial_cost():
            raise ValueError(
                f"{summary.path} has no {unit} axis (money needs a grid with a price: hydra.sweeper.grid.price_per_kwh "
                "and currency). Choose another --unit."
            )
        curves.append((summary, summary.evp() if summary.iid else _observed(summary, unit)))
    largest = max((rows[-1][unit] for _, rows in curves if rows), default=0.0)
    currency = a.grid.currency or b.grid.currency
    label, size = axis_unit(unit, largest, currency)
    if a.iid and b.iid:
        lines = [f"expected best score at a budget in {label} (n trials x mean trial cost)"]
    else:
        lines = [
            f"best score at a budget in {label} (i.i.d. sweeps: expected best of n trials x mean trial cost; "
            f"others: observed best so far against the {AXIS_NAMES[unit]} spent so far)"
        ]
    names = _names(a, b, labels)
    for (summary, rows), name in zip(curves, (names["a"], names["b"]), strict=True):
        kind, key = ("expected", "expected") if summary.iid else ("observed best so far", "best")
        if not rows:
            lines.append(f"  {name}: no scored trials")
            continue
        points = ", ".join(
            f"{format_number(r[unit] / size)} {label} -> {r[key]:.4g}" for r in rows[:: max(1, len(rows) // 6)]
        )
        lines.append(f"  {name} ({summary.strategy}, {kind}): {points}")
        if not summary.iid:
            lines.append(f"  {name} has no EVP curve: {summary.no_evp_reason}")
    lines.extend(_verdict_lines(a, b, unit, label, size, names))
    lines.extend(f"  note ({summary.path.name}): {n}" for summary in (a, b) for n in summary.notes)
    if out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.8))
        for (summary, rows), color, name in zip(curves, ("#27a", "#e93"), (names["a"], names["b"]), strict=True):
            if not rows:
                continue
            x = [r[unit] / size for r in rows]
            if summary.iid:
                key, lo, hi, _ = score_band(summary, rows)
                ax.plot(x, [r[key] for r in rows], color=color, label=f"{name} ({key} best)")
                ax.fill_between(x, lo, hi, color=color, alpha=0.15)
            else:
                ax.step(x, [r["best"] for r in rows], where="post", color=color, label=f"{name} (observed best)")
        ax.set_xlabel(f"budget ({label})")
        ax.set_ylabel("best validation score")
        ax.set_title("Budget-aware comparison (Dodge et al. 2019)")
        legend_beside(ax)
        out.mkdir(parents=True, exist_ok=True)
        save_figure(plt, fig, out / "compare.png")
        lines.append(f"  plot: {out / 'compare.png'} (bands: simultaneous confidence bands, Lourie et al.)")
    return "\n".join(lines)


def _observed(summary: SweepSummary, unit: str) -> list[dict[str, Any]]:
    """A sweep's observed best so far (``best``) against its cumulative spend on ``unit``, from its first score.

    Every trial's spend counts, pruned and failed ones included: it is what the search cost to reach that best.
    """
    return [
        {unit: r[unit], "best": r["best_so_far"]}
        for r in summary.curve()
        if r["best_so_far"] is not None and r.get(unit) is not None
    ]


def _names(a: SweepSummary, b: SweepSummary, labels: Sequence[str] | None = None) -> dict[str, str]:
    """What to call the two sweeps in every line: the labels given, their folder names, or A (path) and B (path)."""
    if labels:
        return {"a": labels[0], "b": labels[1]}
    names = {"a": a.path.name or str(a.path), "b": b.path.name or str(b.path)}
    if names["a"] == names["b"]:
        names = {"a": f"A ({a.path})", "b": f"B ({b.path})"}
    return names


def _verdict_lines(
    a: SweepSummary, b: SweepSummary, unit: str, label: str, size: float, names: dict[str, str]
) -> list[str]:
    """Which sweep is better at which budget, with what confidence, and where the curves cross, in words."""
    if not (a.iid and b.iid):
        return ["  confidence: needs random (i.i.d.) search on both sides; only the observed best is compared above"]
    if len(a.scores()) < 2 or len(b.scores()) < 2:
        return ["  confidence: needs at least two scored trials on each side"]
    unmetered = [str(s.path) for s in (a, b) if not s.mean_trial_cost().get(unit)]
    if unmetered:
        return [f"  confidence: no {unit} metered per trial in {', '.join(unmetered)}; compare on another --unit"]
    comparison = compare_at_budgets(a, b, unit, confidence=a.confidence)
    level = f"{100 * comparison.confidence:g} %"

    def amount(budget: float) -> str:
        return f"{format_number(budget / size)} {label}"

    if comparison.common is None:
        return ["  no budget both sweeps measured: one trial of the dearer costs more than the whole cheaper sweep"]
    lines = [
        f"  {comparison.key} best at a budget, {level} confidence for both at once (each band "
        f"{100 * (1 - (1 - comparison.confidence) / 2):g} %, Lourie et al.):"
    ]
    verdicts = comparison.verdicts
    picks = sorted({0, len(verdicts) // 3, 2 * len(verdicts) // 3, len(verdicts) - 1})
    for i in picks:
        v = verdicts[i]
        verdict = f"{names[v.better]} is better at {level} confidence" if v.better is not None else "cannot tell apart"
        lines.append(
            f"    at {amount(v.budget)}: {names['a']}'s {comparison.key} best is {v.a.value:.4g} "
            f"[{v.a.lo:.4g}, {v.a.hi:.4g}], {names['b']}'s {v.b.value:.4g} [{v.b.lo:.4g}, {v.b.hi:.4g}]: {verdict}"
        )
    if comparison.crossings:
        leaders, crossings = comparison.leader_before, comparison.crossings
        parts = [f"{names[str(leaders[0])]} ahead below {amount(crossings[0])}"]
        for i, leader in enumerate(leaders[1:], start=1):
            if i < len(crossings):
                parts.append(f"{names[str(leader)]} from {amount(crossings[i - 1])} to {amount(crossings[i])}")
            else:
                parts.append(f"{names[str(leader)]} above {amount(crossings[i - 1])}")
        lines.append("    the curves cross: " + ", ".join(parts) + " (point estimates)")
    elif comparison.leader_before:
        leader = comparison.leader_before[0]
        lines.append(f"    no crossing: {names[str(leader)]} ahead at every common budget (point estimates)")
    confident = [v for v in verdicts if v.better is not None]
    if confident:
        lines.append(
            f"    confidently different at {len(confident)} of {len(verdicts)} budgets from "
            f"{amount(verdicts[0].budget)} to {amount(verdicts[-1].budget)}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``greenai`` command; returns the exit status."""
    try:
        return _main(argv)
    except BrokenPipeError:  # `greenai report --json | head`: the reader left; that is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _unit_options(command: argparse.ArgumentParser) -> None:
    """``--energy-unit`` and friends: one unit for every figure of a kind, instead of one chosen by magnitude."""
    command.add_argument("--energy-unit", choices=list(DISPLAY_UNITS["energy"]), default=None)
    command.add_argument("--co2e-unit", choices=list(DISPLAY_UNITS["co2e"]), default=None)
    command.add_argument("--flops-unit", choices=list(DISPLAY_UNITS["flops"]), default=None)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="greenai", description="The price tag of a run or a sweep.")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="the price tag of a run or sweep directory")
    rep.add_argument("path", type=Path, help="a sweep dir, a run's folder, or a price_tag.json")
    fmt = rep.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--markdown", action="store_true", help="print a paragraph and table for a paper")
    fmt.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="fill in a venue's checklist or a model card: neurips (Q6-Q8), acl (section C), showyourwork (Dodge "
        "et al.), hf-card (co2_eq_emissions), latex; or what regulators and standards read: eu-ai-act (model "
        "documentation of compute and energy), sci (Software Carbon Intensity), cyclonedx (1.6 ML-BOM), spdx (3.0.1)",
    )
    rep.add_argument(
        "--score-bounds",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        default=None,
        help="the range the score can take (e.g. 0 1 for accuracy): gives the expected best its confidence band",
    )
    rep.add_argument(
        "--training-type",
        default=None,
        help="for --format hf-card: pre-training, fine-tuning ... (not measured: said so if not given)",
    )
    rep.add_argument(
        "--functional-unit",
        choices=FUNCTIONAL_UNITS,
        default=None,
        help="for --format sci: R, per token or sample served, per training run, or per FLOP (default: run)",
    )
    rep.add_argument(
        "--training-tokens",
        type=int,
        default=None,
        help="for --format eu-ai-act: the tokens the training saw (nothing counts them), for 6 x parameters x tokens",
    )
    rep.add_argument(
        "--utilisation",
        type=float,
        default=None,
        help="for --format eu-ai-act: the utilisation (0-1] you assume, for accelerators x time x peak x utilisation",
    )
    rep.add_argument(
        "--plots", type=Path, default=None, help="folder for PNG plots (default: greenai_report beside the report)"
    )
    rep.add_argument("--no-plots", action="store_true")
    _unit_options(rep)
    cmp = sub.add_parser("compare", help="two sweeps' expected-performance curves on one budget axis")
    cmp.add_argument("a", type=Path)
    cmp.add_argument("b", type=Path)
    cmp.add_argument("--unit", choices=UNITS, default="energy_kwh")
    cmp.add_argument("--out", type=Path, default=None, help="folder for compare.png")
    cmp.add_argument(
        "--label", action="append", default=None, help="what to call A, then B (twice: --label A --label B)"
    )
    cmp.add_argument(
        "--score-bounds",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        default=None,
        help="the range the score can take: compare the expected best (with bands) instead of the median best",
    )
    _unit_options(cmp)
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        set_display_units(energy=args.energy_unit, co2e=args.co2e_unit, flops=args.flops_unit)
        bounds = None if args.score_bounds is None else check_bounds(args.score_bounds, name="--score-bounds")
    except ValueError as err:
        print(f"greenai: {err}", file=sys.stderr)
        return 2
    try:
        return _report(args, bounds) if args.command == "report" else _compare(args, bounds)
    except NothingToReportError as err:
        print(f"greenai: {err}", file=sys.stderr)
        return 2


def _report(args: argparse.Namespace, bounds: tuple[float, float] | None) -> int:
    """``greenai report``: print the summary in the format asked for, then write the plots."""
    summary = load(args.path)
    if bounds is not None and isinstance(summary, SweepSummary):
        summary.set_score_bounds(bounds)
    elif bounds is not None:
        summary.notes.append("--score-bounds applies to sweeps (their tuning curves); a run has none")
    if args.format is not None:
        try:
            text = render_checklist(
                summary,
                args.format,
                training_type=args.training_type,
                functional_unit=args.functional_unit,
                training_tokens=args.training_tokens,
                utilisation=args.utilisation,
            )
        except ValueError as err:
            print(f"greenai report: {err}", file=sys.stderr)
            return 2
        print(text)
    elif args.json:
        print(to_json(summary))
    elif args.markdown:
        print(to_markdown(summary))
    else:
        print(to_text(summary))
    return 0 if args.no_plots else _plots(summary, args)


def _plots(summary: RunSummary | SweepSummary, args: argparse.Namespace) -> int:
    """Write the report's plots: into ``--plots``, or ``greenai_report`` in the folder reported on."""
    folder = args.path if args.path.is_dir() else args.path.parent  # a price_tag.json: beside it
    try:
        if args.plots is not None:
            paths = write_plots(summary, args.plots)
        else:
            paths = write_plots(summary, folder / "greenai_report", within=folder)
    except ImportError:
        print("greenai: plots need matplotlib: pip install matplotlib", file=sys.stderr)
        return 0
    except ValueError as err:
        print(f"greenai: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"greenai: cannot write the plots there: {err}", file=sys.stderr)
        return 2
    if not args.json:
        print("plots: " + ", ".join(str(p) for p in paths))
    return 0


def _compare(args: argparse.Namespace, bounds: tuple[float, float] | None) -> int:
    """``greenai compare``: the verdict in words, and ``compare.png`` with ``--out``."""
    if args.label is not None and len(args.label) != 2:
        print(
            f"greenai compare: --label names both sweeps, A then B: got {len(args.label)} ({args.label}).",
            file=sys.stderr,
        )
        return 2
    a, b = load(args.a), load(args.b)
    if not isinstance(a, SweepSummary) or not isinstance(b, SweepSummary):
        single = a if not isinstance(a, SweepSummary) else b
        print(f"greenai compare: {single.path} is a single run, not a sweep.", file=sys.stderr)
        return 2
    if bounds is not None:
        a.set_score_bounds(bounds)
        b.set_score_bounds(bounds)
    try:
        print(compare(a, b, args.unit, args.out, args.label))
    except ValueError as err:
        print(f"greenai compare: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"greenai compare: cannot write compare.png there: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
