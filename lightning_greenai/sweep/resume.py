"""Starting a sweep's ledger, or resuming a sweep from one.

A resume rebuilds the books from the ledger: the trials a crash left open are taken from their final records or
billed at their last heartbeat (and run again), the wall time of the crashed sessions still counts, and a resume that
would change the search, the grid its spend is priced at or the storage its jobs' records are in is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning_greenai.budget import Budget
from lightning_greenai.errors import BudgetConfigError, GridConfigError
from lightning_greenai.grid import Grid
from lightning_greenai.hardware import describe_hardware
from lightning_greenai.spend import Spend
from lightning_greenai.sweep.books import Book
from lightning_greenai.sweep.history import History, Trial, limits_in_force, replay
from lightning_greenai.sweep.ledger import Ledger
from lightning_greenai.sweep.settle import await_siblings
from lightning_greenai.sweep.strategies import canonical_overrides
from lightning_greenai.trial.channel import masked, read_record, storage_url
from lightning_greenai.trial.record import TrialStatus
from lightning_greenai.units import format_duration, format_quantity

if TYPE_CHECKING:
    from lightning_greenai.sweep.engine import BudgetSweep

__all__ = ["load", "sweep_id"]

log = logging.getLogger(__name__)


def _fingerprint(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _search_changes(then: Any, now: Mapping[str, Any], prefix: str = "") -> str:
    """What differs between two recorded searches, key by key (``a.b: x vs y``), not the two whole searches."""
    if not isinstance(then, Mapping):
        return f"{prefix or 'the search'}: {then!r} vs {dict(now)!r}"
    changes = []
    for key in sorted(set(then) | set(now), key=str):
        old, new = then.get(key), now.get(key)
        if old == new:
            continue
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            changes.append(_search_changes(old, new, f"{prefix}{key}."))
        else:
            changes.append(f"{prefix}{key}: {old!r} vs {new!r}")
    return "; ".join(changes) or f"{prefix or 'the search'}: spelled alike, parsed apart"


def _search_key(search: Any) -> str | None:
    """The fingerprint of a search as parsed: its overrides compared by meaning, not by spelling (``None``: damaged)."""
    if not isinstance(search, Mapping) or not isinstance(search.get("arguments"), list):
        return None
    from hydra.errors import HydraException

    try:
        arguments = canonical_overrides([str(a) for a in search["arguments"]])
    except (HydraException, ValueError):  # a recorded override Hydra cannot parse: no search this one can be
        return None
    return _fingerprint({**search, "arguments": arguments})


def sweep_id(ledger: Ledger, sweep_dir: Path) -> str:
    """The id that keys a sweep's signals in a storage: its ledger's, or a new one for a new sweep.

    A sweep begun before ids were recorded keeps its sweep dir as its key, so its resume finds its rows.
    """
    header = ledger.header()
    if header is None:
        return uuid.uuid4().hex
    recorded = header.get("sweep_id")
    return recorded if isinstance(recorded, str) and recorded else str(sweep_dir)


def load(
    sweep: BudgetSweep, ledger: Ledger, sweep_dir: Path, search: dict[str, Any]
) -> tuple[Book, int, list[Trial], list[Trial]]:
    """Start a ledger, or (resume) rebuild the sweep from one.

    Returns the book of trials so far, how many jobs the strategy had proposed, the trials to run again (billed
    at their last heartbeat, recorded ``interrupted``), and trials that finished while no sweeper watched.
    """
    budget = {"budget": sweep.budget.to_dict(), "max_trials": sweep.max_trials}
    book = Book(sweep, Spend())
    header = _header(sweep, ledger, sweep_dir, search, budget)
    if header is None:
        return book, 0, [], []
    history = replay(ledger.events())
    # a job the crashed sweeper left running (an orphaned worker, a SLURM job) finishes and is taken as it ends
    await_siblings(sweep, list(history.open.values()), why="still running from the sweeper that stopped")
    recovered, interrupted = _take_open_trials(sweep, ledger, history)
    last_alive = {
        job: record.updated_at
        for session in history.sessions
        for job in session.jobs
        if (record := read_record(sweep.jobs_channel, job, patience_s=60.0)) is not None
    }
    sweep.elapsed_before_s = history.elapsed_s(last_alive)
    for trial in sorted(history.finished.values(), key=lambda t: t.job_num):
        book.add(trial)
    _say_budget_change(sweep, limits_in_force(ledger.events()) or header, book)
    retry = [
        t for t in history.finished.values() if t.status == TrialStatus.INTERRUPTED and t.job_num not in history.rerun
    ]
    retry.sort(key=lambda t: t.job_num)
    ledger.append(
        "resumed",
        trials=len(history.finished),
        rerun=[t.job_num for t in retry],
        earlier_wall_s=sweep.elapsed_before_s,
        **budget,
    )
    billed = sum((t.spend for t in interrupted), Spend())
    sweep.on_note(
        f"[greenai] resuming {sweep_dir}: {len(history.finished)} trials on record, "
        f"{format_duration(sweep.elapsed_before_s)} of wall time in earlier sessions"
        + (f"; recovered from their records: jobs {[t.job_num for t in recovered]}" if recovered else "")
        + (
            f"; billed at their last heartbeat ({format_quantity('energy_kwh', billed.energy_kwh)}): jobs "
            f"{[t.job_num for t in interrupted]}"
            if interrupted
            else ""
        )
        + (f"; running again: jobs {[t.job_num for t in retry]}" if retry else "")
    )
    return book, history.proposed, retry, recovered


def _header(
    sweep: BudgetSweep, ledger: Ledger, sweep_dir: Path, search: dict[str, Any], budget: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """The ledger's header, written now for a new sweep (``None``: nothing to resume); a resume is checked first.

    A resume must be asked for, and must keep the search, the grid and the storage the sweep started with.
    """
    header = ledger.header()
    if header is None:
        events = ledger.events()
        if events or ledger.corrupt_lines:
            if not sweep.resume:
                raise BudgetConfigError(
                    f"{ledger.path} has no readable header line. If it is this sweep's ledger, resume it with "
                    "hydra.sweeper.resume=true (its readable events are kept); otherwise choose another "
                    "hydra.sweep.dir."
                )
            log.warning("The ledger's header is damaged (%s); resuming with the configured budget.", ledger.notes)
        ledger.append(
            "header",
            search=search,
            fingerprint=_search_key(search),
            **budget,
            grid=sweep.grid.to_dict(),
            sweep_id=sweep.sweep_id,
            storage=None if sweep.storage is None else masked(storage_url(sweep.storage)),
            score_bounds=None if sweep.score_bounds is None else list(sweep.score_bounds),
            hardware=describe_hardware(),
            stop_when=None if sweep.options.gain_rule is None else dict(sweep.stop_when),
        )
        if not events:
            return None
        header = ledger.header()
        assert header is not None
    elif not sweep.resume:
        raise BudgetConfigError(
            f"{sweep_dir} already holds a greenai sweep. Pass hydra.sweeper.resume=true to continue it, or choose "
            "another hydra.sweep.dir."
        )
    if _search_key(header.get("search")) != _search_key(search):
        raise BudgetConfigError(
            "The search space changed since this sweep started, so it cannot be resumed: "
            f"{_search_changes(header.get('search'), search)} (was then vs now). Use a new hydra.sweep.dir for a new "
            "search."
        )
    _check_grid(sweep, header.get("grid"))
    _check_storage(sweep, header)
    for note in ledger.notes:
        sweep.on_note(f"[greenai] note: {note}")
    return header


def _take_open_trials(sweep: BudgetSweep, ledger: Ledger, history: History) -> tuple[list[Trial], list[Trial]]:
    """Settle the trials the last session left open from their records: (recovered, interrupted ones).

    A final record is taken as it is; a job with none is billed at its last heartbeat and recorded ``interrupted``.
    """
    recovered, interrupted = [], []
    for job_num, trial in sorted(history.open.items()):
        notes: list[str] = []
        record = read_record(sweep.jobs_channel, job_num, notes, patience_s=60.0)
        for note in notes:
            sweep.on_note(f"[greenai] note: {note}")
        trial.take_heartbeat(record)
        if record is not None and record.status in (
            TrialStatus.COMPLETED,
            TrialStatus.BUDGET_STOPPED,
            TrialStatus.PRUNED,
            TrialStatus.NOT_STARTED,
            TrialStatus.KILLED,
        ):
            trial.status, trial.objective, trial.partial = record.status, record.objective, record.partial
            recovered.append(trial)
        elif record is not None and record.status == TrialStatus.FAILED:
            trial.status, trial.error = TrialStatus.FAILED, "failed while the sweeper was down (see its log)"
            recovered.append(trial)
        else:
            trial.status = TrialStatus.INTERRUPTED
            trial.error = "the sweep stopped while it ran: billed at its last heartbeat, run again on resume"
            interrupted.append(trial)
        # written now, but of the session that crashed: its time must not stretch that session over the downtime
        ledger.append("finished", **trial.finished_event(), recovered=True)
        history.finished[job_num] = trial
    return recovered, interrupted


def _check_grid(sweep: BudgetSweep, recorded: Any) -> None:
    """Refuse a resume whose grid prices differently from the one the spend so far was priced and held at."""
    if not isinstance(recorded, Mapping):
        return  # a ledger from before grids were recorded, or a damaged header: nothing to hold against
    try:
        then = Grid.from_dict(recorded)
    except GridConfigError as err:
        log.warning("The ledger's recorded grid is unreadable (%s); resuming with the configured grid.", err)
        return
    changed = then.differences(sweep.grid)
    if changed:
        raise BudgetConfigError(
            "The grid changed since this sweep started, so a resume would re-price what was already spent and "
            f"hold the rest of the budget at other figures ({'; '.join(changed)}; was then vs now). Restore "
            f"hydra.sweeper.grid to what it was ({then.describe()}), or start a new hydra.sweep.dir."
        )


def _check_storage(sweep: BudgetSweep, header: Mapping[str, Any]) -> None:
    """Refuse a resume whose storage is another database than the one its jobs' records are in."""
    if "storage" not in header:
        return  # a ledger from before storages were recorded
    then, now = header.get("storage"), None if sweep.storage is None else masked(storage_url(sweep.storage))
    if then != now:
        files = "none: files in the sweep dir"
        raise BudgetConfigError(
            f"hydra.sweeper.storage reaches another database than when this sweep started (was {then or files}, "
            f"now {now or files}): its jobs' records and signals are there, and a resume without them would bill "
            f"and run its trials again. Resume with hydra.sweeper.storage={then or 'null'} (a relative SQLite "
            "path is read from the launch folder), or start a new hydra.sweep.dir."
        )


