"""What stopping trials early bought a sweep: the rung table, the energy of pruned trials, what running them on needs.

Read from what the ledger holds: each trial's ``finished`` event (status, spend, reports of the monitored score, how
far it said it would train) and the ``rung`` events (each decision at a rung). The one reading for every surface:
``budget_report.json``, ``greenai report`` (text, JSON, Markdown), the printed tag and the trackers' rung table.

What a random search of the same trials run to the end would have needed is an estimate, made per unit of resource:
a pruned trial that spent E joules in its first r epochs would have spent about ``E / r x max_resource``; every other
trial counts at what it spent (it ran to its end, or stopped for a reason that pruning did not change).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightning_greenai.sweep.config import RUNG_STRATEGIES
from lightning_greenai.sweep.history import Trial
from lightning_greenai.trial.record import TrialStatus
from lightning_greenai.units import format_resource, j_to_kwh

__all__ = ["EarlyStopping", "RungRow", "early_stopping", "stops_trials_early"]

#: What one unit of a spend resource is called in the estimate's words.
_SPEND_UNIT = {"energy_kwh": "kWh", "flops": "FLOP"}


def stops_trials_early(search: Mapping[str, Any]) -> bool:
    """Whether a sweep's search (the ledger header's ``search``) stops trials at rungs: asha, hyperband, a pruner."""
    return str(search.get("strategy")) in RUNG_STRATEGIES or search.get("pruner") is not None


@dataclass(frozen=True)
class RungRow:
    """One rung: the trials that reached it (judged there), those stopped there, and what they spent.

    A Hyperband trial of a later bracket is first judged, and counted, at its bracket's first rung.

    ``rung`` is 1-based (ASHA, Hyperband); ``None`` for an Optuna pruner, whose every step is a decision.
    ``full_energy_j``: what the trials stopped here would have spent run to their end (an estimate).
    """

    rung: int | None
    resource: float
    reached: int
    pruned: int
    pruned_energy_j: float
    full_energy_j: float

    def label(self, resource: str) -> str:
        """``rung 1 (1 epoch)``, ``rung 2 (3 epochs)``, or an Optuna pruner's ``step 3 (4 epochs)`` (steps from 0)."""
        if self.rung is None:
            return f"step {self.resource - 1:g} ({format_resource(self.resource, resource)})"
        return f"rung {self.rung} ({format_resource(self.resource, resource)})"

    def to_dict(self) -> dict[str, Any]:
        """The row as ``budget_report.json``, ``greenai report --json`` and the trackers' ``rungs.csv`` hold it."""
        return {
            "rung": self.rung,
            "resource": self.resource,
            "reached": self.reached,
            "went_on": self.reached - self.pruned,
            "pruned": self.pruned,
            "pruned_energy_kwh": j_to_kwh(self.pruned_energy_j),
            "run_to_end_energy_kwh": j_to_kwh(self.full_energy_j),
        }


