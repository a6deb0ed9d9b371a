"""Energy a search needs to find a near-best configuration, by strategy. Run: python benchmarks/search_energy.py

Every strategy of ``hydra/sweeper=greenai`` (random, TPE, cost-aware TPE, ASHA, Hyperband, TPE + Optuna's
HyperbandPruner) is run as a real sweep over the learning-curve table (``benchmarks/replay.py``: the sweeper, its
rungs, watchdog and ledger as they are, each trial replaying a configuration the table holds), once per seed, up to
``--budget-j`` joules (a run that has reached the target is ended once ``--stop-after-j`` is spent); and the external
anchors, Ray Tune's ``AsyncHyperBandScheduler`` and Syne Tune's ``ASHA`` where it is installed (the same rungs: grace
1 epoch, reduction factor 3, 27 epochs), decide on the same table, fed the trials random search draws for the same
seed. The ``-space`` strategies search the table's hyperparameters instead of its ids (each trial replays the nearest
configuration, ``table.nearest_config``), and the ``optuna-`` anchors are plain Optuna in process (TPE, with
HyperbandPruner where named), to compare the sweeper's Optuna strategy with. From each sweep's ledger, in the order
its trials finished:

* energy to target: the joules spent (pruned trials included) until a trial that trained to its end scored within
  ``--tolerance`` of the best final score in the table;
* the best final score of a trial that trained to its end, at fixed energies.

Each run's trajectory is appended to ``--runs`` as it finishes (a kill loses one sweep; run again to continue), and
``--report`` turns the runs into the Markdown table and the plot (``docs/assets/search_energy.png``).
``--many-seeds N`` adds random search and ASHA by Ray's rule, which decides as the sweeper's ASHA, at several settings
over N seeds without the sweeper. The sweeps' folders go to ``--work`` (``/dev/shm`` where there is one: a ledger
fsyncs every event) and are removed after reading.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from table import EXACT, ORDERED, SPACE_PARAMS, TABLE, load_table, nearest_config  # noqa: E402

RUNS = ROOT / "outputs" / "search_energy_runs.jsonl"  # about 1 MB: kept out of git, RESULTS.md has the summary
PLOT = ROOT / "docs" / "assets" / "search_energy.png"
REPLAY = ROOT / "benchmarks" / "replay.py"
EPOCHS = 27
HYPERBAND_PRUNER = (
    "hydra.sweeper.pruner={_target_:optuna.pruners.HyperbandPruner,min_resource:1,max_resource:27,reduction_factor:3}"
)
#: The search over the table's hyperparameters: each trial replays the configuration nearest them (replay.py)
SPACE = ["config_id=null", *(f"{key}={value}" for key, value in SPACE_PARAMS.items())]
#: name -> the sweeper's overrides (None: the external anchor, run in this process); without SPACE, a trial is an id
STRATEGIES: dict[str, list[str] | None] = {
    "random": ["hydra.sweeper.strategy=random"],
    "tpe": ["hydra.sweeper.strategy=optuna"],
    "cost-aware": ["hydra.sweeper.strategy=optuna", "hydra.sweeper.cost_aware=energy_kwh"],
    "asha": ["hydra.sweeper.strategy=asha"],
    "hyperband": ["hydra.sweeper.strategy=hyperband"],
    "tpe+hyperband-pruner": ["hydra.sweeper.strategy=optuna", HYPERBAND_PRUNER],
    "tpe-space": ["hydra.sweeper.strategy=optuna", *SPACE],
    "cost-aware-space": ["hydra.sweeper.strategy=optuna", "hydra.sweeper.cost_aware=energy_kwh", *SPACE],
    "tpe+hyperband-pruner-space": ["hydra.sweeper.strategy=optuna", HYPERBAND_PRUNER, *SPACE],
    "optuna-tpe-space": None,
    "optuna-tpe+hyperband-pruner": None,
    "optuna-tpe+hyperband-pruner-space": None,
    "ray-tune-asha": None,
    "syne-tune-asha": None,
}
LABELS = {
    "random": "random (every trial to the end)",
    "tpe": "TPE (Optuna)",
    "cost-aware": "cost-aware TPE",
    "asha": "ASHA",
    "hyperband": "Hyperband",
    "tpe+hyperband-pruner": "TPE + Optuna HyperbandPruner",
    "tpe-space": "TPE over the hyperparameters",
    "cost-aware-space": "cost-aware TPE over the hyperparameters",
    "tpe+hyperband-pruner-space": "TPE + HyperbandPruner over the hyperparameters",
    "optuna-tpe-space": "plain Optuna TPE over the hyperparameters (anchor)",
    "optuna-tpe+hyperband-pruner": "plain Optuna TPE + HyperbandPruner (anchor)",
    "optuna-tpe+hyperband-pruner-space": "plain Optuna TPE + HyperbandPruner over the hyperparameters (anchor)",
    "ray-tune-asha": "Ray Tune ASHA (external anchor)",
    "syne-tune-asha": "Syne Tune ASHA (external anchor)",
}


def trajectory_from_ledger(path: Path) -> list[dict[str, Any]]:
    """Each finished trial in order: its configuration, status, reported scores, final score (``None`` unless it
    trained to its end), energy."""
    out = []
    config_ids: dict[int, int | None] = {}
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "launched":
            config_ids[event["job"]] = next(
                int(o.split("=")[1]) for o in event["overrides"] if o.startswith("config_id=")
            )
        if event.get("event") != "finished":
            continue
        joules = sum(event["spend"]["energy_j"].values())
        reports = event.get("reports") or []
        full = event["status"] == "completed" and len(reports) == EPOCHS
        out.append(
            {
                "job": event["job"],
                "config_id": config_ids.get(event["job"]),
                "status": event["status"],
                "scores": [report[1] for report in reports],
                "epochs": len(reports),
                "energy_j": joules,
                "final": event["objective"] if full else None,
            }
        )
    return out


def _finished_events(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The ``finished`` events appended to a ledger since ``offset`` (whole lines only), and the new offset."""
    if not path.exists():
        return [], offset
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read()
    whole = data[: data.rfind(b"\n") + 1]
    events = [json.loads(line) for line in whole.splitlines() if line.strip()]
    return [e for e in events if e.get("event") == "finished"], offset + len(whole)


