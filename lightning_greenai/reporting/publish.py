"""Curve points and the sink that writes them through a Lightning logger (see the package docstring)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lightning_greenai.reporting.early_stop import EarlyStopping
from lightning_greenai.reporting.pareto import Point, pareto_front, trial_points
from lightning_greenai.reporting.summary import SweepSummary

__all__ = ["AXES", "CurvePoint", "CurveSink", "LoggerSink", "curve_points", "publish", "step_unit"]

#: Budget axes: name -> (SI base unit, factor from the axis's own unit to it). Trackers that take integer steps
#: (MLflow, TensorBoard) get the axis in a decimal multiple of the base unit chosen per sweep (see ``step_unit``).
AXES: dict[str, tuple[str, float]] = {
    "energy_kwh": ("J", 3.6e6),
    "flops": ("FLOPs", 1.0),
    "co2e_kg": ("gCO2e", 1e3),
    "money": ("currency", 1.0),
    "gpu_hours": ("GPU-s", 3600.0),
}
_PREFIXES = {-12: "p", -9: "n", -6: "µ", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E", 21: "Z"}


def step_unit(axis: str, total: float) -> tuple[str, float]:
    """The integer step unit of an axis for a sweep whose cumulative spend reaches ``total`` (in the axis's unit).

    A decimal multiple of the base unit in which the total is 1,000 to 999,999 steps, so a sweep of any size draws a
    curve (a fixed unit such as GFLOPs put every point of a small sweep on step 0). Returns ``(label, factor)``:
    ``step = round(value * factor)``.
    """
    base, to_base = AXES[axis]
    in_base = total * to_base
    if not in_base > 0:
        return base, to_base
    exponent = 3 * math.floor((math.log10(in_base) - 3) / 3)
    exponent = max(min(exponent, max(_PREFIXES)), min(_PREFIXES))
    return f"{_PREFIXES[exponent]}{base}" if base != "currency" else f"1e{exponent} currency", to_base / 10**exponent


@dataclass(frozen=True)
class CurvePoint:
    """One finished trial, in launch order, with the sweep's cumulative spend after it."""

    trial: int
    status: str
    score: float | None
    best_so_far: float | None
    spend: dict[str, float]  # cumulative, by axis name (AXES keys)


class CurveSink(Protocol):
    """Receives a sweep's curve points and its EVP curve."""

    def log_point(self, point: CurvePoint) -> None:
        """Log one point of the budget curve."""
        ...

    def log_evp(self, rows: list[dict[str, float]], iid: bool) -> None:
        """Log the expected-performance curve (``iid``) or, for other strategies, nothing labelled expected."""
        ...

    def log_pareto(self, points: list[Point], front: list[Point]) -> None:
        """Log each trial's score against its own energy, the Pareto front marked."""
        ...

    def log_extrapolation(self, rows: list[dict[str, Any]]) -> None:
        """Log the tuning curve extrapolated past the trials run, with its interval."""
        ...

    def log_marginal(self, rows: list[dict[str, Any]]) -> None:
        """Log what one more kWh buys against the kWh spent."""
        ...

    def log_rungs(self, stopping: EarlyStopping | None) -> None:
        """Log the rung table and what stopping early saved (sweeps that stop trials at rungs)."""
        ...

    def finalize(self) -> None:
        """Flush and close."""
        ...


def curve_points(summary: SweepSummary) -> list[CurvePoint]:
    """The budget curve of a sweep as points."""
    points = []
    for row in summary.curve():
        spend = {axis: float(row.get(axis) or 0.0) for axis in AXES}
        points.append(CurvePoint(int(row["job"]), str(row["status"]), row["score"], row["best_so_far"], spend))
    return points


class LoggerSink:
    """Write curves through a Lightning logger, in the form each tracker charts best.

    * W&B: every axis is a metric of its own (``greenai/sweep/energy_kwh`` ...) and ``define_metric`` makes it the
      x-axis of a ``greenai/sweep/best_vs_<axis>`` series, so charts of best score against kWh, FLOPs, CO2e and money
      appear without setup; the EVP curve is a ``wandb.plot.line_series`` (expected, the 95 % band's edges, unbiased)
      and a table.
    * MLflow and TensorBoard take integer steps: ``greenai/sweep/best_vs_<axis>`` is logged with the cumulative spend
      as the step, in a decimal multiple of the axis's base unit (J, FLOPs, gCO2e, currency, GPU-s) chosen so that
      the sweep's total is 1,000 to 999,999 steps (``step_unit``; logged as the param
      ``greenai/sweep/<axis>_step_unit``, e.g. ``mJ``), so small sweeps draw a curve too; ``greenai/sweep/<axis>``
      is the cumulative spend itself by trial; ``greenai/sweep/best_vs_trial`` uses the trial number.
      EVP: ``greenai/evp/expected``, ``.../sd``, ``.../unbiased``, ``.../median`` and the band's edges
      (``.../expected_lo``, ``.../expected_hi`` with score bounds, else ``.../median_lo``, ``.../median_hi``) at step n.
    * CSV: rows through the logger (step = trial), and ``evp.csv`` beside its ``metrics.csv``.
    * Any other logger: ``log_metrics`` with step = trial.
    """

    def __init__(self, logger: Any, totals: dict[str, float] | None = None) -> None:
        self.logger = logger
        self.kind = type(logger).__name__
        self._defined = False
        # the integer step unit of each axis (MLflow, TensorBoard), from the sweep's cumulative spend
        self.step_units = {axis: step_unit(axis, (totals or {}).get(axis, 0.0)) for axis in AXES}

    def log_point(self, point: CurvePoint) -> None:
        """Log one budget-curve point."""
        if point.best_so_far is None:
            return
        if self.kind == "WandbLogger":
            run = self.logger.experiment
            if not self._defined:
                for axis in AXES:
                    run.define_metric(f"greenai/sweep/{axis}")
                    run.define_metric(f"greenai/sweep/best_vs_{axis}", step_metric=f"greenai/sweep/{axis}")
                run.define_metric("greenai/sweep/trial")
                run.define_metric("greenai/sweep/best_vs_trial", step_metric="greenai/sweep/trial")
                self._defined = True
            row = {f"greenai/sweep/{a}": v for a, v in point.spend.items()}
            row.update({f"greenai/sweep/best_vs_{a}": point.best_so_far for a in AXES})
            row.update({"greenai/sweep/trial": point.trial, "greenai/sweep/best_vs_trial": point.best_so_far})
            if point.score is not None:
                row["greenai/sweep/score"] = point.score
            run.log(row)
        elif self.kind in ("MLFlowLogger", "TensorBoardLogger"):
            for axis, (_, factor) in self.step_units.items():
                self._scalar(f"greenai/sweep/best_vs_{axis}", point.best_so_far, round(point.spend[axis] * factor))
                # the axis itself too, by trial: plot it as the x-axis where the tracker allows (MLflow's charts)
                self._scalar(f"greenai/sweep/{axis}", point.spend[axis], point.trial)
            self._scalar("greenai/sweep/best_vs_trial", point.best_so_far, point.trial)
        else:
            row = {f"greenai/sweep/{a}": v for a, v in point.spend.items()}
            row["greenai/sweep/best_so_far"] = point.best_so_far
            if point.score is not None:
                row["greenai/sweep/score"] = point.score
            self.logger.log_metrics(row, step=point.trial)

    def log_evp(self, rows: list[dict[str, float]], iid: bool) -> None:
        """Log the EVP curve (i.i.d. sweeps only: other curves are not expectations)."""
        if not iid or not rows:
            return
        band = "expected" if rows[0].get("expected_lo") is not None else "median"
        keys = ["expected", "sd", "unbiased", "median", f"{band}_lo", f"{band}_hi"]
        if self.kind == "WandbLogger":
            import wandb

            n = [int(r["n"]) for r in rows]
            columns = ["n", *keys, "energy_kwh", "flops"]
            table = wandb.Table(columns=list[str | int](columns), data=[[r[c] for c in columns] for r in rows])
            self.logger.experiment.log(
                {
                    "greenai/evp_table": table,
                    "greenai/evp_chart": wandb.plot.line_series(
                        xs=n,
                        ys=[[r[k] for r in rows] for k in ("expected", f"{band}_lo", f"{band}_hi", "unbiased")],
                        keys=[
                            "expected (Dodge et al.)",
                            f"{band} best: 95 % band low (Lourie et al.)",
                            f"{band} best: 95 % band high",
                            "unbiased (Tang et al.)",
                        ],
                        title="Expected validation performance",
                        xname="trials n",
                    ),
                }
            )
        elif self.kind == "CSVLogger":
            self._write_csv("evp.csv", rows)
        else:
            self._log_by_n(rows, lambda r: {f"greenai/evp/{k}": r[k] for k in keys if math.isfinite(r[k])})

    def log_pareto(self, points: list[Point], front: list[Point]) -> None:
        """Score against each trial's own energy (kWh), the Pareto front marked.

        W&B: a scatter, the front as a line, and a table with ``on_front``; MLflow and TensorBoard: the front as
        ``greenai/pareto/front_score`` stepped by the trial's energy in the energy axis's step unit; CSV:
        ``pareto.csv``; others: the front by trial number.
        """
        if not points:
            return
        on_front = {p.job for p in front}
        rows = [
            {"trial": p.job, "score": p.score, "energy_kwh": p.cost, "on_front": p.job in on_front}
            for p in sorted(points, key=lambda p: p.cost)
        ]
        if self.kind == "WandbLogger":
            import wandb

            columns = ["trial", "score", "energy_kwh", "on_front"]
            table = wandb.Table(columns=list[str | int](columns), data=[[r[c] for c in columns] for r in rows])
            front_table = wandb.Table(
                columns=list[str | int](columns), data=[[r[c] for c in columns] for r in rows if r["on_front"]]
            )
            self.logger.experiment.log(
                {
                    "greenai/pareto_table": table,
                    "greenai/pareto_scatter": wandb.plot.scatter(
                        table, "energy_kwh", "score", title="Score against each trial's energy"
                    ),
                    "greenai/pareto_front": wandb.plot.line(
                        front_table, "energy_kwh", "score", title="Pareto front: score against trial energy"
                    ),
                }
            )
        elif self.kind in ("MLFlowLogger", "TensorBoardLogger"):
            _, factor = step_unit("energy_kwh", max(p.cost for p in points))
            for p in front:
                self._scalar("greenai/pareto/front_score", p.score, round(p.cost * factor))
        elif self.kind == "CSVLogger":
            self._write_csv("pareto.csv", rows)
        else:
            for p in front:
                self.logger.log_metrics({"greenai/pareto/front_score": p.score}, step=p.job)

    def log_marginal(self, rows: list[dict[str, Any]]) -> None:
        """The marginal-value curve: gain per kWh by trials run.

        MLflow, TensorBoard and others: ``greenai/marginal/expected_gain_per_kwh`` and ``.../upper_gain_per_kwh`` at
        step n; W&B: a line series against kWh spent; CSV: ``marginal_value.csv``.
        """
        if not rows:
            return
        keys = {"expected_gain_per_unit": "expected_gain_per_kwh", "upper_gain_per_unit": "upper_gain_per_kwh"}
        if self.kind == "WandbLogger":
            import wandb

            bounded = [r for r in rows if r["upper_gain_per_unit"] is not None]
            series = [[r["expected_gain_per_unit"] for r in rows]]
            names = ["expected gain per kWh"]
            if len(bounded) == len(rows):
                series.append([r["upper_gain_per_unit"] for r in rows])
                names.append("95 % upper bound per kWh")
            self.logger.experiment.log(
                {
                    "greenai/marginal_chart": wandb.plot.line_series(
                        xs=[r["spent"] for r in rows],
                        ys=series,
                        keys=names,
                        title="What the next kWh buys",
                        xname="kWh spent",
                    )
                }
            )
        elif self.kind == "CSVLogger":
            self._write_csv("marginal_value.csv", rows)
        else:
            self._log_by_n(
                rows, lambda r: {f"greenai/marginal/{name}": r[key] for key, name in keys.items() if r[key] is not None}
            )

    def log_rungs(self, stopping: EarlyStopping | None) -> None:
        """The rung table (trials reaching each rung, pruned there, their energy) and what stopping early saved.

        Every tracker: the totals ``greenai/early_stopping/<key>`` (``trials``, ``pruned``, ``pruned_energy_kwh``,
        ``energy_kwh``, ``run_to_end_energy_kwh``, an estimate, and ``saving_ratio``) by ``log_metrics``. The table:
        W&B ``greenai/rungs_table``; MLflow, TensorBoard and others ``greenai/rungs/reached``, ``.../pruned`` and
        ``.../pruned_energy_kwh`` at step = the rung (an Optuna pruner's step); CSV ``rungs.csv``.
        """
        if stopping is None:
            return
        data = stopping.to_dict()
        totals = ("trials", "pruned", "pruned_energy_kwh", "energy_kwh", "run_to_end_energy_kwh", "saving_ratio")
        self.logger.log_metrics({f"greenai/early_stopping/{k}": data[k] for k in totals if data[k] is not None})
        rows = [{"label": row.label(stopping.resource), **row.to_dict()} for row in stopping.rows]
        if not rows:
            return
        if self.kind == "WandbLogger":
            import wandb

            columns = list(rows[0])
            table = wandb.Table(columns=list[str | int](columns), data=[[r[c] for c in columns] for r in rows])
            self.logger.experiment.log({"greenai/rungs_table": table})
        elif self.kind == "CSVLogger":
            self._write_csv("rungs.csv", rows)
        else:
            keys = ("reached", "pruned", "pruned_energy_kwh")
            by_step = [{**r, "n": r["rung"] if r["rung"] is not None else int(r["resource"])} for r in rows]
            self._log_by_n(by_step, lambda r: {f"greenai/rungs/{k}": r[k] for k in keys})

    def log_extrapolation(self, rows: list[dict[str, Any]]) -> None:
        """The expected best of N to 4N trials with its model-based interval (random search with 8+ scores).

        MLflow, TensorBoard and others: ``greenai/evp_extrapolated/expected``, ``.../lo``, ``.../hi`` at step n;
        W&B: a line series against n; CSV: ``evp_extrapolated.csv``.
        """
        if not rows:
            return
        keys = ("expected", "lo", "hi")
        if self.kind == "WandbLogger":
            import wandb

            self.logger.experiment.log(
                {
                    "greenai/evp_extrapolated_chart": wandb.plot.line_series(
                        xs=[int(r["n"]) for r in rows],
                        ys=[[r[k] for r in rows] for k in keys],
                        keys=["extrapolated expected best", "≈95 % interval low", "≈95 % interval high"],
                        title="Extrapolated expected validation performance",
                        xname="trials n",
                    )
                }
            )
        elif self.kind == "CSVLogger":
            self._write_csv("evp_extrapolated.csv", rows)
        else:
            self._log_by_n(rows, lambda r: {f"greenai/evp_extrapolated/{k}": r[k] for k in keys if math.isfinite(r[k])})

    def _log_by_n(self, rows: list[dict[str, Any]], metrics: Callable[[dict[str, Any]], dict[str, float]]) -> None:
        """Log ``metrics(row)`` at step n: MLflow and TensorBoard by their scalar API, others by ``log_metrics``."""
        for r in rows:
            values = metrics(r)
            if self.kind in ("MLFlowLogger", "TensorBoardLogger"):
                for name, value in values.items():
                    self._scalar(name, value, int(r["n"]))
            else:
                self.logger.log_metrics(values, step=int(r["n"]))

    def _write_csv(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` as ``name`` beside the CSV logger's ``metrics.csv``."""
        path = Path(self.logger.log_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    def _scalar(self, key: str, value: float, step: int) -> None:
        if self.kind == "MLFlowLogger":
            self.logger.experiment.log_metric(self.logger.run_id, key, value, step=step)
        else:
            self.logger.experiment.add_scalar(key, value, global_step=step)

    def finalize(self) -> None:
        """Flush the logger and finish its run."""
        self.logger.save()
        self.logger.finalize("success")
        if self.kind == "WandbLogger":
            self.logger.experiment.finish()


def publish(summary: SweepSummary, logger: Any) -> None:
    """Send a sweep's curves through ``logger``, then close it.

    The budget curve; EVP for a random search run to the end (otherwise its EVP keys are not logged, and
    ``greenai/no_evp`` says why); the rung table of a sweep that stops trials early.
    """
    points = curve_points(summary)
    sink = LoggerSink(logger, points[-1].spend if points else None)
    for point in points:
        sink.log_point(point)
    sink.log_evp(summary.evp(), summary.iid)
    sink.log_extrapolation(summary.extrapolated_rows())
    trials = trial_points(summary, "energy_kwh")
    sink.log_pareto(trials, pareto_front(trials, summary.direction))
    sink.log_marginal(summary.marginal_value())
    sink.log_rungs(summary.early_stopping())
    fields = {
        "greenai/strategy": summary.strategy,
        "greenai/stop_reason": summary.stop_reason or "",
        "greenai/curve": "expected" if summary.iid else "observed best so far",
    }
    if summary.no_evp_reason is not None:
        fields["greenai/no_evp"] = summary.no_evp_reason
    if sink.kind in ("MLFlowLogger", "TensorBoardLogger"):
        fields.update({f"greenai/sweep/{axis}_step_unit": label for axis, (label, _) in sink.step_units.items()})
    logger.log_hyperparams(fields)
    sink.finalize()