@dataclass(frozen=True)
class EarlyStopping:
    """A sweep that stops trials early, as its ledger tells it (see the module docstring).

    ``energy_j``: what every trial spent; ``full_energy_j``: what the same trials run to their end would have spent
    (an estimate); ``not_estimated``: pruned jobs whose energy per unit of resource is unknown (no report, or no
    ``max_resource``), counted at what they spent.
    """

    strategy: str
    resource: str
    trials: int
    pruned: int
    rows: list[RungRow]
    pruned_energy_j: float
    energy_j: float
    full_energy_j: float
    max_resources: list[float] = field(default_factory=list)
    not_estimated: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def saving_ratio(self) -> float | None:
        """How many times less energy the sweep spent than its trials run to the end would (``None``: none spent)."""
        return self.full_energy_j / self.energy_j if self.energy_j > 0 else None

    @property
    def estimated(self) -> bool:
        """Whether the run-to-the-end figure estimates anything: ``False`` when no pruned trial's end is known."""
        return not self.pruned or bool(self.max_resources)

    @property
    def estimate_method(self) -> str:
        """How the run-to-the-end energy was estimated, in words."""
        if not self.estimated:  # every pruned trial at what it spent: the figure is the spend, no saving measured
            return (
                f"not estimated (no pruned trial's max_resource is known: rungs counting {self.resource} without "
                "max_resource); every trial counts at what it spent; set the strategy's max_resource to estimate it"
            )
        unit = self.resource[:-1] if self.resource in ("epochs", "steps") else _SPEND_UNIT.get(self.resource, "unit")
        ends = sorted(set(self.max_resources))
        end = format_resource(ends[0], self.resource) if len(ends) == 1 else f"its own max {self.resource}"
        text = (
            f"an estimate: each pruned trial's energy per {unit} so far x {end}, as if every {unit} cost the same; "
            "the other trials at what they spent"
        )
        if self.not_estimated:
            text += f"; pruned job(s) {self.not_estimated} without a known max_resource at what they spent"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The section ``early_stopping`` of ``budget_report.json`` and ``greenai report --json``."""
        ratio = self.saving_ratio if self.estimated else None
        known = self.estimated  # else no figure for the run to the end: null, not the spend as if nothing was saved
        return {
            "strategy": self.strategy,
            "resource": self.resource,
            "trials": self.trials,
            "pruned": self.pruned,
            "rungs": [row.to_dict() for row in self.rows],
            "pruned_energy_kwh": j_to_kwh(self.pruned_energy_j),
            "energy_kwh": j_to_kwh(self.energy_j),
            "run_to_end_energy_kwh": j_to_kwh(self.full_energy_j) if known else None,
            "saved_energy_kwh": j_to_kwh(self.full_energy_j - self.energy_j) if known else None,
            "saving_ratio": ratio,
            "run_to_end_is_estimate": True,
            "run_to_end_method": self.estimate_method,
            "not_estimated": list(self.not_estimated),
            "notes": list(self.notes),
        }


def _resource_name(search: Mapping[str, Any]) -> str:
    """What the rungs count: the ``asha``/``hyperband`` block's ``resource``; an Optuna pruner's steps."""
    strategy = str(search.get("strategy"))
    block = search.get(strategy)
    if strategy in RUNG_STRATEGIES and isinstance(block, Mapping):
        return str(block.get("resource") or "epochs")
    return "epochs" if strategy in RUNG_STRATEGIES else "steps"


def _configured_max(search: Mapping[str, Any]) -> float | None:
    block = search.get(str(search.get("strategy")))
    value = block.get("max_resource") if isinstance(block, Mapping) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None


def _full_energy(trial: Trial, stop: Mapping[str, Any] | None, configured: float | None) -> tuple[float, float | None]:
    """``(energy run to the end, the max_resource used)`` of a pruned trial; ``None`` for the max when unknown."""
    energy_j = trial.spend.total_energy_j or 0.0
    done = trial.reports[-1][0] if trial.reports else float((stop or {}).get("resource") or 0.0)
    recorded = (stop or {}).get("max_resource")
    end = trial.max_resource or (float(recorded) if isinstance(recorded, int | float) else None) or configured
    if end is None or not done > 0:
        return energy_j, None
    return energy_j / done * max(end, done), max(end, done)


def early_stopping(
    trials: Sequence[Trial], events: Iterable[Mapping[str, Any]], search: Mapping[str, Any]
) -> EarlyStopping | None:
    """The rung table and energy account of a sweep that stops trials early; ``None`` for one that does not.

    ``trials``: the finished trials (as :func:`~lightning_greenai.sweep.history.replay` reads them); ``events``: the
    ledger's events (only ``rung`` ones are read); ``search``: the header's. An interrupted trial's decisions are left
    out, as the sweep's resume forgets them (it runs again under a new number); a trial counts as pruned at the rung
    of its last ``pruned`` decision if its status is ``pruned`` (a late decision on a trial that ran on is not).
    """
    rung_events = [e for e in events if e.get("event") == "rung"]
    if not stops_trials_early(search) and not rung_events:
        return None
    by_job = {t.job_num: t for t in trials if t.status != TrialStatus.INTERRUPTED}
    reached: dict[tuple[int | None, float], set[int]] = {}
    stops: dict[int, Mapping[str, Any]] = {}
    for event in rung_events:
        job = int(event["job"])
        if job not in by_job:
            continue
        reached.setdefault((event.get("rung"), float(event["resource"])), set()).add(job)
        if event.get("decision") == "pruned" and not event.get("late"):
            stops[job] = event
    configured = _configured_max(search)
    pruned_jobs = [t for t in by_job.values() if t.status == TrialStatus.PRUNED]
    pruned_at: dict[tuple[int | None, float], list[tuple[float, float]]] = {}
    pruned_j = full_j = 0.0
    max_resources: list[float] = []
    not_estimated: list[int] = []
    unplaced: list[int] = []
    for trial in sorted(pruned_jobs, key=lambda t: t.job_num):
        stop = stops.get(trial.job_num)
        energy_j = trial.spend.total_energy_j or 0.0
        trial_full_j, end = _full_energy(trial, stop, configured)
        pruned_j, full_j = pruned_j + energy_j, full_j + trial_full_j
        if end is None:
            not_estimated.append(trial.job_num)
        else:
            max_resources.append(end)
        if stop is None:
            unplaced.append(trial.job_num)
        else:
            pruned_at.setdefault((stop.get("rung"), float(stop["resource"])), []).append((energy_j, trial_full_j))
    rows = [
        RungRow(
            rung=key[0],
            resource=key[1],
            reached=len(jobs),
            pruned=len(pruned_at.get(key, [])),
            pruned_energy_j=sum(e for e, _ in pruned_at.get(key, [])),
            full_energy_j=sum(f for _, f in pruned_at.get(key, [])),
        )
        for key, jobs in sorted(reached.items(), key=lambda item: (item[0][1], item[0][0] or 0))
    ]
    energy_j = sum(t.spend.total_energy_j or 0.0 for t in trials)
    notes = (
        [f"pruned job(s) {unplaced} have no readable rung decision in the ledger: in the totals, in no rung's row"]
        if unplaced
        else []
    )
    return EarlyStopping(
        strategy=str(search.get("strategy", "unknown")),
        resource=_resource_name(search),
        trials=len(trials),
        pruned=len(pruned_jobs),
        rows=rows,
        pruned_energy_j=pruned_j,
        energy_j=energy_j,
        full_energy_j=energy_j - pruned_j + full_j,
        max_resources=max_resources,
        not_estimated=not_estimated,
        notes=notes,
    )