def _say_budget_change(sweep: BudgetSweep, recorded: Mapping[str, Any], book: Book) -> None:
    """A resume may raise (or lower) the budget and ``max_trials``: say how, and whether any of it is left.

    The sweep then spends up to the new budget; one already spent stops it at once (its stop rules), running
    nothing. ``recorded``: the ledger event holding the limits of the session before.
    """
    was, was_trials = recorded.get("budget") or {}, recorded.get("max_trials")
    try:
        same = sweep.budget.same_as(was)
        was_text = _budget_text(Budget.parse(was), was_trials)
    except (BudgetConfigError, TypeError, AttributeError):  # a damaged record: whatever it said, this one holds now
        same, was_text = False, f"unreadable ({was!r})"
    if same and was_trials == sweep.max_trials:
        return
    now_text = _budget_text(sweep.budget, sweep.max_trials)
    used = sweep.budget.spent(book.spend, sweep.grid, wall_s=sweep.elapsed_before_s)
    spent = ", ".join(f"{q} {format_quantity(q, v, sweep.budget.currency)}" for q, v in used.items())
    spent += f"{', ' if spent else ''}{book.counted} trial{'' if book.counted == 1 else 's'}"
    over = sweep.budget.exceeded_by(book.spend, sweep.grid, wall_s=sweep.elapsed_before_s)
    if sweep.max_trials is not None and book.counted >= sweep.max_trials:
        over.append("max_trials")
    if over:
        log.warning(
            "The budget changed on resume (was %s, now %s), and the new one is already spent (%s so far: %s): "
            "the sweep stops at once and runs nothing. To continue, resume with a budget above what was spent.",
            was_text,
            now_text,
            spent,
            ", ".join(over),
        )
    else:
        log.info(
            "The budget changed on resume (was %s, now %s): the sweep continues up to the new budget (%s so far).",
            was_text,
            now_text,
            spent,
        )


def _budget_text(budget: Budget, max_trials: int | None) -> str:
    """``10.0 J, max_trials 5``: a budget's limits in readable units."""
    parts = [format_quantity(q, v, budget.currency) for q, v in budget.limits.items()] or ["unlimited"]
    return ", ".join([*parts, f"max_trials {max_trials}"] if max_trials is not None else parts)
