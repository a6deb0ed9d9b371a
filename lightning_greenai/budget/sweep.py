"""The budget sweep: launch batches of trials until a compute budget is spent, and account for every joule.

This is the implementation behind ``hydra/sweeper=greenai`` (the Hydra plugin is a thin shell around
:class:`BudgetSweep`). It imports neither torch nor Lightning: Hydra scans sweepers at every start-up.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_greenai.budget.admission import admit, estimate_trial_cost
from lightning_greenai.budget.budget import Budget
from lightning_greenai.budget.files import TrialRecord, state_dir, write_json_atomic
from lightning_greenai.budget.ledger import Ledger
from lightning_greenai.budget.objective import ObjectiveError, extract_objective
from lightning_greenai.budget.strategies import make_strategy
from lightning_greenai.budget.trial import current_trial
from lightning_greenai.errors import BudgetConfigError
from lightning_greenai.grid import Grid
from lightning_greenai.spend import Spend
from lightning_greenai.units import S_PER_HOUR

__all__ = ["BudgetSweep", "SweepResult", "TaskWrapper"]

log = logging.getLogger(__name__)

STOP_POLICIES = ("graceful", "finish", "kill")
STRATEGIES = ("grid", "random", "optuna")


class TaskWrapper:
    """Runs the user's task in the job process and writes the trial's final record (status, objective).

    The record survives a launcher that loses JobReturns (a killed array job takes its siblings' results with it):
    the sweeper reads each finished trial's objective from its file. Picklable if the task is.
    """

    def __init__(self, task: Callable[[Any], Any], objective_key: str | None) -> None:
        self.task, self.objective_key = task, objective_key

    def __call__(self, cfg: Any) -> Any:
        """Run the task, then write the trial's final record."""
        reporter = current_trial()
        if reporter is not None:
            reporter.update(reporter.last_spend, status="running", force=True)
        try:
            value = self.task(cfg)
        except BaseException:
            if reporter is not None:
                reporter.finish("failed")
            raise
        if reporter is not None:
            try:
                objective: float | None = extract_objective(value, self.objective_key)
            except ObjectiveError:
                objective = None
            status = "budget_stopped" if reporter.record.status == "budget_stopped" else "completed"
            reporter.finish(status, objective)
        return value


@dataclass
class Trial:
    """What the sweeper knows of one job."""

    job_num: int
    overrides: list[str]
    status: str = "running"
    objective: float | None = None
    spend: Spend = field(default_factory=Spend)
    error: str | None = None


@dataclass
class SweepResult:
    """Why the sweep stopped and what it spent, as written to ``budget_report.json``."""

    stop_reason: str
    trials: list[Trial]
    spend: Spend
    spent: dict[str, float | None]


def _fingerprint(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


class BudgetSweep:
    """Run a budget-limited search (see the module docstring and ``conf/hydra/sweeper/greenai.yaml``)."""

    def __init__(
        self,
        *,
        budget: Mapping[str, Any] | None = None,
        strategy: str = "grid",
        max_trials: int | None = None,
        max_batch_size: int | None = None,
        params: Mapping[str, str] | None = None,
        seed: int = 0,
        direction: str = "max",
        objective: str | None = None,
        stop_policy: str = "graceful",
        heartbeat_s: float = 10.0,
        poll_s: float = 1.0,
        prior_cost: Mapping[str, float] | None = None,
        cost_quantile: float = 0.9,
        trial_allowance: float | None = None,
        max_failure_rate: float = 0.0,
        resume: bool = False,
        grid: Mapping[str, Any] | None = None,
        report: bool = True,
        log_curves: bool = True,
    ) -> None:
        self.budget = Budget.parse({k: v for k, v in dict(budget or {}).items() if v is not None})
        if strategy not in STRATEGIES:
            raise BudgetConfigError(f"Unknown strategy {strategy!r}. Allowed: {', '.join(STRATEGIES)}.")
        if stop_policy not in STOP_POLICIES:
            raise BudgetConfigError(f"Unknown stop_policy {stop_policy!r}. Allowed: {', '.join(STOP_POLICIES)}.")
        if direction not in ("max", "min"):
            raise BudgetConfigError(f"`direction` must be 'max' or 'min', got {direction!r}.")
        if max_trials is not None and max_trials < 1:
            raise BudgetConfigError(f"`max_trials` must be >= 1 or null, got {max_trials}.")
        if max_batch_size is not None and max_batch_size < 1:
            raise BudgetConfigError(f"`max_batch_size` must be >= 1 or null, got {max_batch_size}.")
        if not 0.0 <= max_failure_rate <= 1.0:
            raise BudgetConfigError(f"`max_failure_rate` must be in [0, 1], got {max_failure_rate}.")
        if self.budget.is_unlimited and max_trials is None and strategy != "grid":
            raise BudgetConfigError(
                f"The {strategy} strategy with no budget limit and no max_trials would never stop: set "
                "hydra.sweeper.budget.<quantity> or hydra.sweeper.max_trials."
            )
        self.grid = Grid.from_location(**{k: v for k, v in dict(grid or {}).items() if v is not None})
        self.budget.check_grid(self.grid)
        # the same units and spellings as the budget: numbers in the field's unit, or strings such as "3 J"
        self.prior_cost = Budget.parse({k: v for k, v in dict(prior_cost or {}).items() if v is not None}).limits
        self.strategy_name, self.max_trials, self.max_batch_size = strategy, max_trials, max_batch_size
        self.params = dict(params or {})
        self.seed, self.direction, self.objective_key = seed, direction, objective
        self.stop_policy, self.heartbeat_s, self.poll_s = stop_policy, heartbeat_s, poll_s
        self.cost_quantile, self.trial_allowance = cost_quantile, trial_allowance
        self.max_failure_rate, self.resume = max_failure_rate, resume
        self.report, self.log_curves = report, log_curves
        # a number to optimise is required when a key names it or Optuna learns from it; a plain grid sweep (Hydra's
        # own launcher tests) accepts tasks that return anything
        self.needs_objective = objective is not None or strategy == "optuna"
        self.config: Any = None
        self.launcher: Any = None
        self.validate_batch: Callable[[Sequence[Sequence[str]]], None] = lambda batch: None
        self.watchdog: _Watchdog | None = None

    # -- Hydra wiring --------------------------------------------------------------------------------------------

    def setup(self, *, hydra_context: Any, task_function: Callable[[Any], Any], config: Any) -> None:
        """Build the configured launcher around a task wrapped to write its trial record."""
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=TaskWrapper(task_function, self.objective_key), config=config
        )

    # -- the sweep -----------------------------------------------------------------------------------------------

    def sweep(self, arguments: Sequence[str]) -> list[Sequence[Any]]:
        """Run batches until the budget, ``max_trials`` or the search space is spent; return the JobReturn batches."""
        from omegaconf import OmegaConf

        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        folder = state_dir(sweep_dir)
        arguments = list(arguments) + [f"{k}={v}" for k, v in self.params.items()]
        search = {
            "arguments": sorted(arguments),
            "strategy": self.strategy_name,
            "seed": self.seed,
            "direction": self.direction,
            "objective": self.objective_key,
        }
        ledger = Ledger(folder / "ledger.jsonl")
        trials, proposed, elapsed_before, retry = self._load(ledger, sweep_dir, search)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        (folder / "STOP").unlink(missing_ok=True)
        strategy = make_strategy(
            self.strategy_name, arguments, seed=self.seed, direction=self.direction, state_dir=folder, skip=proposed
        )
        started = time.monotonic()
        next_job = max((t.job_num for t in trials), default=-1) + 1
        returns: list[Sequence[Any]] = []
        reason = ""

        tally = _Tally(self, trials)

        def total() -> Spend:
            return dataclasses.replace(tally.spend, duration_s=elapsed_before + time.monotonic() - started)

        while True:
            spent_now = total()
            exceeded = self.budget.exceeded_by(spent_now, self.grid)
            if exceeded:
                reason = f"budget spent: {', '.join(exceeded)}"
                break
            if self.max_trials is not None and tally.counted >= self.max_trials:
                reason = f"max_trials reached ({self.max_trials})"
                break
            if strategy.exhausted() and not retry:
                reason = "search space exhausted"
                break
            used = self.budget.spent(spent_now, self.grid)
            # nothing metered yet (no trial has run) is 0 spent here, not unknown
            remaining = {q: limit - (used[q] or 0.0) for q, limit in self.budget.limits.items()}
            estimates = tally.estimates()
            trials_left = None if self.max_trials is None else self.max_trials - tally.counted
            k, why = admit(remaining, estimates, max_batch_size=self.max_batch_size, trials_left=trials_left)
            if k == 0:
                reason = why or "nothing admitted"
                break
            # a resumed sweep first reruns the trials its crash interrupted
            reruns, retry = retry[:k], retry[k:]
            batch = [overrides for _, overrides in reruns] + strategy.ask(k - len(reruns))
            if not batch:
                reason = "search space exhausted"
                break
            self.validate_batch(batch)
            jobs = [Trial(next_job + i, list(overrides)) for i, overrides in enumerate(batch)]
            for i, job in enumerate(jobs):
                allowance = self._allowance(estimates)
                if allowance:
                    write_json_atomic(folder / "trials" / f"{job.job_num}.allowance.json", allowance)
                rerun_of = reruns[i][0] if i < len(reruns) else None
                ledger.append("launched", job=job.job_num, overrides=job.overrides, rerun_of=rerun_of)
            watchdog = self.watchdog = _Watchdog(self, sweep_dir, jobs, trials, total)
            watchdog.start()
            launch_overrides = [[*job.overrides, f"hydra.sweep.dir='{sweep_dir}'"] for job in jobs]
            try:
                results: Sequence[Any] | None = self.launcher.launch(launch_overrides, initial_job_idx=next_job)
            except Exception as err:  # a launcher that lost the batch's JobReturns (killed array job)
                log.warning("The launcher raised %s: %s; reading each trial's record instead.", type(err).__name__, err)
                results = None
            finally:
                watchdog.stop()
            for i, job in enumerate(jobs):
                self._settle(job, None if results is None else results[i], sweep_dir)
                strategy.tell(job.job_num, job.overrides, job.objective, job.status)
                ledger.append(
                    "finished",
                    job=job.job_num,
                    status=job.status,
                    objective=job.objective,
                    spend=job.spend.to_dict(),
                    error=job.error,
                )
                tally.add(job)
            if results is not None:
                returns.append(results)
            next_job += len(jobs)
            if tally.counted and tally.failed / tally.counted > self.max_failure_rate:
                reason = f"failure rate {tally.failed}/{tally.counted} over max_failure_rate={self.max_failure_rate}"
                self._finish(ledger, sweep_dir, trials, total(), reason, elapsed_before + time.monotonic() - started)
                errors = "; ".join(f"job {t.job_num}: {t.error}" for t in trials if t.status == "failed")
                raise RuntimeError(f"Budget sweep stopped: {reason}. {errors}")
        self._finish(ledger, sweep_dir, trials, total(), reason, elapsed_before + time.monotonic() - started)
        return returns

    # -- helpers -------------------------------------------------------------------------------------------------

    def _load(
        self, ledger: Ledger, sweep_dir: Path, search: dict[str, Any]
    ) -> tuple[list[Trial], int, float, list[tuple[int, list[str]]]]:
        """Start a ledger, or (resume) rebuild the trials from one.

        Returns the trials so far, how many jobs the strategy had proposed, the wall time of earlier sessions, and
        the overrides of interrupted trials (billed at their last heartbeat, recorded ``interrupted``, run again).
        """
        header = ledger.header()
        budget = {"budget": self.budget.to_dict(), "max_trials": self.max_trials}
        if header is None:
            if ledger.path.exists() and ledger.events():
                raise BudgetConfigError(f"{ledger.path} has no header line: it is not a greenai ledger.")
            ledger.append("header", search=search, fingerprint=_fingerprint(search), **budget, grid=self.grid.to_dict())
            return [], 0, 0.0, []
        if not self.resume:
            raise BudgetConfigError(
                f"{sweep_dir} already holds a greenai sweep. Pass hydra.sweeper.resume=true to continue it, or choose "
                "another hydra.sweep.dir."
            )
        if header.get("fingerprint") != _fingerprint(search):
            raise BudgetConfigError(
                "The search space changed since this sweep started, so it cannot be resumed: was "
                f"{header.get('search')}, now {search}. Use a new hydra.sweep.dir for a new search."
            )
        if header.get("budget") != budget["budget"] or header.get("max_trials") != budget["max_trials"]:
            raise BudgetConfigError(
                f"The budget changed since this sweep started (was {header.get('budget')}, max_trials "
                f"{header.get('max_trials')}; now {budget['budget']}, max_trials {budget['max_trials']}). A resume "
                "continues toward the same total: restore the original budget, or start a new sweep dir."
            )
        launched: dict[int, Trial] = {}
        finished: dict[int, Trial] = {}
        rerun_of: set[int] = set()  # interrupted jobs that a later session already ran again
        proposed = 0  # jobs the strategy proposed (reruns excluded)
        elapsed = 0.0
        for event in ledger.events():
            if event["event"] == "launched":
                launched[event["job"]] = Trial(event["job"], event["overrides"])
                if event.get("rerun_of") is None:
                    proposed += 1
                else:
                    rerun_of.add(int(event["rerun_of"]))
            elif event["event"] == "finished":
                trial = launched.get(event["job"], Trial(event["job"], []))
                trial.status, trial.objective = event["status"], event.get("objective")
                trial.spend, trial.error = Spend.from_dict(event.get("spend", {})), event.get("error")
                finished[trial.job_num] = trial
            elif event["event"] == "stopped":
                elapsed += float(event.get("elapsed_s", 0.0))
        for job_num, trial in launched.items():
            if job_num in finished:
                continue
            record = TrialRecord.load(sweep_dir, job_num)
            trial.spend = record.spend if record is not None else Spend()
            trial.status = "interrupted"
            trial.error = "the sweep stopped while it ran: billed at its last heartbeat, run again on resume"
            ledger.append(
                "finished",
                job=job_num,
                status=trial.status,
                objective=None,
                spend=trial.spend.to_dict(),
                error=trial.error,
            )
            finished[job_num] = trial
        retry = [
            (t.job_num, t.overrides)
            for t in finished.values()
            if t.status == "interrupted" and t.job_num not in rerun_of
        ]
        ledger.append("resumed", trials=len(finished), rerun=[job for job, _ in retry])
        return sorted(finished.values(), key=lambda t: t.job_num), proposed, elapsed, retry

    def _costs(self, trial: Trial) -> dict[str, float | None]:
        costs = self.budget.spent(trial.spend, self.grid)
        if "wall_hours" in costs:
            costs["wall_hours"] = trial.spend.duration_s / S_PER_HOUR
        return costs

    def _allowance(self, estimates: Mapping[str, float | None]) -> dict[str, float]:
        """A trial's own limits: ``trial_allowance`` x the estimate, in grid-free units the job can check alone."""
        if self.trial_allowance is None:
            return {}
        out: dict[str, float] = {}
        grid = self.grid
        for quantity, estimate in estimates.items():
            if estimate is None:
                continue
            limit = estimate * self.trial_allowance
            if quantity == "energy_kwh":  # the budget counts facility energy; the job meters IT energy
                out["energy_kwh"] = min(out.get("energy_kwh", float("inf")), limit / grid.pue)
            elif quantity == "co2e_kg" and grid.intensity_g_per_kwh > 0:
                energy = limit * 1000 / (grid.intensity_g_per_kwh * grid.pue)
                out["energy_kwh"] = min(out.get("energy_kwh", float("inf")), energy)
            elif quantity in ("flops", "gpu_hours"):
                out[quantity] = limit
        return out

    def _settle(self, job: Trial, ret: Any, sweep_dir: Path) -> None:
        """Decide a finished job's status, objective and spend from its JobReturn and its trial record."""
        from hydra.core.utils import JobStatus

        record = TrialRecord.load(sweep_dir, job.job_num)
        job.spend = record.spend if record is not None else Spend()
        if ret is None:
            if record is not None and record.status in ("completed", "budget_stopped") and record.objective is not None:
                job.status, job.objective = record.status, record.objective
            elif record is None:
                job.status, job.error = "failed", "no JobReturn and no heartbeat: the launcher lost it before it ran"
            else:
                job.status, job.error = (
                    "failed",
                    "no JobReturn (killed, or its launcher failed): billed at its heartbeat",
                )
            return
        if ret.status != JobStatus.COMPLETED:
            job.status, job.error = "failed", f"{type(ret._return_value).__name__}: {ret._return_value}"
            return
        try:
            job.objective = extract_objective(ret.return_value, self.objective_key)
        except ObjectiveError as err:
            if self.needs_objective:
                job.status, job.error = "failed", str(err)
                return
            job.error = f"no objective: {err}"  # a plain grid sweep runs tasks that return anything
        job.status = "budget_stopped" if record is not None and record.status == "budget_stopped" else "completed"
        if record is None and any(q != "wall_hours" for q in self.budget.limits):
            log.warning(
                "Job %d wrote no spend: is an EnergyMonitor, FlopMonitor or Meter in the task? Its spend counts as 0.",
                job.job_num,
            )

    def _finish(
        self, ledger: Ledger, sweep_dir: Path, trials: list[Trial], spend: Spend, reason: str, elapsed_s: float
    ) -> None:
        spent = self.budget.spent(spend, self.grid) if not self.budget.is_unlimited else {}
        ledger.append("stopped", reason=reason, elapsed_s=elapsed_s, trials=len(trials))
        write_report(sweep_dir, self, trials, spend, spent, reason)
        log.info("Budget sweep stopped: %s (%d trials).", reason, len(trials))
        print(f"[greenai] sweep stopped: {reason}; {len(trials)} trials; see {sweep_dir / 'budget_report.json'}")
        self._present(sweep_dir)

    def _present(self, sweep_dir: Path) -> None:
        """Print the sweep's price tag, write its plots, and push its curves to the app's logger (``cfg.logger``)."""
        from lightning_greenai.reporting.render import to_text, write_plots
        from lightning_greenai.reporting.summary import SweepSummary, load

        summary = load(sweep_dir)
        assert isinstance(summary, SweepSummary)
        if self.report:
            print(to_text(summary))
            try:
                plots = write_plots(summary, sweep_dir / "greenai_report")
                print("[greenai] plots: " + ", ".join(str(p) for p in plots))
            except ImportError:
                print("[greenai] plots need matplotlib: pip install matplotlib")
        logger_cfg = self.config.get("logger") if self.config is not None else None
        if self.log_curves and logger_cfg is not None and "_target_" in logger_cfg:
            try:
                self._publish(summary, logger_cfg, sweep_dir)
            except Exception as err:  # a tracker problem must not hide a finished sweep's results
                log.warning("Could not log the sweep's curves to %s: %s", logger_cfg.get("_target_"), err)

    @staticmethod
    def _publish(summary: Any, logger_cfg: Any, sweep_dir: Path) -> None:
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        from lightning_greenai.trackers import publish

        target = str(logger_cfg["_target_"])
        name_key = "run_name" if target.endswith("MLFlowLogger") else "name"
        overrides: dict[str, Any] = {name_key: "greenai-sweep"}
        node = OmegaConf.to_container(logger_cfg, resolve=False)
        if isinstance(node, dict) and "save_dir" in node:
            overrides["save_dir"] = str(sweep_dir)  # the jobs' output dirs are theirs; the summary run is the sweep's
        logger = instantiate(logger_cfg, **overrides)
        publish(summary, logger)
        print(f"[greenai] budget curves logged to {type(logger).__name__} (run 'greenai-sweep')")


class _Tally:
    """Running totals of finished trials, so each batch's bookkeeping costs the same however long the sweep."""

    def __init__(self, sweep: BudgetSweep, trials: list[Trial]) -> None:
        self.sweep, self.trials = sweep, trials
        self.spend = Spend()
        self.counted = self.failed = 0
        self.costs: dict[str, list[float]] = {q: [] for q in sweep.budget.limits}  # kept sorted
        finished = list(trials)
        trials.clear()
        for trial in finished:
            self.add(trial)

    def add(self, trial: Trial) -> None:
        """Count a finished trial."""
        self.trials.append(trial)
        self.spend = self.spend + trial.spend
        if trial.status != "interrupted":
            self.counted += 1
            self.failed += trial.status == "failed"
        for quantity, cost in self.sweep._costs(trial).items():
            if cost is not None and quantity in self.costs:
                bisect.insort(self.costs[quantity], cost)

    def estimates(self) -> dict[str, float | None]:
        """Per-trial cost estimate of each limited quantity."""
        sweep = self.sweep
        return {
            q: estimate_trial_cost(sweep.prior_cost.get(q), costs, sweep.cost_quantile, presorted=True)
            for q, costs in self.costs.items()
        }


class _Watchdog:
    """Sum the heartbeats of in-flight jobs and write the STOP file when the budget is reached."""

    def __init__(
        self, sweep: BudgetSweep, sweep_dir: Path, jobs: list[Trial], done: list[Trial], total: Callable[[], Spend]
    ) -> None:
        self.sweep, self.sweep_dir, self.jobs, self.done, self.total = sweep, sweep_dir, jobs, done, total
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="greenai-watchdog", daemon=True)
        self.stopped = False

    def start(self) -> None:
        """Start polling (not for policy ``finish``, or an unlimited budget)."""
        if self.sweep.stop_policy != "finish" and not self.sweep.budget.is_unlimited:
            self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.wait(self.sweep.poll_s):
            self.check_once()

    def check_once(self) -> bool:
        """Sum the spend of finished and in-flight trials; write STOP once it is over the budget. Returns STOP."""
        in_flight = Spend()
        for job in self.jobs:
            record = TrialRecord.load(self.sweep_dir, job.job_num)
            if record is not None:
                in_flight = in_flight + record.spend
        fraction = self.sweep.budget.fraction_spent(self.total() + in_flight, self.sweep.grid)
        if fraction > 1.0 + 1e-9 and not self.stopped:  # strictly over (rounding aside): a trial ending at it finishes
            self.stopped = True
            write_json_atomic(
                state_dir(self.sweep_dir) / "STOP",
                {"policy": self.sweep.stop_policy, "reason": f"budget reached ({fraction:.1%} spent)"},
            )
        return self.stopped


