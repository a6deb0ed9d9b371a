"""Does the replay tell the truth? The same sweeps replayed and trained for real. Run: python benchmarks/real_check.py

``benchmarks/search_energy.py`` measures each strategy's energy to a near-best configuration on the learning-curve
table, replaying recorded epochs. Here the same sweeps (strategy, seed, budget, end rule) also run with
``benchmarks/train_trial.py``, whose trials train their configuration with Lightning as the table's run did and are
metered now. For each seed and strategy it prints: the trials and the energy to the target, replayed and real; how
many of the real trials' reported scores equal the table's (then the rungs took the replay's decisions); and random
search's energy over ASHA's, replayed and real, which is the ratio the benchmark reports. A real sweep trains for
minutes: run it on a quiet machine (the energy is metered, an estimate from CPU time where no counter is readable).
Runs are appended to ``--runs`` as they finish; run again to continue.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from search_energy import curve, energy_to, fmt_j, read_runs, run_sweep, trials_to  # noqa: E402
from table import TABLE, load_table  # noqa: E402

TRAIN = ROOT / "benchmarks" / "train_trial.py"
RUNS = ROOT / "outputs" / "real_check_runs.jsonl"
#: A rung's verdict reaches a waiting trial within a poll: 0.1 s keeps a real trial from idling at its rungs.
REAL_OVERRIDES = ("hydra.sweeper.poll_s=0.1",)


def scores_as_table(run: dict[str, Any], configs: dict[int, dict[str, Any]]) -> tuple[int, int]:
    """How many of a run's reported scores equal the table's at the same epoch, of how many."""
    same = total = 0
    for trial in run["trials"]:
        recorded = configs[trial["config_id"]]["score"]
        for epoch, score in enumerate(trial["scores"]):
            same += abs(score - recorded[epoch]) < 5e-5  # the table keeps 4 decimals
            total += 1
    return same, total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--strategies", default="random,asha")
    parser.add_argument("--budget-j", type=float, default=3000.0)
    parser.add_argument("--stop-after-j", type=float, default=500.0)
    parser.add_argument("--tolerance", type=float, default=0.005)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--runs", type=Path, default=RUNS)
    args = parser.parse_args(argv)
    configs = load_table(args.table)[1]
    target = max(r["score"][-1] for r in configs.values()) - args.tolerance
    work = ROOT / "outputs" / "greenai-real-check"
    work.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.strategies.split(",")
    done = {(r["mode"], r["strategy"], r["seed"]) for r in read_runs(args.runs)}
    for seed in seeds:
        for name in names:
            for mode, task, overrides in (("replay", None, ()), ("real", TRAIN, REAL_OVERRIDES)):
                if (mode, name, seed) in done:
                    continue
                extra = {"task": task, "overrides": overrides} if task else {}
                run = run_sweep(name, seed, args.budget_j, args.table, work, target, args.stop_after_j, **extra)
                run["mode"] = mode
                args.runs.parent.mkdir(parents=True, exist_ok=True)
                with args.runs.open("a") as f:
                    f.write(json.dumps(run, separators=(",", ":")) + "\n")
                reached = energy_to(curve(run["trials"]), target)
                print(f"{mode} {name} seed {seed}: {len(run['trials'])} trials, target at {fmt_j(reached)}", flush=True)
    runs = {(r["mode"], r["strategy"], r["seed"]): r for r in read_runs(args.runs)}
    print(
        "| seed | strategy | trials to target: replay / real | energy to target: replay / real | real / replay | "
        "real scores equal to the table's | real wall time |"
    )
    print("|---|---|---|---|---|---|---|")
    energies: dict[tuple[str, str, int], float] = {}
    for seed in seeds:
        for name in names:
            replay, real = runs.get(("replay", name, seed)), runs.get(("real", name, seed))
            if replay is None or real is None:
                continue
            for mode, run in (("replay", replay), ("real", real)):
                energies[mode, name, seed] = energy_to(curve(run["trials"]), target)
            same, total = scores_as_table(real, configs)
            ratio = energies["real", name, seed] / energies["replay", name, seed]
            reached = [trials_to(run["trials"], target) for run in (replay, real)]
            count = [None if found is None else found[0] for found in reached]
            print(
                f"| {seed} | {name} | {count[0]} / {count[1]} | "
                f"{fmt_j(energies['replay', name, seed])} / {fmt_j(energies['real', name, seed])} | {ratio:.2f} | "
                f"{same} of {total} | {real['wall_s'] / 60:.1f} min |"
            )
    if "random" in names and "asha" in names:
        for seed in seeds:
            if all((mode, s, seed) in energies for mode in ("replay", "real") for s in ("random", "asha")):
                replayed = energies["replay", "random", seed] / energies["replay", "asha", seed]
                real_ratio = energies["real", "random", seed] / energies["real", "asha", seed]
                print(
                    f"seed {seed}: random's energy to target over ASHA's: {replayed:.2f}x replayed, "
                    f"{real_ratio:.2f}x real"
                )


if __name__ == "__main__":
    main()
