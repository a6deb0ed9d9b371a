"""Read what a run or a sweep left on disk into one summary: from ``price_tag.json`` or a sweep's ledger.

The ledger is the source of truth for a sweep: a sweep still running (no ``stopped`` event), or a ledger with a
corrupt or truncated line, is still summarised from every readable event, with a note saying what was skipped.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_greenai.errors import GridConfigError
from lightning_greenai.grid import Grid
from lightning_greenai.io import parse_json
from lightning_greenai.reporting.early_stop import EarlyStopping, early_stopping, stops_trials_early
from lightning_greenai.spend import Method, Spend
from lightning_greenai.stats.bands import Bands, band_method, check_bounds, tuning_curve_bands
from lightning_greenai.stats.curve import budget_curve
from lightning_greenai.stats.evp import expected_max_curve
from lightning_greenai.stats.extrapolate import MIN_SCORES, Extrapolation, extrapolate
from lightning_greenai.sweep.history import History, Trial, curve_axes, limits_in_force, replay
from lightning_greenai.sweep.ledger import Ledger
from lightning_greenai.trial.record import STATE_DIR
from lightning_greenai.units import kwh_to_j

__all__ = ["EVP_NOTE", "NothingToReportError", "RunSummary", "SweepSummary", "load", "no_evp_reason"]

#: What the reports say in place of EVP, around :func:`no_evp_reason`'s reason.
EVP_NOTE = "not i.i.d. ({reason}): no EVP curve; only the observed best so far is valid"


class NothingToReportError(FileNotFoundError):
    """The folder holds neither a run's price tag nor a sweep's ledger."""


def no_evp_reason(search: Mapping[str, Any], *, stopped_early: bool = False) -> str | None:
    """Why a sweep has no EVP curve (its scores are no i.i.d. sample of full trials); ``None`` when it has one.

    The one decision every surface follows (text, JSON, Markdown, plots, trackers, checklists, ``budget_report.json``):
    only a random search whose trials all run to their end is an i.i.d. sample of full trials. ``search`` is the
    ledger header's; ``stopped_early``: the ledger holds decisions at rungs, whatever the header says. The reason is
    its cause, then after a colon what that means (a plot's title shows the cause).
    """
    strategy = str(search.get("strategy", "grid"))
    if stops_trials_early(search) or stopped_early:
        stopper = "an Optuna pruner stops trials early" if search.get("pruner") else f"{strategy} stops trials at rungs"
        return (
            f"{stopper}: its scores come from trials trained for different lengths, each kept or stopped by the "
            "scores before it, not from i.i.d. full trials"
        )
    if strategy == "random":
        return None
    if strategy == "optuna":
        return "optuna proposes each trial from the scores before it: its trials are not i.i.d. draws"
    return f"a {strategy} search runs its trials in a fixed order: they are not i.i.d. draws"


def _grid(data: Any) -> Grid:
    """The grid a file recorded; the table's world mean if the record is damaged (see :func:`_check_grid`)."""
    try:
        return Grid.from_dict(data)
    except GridConfigError:
        return Grid.from_location()


def _check_grid(data: Any, where: str, notes: list[str]) -> None:
    try:
        Grid.from_dict(data)
    except GridConfigError as err:
        notes.append(f"{where}'s grid is damaged ({err}); CO2e and money use the table's world mean")


def _sanitize_header(header: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """A ledger header whose damaged fields are replaced by empty ones, each with a note (never a traceback)."""
    header = dict(header)
    for key, kind in (("search", dict), ("budget", dict)):
        if key in header and not isinstance(header[key], kind):
            notes.append(f"the ledger header's {key} is damaged ({header[key]!r}); ignored")
            header[key] = {}
    budget = header.get("budget") or {}
    bad = [q for q, v in budget.items() if q != "currency" and not (isinstance(v, int | float) and math.isfinite(v))]
    if bad:
        notes.append(f"the ledger header's budget has unreadable limits ({', '.join(bad)}); they are left out")
        header["budget"] = {q: v for q, v in budget.items() if q not in bad}
    if header.get("hardware") is not None and not isinstance(header["hardware"], dict):
        notes.append(f"the ledger header's hardware record is damaged ({header['hardware']!r}); ignored")
        header["hardware"] = None
    _check_grid(header.get("grid", {}), "the ledger header", notes)
    return header


def _spend_from_summary_fields(tag: dict[str, Any]) -> Spend:
    """Rebuild a price tag's spend from its summary fields (``devices``, ``flops``, ``duration_s``)."""

    def number(value: Any) -> float | None:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
        return float(value) if ok else None

    energy, methods, bounds = {}, {}, {}
    for device in tag.get("devices") or []:
        if isinstance(device, dict) and number(device.get("energy_kwh")) is not None:
            name = str(device["name"])
            energy[name] = kwh_to_j(float(device["energy_kwh"]))
            methods[name] = Method(device.get("method", "estimate"))
            pair = device.get("energy_kwh_bounds")
            if isinstance(pair, list) and len(pair) == 2 and None not in (number(pair[0]), number(pair[1])):
                low, high = kwh_to_j(float(pair[0])), kwh_to_j(float(pair[1]))
                if low <= energy[name] <= high:
                    bounds[name] = (low, high)
    found = tag.get("spend")
    spend: dict[str, Any] = found if isinstance(found, dict) else {}
    return Spend(
        energy_j=energy,
        methods=methods,
        flops=number(tag.get("flops")) or 0.0,
        duration_s=number(tag.get("duration_s")) or 0.0,
        is_estimate=any(m.is_estimate for m in methods.values()),
        energy_bounds_j=bounds,
        gpu_s=number(spend.get("gpu_s")) or 0.0,
        host_share_s=number(spend.get("host_share_s")) or 0.0,
    )


def _sanitize_tag(tag: dict[str, Any], path: Path, notes: list[str]) -> dict[str, Any]:
    """A price tag whose damaged fields are replaced or rebuilt, each with a note (never a traceback)."""
    tag = dict(tag)
    try:
        Spend.from_dict(tag["spend"])
    except (KeyError, TypeError, ValueError) as err:
        what = "missing" if isinstance(err, KeyError) else f"damaged ({err})"
        try:
            rebuilt = _spend_from_summary_fields(tag)
        except ValueError:
            rebuilt = Spend()
        tag["spend"] = rebuilt.to_dict()
        notes.append(f"{path}: its spend is {what}; rebuilt from the tag's devices, flops and duration_s")
    _check_grid(tag.get("grid", {}), str(path), notes)
    for key, kind in (("predictions", dict), ("flops_by_phase", dict), ("hardware", dict), ("parameters", dict)):
        if tag.get(key) is not None and not isinstance(tag[key], kind):
            notes.append(f"{path}: its {key} field is damaged; ignored")
            tag[key] = None
    parameters = tag.get("parameters")
    if parameters is not None and not all(isinstance(parameters.get(k), int) for k in ("total", "trainable")):
        notes.append(f"{path}: its parameters field is damaged; ignored")
        tag["parameters"] = None
    timeline = tag.get("timeline")
    if timeline is not None and not (
        isinstance(timeline, list)
        and all(isinstance(p, list) and len(p) == 2 and all(isinstance(v, int | float) for v in p) for p in timeline)
    ):
        notes.append(f"{path}: its timeline is damaged; no power plot")
        tag["timeline"] = []
    return tag


@dataclass
class RunSummary:
    """One training run: its price tag."""

    path: Path
    tag: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def spend(self) -> Spend:
        """The run's spend."""
        return Spend.from_dict(self.tag.get("spend", {}))

    @property
    def grid(self) -> Grid:
        """The grid constants the run was priced with."""
        return _grid(self.tag.get("grid", {}))


@dataclass
class SweepSummary:
    """A budget sweep: its finished trials in launch order, budget, grid, and why it stopped (if it did)."""

    path: Path
    header: dict[str, Any]
    trials: list[Trial]
    stop_reason: str | None
    notes: list[str] = field(default_factory=list)
    #: The range the score can take (the sweep's ``score_bounds``, or ``greenai report --score-bounds``).
    score_bounds: tuple[float, float] | None = None
    #: The sweep's wall time, every session's (the sweeper's own figure when it stopped last); ``None`` if unknown.
    wall_s: float | None = None
    #: Simultaneous coverage of the tuning-curve bands.
    confidence: float = 0.95
    band_method: str | None = None
    #: The ledger's ``rung`` events (each decision at a rung), in order: the rung table's source.
    rung_events: list[dict[str, Any]] = field(default_factory=list)
    _evp: list[dict[str, Any]] | None = field(default=None, repr=False, compare=False)
    _extrapolation: tuple[Extrapolation | None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.score_bounds is None and self.header.get("score_bounds") is not None:
            try:
                self.score_bounds = check_bounds(self.header["score_bounds"])
            except ValueError as err:
                self.notes.append(f"the ledger's score_bounds are ignored: {err}")
        self._check_bounds()

    def set_score_bounds(self, bounds: tuple[float, float] | None) -> None:
        """Use ``bounds`` (checked against the scores, see :meth:`_check_bounds`) for the bands from now on."""
        self.notes[:] = [n for n in self.notes if not n.startswith("score_bounds [")]  # said again if still so
        self.score_bounds = bounds
        self._evp = None
        self._extrapolation = None
        self._check_bounds()

    def _check_bounds(self) -> None:
        """Scores outside the bounds mean a misread range: drop the bounds (the median band needs none), say so."""
        if self.score_bounds is None:
            return
        low, high = self.score_bounds
        outside = [s for s in self.scores() if not low <= s <= high]
        if outside:
            self.notes.append(
                f"score_bounds [{low:g}, {high:g}] are ignored: score {outside[0]:g} lies outside them (they must be "
                "the range the score can take); the expected best has no band"
            )
            self.score_bounds = None

    @property
    def grid(self) -> Grid:
        """The grid constants of the sweep."""
        return _grid(self.header.get("grid", {}))

    @property
    def strategy(self) -> str:
        """grid, random or optuna."""
        return str(self.header.get("search", {}).get("strategy", "grid"))

    @property
    def direction(self) -> str:
        """Max or min."""
        return str(self.header.get("search", {}).get("direction", "max"))

    @property
    def no_evp_reason(self) -> str | None:
        """Why this sweep has no EVP curve (:func:`no_evp_reason`); ``None`` when it has one."""
        return no_evp_reason(self.header.get("search", {}), stopped_early=bool(self.rung_events))

    @property
    def evp_note(self) -> str | None:
        """What the reports say in place of EVP: why there is none, and which curve is valid instead."""
        reason = self.no_evp_reason
        return None if reason is None else EVP_NOTE.format(reason=reason)

    @property
    def iid(self) -> bool:
        """Whether the trials are i.i.d. full trials (a random search run to the end): only then is EVP valid."""
        return self.no_evp_reason is None

    def early_stopping(self) -> EarlyStopping | None:
        """The rung table and what stopping early saved (``reporting.early_stop``); ``None`` if it stops none early."""
        return early_stopping(self.trials, self.rung_events, self.header.get("search", {}))

    @property
    def spend(self) -> Spend:
        """Total spend of every finished trial."""
        return sum((t.spend for t in self.trials), Spend())

    def ranked_trials(self) -> list[Trial]:
        """Trials that may rank (see :meth:`scores`), in launch order."""
        return [t for t in self.trials if t.ranks]

    def scores(self) -> list[float]:
        """Objectives of trials that may rank (completed, or stopped at their own allowance; see ``is_scored``)."""
        return [float(t.objective) for t in self.trials if t.ranks and t.objective is not None]

    def curve(self) -> list[dict[str, Any]]:
        """Best score so far against cumulative spend, in launch order (valid for any strategy; see ``stats.curve``)."""
        spends = [t.spend for t in self.trials]
        scores = [t.objective if t.ranks else None for t in self.trials]
        direction = "max" if self.direction == "max" else "min"  # a damaged header's direction: min, as always
        points = budget_curve(spends, scores, curve_axes(self.grid), direction=direction)
        return [
            {"job": t.job_num, "status": str(t.status), "score": t.objective, "best_so_far": p.best_so_far}
            | dict(p.spent)
            for t, p in zip(self.trials, points, strict=True)
        ]

    def evp(self) -> list[dict[str, Any]]:
        """Expected best of n trials (both estimators) with its confidence band, and the budget n trials cost.

        Rows for n = 1..N: ``expected``, ``sd``, ``unbiased``; ``median``, ``median_lo``, ``median_hi`` (the median
        best and its simultaneous band, Lourie et al.); ``expected_lo``/``expected_hi`` when the score's bounds are
        known; and ``energy_kwh``, ``flops``, ``gpu_hours``, ``co2e_kg`` (and ``money``): n x the mean trial cost.
        """
        if self._evp is not None:
            return [dict(r) for r in self._evp]
        scores = self.scores()
        if not scores:
            return []
        means = self.mean_trial_cost()
        rows: list[dict[str, Any]] = [dict(r) for r in expected_max_curve(scores, self.direction)]
        bands = self.bands([float(r["n"]) for r in rows])
        for i, row in enumerate(rows):
            row.update(bands.at(i))
            row.update({axis: row["n"] * mean for axis, mean in means.items()})
        self._evp = rows
        return [dict(r) for r in rows]

    def bands(self, n: Sequence[float], *, confidence: float | None = None) -> Bands:
        """The tuning curves at ``n`` trials with their simultaneous bands (:mod:`lightning_greenai.stats.bands`)."""
        return tuning_curve_bands(
            self.scores(),
            n,
            direction=self.direction,
            confidence=self.confidence if confidence is None else confidence,
            bounds=self.score_bounds,
            method=self.band_method,
        )

    #: How far past the trials run the tuning curve is extrapolated, as a multiple of them.
    EXTRAPOLATE_TO = 4

    def extrapolation(self) -> Extrapolation | None:
        """The expected best of N to 4N trials (N: the scored trials), from the quadratic tail of the scores.

        Random search only (:mod:`lightning_greenai.stats.extrapolate`); ``None`` for other strategies, with fewer
        than :data:`~lightning_greenai.stats.extrapolate.MIN_SCORES` scores, or with too few distinct top scores.
        At most 40 values of n, always including N, 2N and 4N.
        """
        if self._extrapolation is None:
            scores = self.scores()
            result = None
            if self.iid and len(scores) >= MIN_SCORES:
                big_n = len(scores)
                end = self.EXTRAPOLATE_TO * big_n
                step = max(1, (end - big_n) // 39)
                ns = sorted({*range(big_n, end + 1, step), 2 * big_n, end})
                result = extrapolate(scores, ns, direction=self.direction, bounds=self.score_bounds)
                if result is not None and self.score_bounds is not None:
                    # The expected best only improves as n grows, so the band's worse edge at N bounds every n past it.
                    last = self.evp()[-1]
                    if self.direction == "max":
                        result = dataclasses.replace(result, lo=[max(v, last["expected_lo"]) for v in result.lo])
                    else:
                        result = dataclasses.replace(result, hi=[min(v, last["expected_hi"]) for v in result.hi])
            self._extrapolation = (result,)
        return self._extrapolation[0]

    def extrapolated_rows(self) -> list[dict[str, Any]]:
        """:meth:`extrapolation` as rows: ``n``, ``expected``, ``lo``, ``hi`` and what n trials cost on each axis."""
        fit = self.extrapolation()
        if fit is None:
            return []
        means = self.mean_trial_cost()
        return [
            {"n": n, "expected": e, "lo": lo, "hi": hi, **{axis: n * mean for axis, mean in means.items()}}
            for n, e, lo, hi in zip(fit.n, fit.expected, fit.lo, fit.hi, strict=True)
        ]

    @property
    def next_trials(self) -> int:
        """How far the gain bound looks ahead: the sweep's ``stop_when.next_trials``, else 10."""
        value = (self.header.get("stop_when") or {}).get("next_trials", 10)
        return value if isinstance(value, int) and value >= 1 else 10

    def marginal_value(
        self, axis: str = "energy_kwh", next_trials: int | None = None, points: int = 100
    ) -> list[dict[str, Any]]:
        """What one more unit of compute buys, against the compute spent (random search only).

        Rows: ``n`` trials, ``spent`` (n x the mean trial cost on ``axis``), ``expected_gain_per_unit`` (the EVP
        curve's rise from n to n + 1 trials per unit: the plug-in estimate) and, with score bounds, from 5 trials
        on, ``upper_gain_per_unit`` (the stop rule's 95 % upper bound on what the next ``next_trials`` trials add,
        per unit, from the first n scores in launch order; at most ``points`` of them). Empty for other strategies.
        """
        from lightning_greenai.stats.gain import gain_upper_bound

        next_trials = next_trials or self.next_trials
        rows = self.evp() if self.iid else []
        cost = self.mean_trial_cost().get(axis)
        if len(rows) < 2 or not cost:
            return []
        sign = 1.0 if self.direction == "max" else -1.0
        out: list[dict[str, Any]] = [
            {
                "n": a["n"],
                "spent": a["n"] * cost,
                "expected_gain_per_unit": max(sign * (b["expected"] - a["expected"]), 0.0) / cost,
                "upper_gain_per_unit": None,
            }
            for a, b in itertools.pairwise(rows)
        ]
        if self.score_bounds is not None:
            scores = self.scores()  # launch order
            step = max(1, len(out) // points)
            for row in out[4::step]:
                bound = gain_upper_bound(
                    scores[: row["n"]], next_trials=next_trials, bounds=self.score_bounds, direction=self.direction
                )
                row["upper_gain_per_unit"] = bound / (next_trials * cost)
        return out

    @property
    def method_of_bands(self) -> str:
        """``"ld"`` or ``"ks"``: the band method for this sweep's number of scores."""
        return band_method(len(self.scores()), self.band_method)

    def mean_trial_cost(self) -> dict[str, float]:
        """The mean cost of one scored trial on each budget axis (``money`` only when priced)."""
        spends = [t.spend for t in self.trials if t.ranks]
        if not spends:
            return {}
        count = len(spends)
        means = {
            "energy_kwh": sum((s.energy_kwh or 0.0) for s in spends) / count,
            "flops": sum(s.flops for s in spends) / count,
            "gpu_hours": sum(s.gpu_hours for s in spends) / count,
            "co2e_kg": sum(self.grid.co2e_g(s) or 0.0 for s in spends) / count / 1000,
        }
        money = [m for s in spends if (m := self.grid.money(s)) is not None]
        if money:
            means["money"] = sum(money) / len(money)
        return means


def load(path: str | Path) -> RunSummary | SweepSummary:
    """Summarise the run or sweep in ``path``.

    Raises:
        NothingToReportError: no ``price_tag.json`` and no ``.greenai/ledger.jsonl`` under ``path``.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".json":  # a price tag named directly
        tags = [path]
        path = path.parent
    elif not path.is_dir():
        raise NothingToReportError(f"{path} is not a folder (nor a price tag's .json file).")
    else:
        tags = []
    ledger_path = path / STATE_DIR / "ledger.jsonl"
    if not tags and ledger_path.is_dir():
        raise NothingToReportError(f"{ledger_path} is a folder, not a sweep's ledger.")
    if not tags and ledger_path.exists():
        return _load_sweep(path, Ledger(ledger_path))
    tags = tags or sorted(path.glob("price_tag.json")) or sorted(path.glob("**/price_tag.json"))
    if tags:
        newest = max(tags, key=lambda p: p.stat().st_mtime)
        notes = [f"{len(tags)} price tags under {path}: reporting the newest, {newest}"] if len(tags) > 1 else []
        try:
            tag = parse_json(newest.read_bytes())
        except ValueError as err:
            raise NothingToReportError(f"{newest} is not valid JSON ({err}).") from err
        except OSError as err:
            raise NothingToReportError(f"{newest} cannot be read ({err}).") from err
        if not isinstance(tag, dict):
            raise NothingToReportError(f"{newest} holds a {type(tag).__name__}, not a price tag (a JSON object).")
        return RunSummary(newest, _sanitize_tag(tag, newest, notes), notes)
    raise NothingToReportError(
        f"No run or sweep in {path}: expected a run's price_tag.json (written by EnergyMonitor into the trainer's "
        f"log dir) or a sweep's {STATE_DIR}/ledger.jsonl (hydra/sweeper=greenai)."
    )


def _load_sweep(path: Path, ledger: Ledger) -> SweepSummary:
    events = ledger.events()
    notes = []
    notes.extend(ledger.notes)  # each damaged line: where, and what is wrong with it
    if ledger.truncated_tail:
        notes.append("the ledger's last line is incomplete (the sweep was killed mid-write); it was skipped")
    header = next((e for e in events if e.get("event") == "header"), {})
    limits = limits_in_force(events)
    if limits is not None and limits.get("event") == "resumed":  # a resume changed them: the latest hold
        header = {**header, "budget": limits.get("budget"), "max_trials": limits.get("max_trials")}
    header = _sanitize_header(header, notes)
    if not header:
        notes.append("the ledger has no readable header: search, budget and grid are unknown (the table's world mean)")
    history = replay(events)  # the sweeper's own reading of its ledger
    trials = sorted(history.finished.values(), key=lambda t: t.job_num)
    stopped = [e for e in events if e.get("event") == "stopped"]
    if not stopped or (stopped and events and events[-1].get("event") != "stopped"):
        notes.append(
            f"the sweep is still running or was interrupted: {len(history.open)} trial(s) in flight, "
            "reported as far as the ledger goes"
        )
    return SweepSummary(
        path,
        header,
        trials,
        stopped[-1]["reason"] if stopped else None,
        notes,
        wall_s=_wall_s(events, history),
        rung_events=[e for e in events if e.get("event") == "rung"],
    )


def _wall_s(events: Sequence[dict[str, Any]], history: History) -> float:
    """The sweep's wall time: what its sweeper said when it stopped last, else its sessions' as far as the ledger goes.

    Not the trials' times added up: trials that run together overlap, and the sweeper's own time between them counts.
    """
    last = events[-1] if events else {}
    wall_s = last.get("wall_s")
    if last.get("event") == "stopped" and isinstance(wall_s, int | float) and math.isfinite(wall_s) and wall_s >= 0:
        return float(wall_s)
    return history.elapsed_s({})