def run_sweep(
    name: str,
    seed: int,
    budget_j: float,
    table: Path,
    work: Path,
    target: float,
    stop_after_j: float,
    task: Path = REPLAY,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """One sweep of the real sweeper over the table, up to ``budget_j``; its trajectory from the ledger.

    ``task`` is the trial: the replay, or ``benchmarks/train_trial.py``, which trains each configuration for real.

    Once a trial that trained to its end has reached ``target`` and ``stop_after_j`` is spent, the sweep is
    interrupted (SIGINT, as Ctrl-C): what it did until then is all the report reads, and it is what the sweep would
    have done had it gone on (one trial at a time, deterministic), so only time is saved.
    """
    sweep_dir = work / f"{name}-{seed}"
    shutil.rmtree(sweep_dir, ignore_errors=True)
    sweep_dir.mkdir(parents=True)
    ids = len(load_table(table)[1])
    command = [
        sys.executable,
        str(task),
        "-m",
        f"hydra.sweep.dir={sweep_dir}",
        f"table={table}",
        *([] if "config_id=null" in (STRATEGIES[name] or []) else [f"config_id=range(0,{ids})"]),
        f"hydra.sweeper.seed={seed}",
        f"hydra.sweeper.budget.energy_kwh={budget_j} J",
        "hydra.sweeper.max_trials=10000",
        *(STRATEGIES[name] or []),
        *overrides,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "1"}
    started = time.perf_counter()
    ledger = sweep_dir / ".greenai" / "ledger.jsonl"
    log = sweep_dir.with_suffix(".log")
    offset, spent, reached, interrupted = 0, 0.0, False, False
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work)
        while proc.poll() is None:
            time.sleep(0.25)
            events, offset = _finished_events(ledger, offset)
            for event in events:
                spent += sum(event["spend"]["energy_j"].values())
                full = event["status"] == "completed" and len(event.get("reports") or []) == EPOCHS
                reached = reached or (full and event["objective"] >= target - 1e-12)
            if reached and spent >= stop_after_j:
                proc.send_signal(signal.SIGINT)
                interrupted = True
                proc.wait()
    if proc.returncode != 0 and not interrupted:
        raise RuntimeError(f"{name} seed {seed} failed (exit {proc.returncode}):\n{log.read_text()[-4000:]}")
    trials = [t for t in trajectory_from_ledger(ledger) if t["status"] != "interrupted"]
    shutil.rmtree(sweep_dir, ignore_errors=True)
    log.unlink()
    return {
        "strategy": name,
        "seed": seed,
        "wall_s": round(time.perf_counter() - started, 1),
        "stopped_early": interrupted,
        "trials": trials,
    }


