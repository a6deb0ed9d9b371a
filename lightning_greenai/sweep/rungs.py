"""Stopping bad trials at rungs: ASHA (Li et al. 2020) and asynchronous Hyperband (Li et al. 2018).

A trial reports its monitored score as it trains (``resource``: epochs or steps). The rungs are the resources
``min_resource * reduction_factor**k`` below ``max_resource``. The first report of a trial at or past a rung is
compared with the scores earlier trials reported there: outside their top ``1 / reduction_factor`` it is pruned,
inside it is promoted to the next rung. This is the stopping form of ASHA with Ray Tune's ``ASHAScheduler`` rule: the
cut-off is the ``1 - 1/reduction_factor`` quantile (linear interpolation) of the earlier scores at that rung, and the
first score at a rung always passes (Syne Tune 0.16 ranks the new score among the rung's, itself included, instead).
A trial is never paused and resumed, so nothing needs a checkpoint.

Hyperband runs ASHA in several brackets: bracket ``b`` decides from its rung ``b + 1`` on (the last bracket has no
rung: its trials run to their end, a random search at full resource), each bracket with its own scores. A trial's
bracket is drawn from a generator seeded by the sweep's seed and the job's number, with Syne Tune's default weights
(each bracket as likely as its share of the slots in synchronous Hyperband).

Every decision is a function of the reports the sweep has seen, in the order it saw them: the ledger records them
(``rung`` events), and :meth:`SuccessiveHalving.replay` rebuilds the same state from it on resume. Pure: no files,
no threads, no Hydra.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lightning_greenai.errors import BudgetConfigError
from lightning_greenai.units import SPEND_RESOURCES, format_resource, parse_quantity

if TYPE_CHECKING:
    from lightning_greenai.sweep.strategies import SearchStrategy

__all__ = ["RESOURCES", "RungOptions", "RungStrategy", "SuccessiveHalving", "Verdict", "quantile"]

#: What the rungs count: a trial's training (a Lightning trial's epochs or global step; a plain task's
#: ``report_score`` says it), or a budget axis of its own spend, which its account fills in as it was metered.
RESOURCES = ("epochs", "steps", "energy_kwh", "flops")
_FRACTIONS = {2: "half", 3: "third", 4: "quarter"}
_EPSILON = 1e-9  # a resource within this relative distance of a rung is at it (3 ** 2 need not print as 9)


@dataclass(frozen=True)
class RungOptions:
    """``hydra.sweeper.asha`` (or ``hyperband``): where the rungs lie, and how many trials each one lets through.

    ``max_resource`` ``None``: the trial's own (a Lightning trial's ``max_epochs``, or ``max_steps``), as its first
    report says.
    """

    min_resource: float = 1.0
    max_resource: float | None = None
    reduction_factor: int = 3
    resource: str = "epochs"

    @classmethod
    def parse(cls, name: str, options: Mapping[str, Any] | None) -> RungOptions:
        """Check ``hydra.sweeper.<name>``'s keys.

        Raises:
            BudgetConfigError: a key out of range, naming it, the value and what is allowed.
        """
        given = {k: v for k, v in dict(options or {}).items() if v is not None}
        unknown = sorted(set(given) - {"min_resource", "max_resource", "reduction_factor", "resource"})
        if unknown:
            raise BudgetConfigError(
                f"`hydra.sweeper.{name}` has no option {', '.join(unknown)}. Allowed: min_resource, max_resource, "
                "reduction_factor, resource."
            )
        resource = given.get("resource", cls.resource)
        if resource not in RESOURCES:
            raise BudgetConfigError(
                f"`hydra.sweeper.{name}.resource` must be one of {', '.join(RESOURCES)}, got {resource!r}."
            )
        shown = dict(given)  # the values as given ('0 J'), for the messages
        for key in ("min_resource", "max_resource"):
            if key in given:
                given[key] = _resource_value(name, key, given[key], resource)
        parsed = cls(**given)
        factor, low, high = parsed.reduction_factor, parsed.min_resource, parsed.max_resource
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
            raise BudgetConfigError(
                f"`hydra.sweeper.{name}.reduction_factor` must be an integer >= 2 (the top 1/reduction_factor of "
                f"each rung goes on; 3 keeps a third), got {factor!r}."
            )
        if isinstance(low, bool) or not isinstance(low, int | float) or not (0 < low < math.inf):
            raise BudgetConfigError(
                f"`hydra.sweeper.{name}.min_resource` must be a number > 0 (the {parsed.resource} of the first "
                f"rung), got {shown.get('min_resource', low)!r}."
            )
        if high is not None and (
            isinstance(high, bool) or not isinstance(high, int | float) or not 0 < high < math.inf
        ):
            # NaN and negatives too: they were only caught as "min_resource must be below max_resource (nan J)"
            raise BudgetConfigError(
                f"`hydra.sweeper.{name}.max_resource` must be a finite number > 0, or null for the trial's own "
                f"{parsed.resource}; got {shown.get('max_resource', high)!r}."
            )
        if high is not None and not low < high:
            raise BudgetConfigError(
                f"`hydra.sweeper.{name}.min_resource` ({format_resource(low, parsed.resource)}) must be below "
                f"max_resource ({format_resource(high, parsed.resource)}): the rungs lie "
                f"between them. Lower min_resource, raise max_resource, or set it to null for the trials' own "
                f"{parsed.resource}."
            )
        return cls(float(low), None if high is None else float(high), factor, parsed.resource)


@dataclass(frozen=True)
class Verdict:
    """The search's answer to one report of a trial's monitored score.

    ``decision``: ``promoted`` or ``pruned`` at a rung (``continued`` or ``pruned`` by an Optuna pruner), ``None``
    when the report reached no rung. ``next_rung``: the resource from which the trial's next report waits for a
    verdict (``None``: no rung left).
    """

    stop: bool
    next_rung: float | None
    decision: str | None = None
    reason: str = ""
    rung: int | None = None  # 1-based: rung 1 is at min_resource
    level: float | None = None  # the rung's resource
    bracket: int | None = None  # Hyperband's bracket, 0 for the one that decides from rung 1

    def event(self, job_num: int, score: float, max_resource: float | None) -> dict[str, Any]:
        """The fields of the ledger's ``rung`` event that records this decision."""
        return {
            "job": job_num,
            "rung": self.rung,
            "resource": self.level,
            "score": score,
            "decision": self.decision,
            "reason": self.reason,
            "bracket": self.bracket,
            "max_resource": max_resource,
        }


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by linear interpolation between order statistics (NumPy's default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _resource_value(name: str, key: str, value: Any, resource: str) -> Any:
    """A rung option as a number in ``resource``'s unit: a spend resource also takes a quantity (``"5 J"``)."""
    if not isinstance(value, str):
        return value
    if resource not in SPEND_RESOURCES:
        try:
            quantity = parse_quantity(value)[0]
        except BudgetConfigError:
            return value  # not a quantity: refused as no number of epochs (or steps) below
        if quantity in SPEND_RESOURCES:  # '5 J' with the default resource: the rungs were meant to count joules
            raise BudgetConfigError(
                f"`hydra.sweeper.{name}.{key}` is {value!r}, an amount of {quantity}, but the rungs count {resource}: "
                f"set hydra.sweeper.{name}.resource={quantity} to count each trial's spend, or give a number of "
                f"{resource}."
            )
        return value
    kind, example, _ = _SPEND_WORDS[resource]
    try:
        return float(value)  # '1e9' as YAML gives a number written as a string: the bare number it spells
    except ValueError:
        pass
    if value.strip().startswith("-"):
        raise BudgetConfigError(
            f"`hydra.sweeper.{name}.{key}` must be more than 0 {kind} (e.g. {example}), got {value!r}."
        )
    try:
        quantity, amount, _ = parse_quantity(value)
    except BudgetConfigError as err:
        raise BudgetConfigError(f"`hydra.sweeper.{name}.{key}`: {err}") from None
    if quantity != resource:
        raise BudgetConfigError(
            f"`hydra.sweeper.{name}.{key}` is {value!r}, an amount of {quantity}, but the rungs count {resource}: "
            f"give it as {kind} (e.g. {example})."
        )
    return amount


def _max_example(resource: str) -> str:
    """An example of a max_resource: the trials' epochs (or steps), or a spend such as '100 J'."""
    return _SPEND_WORDS[resource][2] if resource in SPEND_RESOURCES else f"the trials' {resource}"


#: how a message names the quantity a spend rung counts, and examples of a first rung and of a max_resource
_SPEND_WORDS = {"energy_kwh": ("energy", "'5 J'", "'100 J'"), "flops": ("FLOPs", "'1e12 FLOPs'", "'1e15 FLOPs'")}


class SuccessiveHalving:
    """ASHA's stopping rule, and with ``hyperband`` its brackets (see the module docstring).

    Args:
        options: Where the rungs lie (``hydra.sweeper.asha`` or ``hyperband``).
        direction: ``max`` or ``min``: which scores are the top.
        hyperband: Draw each trial's bracket (else every trial is in bracket 0: ASHA).
        seed: The sweep's seed, which with the job's number draws its bracket.
    """

    def __init__(self, options: RungOptions, *, direction: str, hyperband: bool = False, seed: int = 0) -> None:
        self.options, self.direction, self.hyperband, self.seed = options, direction, hyperband, seed
        self.max_resource = options.max_resource
        self._fixed = options.max_resource is not None  # the ladder is fixed at the first report otherwise
        self.recorded: dict[tuple[int, int], dict[int, float]] = {}  # (bracket, rung index) -> job -> score
        self.brackets: dict[int, int] = {}
        #: what makes the ladder unusable (a Hyperband with no max_resource); the sweep ends with it as an error
        self.problem: str | None = None

    @property
    def name(self) -> str:
        """``hyperband`` or ``asha``: the option block it reads."""
        return "hyperband" if self.hyperband else "asha"

    @property
    def rungs(self) -> int | None:
        """How many rungs lie below ``max_resource`` (``None``: no max, rungs without end)."""
        if self.max_resource is None:
            return None
        low, factor = self.options.min_resource, self.options.reduction_factor
        count = 0
        while low * factor**count < self.max_resource * (1 - _EPSILON):
            count += 1
        return count

    def level(self, index: int) -> float:
        """The resource of rung ``index`` (0-based)."""
        return float(self.options.min_resource * self.options.reduction_factor**index)

    def bracket_of(self, job_num: int) -> int:
        """The job's bracket: 0 for ASHA; for Hyperband drawn once, seeded by the sweep's seed and the job."""
        if job_num not in self.brackets:
            self.brackets[job_num] = self._draw_bracket(job_num)
        return self.brackets[job_num]

    def _draw_bracket(self, job_num: int) -> int:
        rungs = self.rungs
        if not self.hyperband or not rungs:
            return 0
        # Syne Tune's default: bracket b weighs S / ((S - b) * r_b), r the rung levels with max_resource appended
        levels = [self.level(k) for k in range(rungs)] + [float(self.max_resource or 0.0)]
        weights = [len(levels) / ((len(levels) - b) * levels[b]) for b in range(len(levels))]
        return random.Random(f"greenai-hyperband:{self.seed}:{job_num}").choices(range(len(levels)), weights)[0]

    def first_rung(self, job_num: int) -> float | None:
        """Where the job's first report waits: its bracket's first rung (``min_resource`` until the rungs are known)."""
        if not self._fixed:
            return self.options.min_resource
        return self._next_rung(self.bracket_of(job_num), -1)

    def _next_rung(self, bracket: int, after: int) -> float | None:
        """The level of the bracket's first rung above rung index ``after`` (``None``: none left)."""
        index = max(after + 1, bracket)
        rungs = self.rungs
        return None if rungs is not None and index >= rungs else self.level(index)

    def fix_ladder(self, max_resource: float | None) -> None:
        """Fix ``max_resource`` once, from the first report (a configured one is fixed from the start)."""
        if self._fixed:
            return
        self._fixed, self.max_resource = True, max_resource
        if max_resource is not None and max_resource <= self.options.min_resource:
            self.problem = (
                f"the trials train to {format_resource(max_resource, self.options.resource)}, not past "
                f"hydra.sweeper.{self.name}.min_resource="
                f"{format_resource(self.options.min_resource, self.options.resource)}, so no rung lies between: "
                f"lower min_resource, or train the trials longer."
            )
        elif max_resource is None and self.hyperband:
            self.problem = (
                f"hydra.sweeper.hyperband.max_resource is null and the trials' first report did not say how far "
                f"they train, which Hyperband needs to lay out its brackets: set hydra.sweeper.hyperband."
                f"max_resource (e.g. {_max_example(self.options.resource)}), or pass max_resource= to report_score."
            )

    def report(self, job_num: int, resource: float, score: float, max_resource: float | None = None) -> Verdict:
        """Decide on one report: prune or promote at the highest rung it reached first, else let it go on."""
        self.fix_ladder(max_resource)
        bracket = self.bracket_of(job_num)
        index = self._rung_reached(bracket, resource)
        if index is None or job_num in self.recorded.get((bracket, index), {}):
            return Verdict(stop=False, next_rung=self._next_above(bracket, resource))
        recorded = self.recorded.setdefault((bracket, index), {})
        earlier = list(recorded.values())
        recorded[job_num] = score
        top = 1.0 / self.options.reduction_factor
        cutoff = quantile(earlier, 1.0 - top if self.direction == "max" else top) if earlier else None
        stop = cutoff is not None and (score < cutoff if self.direction == "max" else score > cutoff)
        return Verdict(
            stop=stop,
            next_rung=None if stop else self._next_rung(bracket, index),
            decision="pruned" if stop else "promoted",
            reason=self._reason(bracket, index, score, cutoff, len(earlier), stop),
            rung=index + 1,
            level=self.level(index),
            bracket=bracket if self.hyperband else None,
        )

    def _rung_reached(self, bracket: int, resource: float) -> int | None:
        """The highest rung of the bracket at or below ``resource`` (``None``: it reached none)."""
        rungs = self.rungs
        index = None
        k = bracket
        while (rungs is None or k < rungs) and resource >= self.level(k) * (1 - _EPSILON):
            index, k = k, k + 1
        return index

    def _next_above(self, bracket: int, resource: float) -> float | None:
        reached = self._rung_reached(bracket, resource)
        return self._next_rung(bracket, bracket - 1 if reached is None else reached)

    def _reason(self, bracket: int, index: int, score: float, cutoff: float | None, earlier: int, stop: bool) -> str:
        """``rung 1 (1 epoch): 0.41 < top third 0.63 of 4 earlier scores``."""
        where = f"rung {index + 1} ({format_resource(self.level(index), self.options.resource)})"
        if self.hyperband:
            where = f"bracket {bracket}, {where}"
        if cutoff is None:
            return f"{where}: {score:.4g}, the first score at this rung, goes on"
        factor = self.options.reduction_factor
        top = f"top {_FRACTIONS.get(factor, f'1/{factor}')}"
        if self.direction == "max":
            op = "<" if stop else ">="
        else:
            op = ">" if stop else "<="
            top += " (lower is better)"
        return f"{where}: {score:.4g} {op} {top} {cutoff:.4g} of {earlier} earlier score{'' if earlier == 1 else 's'}"

    def replay(self, event: Mapping[str, Any]) -> None:
        """Take a ``rung`` event of the ledger back into the scores each rung holds (a resume continues the rungs)."""
        if event.get("decision") not in ("promoted", "pruned") or not isinstance(event.get("rung"), int):
            return
        if not self._fixed:
            recorded_max = event.get("max_resource")
            self.fix_ladder(float(recorded_max) if isinstance(recorded_max, int | float) else None)
        job, bracket = int(event["job"]), int(event.get("bracket") or 0)
        self.brackets[job] = bracket
        self.recorded.setdefault((bracket, int(event["rung"]) - 1), {})[job] = float(event["score"])

    def forget(self, job_num: int) -> None:
        """Drop a job's scores: it was interrupted, and runs again under a new number that reports them anew."""
        for recorded in self.recorded.values():
            recorded.pop(job_num, None)


class RungStrategy:
    """``strategy=asha`` and ``hyperband``: random proposals (seeded), stopped at rungs by :class:`SuccessiveHalving`.

    Not i.i.d. full trials: a pruned trial trained for less than the others, so its curves are not called
    expected performance.
    """

    iid = False
    prunes = True

    def __init__(self, proposer: SearchStrategy, ladder: SuccessiveHalving) -> None:
        self.proposer, self.ladder = proposer, ladder
        self.ids: list[int | None] = []

    @property
    def problem(self) -> str | None:
        """What makes the rungs unusable, or ``None``."""
        return self.ladder.problem

    def ask(self, k: int) -> list[list[str]]:
        """Return ``k`` new random draws."""
        jobs = self.proposer.ask(k)
        self.ids = list(self.proposer.ids)
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
        """Random proposals learn nothing from a finished trial (the rungs learned from its reports)."""
        self.proposer.tell(job_num, overrides, objective, status, strategy_id, cost=cost)

    def exhausted(self) -> bool:
        """Whether the proposer has nothing left."""
        return self.proposer.exhausted()

    def first_rung(self, job_num: int) -> float | None:
        """Where the job's first report waits for a verdict."""
        return self.ladder.first_rung(job_num)

    def report(
        self, job_num: int, strategy_id: int | None, resource: float, score: float, max_resource: float | None
    ) -> Verdict:
        """Decide on one of the job's reports."""
        return self.ladder.report(job_num, resource, score, max_resource)

    def replay(self, event: Mapping[str, Any]) -> None:
        """Take back a ``rung`` event of the ledger."""
        self.ladder.replay(event)

    def forget(self, job_num: int) -> None:
        """Drop an interrupted job's scores."""
        self.ladder.forget(job_num)
