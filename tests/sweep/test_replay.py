"""The learning-curve replay (benchmarks/replay.py): the sweeper's real ASHA over a slice of the shipped table.

Each trial replays one configuration's recorded epochs through a Meter and report_score, so a pruned trial must be
billed exactly the energy (and FLOPs) its configuration metered up to its rung, and the same seed must give the same
sweep: the same trials, the same decisions at the rungs, the same books.
"""

import functools
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from lightning_greenai.sweep.ledger import Ledger
from tests.sweep.test_sweeper import ROOT, run

REPLAY = ROOT / "benchmarks" / "replay.py"
TABLE = ROOT / "benchmarks" / "data" / "digits_curves.jsonl"
CONFIGS = 8


@pytest.fixture
def table_slice(tmp_path: Path) -> tuple[Path, dict[int, dict]]:
    lines = TABLE.read_text().splitlines()
    path = tmp_path / "slice.jsonl"
    path.write_text("\n".join(lines[: 1 + CONFIGS]) + "\n")  # the metadata line and the first configurations
    rows = [json.loads(line) for line in lines[1 : 1 + CONFIGS]]
    return path, {r["id"]: r for r in rows}


def replay(sweep_dir: Path, table: Path, seed: int) -> list[dict]:
    run(
        sweep_dir,
        f"table={table}",
        f"config_id=range(0,{CONFIGS})",
        "hydra.sweeper.strategy=asha",
        f"hydra.sweeper.seed={seed}",
        "hydra.sweeper.max_trials=12",
        "hydra.sweeper.budget.energy_kwh=1000 J",
        task=REPLAY,
    )
    return list(Ledger(sweep_dir / ".greenai" / "ledger.jsonl").events())


def decisions(events: list[dict]) -> list[tuple]:
    """What a sweep decided, without its clock: launches, rungs, and each trial's end and bill."""
    out = []
    for e in events:
        if e["event"] == "launched":
            out.append(("launched", e["job"], [o for o in e["overrides"] if o.startswith("config_id=")]))
        elif e["event"] == "rung":
            out.append(("rung", e["job"], e["rung"], e["resource"], e["score"], e["decision"], e["reason"]))
        elif e["event"] == "finished":
            out.append(("finished", e["job"], e["status"], e["objective"], e["spend"]["energy_j"], e["spend"]["flops"]))
    return out


@pytest.mark.timeout(120)
def test_replay_is_deterministic_and_bills_a_pruned_trial_its_recorded_epochs(tmp_path, table_slice):
    table, rows = table_slice
    first = replay(tmp_path / "a", table, seed=3)
    second = replay(tmp_path / "b", table, seed=3)
    assert decisions(first) == decisions(second)  # the same seed: the same trials, rung decisions and books

    config_of = {e["job"]: int(e["overrides"][0].split("=")[1]) for e in first if e["event"] == "launched"}
    finished = [e for e in first if e["event"] == "finished"]
    assert len(finished) == 12
    pruned = [e for e in finished if e["status"] == "pruned"]
    assert pruned, [e["status"] for e in finished]
    for trial in finished:
        row, epochs = rows[config_of[trial["job"]]], len(trial["reports"])
        assert [s for _, s in trial["reports"]] == row["score"][:epochs]  # it reported the scores the run reached
        # billed the energy and FLOPs its configuration metered in the epochs it ran, no more, no less
        assert trial["spend"]["energy_j"] == {"table": pytest.approx(sum(row["energy_j"][:epochs]))}
        assert trial["spend"]["flops"] == pytest.approx(sum(row["mflops"][:epochs]) * 1e6)
        assert trial["spend"]["is_estimate"] is True  # the table's energy is the CPU estimate, and says so
        if trial["status"] == "completed":
            assert epochs == len(row["score"]) and trial["objective"] == row["score"][-1]
    for trial in pruned:
        stop = next(e for e in first if e["event"] == "rung" and e["job"] == trial["job"] and e["decision"] == "pruned")
        assert len(trial["reports"]) == stop["resource"]  # it stopped at its rung


SPACE = (
    "config_id=null",
    "family=choice(mlp,cnn)",
    "optimizer=choice(adam,sgd)",
    "lr=tag(log,interval(1e-4,0.3))",
    "weight_decay=tag(log,interval(1e-6,0.1))",
    "batch_size=tag(log,interval(16,256))",
    "width=tag(log,interval(4,256))",
    "depth=interval(1,3)",
)
HYPERPARAMETERS = ("family", "optimizer", "lr", "weight_decay", "batch_size", "width", "depth")


@functools.cache
def replay_module() -> ModuleType:
    """``benchmarks/table.py``, loaded from its file (not ``replay.py``, whose ``@hydra.main(version_base="1.3")`` would
    set Hydra's version base for every later Hydra run in this process; nor ``benchmarks`` on ``sys.path``)."""
    spec = importlib.util.spec_from_file_location("greenai_benchmark_table", ROOT / "benchmarks" / "table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nearest(rows: dict[int, dict], **hyperparameters) -> int:
    return replay_module().nearest_config(rows, hyperparameters)


def test_nearest_config_is_the_configuration_itself_and_never_another_family_or_optimizer():
    rows = {r["id"]: r for r in (json.loads(line) for line in TABLE.read_text().splitlines()[1:])}
    for config_id, row in rows.items():  # every configuration of the table is its own nearest
        assert nearest(rows, **{k: row[k] for k in HYPERPARAMETERS}) == config_id
    wide_cnn = {"family": "cnn", "optimizer": "sgd", "lr": 0.01, "weight_decay": 1e-4, "batch_size": 64, "depth": 2}
    chosen = nearest(rows, **wide_cnn, width=256)
    assert (rows[chosen]["family"], rows[chosen]["optimizer"]) == ("cnn", "sgd")
    assert chosen == nearest(rows, **wide_cnn, width=32)  # past the family's widest (32 channels) counts as 32


@pytest.mark.timeout(120)
def test_a_search_over_the_hyperparameters_replays_the_nearest_configuration(tmp_path, table_slice):
    table, rows = table_slice
    sweep_dir = tmp_path / "space"
    run(
        sweep_dir,
        f"table={table}",
        *SPACE,
        "hydra.sweeper.strategy=optuna",
        "hydra.sweeper.seed=0",
        "hydra.sweeper.max_trials=6",
        task=REPLAY,
    )
    events = list(Ledger(sweep_dir / ".greenai" / "ledger.jsonl").events())
    launched = {e["job"]: dict(o.split("=", 1) for o in e["overrides"]) for e in events if e["event"] == "launched"}
    finished = [e for e in events if e["event"] == "finished"]
    assert len(finished) == 6
    for trial in finished:
        asked = launched[trial["job"]]
        assert asked["config_id"] == "null" and set(asked) == {"table", "config_id", *HYPERPARAMETERS}
        values = {k: v if k in ("family", "optimizer") else float(v) for k, v in asked.items() if k in HYPERPARAMETERS}
        row = rows[nearest(rows, **values)]
        assert trial["status"] == "completed" and trial["objective"] == row["score"][-1]
        assert [s for _, s in trial["reports"]] == row["score"]  # every epoch of the nearest configuration
        assert trial["spend"]["energy_j"] == {"table": pytest.approx(sum(row["energy_j"]))}
