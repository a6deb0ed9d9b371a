"""The learning-curve replay (benchmarks/replay.py): the sweeper's real ASHA over a slice of the shipped table.

Each trial replays one configuration's recorded epochs through a Meter and report_score, so a pruned trial must be
billed exactly the energy (and FLOPs) its configuration metered up to its rung, and the same seed must give the same
sweep: the same trials, the same decisions at the rungs, the same books.
"""

import json
from pathlib import Path

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