class RayASHA:
    """Ray Tune's ``AsyncHyperBandScheduler``, told each epoch's result as Ray's trial runner tells it."""

    def __init__(self, seed: int, grace_period: int = 1, reduction_factor: int = 3) -> None:
        from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

        self.stop = TrialScheduler.STOP
        self.scheduler = AsyncHyperBandScheduler(
            time_attr="training_iteration",
            metric="val_acc",
            mode="max",
            max_t=EPOCHS,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
        )
        self.trials: dict[int, Any] = {}

    def add(self, job: int, config_id: str) -> None:
        self.trials[job] = trial = type("Trial", (), {"trial_id": str(job)})()  # all Ray's scheduler reads of it
        self.scheduler.on_trial_add(None, trial)

    def result(self, job: int, epoch: int, score: float, *, final: bool = False) -> bool:
        result = {"training_iteration": epoch, "val_acc": score}
        if final:
            self.scheduler.on_trial_complete(None, self.trials[job], result)
            return True
        return self.scheduler.on_trial_result(None, self.trials[job], result) == self.stop


class SyneASHA:
    """Syne Tune's ``ASHA`` baseline (``pip install --no-deps syne-tune dill``: its full extras pull in xgboost)."""

    def __init__(self, seed: int) -> None:
        from syne_tune.config_space import choice
        from syne_tune.optimizer.baselines import ASHA

        self.space = {"config_id": choice(["0"])}  # only its searcher reads the space; the draws are given
        self.scheduler = ASHA(
            self.space, metric="val_acc", time_attr="epoch", max_t=EPOCHS, do_minimize=False, random_seed=seed
        )
        self.trials: dict[int, Any] = {}

    def add(self, job: int, config_id: str) -> None:
        import datetime

        from syne_tune.backend.trial_status import Trial

        self.trials[job] = trial = Trial(trial_id=job, config={"config_id": "0"}, creation_time=datetime.datetime.now())
        self.scheduler.on_trial_add(trial)

    def result(self, job: int, epoch: int, score: float, *, final: bool = False) -> bool:
        result = {"epoch": epoch, "val_acc": score}
        if final:
            self.scheduler.on_trial_complete(self.trials[job], result)
            return True
        return self.scheduler.on_trial_result(self.trials[job], result) == "STOP"


class ToTheEnd:
    """No scheduler: every trial trains to its end (random search, simulated without the sweeper)."""

    def __init__(self, seed: int) -> None:
        pass

    def add(self, job: int, config_id: str) -> None:
        pass

    def result(self, job: int, epoch: int, score: float, *, final: bool = False) -> bool:
        return final


ANCHORS: dict[str, Any] = {"ray-tune-asha": RayASHA, "syne-tune-asha": SyneASHA, "random-simulated": ToTheEnd}
#: Ray's rule, which decides as the sweeper's ASHA does, at other settings: (min_resource, reduction_factor)
SETTINGS = ((1, 3), (1, 4), (2, 3), (3, 3))