def write_report(
    sweep_dir: Path,
    sweep: BudgetSweep,
    trials: Sequence[Trial],
    spend: Spend,
    spent: Mapping[str, float | None],
    reason: str,
) -> None:
    """Write ``budget_report.json`` and ``budget_curve.csv`` into the sweep dir."""
    by_status: dict[str, int] = {}
    for t in trials:
        by_status[t.status] = by_status.get(t.status, 0) + 1
    better = max if sweep.direction == "max" else min
    scored = [t for t in trials if t.objective is not None and t.status in ("completed", "budget_stopped")]
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
        "is_estimate": spend.is_estimate,
        "trials": len(trials),
        "trials_by_status": by_status,
        "strategy": sweep.strategy_name,
        "iid": sweep.strategy_name == "random",
        "direction": sweep.direction,
        "best": None
        if best is None
        else {"job": best.job_num, "objective": best.objective, "overrides": best.overrides},
        "grid": sweep.grid.to_dict(),
        "stop_policy": sweep.stop_policy,
    }
    write_json_atomic(sweep_dir / "budget_report.json", report)
    rows = []
    cumulative = Spend()
    best_so_far: float | None = None
    for t in sorted(trials, key=lambda t: t.job_num):
        cumulative = cumulative + t.spend
        if t.objective is not None and t.status in ("completed", "budget_stopped"):
            best_so_far = t.objective if best_so_far is None else better(best_so_far, t.objective)
        co2e_g = sweep.grid.co2e_g(cumulative)
        rows.append(
            {
                "job": t.job_num,
                "status": t.status,
                "score": t.objective,
                "best_so_far": best_so_far,
                "energy_kwh": cumulative.energy_kwh,
                "flops": cumulative.flops,
                "co2e_kg": None if co2e_g is None else co2e_g / 1000,
                "money": sweep.grid.money(cumulative),
                "gpu_hours": cumulative.gpu_hours,
                "overrides": " ".join(t.overrides),
            }
        )
    with open(sweep_dir / "budget_curve.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["job"])
        writer.writeheader()
        writer.writerows(rows)
