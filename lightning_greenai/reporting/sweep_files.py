"""What a stopped budget sweep writes and prints for people, and what it publishes to the app's trackers.

The engine (:mod:`lightning_greenai.sweep.engine`) runs the trials and keeps the books; it neither prints nor
publishes. When it stops it hands a :class:`~lightning_greenai.sweep.engine.SweepStopped` to its ``on_stop`` hook, and
:class:`ReportedSweep` (what ``hydra/sweeper=greenai`` runs) sets that hook to :func:`report_stopped`: the report
files, the stop line, the price tag and plots, the curves on the trackers and, after an interrupt, how to resume. The
hook runs where the engine used to do this itself (inside the sweep's lock, before an interrupt or a failure is
raised), so a sweep prints the same things at the same moments; its progress notes (``on_note``) are printed too.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning_greenai.io import write_json_atomic
from lightning_greenai.reporting.early_stop import early_stopping
from lightning_greenai.reporting.price_tag import PriceTag
from lightning_greenai.reporting.summary import EVP_NOTE, no_evp_reason
from lightning_greenai.spend import Spend
from lightning_greenai.stats.curve import budget_curve
from lightning_greenai.sweep.engine import BudgetSweep, SweepStopped
from lightning_greenai.sweep.history import Trial, curve_axes
from lightning_greenai.sweep.ledger import Ledger
from lightning_greenai.trial.record import STATE_DIR, TrialStatus

__all__ = ["ReportedSweep", "report_stopped", "write_report"]

log = logging.getLogger(__name__)


class ReportedSweep(BudgetSweep):
    """The budget sweep that reports when it stops (see the module docstring): the one the Hydra sweeper runs."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.on_stop = self._report
        self.on_note = print  # its progress lines go to stdout, beside the report

    def _report(self, stopped: SweepStopped) -> None:
        report_stopped(self, stopped)


def report_stopped(sweep: BudgetSweep, stopped: SweepStopped) -> None:
    """Write the report files, print the stop line and the price tag, publish the curves; say how to resume."""
    write_report(stopped.sweep_dir, sweep, stopped.trials, stopped.spend, stopped.spent, stopped.reason, stopped.wall_s)
    count = len(stopped.trials)
    print(
        f"[greenai] sweep stopped: {stopped.reason}; {count} trial{'s' if count != 1 else ''}; "
        f"see {stopped.sweep_dir / 'budget_report.json'}"
    )
    present(sweep, stopped.sweep_dir)
    if stopped.interrupted:
        _say_how_to_resume(stopped)


def _say_how_to_resume(stopped: SweepStopped) -> None:
    """After an interrupt: every trial is recorded, which run again, and the command line that resumes the sweep."""
    reruns = [t.job_num for t in stopped.trials if t.status == TrialStatus.INTERRUPTED]
    print(
        f"[greenai] sweep {stopped.reason}. Every trial so far is recorded"
        + (
            f"; job(s) {reruns} were billed what they had metered (their final record, else their last "
            "heartbeat) and run again on resume"
            if reruns
            else ""
        )
        + f". Resume with the same command and: hydra.sweep.dir={stopped.sweep_dir} hydra.sweeper.resume=true"
    )


def present(sweep: BudgetSweep, sweep_dir: Path) -> None:
    """Print the sweep's price tag, write its plots, and push its curves to the app's logger (``cfg.logger``).

    The tag is compact (at most 10 lines) unless ``verbose``; the full one is ``price_tag.json`` in the sweep dir, and
    ``greenai report <sweep dir>`` prints it as a table.
    """
    from lightning_greenai.reporting.plots import write_plots
    from lightning_greenai.reporting.render import to_compact_text, to_text
    from lightning_greenai.reporting.summary import SweepSummary, load

    summary = load(sweep_dir)
    assert isinstance(summary, SweepSummary)
    summary.set_score_bounds(sweep.score_bounds or summary.score_bounds)  # this session's config, if resumed
    if sweep.report:
        print(to_text(summary) if sweep.verbose else to_compact_text(summary, str(sweep_dir / "price_tag.json")))
        try:
            plots = write_plots(summary, sweep_dir / "greenai_report", within=sweep_dir)
            print("[greenai] plots: " + ", ".join(str(p) for p in plots))
        except ImportError:
            print("[greenai] plots need matplotlib: pip install matplotlib")
        except ValueError as err:
            print(f"[greenai] no plots: {err}")
    logger_cfg = sweep.config.get("logger") if sweep.config is not None else None
    if not sweep.log_curves or logger_cfg is None:
        return
    nodes = _logger_nodes(logger_cfg)
    if not nodes:
        log.warning(
            "cfg.logger holds no logger config with a _target_ (a node, a dict or a list of them): the sweep's "
            "budget curves were not logged."
        )
    for node in nodes:
        try:
            _publish(sweep, summary, node, sweep_dir)
        except Exception as err:  # a tracker problem must not hide a finished sweep's results
            log.warning("Could not log the sweep's curves to %s: %s", node.get("_target_"), err)