def run_anchor(
    name: str, seed: int, budget_j: float, table: Path, target: float, stop_after_j: float
) -> dict[str, Any]:
    """An external ASHA on the table, fed the trials random search draws for ``seed``, one at a time.

    The draws are the sweeper's own (``random.Random(seed).choice`` over the ids, as RandomStrategy draws a range), so
    the ASHAs see the same trials in the same order and differ only in their rungs. Each trial is billed the table's
    energy for the epochs it ran, as the replay bills it; the run ends once the budget is spent, or where a sweep would
    have been interrupted (the target reached and ``stop_after_j`` spent).
    """
    configs = load_table(table)[1]
    ids = [str(i) for i in range(len(configs))]
    scheduler = ANCHORS[name](seed)
    rng = random.Random(seed)
    spent, trials, job, reached = 0.0, [], 0, False
    started = time.perf_counter()
    while spent < budget_j and not (reached and spent >= stop_after_j):
        config_id = rng.choice(ids)
        row = configs[int(config_id)]
        scheduler.add(job, config_id)
        joules, epoch = 0.0, 0
        for epoch in range(1, EPOCHS + 1):
            joules += row["energy_j"][epoch - 1]
            if scheduler.result(job, epoch, row["score"][epoch - 1]):
                break
        scheduler.result(job, epoch, row["score"][epoch - 1], final=True)
        status = "completed" if epoch == EPOCHS else "pruned"
        final = row["score"][-1] if epoch == EPOCHS else None
        trials.append({"job": job, "status": status, "epochs": epoch, "energy_j": joules, "final": final})
        spent += joules
        reached = reached or (final is not None and final >= target - 1e-12)
        job += 1
    return {"strategy": name, "seed": seed, "wall_s": round(time.perf_counter() - started, 1), "trials": trials}


def run_optuna_anchor(
    name: str, seed: int, budget_j: float, table: Path, target: float, stop_after_j: float
) -> dict[str, Any]:
    """Plain Optuna, no sweeper: ``TPESampler(seed)`` (and ``HyperbandPruner(1, 27, 3)``) driving the table in a loop.

    As an Optuna user writes it (``study.ask``; per epoch ``trial.report(score, epoch - 1)``, steps from 0 as Optuna's
    pruners assume, then ``should_prune``; ``study.tell`` PRUNED or the final score), in a study named as the
    sweeper's (``greenai``: Hyperband's brackets hash the study's name), suggesting what the sweep suggests: the ids
    as strings, or (``-space``) the hyperparameters of ``SPACE_PARAMS``, the nearest configuration replayed.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    configs = load_table(table)[1]
    ids = [str(i) for i in range(len(configs))]
    study = optuna.create_study(
        study_name="greenai",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=EPOCHS, reduction_factor=3)
        if "hyperband" in name
        else optuna.pruners.NopPruner(),
    )
    spent, trials, reached = 0.0, [], False
    started = time.perf_counter()
    while spent < budget_j and not (reached and spent >= stop_after_j):
        trial = study.ask()
        if name.endswith("-space"):
            config_id = nearest_config(configs, _suggest_space(trial))
        else:
            config_id = int(trial.suggest_categorical("config_id", ids))
        row = configs[config_id]
        joules, epoch, pruned = 0.0, 0, False
        for epoch in range(1, EPOCHS + 1):
            joules += row["energy_j"][epoch - 1]
            trial.report(row["score"][epoch - 1], epoch - 1)
            if trial.should_prune():
                pruned = True
                break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, row["score"][-1])
        final = None if pruned else row["score"][-1]
        status = "pruned" if pruned else "completed"
        trials.append({"job": trial.number, "status": status, "epochs": epoch, "energy_j": joules, "final": final})
        spent += joules
        reached = reached or (final is not None and final >= target - 1e-12)
    return {"strategy": name, "seed": seed, "wall_s": round(time.perf_counter() - started, 1), "trials": trials}


def _suggest_space(trial: Any) -> dict[str, Any]:
    """The hyperparameters of ``SPACE_PARAMS``, suggested as the sweeper's Optuna strategy suggests them."""
    values: dict[str, Any] = {key: trial.suggest_categorical(key, SPACE_PARAMS[key][7:-1].split(",")) for key in EXACT}
    for key, (low, high, log) in ORDERED.items():  # Hydra's interval() has float ends: all are suggest_float
        values[key] = trial.suggest_float(key, float(low), float(high), log=log)
    return values


def available(name: str) -> bool:
    """Whether an external anchor's library is installed."""
    module = {"ray-tune-asha": "ray.tune", "syne-tune-asha": "syne_tune"}.get(name)
    if module is None:
        return True
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


# -- the report ------------------------------------------------------------------------------------------------------


