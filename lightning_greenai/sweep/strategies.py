"""Search strategies behind one ask/tell interface: grid, random (seeded, i.i.d.) and Optuna.

Each takes Hydra sweep overrides (``model.lr=interval(1e-4,1e-1)``, ``model.width=choice(64,128)``, ``a=1,2,3``)
and proposes jobs as lists of override strings. Only ``random`` draws i.i.d. trials, so only its curves may be
called "expected" performance (Dodge et al. 2019).
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from lightning_greenai.errors import BudgetConfigError, MissingDependencyError
from lightning_greenai.sweep.rungs import RungOptions, RungStrategy, SuccessiveHalving, Verdict
from lightning_greenai.trial.record import TrialStatus

__all__ = [
    "GridStrategy",
    "OptunaStrategy",
    "PruningStrategy",
    "RandomStrategy",
    "SearchStrategy",
    "canonical_overrides",
    "make_strategy",
    "parse_overrides",
    "parse_search_space",
    "pruning",
    "sweeps_anything",
]

log = logging.getLogger(__name__)


class SearchStrategy(Protocol):
    """Propose jobs (``ask``) and learn from their results (``tell``).

    After ``ask``, ``ids`` holds the strategy's own id of each proposed job (Optuna's trial number), or ``None``s;
    the sweeper records them in the ledger so that a job run again after a resume is told under its first id.
    """

    iid: bool
    ids: list[int | None]

    def ask(self, k: int) -> list[list[str]]:
        """Return up to ``k`` jobs, each a list of override strings (fewer if the space is exhausted)."""
        ...

    def tell(
        self,
        job_num: int,
        overrides: Sequence[str],
        objective: float | None,
        status: str,
        strategy_id: int | None,
        *,
        cost: float | None = None,
    ) -> None:
        """Report a finished job (``status``: completed, budget_stopped, not_started, killed or failed).

        ``cost``: what it measured on the sweep's ``cost_aware`` axis, for a strategy that weighs proposals by cost.
        """
        ...

    def exhausted(self) -> bool:
        """Whether no job is left to propose."""
        ...


class PruningStrategy(SearchStrategy, Protocol):
    """A strategy that also stops trials early from the scores they report (``asha``, ``hyperband``, Optuna's pruner).

    The sweeper hands it each report of a running trial, in the order it reads them, and acts on the verdict.
    """

    problem: str | None  # what makes its rungs unusable (the sweep ends with it as an error), or None

    def first_rung(self, job_num: int) -> float | None:
        """The resource from which the job's first report waits for a verdict (``None``: never)."""
        ...

    def report(
        self, job_num: int, strategy_id: int | None, resource: float, score: float, max_resource: float | None
    ) -> Verdict:
        """Decide on one report of a running trial's monitored score."""
        ...

    def replay(self, event: Mapping[str, Any]) -> None:
        """Take back a ``rung`` event of the ledger (a resume continues the rungs)."""
        ...

    def forget(self, job_num: int) -> None:
        """Drop the scores of a job that was interrupted (it runs again under a new number)."""
        ...


def pruning(strategy: SearchStrategy) -> PruningStrategy | None:
    """The strategy, when it stops trials at rungs; ``None`` for one that lets every trial run to its end."""
    return strategy if getattr(strategy, "prunes", False) else None  # type: ignore[return-value]


def parse_overrides(arguments: Sequence[str]) -> list[Override]:
    """Parse Hydra override strings (sweep syntax included)."""
    return OverridesParser.create().parse_overrides(list(arguments))


def parse_search_space(arguments: Sequence[str]) -> list[Override]:
    """Parse the search space's overrides and check every ``interval()`` can be sampled.

    Raises:
        BudgetConfigError: an interval whose ends are not finite or not in order, or a log interval that does not
            start above 0 (log-uniform sampling takes the log of its ends), naming the parameter.
    """
    overrides = parse_overrides(arguments)
    for override in overrides:
        value: Any = override.value() if override.is_interval_sweep() else None
        if not isinstance(value, IntervalSweep):
            continue
        start, end, log_scale = value.start, value.end, "log" in (value.tags or set())
        given = f"`{override.input_line}` (parameter `{override.get_key_element()}`)"
        if start is None or end is None or not (math.isfinite(start) and math.isfinite(end) and start < end):
            raise BudgetConfigError(f"{given}: an interval(a, b) needs finite ends with a < b, got a={start}, b={end}.")
        if log_scale and start <= 0:
            raise BudgetConfigError(
                f"{given}: a log interval, tag(log, interval(a, b)), needs 0 < a < b (it draws log-uniformly, and "
                f"log(a) is undefined for a={start:g}): start at a small positive value such as 1e-6, or drop the "
                "log tag for a uniform draw."
            )
    return overrides


def sweeps_anything(arguments: Sequence[str]) -> bool:
    """Whether any parameter is swept (an interval, a choice, a range or a comma list), not only set to a value.

    A ``choice()`` of one value is a sweep: written on purpose, its repeated trials are what was asked for.
    """
    return any(override.is_sweep_override() for override in parse_overrides(arguments))


def canonical_overrides(arguments: Sequence[str]) -> list[str]:
    """The search space as parsed, one spelling per meaning, sorted: ``choice(32, 64,128)`` is ``choice(32,64,128)``.

    What is compared is the key and the parsed value (types included: ``'1'`` is not ``1``); the choices' order is
    kept, and a bare comma list is the ``choice()`` it stands for.
    """
    out = []
    for override in parse_overrides(arguments):
        value: Any = override.value()
        tags = sorted(getattr(value, "tags", None) or ())
        body: tuple[Any, ...]
        if isinstance(value, ChoiceSweep):
            body = ("choice", value.list, value.shuffle, tags)
        elif isinstance(value, RangeSweep):
            body = ("range", value.start, value.stop, value.step, value.shuffle, tags)
        elif isinstance(value, IntervalSweep):
            body = ("interval", value.start, value.end, tags)
        else:
            body = ("value", value)
        out.append(f"{override.get_key_element()}={body!r}")
    return sorted(out)


class GridStrategy:
    """Every combination of the sweep overrides, in the basic sweeper's order (the last key varies fastest)."""

    iid = False

    def __init__(self, arguments: Sequence[str], skip: int = 0) -> None:
        lists = []
        for override in parse_overrides(arguments):
            key = override.get_key_element()
            if override.is_sweep_override():
                if override.is_discrete_sweep():
                    lists.append([f"{key}={v}" for v in override.sweep_string_iterator()])
                else:
                    raise BudgetConfigError(
                        f"The grid strategy needs discrete values, got {override.input_line!r}: use "
                        "hydra.sweeper.strategy=random or optuna for interval() sweeps."
                    )
            else:
                lists.append([f"{key}={override.get_value_element_as_str()}"])
        self._jobs = [list(job) for job in itertools.product(*lists)]
        self._next = skip
        self.ids: list[int | None] = []

    def ask(self, k: int) -> list[list[str]]:
        """Return the next ``k`` grid points."""
        batch = self._jobs[self._next : self._next + k]
        self._next += len(batch)
        self.ids = [None] * len(batch)
        return batch

    def tell(
        self,
        job_num: int,
        overrides: Sequence[str],
        objective: float | None,
        status: str,
        strategy_id: int | None,
        *,
        cost: float | None = None,
    ) -> None:
        """Nothing to learn."""

    def exhausted(self) -> bool:
        """Whether every grid point was proposed."""
        return self._next >= len(self._jobs)

    def __len__(self) -> int:
        return len(self._jobs)

    @property
    def remaining(self) -> int:
        """Grid points not proposed yet."""
        return len(self._jobs) - self._next


def _sample(override: Override, rng: random.Random) -> str:
    key = override.get_key_element()
    if not override.is_sweep_override():
        return f"{key}={override.get_value_element_as_str()}"
    value: Any = override.value()
    if isinstance(value, ChoiceSweep):
        choices = list(override.sweep_string_iterator())
        return f"{key}={rng.choice(choices)}"
    if isinstance(value, RangeSweep):
        return f"{key}={rng.choice(list(override.sweep_string_iterator()))}"
    if isinstance(value, IntervalSweep):
        lo, hi = float(value.start or 0.0), float(value.end or 0.0)
        log = "log" in (value.tags or set())
        x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if log else rng.uniform(lo, hi)
        if isinstance(value.start, int) and isinstance(value.end, int) and not log:
            return f"{key}={round(x)}"
        return f"{key}={x!r}"
    # a plain comma list (a=1,2,3) behaves like choice
    return f"{key}={rng.choice(list(override.sweep_string_iterator()))}"


class RandomStrategy:
    """Independent draws from the search space, seeded: the same seed gives the same sequence of jobs.

    ``interval(a,b)`` is uniform (``tag(log, interval(a,b))`` log-uniform); ``choice(...)``, ``range(...)`` and comma
    lists are uniform over their values.
    """

    iid = True

    def __init__(self, arguments: Sequence[str], seed: int = 0, skip: int = 0) -> None:
        self._overrides = parse_search_space(arguments)
        self._rng = random.Random(seed)
        self.ids: list[int | None] = []
        for _ in range(skip):  # resume: replay the draws already made, so the sequence continues
            self._draw()

    def _draw(self) -> list[str]:
        return [_sample(o, self._rng) for o in self._overrides]

    def ask(self, k: int) -> list[list[str]]:
        """Return ``k`` new draws."""
        self.ids = [None] * k
        return [self._draw() for _ in range(k)]

    def tell(
        self,
        job_num: int,
        overrides: Sequence[str],
        objective: float | None,
        status: str,
        strategy_id: int | None,
        *,
        cost: float | None = None,
    ) -> None:
        """Random search learns nothing."""

    def exhausted(self) -> bool:
        """Never: random search can always draw again."""
        return False


class OptunaStrategy:
    """Optuna's ask/tell on an SQLite storage in the sweep's state folder (``optuna.db``), so a resume continues it.

    A completed trial is told its objective; a budget-stopped, killed or pruned one PRUNED; one that failed or never
    started FAIL. Trials are told by Optuna trial number, so two identical proposals in one batch are each told once,
    and a job run again after a resume is told under the trial it was first asked as.

    With a ``pruner`` (an Optuna pruner config, as the sampler's) each report of a running trial is Optuna's
    ``trial.report(score, step)`` followed by ``trial.should_prune()``. Optuna's steps count from 0 (its pruners
    assume so, and its Lightning callback reports ``current_epoch``), so a report after ``resource`` epochs (or steps)
    is step ``resource - 1``: with ``max_resource`` the trial's epochs, its last report is step ``max_resource - 1``,
    below Hyperband's last rung, so a trial that trained to its end is never judged there.
    """

    iid = False
    problem: str | None = None

    def __init__(
        self,
        arguments: Sequence[str],
        *,
        storage_dir: Path,
        direction: str,
        seed: int = 0,
        sampler: Mapping[str, Any] | None = None,
        cost_aware: bool = False,
        storage: str | None = None,
        study_name: str | None = None,
        pruner: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            import optuna
        except ImportError as err:
            raise MissingDependencyError(
                "hydra.sweeper.strategy=optuna needs Optuna (2.10 or newer): pip install optuna"
            ) from err

        check_optuna_storage(optuna.__version__)
        self._optuna = optuna
        self._overrides = parse_search_space(arguments)
        storage_dir.mkdir(parents=True, exist_ok=True)
        if sampler is not None:
            from hydra.utils import instantiate

            optuna_sampler = instantiate(dict(sampler))
        elif cost_aware:
            if not hasattr(getattr(optuna, "search_space", None), "IntersectionSearchSpace"):
                raise MissingDependencyError(
                    f"hydra.sweeper.cost_aware needs Optuna 3.2 or newer (this is {optuna.__version__}): "
                    "pip install 'optuna>=3.2', or remove cost_aware."
                )
            from lightning_greenai.sweep.cost_aware import CostAwareSampler

            optuna_sampler = CostAwareSampler(seed=seed, pending=lambda: set(self._asked))
        else:
            optuna_sampler = optuna.samplers.TPESampler(seed=seed)
        self.prunes = pruner is not None
        if pruner is not None:
            from hydra.utils import instantiate

            kwargs: dict[str, Any] = {"pruner": instantiate(dict(pruner))}
        else:
            kwargs = {}
        self.study = _create_study(
            optuna,
            study_name=study_name or "greenai",
            storage=storage or f"sqlite:///{storage_dir / 'optuna.db'}",
            load_if_exists=True,
            direction="maximize" if direction == "max" else "minimize",
            sampler=optuna_sampler,
            **kwargs,
        )
        self.ids: list[int | None] = []
        self._asked: dict[int, Any] = {}  # trial number -> Optuna trial, to record its cost before telling it
        self._reported: dict[int, set[int]] = {}  # trial number -> the steps reported to Optuna in this session

    def _suggest(self, trial: Any, override: Override) -> str:
        key = override.get_key_element()
        if not override.is_sweep_override():
            return f"{key}={override.get_value_element_as_str()}"
        value: Any = override.value()
        if isinstance(value, IntervalSweep):
            log = "log" in (value.tags or set())
            if isinstance(value.start, int) and isinstance(value.end, int) and not log:
                return f"{key}={trial.suggest_int(key, int(value.start), int(value.end))}"
            lo, hi = float(value.start or 0.0), float(value.end or 0.0)
            return f"{key}={trial.suggest_float(key, lo, hi, log=log)!r}"
        return f"{key}={trial.suggest_categorical(key, list(override.sweep_string_iterator()))}"

    def ask(self, k: int) -> list[list[str]]:
        """Ask Optuna for ``k`` trials."""
        jobs, self.ids = [], []
        for _ in range(k):
            trial = self.study.ask()
            jobs.append([self._suggest(trial, o) for o in self._overrides])
            self.ids.append(int(trial.number))
            self._asked[int(trial.number)] = trial
        return jobs

    def tell(
        self,
        job_num: int,
        overrides: Sequence[str],
        objective: float | None,
        status: str,
        strategy_id: int | None,
        *,
        cost: float | None = None,
    ) -> None:
        """Tell Optuna the outcome of its trial ``strategy_id`` (an interrupted job stays running until rerun).

        A ``cost`` is stored on the trial (user attribute ``greenai_cost``) for the cost-aware sampler; a trial asked
        before a resume has no handle here and goes without (the cost model just has one point fewer).
        """
        if strategy_id is None or status == TrialStatus.INTERRUPTED:
            return
        asked = self._asked.pop(strategy_id, None)
        if cost is not None and asked is not None and status == TrialStatus.COMPLETED:
            from lightning_greenai.sweep.cost_aware import COST_ATTR

            asked.set_user_attr(COST_ATTR, float(cost))
        state = self._optuna.trial.TrialState
        try:
            if status == TrialStatus.COMPLETED and objective is not None:
                self.study.tell(strategy_id, objective)
            elif status in (TrialStatus.BUDGET_STOPPED, TrialStatus.KILLED, TrialStatus.PRUNED):
                self.study.tell(strategy_id, state=state.PRUNED)
            else:
                self.study.tell(strategy_id, state=state.FAIL)
        except (RuntimeError, ValueError) as err:  # already told (a resume recovering a finished job): keep the first
            log.debug("Optuna trial %s not told again: %s", strategy_id, err)

    def exhausted(self) -> bool:
        """Never."""
        return False

    def first_rung(self, job_num: int) -> float | None:
        """With a pruner, every report waits for Optuna's verdict (from resource 0 on)."""
        return 0.0 if self.prunes else None

    def report(
        self, job_num: int, strategy_id: int | None, resource: float, score: float, max_resource: float | None
    ) -> Verdict:
        """``trial.report(score, resource - 1)`` then ``trial.should_prune()``; a step reported before is passed over.

        Optuna's steps are whole numbers from 0: a report at a fractional resource, or before a whole epoch (step),
        is not Optuna's and goes on.
        """
        next_rung = math.nextafter(resource, math.inf)
        trial = None if strategy_id is None else self._trial(strategy_id)
        if trial is None or strategy_id is None or not float(resource).is_integer() or resource < 1:
            return Verdict(stop=False, next_rung=next_rung)
        step, reported = int(resource) - 1, self._reported.setdefault(strategy_id, set())
        if step in reported:
            return Verdict(stop=False, next_rung=next_rung)
        reported.add(step)
        trial.report(score, step)
        stop = bool(trial.should_prune())
        pruner = type(self.study.pruner).__name__
        return Verdict(
            stop=stop,
            next_rung=None if stop else next_rung,
            decision="pruned" if stop else "continued",
            reason=f"step {step} (resource {resource:g}): {pruner} {'prunes' if stop else 'keeps'} it at {score:.4g}",
            level=float(resource),
        )

    def _trial(self, number: int) -> Any:
        """The Optuna trial asked as ``number``: this session's handle, or one rebuilt for a trial asked before."""
        if number not in self._asked:
            frozen = next((t for t in self.study.get_trials(deepcopy=False) if t.number == number), None)
            if frozen is None:
                return None
            # Optuna has no public way from a trial's number to a live Trial: its storage id is what Trial takes
            self._asked[number] = self._optuna.trial.Trial(self.study, frozen._trial_id)
        return self._asked[number]

    def replay(self, event: Mapping[str, Any]) -> None:
        """Nothing to take back: the study keeps its trials' reports itself."""

    def forget(self, job_num: int) -> None:
        """Nothing to drop: Optuna is told an interrupted trial under its first number when it runs again."""


def check_optuna_storage(optuna_version: str) -> None:
    """Refuse Optuna 2.x beside SQLAlchemy 2: its database storage cannot work there, and the study lives in one.

    The study is kept in a database (``optuna.db`` in the sweep's state folder, or ``hydra.sweeper.storage``) so that
    a resume continues it. Projects that pin hydra-optuna-sweeper (Optuna 2.10) often install SQLAlchemy 2 for other
    packages; Optuna 2.10's storage then fails deep inside SQLAlchemy.

    Raises:
        MissingDependencyError: Optuna older than 3 with SQLAlchemy 2 or newer, with both ways out.
    """
    import sqlalchemy

    optuna_major = int(optuna_version.split(".")[0])
    sqlalchemy_major = int(str(sqlalchemy.__version__).split(".")[0])
    if optuna_major < 3 and sqlalchemy_major >= 2:
        raise MissingDependencyError(
            f"hydra.sweeper.strategy=optuna keeps its study in a database (so a resume continues it), which Optuna "
            f"{optuna_version} cannot open with SQLAlchemy {sqlalchemy.__version__} (Optuna 2 needs SQLAlchemy < 2). "
            "Either pip install 'sqlalchemy<2' (keeps Optuna 2.10, as hydra-optuna-sweeper pins it), or pip install "
            "'optuna>=3'."
        )


def _create_study(optuna: Any, **kwargs: Any) -> Any:
    """``optuna.create_study``, again when two sweeps created Optuna's tables in one new database at once.

    The loser of that race fails on a duplicate table; the tables then exist, so the second try only loads them.
    """
    from sqlalchemy.exc import DBAPIError

    for attempt in range(3):
        try:
            return optuna.create_study(**kwargs)
        except DBAPIError:
            if attempt == 2:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def make_strategy(
    name: str,
    arguments: Sequence[str],
    *,
    seed: int,
    direction: str,
    state_dir: Path,
    skip: int = 0,
    sampler: Mapping[str, Any] | None = None,
    cost_aware: bool = False,
    storage: str | None = None,
    study_name: str | None = None,
    pruner: Mapping[str, Any] | None = None,
    rungs: RungOptions | None = None,
) -> SearchStrategy:
    """Build the named strategy; ``skip`` is how many jobs a resumed sweep already proposed.

    A search space that sweeps nothing (see :func:`sweeps_anything`) is one point, whatever the strategy: it is
    proposed once, as Hydra's basic sweeper runs one job, rather than drawn again and again until the budget is spent
    (``asha`` and ``hyperband`` still stop it at its rungs: there is nothing to compare it with but itself).
    """
    if name in ("asha", "hyperband"):
        proposer = make_strategy("random", arguments, seed=seed, direction=direction, state_dir=state_dir, skip=skip)
        ladder = SuccessiveHalving(
            rungs or RungOptions(), direction=direction, hyperband=name == "hyperband", seed=seed
        )
        return RungStrategy(proposer, ladder)
    if name == "grid" or (name in ("random", "optuna") and not sweeps_anything(arguments)):
        return GridStrategy(arguments, skip=skip)
    if name == "random":
        return RandomStrategy(arguments, seed=seed, skip=skip)
    if name == "optuna":
        return OptunaStrategy(
            arguments,
            storage_dir=state_dir,
            direction=direction,
            seed=seed,
            sampler=sampler,
            cost_aware=cost_aware,
            storage=storage,
            study_name=study_name,
            pruner=pruner,
        )
    raise ValueError(f"Unknown strategy {name!r}. Allowed: grid, random, optuna, asha, hyperband.")