def _publish(sweep: BudgetSweep, summary: Any, logger_cfg: Any, sweep_dir: Path) -> None:
    """Instantiate one logger of ``cfg.logger`` as the sweep's own run ("greenai-sweep"); publish the curves to it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from lightning_greenai.reporting.publish import publish

    if not HydraConfig.initialized() and sweep.config is not None and "hydra" in sweep.config:
        HydraConfig.instance().set_config(sweep.config)  # ${hydra:...} in the logger config resolve as in a job

    target = str(logger_cfg["_target_"])
    name_key = "run_name" if target.endswith("MLFlowLogger") else "name"
    overrides: dict[str, Any] = {name_key: "greenai-sweep"}
    node = OmegaConf.to_container(logger_cfg, resolve=False)
    if isinstance(node, dict) and "save_dir" in node:
        overrides["save_dir"] = str(sweep_dir)  # the jobs' output dirs are theirs; the summary run is the sweep's
    logger = instantiate(logger_cfg, **overrides)
    publish(summary, logger)
    print(f"[greenai] budget curves logged to {type(logger).__name__} (run 'greenai-sweep')")


def _logger_nodes(cfg: Any) -> list[Any]:
    """The logger configs in ``cfg.logger``: one node with a ``_target_``, or a dict or list of them (templates)."""
    from omegaconf import DictConfig, ListConfig

    if isinstance(cfg, DictConfig):
        if "_target_" in cfg:
            return [cfg]
        return [node for node in cfg.values() if isinstance(node, DictConfig) and "_target_" in node]
    if isinstance(cfg, ListConfig):
        return [node for node in cfg if isinstance(node, DictConfig) and "_target_" in node]
    return []


def write_report(
    sweep_dir: Path,
    sweep: BudgetSweep,
    trials: Sequence[Trial],
    spend: Spend,
    spent: Mapping[str, float | None],
    reason: str,
    wall_s: float,
) -> None:
    """Write ``budget_report.json``, ``budget_curve.csv`` and the sweep's ``price_tag.json`` into the sweep dir.

    ``spend`` is the sum of the trials' spends (money prices their metered hours); ``wall_s`` the sweep's wall time.
    Whether the sweep has an EVP curve, and its rung table, are read from the ledger as ``greenai report`` reads them.
    """
    events = Ledger(sweep_dir / STATE_DIR / "ledger.jsonl").events()
    search = next((e.get("search") for e in events if e.get("event") == "header"), None)
    search = search if isinstance(search, dict) else {"strategy": sweep.strategy_name}
    rungs = [e for e in events if e.get("event") == "rung"]
    no_evp = no_evp_reason(search, stopped_early=bool(rungs))
    stopped_early = early_stopping(trials, rungs, search)
    better = max if sweep.direction == "max" else min
    by_status: dict[str, int] = {}
    for t in trials:
        by_status[str(t.status)] = by_status.get(str(t.status), 0) + 1
    scored = [t for t in trials if t.ranks]
    best = better(scored, key=lambda t: t.objective) if scored else None  # type: ignore[arg-type, return-value]
    report = {
        "stop_reason": reason,
        "budget": sweep.budget.to_dict(),
        "spent": dict(spent),
        "spend": spend.to_dict(),
        "energy_kwh": spend.energy_kwh,
        "co2e_kg": None if (g := sweep.grid.co2e_g(spend)) is None else g / 1000,
        "money": sweep.grid.money(spend),
        "currency": sweep.grid.currency,
        "wall_s": wall_s,
        "is_estimate": spend.is_estimate,
        "trials": len(trials),
        "trials_by_status": by_status,
        "strategy": sweep.strategy_name,
        "iid": no_evp is None,
        "evp_note": None if no_evp is None else EVP_NOTE.format(reason=no_evp),
        "early_stopping": None if stopped_early is None else stopped_early.to_dict(),
        "direction": sweep.direction,
        "best": None
        if best is None
        else {"job": best.job_num, "objective": best.objective, "overrides": best.overrides},
        "grid": sweep.grid.to_dict(),
        "stop_policy": sweep.stop_policy,
        "max_batch_size": sweep.batch_size,
    }
    write_json_atomic(sweep_dir / "budget_report.json", report)
    PriceTag(spend, sweep.grid, title="sweep", wall_s=wall_s).write_json(sweep_dir / "price_tag.json")
    _write_curve(sweep_dir / "budget_curve.csv", sweep, trials)


def _write_curve(path: Path, sweep: BudgetSweep, trials: Sequence[Trial]) -> None:
    """``budget_curve.csv``: one row a trial in job order, with the best score and the spend summed up to it."""
    ordered = sorted(trials, key=lambda t: t.job_num)
    scores = [t.objective if t.ranks else None for t in ordered]
    points = budget_curve([t.spend for t in ordered], scores, curve_axes(sweep.grid), direction=sweep.direction)
    rows = [
        {"job": t.job_num, "status": str(t.status), "score": t.objective, "best_so_far": point.best_so_far}
        | dict(point.spent)
        | {"overrides": " ".join(t.overrides)}
        for t, point in zip(ordered, points, strict=True)
    ]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["job"])
        writer.writeheader()
        writer.writerows(rows)