def curve(trials: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(joules spent so far, best final score so far) after each trial that raised the best."""
    spent, best, points = 0.0, -math.inf, []
    for trial in trials:
        spent += trial["energy_j"]
        if trial["final"] is not None and trial["final"] > best:
            best = trial["final"]
            points.append((spent, best))
    return points


def energy_to(points: list[tuple[float, float]], target: float) -> float:
    """Joules spent when the best first reached ``target`` (``inf``: never, within the run)."""
    return next((j for j, best in points if best >= target - 1e-12), math.inf)


def best_at(points: list[tuple[float, float]], joules: float) -> float | None:
    """The best final score reached with at most ``joules`` spent (``None``: no trial had ended by then)."""
    reached = [best for j, best in points if j <= joules]
    return reached[-1] if reached else None


def median(values: list[float]) -> float:
    """The median, ``inf`` where more than half are."""
    return statistics.median(values) if values else math.nan


def fmt_j(value: float) -> str:
    """Joules to 3 significant figures (1220 J, not 1.22e+03 J), or 'not reached'."""
    return "not reached" if math.isinf(value) else f"{float(f'{value:.3g}'):g} J"


def quantile(values: list[float], q: float) -> float:
    """The nearest-rank quantile (defined with ``inf`` among the values: a run that never reached the target)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def trials_to(trials: list[dict[str, Any]], target: float) -> tuple[int, int] | None:
    """How many trials a run started until one reached ``target``, and how many of those were pruned."""
    for i, trial in enumerate(trials):
        if trial["final"] is not None and trial["final"] >= target - 1e-12:
            return i + 1, sum(t["status"] == "pruned" for t in trials[: i + 1])
    return None


def summarise(runs: list[dict[str, Any]], target: float, levels: list[float]) -> list[dict[str, Any]]:
    """Per strategy: energy to target (median and quartiles over seeds, how many reached it), best score by energy."""
    rows = []
    random_median = median([energy_to(curve(r["trials"]), target) for r in runs if r["strategy"] == "random"])
    for name in STRATEGIES:
        mine = [r for r in runs if r["strategy"] == name]
        if not mine:
            continue
        to_target = [energy_to(curve(r["trials"]), target) for r in mine]
        at = []
        for level in levels:
            scores = [best_at(curve(r["trials"]), level) for r in mine]
            at.append(median([s if s is not None else 0.0 for s in scores]))
        counts = [c for c in (trials_to(r["trials"], target) for r in mine) if c is not None]
        mid = median(to_target)
        rows.append(
            {
                "strategy": name,
                "seeds": len(mine),
                "reached": sum(not math.isinf(j) for j in to_target),
                "median_j": mid,
                "quartiles_j": (quantile(to_target, 0.25), quantile(to_target, 0.75)),
                "ratio": random_median / mid if math.isfinite(mid) and math.isfinite(random_median) else math.nan,
                "best_at": at,
                "trials": median([float(c[0]) for c in counts]),
                "pruned": median([float(c[1]) for c in counts]),
                "to_target": to_target,
            }
        )
    return rows


def many_seeds(seeds: int, budget_j: float, table: Path, target: float, stop_after_j: float) -> list[str]:
    """Energy to target over many seeds without the sweeper: random search to the end, and ASHA by Ray's rule.

    Ray's ``AsyncHyperBandScheduler`` stopped every trial where the sweeper's ASHA did, given the same draws (see
    :func:`agreement`), so its runs here stand for the sweeper's ASHA over many more seeds than sweeps could, at its
    default setting and at others (``SETTINGS``).
    """
    lines, found = [], {}
    for name, setting in [("random-simulated", None)] + [("ray-tune-asha", s) for s in SETTINGS]:
        if setting is not None:
            ANCHORS[f"asha{setting}"] = lambda seed, s=setting: RayASHA(seed, *s)
            name = f"asha{setting}"
        joules = [
            energy_to(curve(run_anchor(name, seed, budget_j, table, target, stop_after_j)["trials"]), target)
            for seed in range(seeds)
        ]
        found[name] = median(joules)
        low, high = fmt_j(quantile(joules, 0.25)), fmt_j(quantile(joules, 0.75))
        reached = sum(math.isfinite(j) for j in joules)
        label = (
            "random search" if setting is None else f"ASHA, min_resource {setting[0]}, reduction_factor {setting[1]}"
        )
        ratio = found["random-simulated"] / found[name]
        lines.append(f"| {label} | {reached}/{seeds} | {fmt_j(found[name])} ({low} - {high}) | {ratio:.2f}x |")
    head = f"| without the sweeper, {seeds} seeds | reached | energy to target: median (quartiles) | random's / this |"
    return [head, "|---|---|---|---|", *lines]


def simulated_random(configs: dict[int, dict[str, Any]], target: float, runs: int = 100_000) -> tuple[float, float]:
    """Random search's energy to target without the sweeper: the mean and median of ``runs`` simulated searches."""
    import numpy as np

    cost = np.array([sum(r["energy_j"]) for r in configs.values()])
    hit = np.array([r["score"][-1] >= target - 1e-12 for r in configs.values()])
    rng = np.random.default_rng(0)
    totals = np.empty(runs)
    for i in range(runs):
        draws = rng.integers(0, len(cost), size=4096)
        first = int(np.argmax(hit[draws]))  # a hit within 4096 draws is all but certain at 2 targets of 250
        totals[i] = cost[draws[: first + 1]].sum()
    return float(totals.mean()), float(np.median(totals))


def markdown(
    rows: list[dict[str, Any]], target: float, best: float, levels: list[float], budget_j: float, stop_after_j: float
) -> str:
    """The results table."""
    head = (
        f"| strategy | reached {target:.4f} (seeds) | energy to it: median (quartiles) | random's / this | "
        + " | ".join(f"best at {level:g} J" for level in levels)
        + " | trials to it (pruned) |"
    )
    lines = [head, "|" + "---|" * (5 + len(levels))]
    for row in rows:
        ratio = f"{row['ratio']:.2f}x" if math.isfinite(row["ratio"]) else "-"
        low, high = (fmt_j(q).removesuffix(" J") for q in row["quartiles_j"])
        lines.append(
            f"| {LABELS[row['strategy']]} | {row['reached']}/{row['seeds']} | {fmt_j(row['median_j'])} "
            f"({low} - {high}) | {ratio} | "
            + " | ".join(f"{s:.4f}" for s in row["best_at"])
            + f" | {row['trials']:g} ({row['pruned']:g}) |"
        )
    lines.append("")
    lines.append(
        f"Best final score in the table {best:.4f}; target {target:.4f}. Each run has a budget of {budget_j:g} J (one "
        f"that has not reached the target by then counts as not reached; medians and quartiles are over all seeds) and "
        f"ends once it has reached the target and spent {stop_after_j:g} J."
    )
    return "\n".join(lines)


def agreement(runs: list[dict[str, Any]], a: str, b: str) -> tuple[int, int]:
    """How many trials two ASHAs fed the same draws stopped at another epoch, of the trials both ran."""
    by = {(r["strategy"], r["seed"]): r["trials"] for r in runs}
    differ = total = 0
    for (name, seed), trials in by.items():
        other = by.get((b, seed))
        if name != a or other is None:
            continue
        for x, y in zip(trials, other, strict=False):
            total += 1
            differ += x["epochs"] != y["epochs"]
    return differ, total


def plot(runs: list[dict[str, Any]], rows: list[dict[str, Any]], target: float, budget_j: float, out: Path) -> None:
    """Median best score against energy spent, one line per strategy, and the spread of energy to target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = [budget_j * i / 400 for i in range(1, 401)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=90)
    for name in STRATEGIES:
        mine = [curve(r["trials"]) for r in runs if r["strategy"] == name]
        if not mine:
            continue
        # a seed with no finished trial yet counts as the lowest: the median shows once half the seeds have one
        med = [median([-math.inf if (b := best_at(c, j)) is None else b for c in mine]) for j in grid]
        med = [m if math.isfinite(m) else math.nan for m in med]
        left.plot(grid, med, label=LABELS[name], linestyle="--" if STRATEGIES[name] is None else "-")
    left.axhline(target, color="grey", linewidth=0.8, linestyle=":")
    left.set_xscale("log")
    left.set_ylim(target - 0.03, min(target + 0.01, 1.0))
    left.set_xlabel("energy spent (J, estimated)")
    left.set_ylabel("best final val/acc (median of seeds)")
    left.set_title("best score against energy")
    names = [r["strategy"] for r in rows]
    data = [[min(j, budget_j * 1.05) for j in r["to_target"]] for r in rows]
    right.boxplot(data, orientation="horizontal", tick_labels=[LABELS[n].split(" (")[0] for n in names])
    right.axvline(budget_j, color="grey", linewidth=0.8, linestyle=":")
    right.set_xlabel(f"energy to reach {target:.4f} (J; dotted: not reached)")
    right.set_title("energy to a near-best configuration, per seed")
    right.invert_yaxis()
    left.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def read_runs(path: Path) -> list[dict[str, Any]]:
    """The runs recorded so far."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget-j", type=float, default=3000.0, help="each run's energy budget")
    parser.add_argument(
        "--stop-after-j", type=float, default=500.0, help="end a run that reached the target once this is spent"
    )
    parser.add_argument("--tolerance", type=float, default=0.005)
    parser.add_argument("--levels", default="50,100,250,500", help="energies (J) to read the best score at")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--runs", type=Path, default=RUNS)
    parser.add_argument("--plot", type=Path, default=PLOT, help="where the plot goes (a part of the runs: elsewhere)")
    parser.add_argument("--work", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None)
    parser.add_argument("--report", action="store_true", help="only turn the recorded runs into the table and plot")
    parser.add_argument(
        "--many-seeds", type=int, default=0, help="also run random search and Ray's ASHA without the sweeper on N seeds"
    )
    args = parser.parse_args(argv)
    configs = load_table(args.table)[1]
    best = max(r["score"][-1] for r in configs.values())
    target = best - args.tolerance
    levels = [float(x) for x in args.levels.split(",")]
    if not args.report:
        work = Path(args.work or ROOT / "outputs") / "greenai-search-energy"
        work.mkdir(parents=True, exist_ok=True)
        done = {(r["strategy"], r["seed"]) for r in read_runs(args.runs)}
        for seed in range(args.seeds):
            for name in args.strategies.split(","):
                if (name, seed) in done:
                    continue
                if not available(name):
                    print(f"{name}: not installed, left out")
                    continue
                if name.startswith("optuna-"):
                    run = run_optuna_anchor(name, seed, args.budget_j, args.table, target, args.stop_after_j)
                elif STRATEGIES[name] is None:
                    run = run_anchor(name, seed, args.budget_j, args.table, target, args.stop_after_j)
                else:
                    run = run_sweep(name, seed, args.budget_j, args.table, work, target, args.stop_after_j)
                run["budget_j"] = args.budget_j
                args.runs.parent.mkdir(parents=True, exist_ok=True)
                with args.runs.open("a") as f:
                    f.write(json.dumps(run, separators=(",", ":")) + "\n")
                reached = energy_to(curve(run["trials"]), target)
                print(f"{name} seed {seed}: {len(run['trials'])} trials, target at {fmt_j(reached)}, {run['wall_s']} s")
    runs = [r for r in read_runs(args.runs) if r["seed"] < args.seeds]
    rows = summarise(runs, target, levels)
    print(markdown(rows, target, best, levels, args.budget_j, args.stop_after_j))
    mean_j, median_j = simulated_random(configs, target)
    simulated = f"mean {fmt_j(mean_j)}, median {fmt_j(median_j)}"
    print(f"Random search simulated from the table (100,000 searches, no sweeper): {simulated}")
    if args.many_seeds:
        print("\n".join(many_seeds(args.many_seeds, args.budget_j, args.table, target, args.stop_after_j)))
    for a, b in (("asha", "ray-tune-asha"), ("asha", "syne-tune-asha"), ("ray-tune-asha", "syne-tune-asha")):
        differ, total = agreement(runs, a, b)
        if total:
            print(f"{LABELS[a]} and {LABELS[b]}, fed the same trials: {differ} of {total} stopped at another epoch")
    plot(runs, rows, target, args.budget_j, args.plot)


if __name__ == "__main__":
    main()
