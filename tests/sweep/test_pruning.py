"""Stopping bad trials early: real multiruns under asha, hyperband and an Optuna pruner, with exact books.

The plain task (``meter_task.py`` with ``report=true``) trains ``steps`` epochs of 1 J each and reports a score whose
ranking by ``x`` never changes; every report at a rung waits for the sweeper's verdict, so what is pruned where is
decided by the scores alone, never by timing.
"""

import json
from pathlib import Path

import pytest

from lightning_greenai.sweep.ledger import Ledger
from lightning_greenai.sweep.rungs import RungOptions, SuccessiveHalving
from tests.sweep.test_sweeper import finished, report, run

MONITOR_TASK = Path(__file__).with_name("monitor_task.py")
CURVES = ("report=true", "steps=9", "hydra.sweeper.monitor=score", "hydra.sweeper.report=false")
ASHA = (*CURVES, "hydra.sweeper.strategy=asha")


def events(sweep_dir: Path, kind: str) -> list[dict]:
    return [e for e in Ledger(sweep_dir / ".greenai" / "ledger.jsonl").events() if e["event"] == kind]


def launched_x(sweep_dir: Path) -> dict[int, float]:
    return {e["job"]: float(e["overrides"][0].split("=")[1]) for e in events(sweep_dir, "launched")}


def test_asha_prunes_a_trial_bad_at_rung_1_bills_what_it_spent_and_the_ledger_says_why(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run(
        sweep_dir, "x=0,3,9,2", *ASHA, "hydra.sweeper.max_trials=4", "hydra.sweeper.seed=1", "hydra.sweeper.report=true"
    )
    xs = launched_x(sweep_dir)
    rungs = events(sweep_dir, "rung")
    # every decision the ledger holds is the one the rungs give for the same reports, in the same order
    ladder = SuccessiveHalving(RungOptions(), direction="max")
    for event in rungs:
        score = -((xs[event["job"]] - 3.0) ** 2) / 10 + event["resource"] / 100
        verdict = ladder.report(event["job"], event["resource"], score, max_resource=9)
        assert (event["decision"], event["reason"]) == (verdict.decision, verdict.reason)
        assert event["score"] == pytest.approx(score)
    pruned = [e for e in rungs if e["decision"] == "pruned"]
    assert pruned, rungs
    for event in pruned:
        assert event["reason"].startswith(f"rung {event['rung']} (") and " < top third " in event["reason"]
    books = finished(sweep_dir)
    for job, trial in books.items():
        epochs = len(trial["reports"])
        assert trial["spend"]["energy_j"] == {"gpu:0": pytest.approx(float(epochs))}  # billed what it ran: 1 J/epoch
        if any(e["job"] == job for e in pruned):
            stop = next(e for e in pruned if e["job"] == job)
            assert trial["status"] == "pruned" and epochs == stop["resource"]  # it stopped at its rung
            assert [r for r, _ in trial["reports"]] == list(range(1, epochs + 1))  # its scores up to there are kept
        else:
            assert trial["status"] == "completed" and epochs == 9
    rep = report(sweep_dir)
    assert rep["trials_by_status"] == {"completed": 4 - len(pruned), "pruned": len(pruned)}
    assert rep["spend"]["energy_j"]["gpu:0"] == pytest.approx(sum(len(t["reports"]) for t in books.values()))
    assert rep["iid"] is False
    # the sweep's printed price tag bills the pruned trials too (run() holds it equal to the ledger's sum)
    assert f"(completed {4 - len(pruned)}, pruned {len(pruned)})" in proc.stdout


def test_the_ledger_rung_lines_read_as_the_issue_asks(tmp_path):
    sweep_dir = tmp_path / "sweep"
    run(sweep_dir, "x=3,2,0", *ASHA, "hydra.sweeper.max_trials=3", "hydra.sweeper.seed=1")
    assert launched_x(sweep_dir) == {0: 3.0, 1: 0.0, 2: 3.0}  # the seed's draws
    assert [(e["job"], e["decision"], e["reason"]) for e in events(sweep_dir, "rung")] == [
        (0, "promoted", "rung 1 (1 epoch): 0.01, the first score at this rung, goes on"),
        (0, "promoted", "rung 2 (3 epochs): 0.03, the first score at this rung, goes on"),
        (1, "pruned", "rung 1 (1 epoch): -0.89 < top third 0.01 of 1 earlier score"),
        (2, "promoted", "rung 1 (1 epoch): 0.01 >= top third -0.29 of 2 earlier scores"),
        (2, "promoted", "rung 2 (3 epochs): 0.03 >= top third 0.03 of 1 earlier score"),
    ]


def test_hyperband_runs_each_trial_in_its_bracket(tmp_path):
    sweep_dir = tmp_path / "sweep"
    overrides = ("hydra.sweeper.strategy=hyperband", "hydra.sweeper.hyperband.max_resource=9")
    run(sweep_dir, "x=0,1,2,3,4,5,6", *CURVES, *overrides, "hydra.sweeper.max_trials=12", "hydra.sweeper.seed=2")
    ladder = SuccessiveHalving(RungOptions(max_resource=9), direction="max", hyperband=True, seed=2)
    brackets = {job: ladder.bracket_of(job) for job in launched_x(sweep_dir)}
    assert len(set(brackets.values())) >= 2, brackets  # the seed spreads 12 trials over brackets
    for event in events(sweep_dir, "rung"):
        assert event["bracket"] == brackets[event["job"]]
        assert event["rung"] >= event["bracket"] + 1  # bracket b decides from rung b + 1 on
        assert event["reason"].startswith(f"bracket {event['bracket']}, rung {event['rung']} (")
    for job, trial in finished(sweep_dir).items():
        if brackets[job] == 2:  # the last bracket has no rung: its trials run to the end
            assert trial["status"] == "completed" and len(trial["reports"]) == 9


def test_an_optuna_pruner_in_the_samplers_config_shape_is_fed_the_same_reports(tmp_path):
    optuna = pytest.importorskip("optuna")
    sweep_dir = tmp_path / "sweep"
    pruner = "+hydra.sweeper.pruner={_target_: optuna.pruners.HyperbandPruner, min_resource: 1, max_resource: 9}"
    run(sweep_dir, "x=choice(0,1,2,3,4,5,6)", *CURVES, pruner, "hydra.sweeper.max_trials=8")
    rep = report(sweep_dir)
    assert rep["strategy"] == "optuna" and rep["trials_by_status"].get("pruned", 0) >= 1, rep["trials_by_status"]
    rungs = events(sweep_dir, "rung")
    assert {e["decision"] for e in rungs} == {"continued", "pruned"}
    assert all(
        e["reason"].startswith(f"step {int(e['resource']) - 1} (resource {e['resource']:g}): HyperbandPruner ")
        for e in rungs
    )
    study = optuna.load_study(study_name="greenai", storage=f"sqlite:///{sweep_dir / '.greenai' / 'optuna.db'}")
    states = {t.number: t.state.name for t in study.trials}
    for job, trial in finished(sweep_dir).items():
        number = next(e["strategy_id"] for e in events(sweep_dir, "launched") if e["job"] == job)
        assert states[number] == {"pruned": "PRUNED", "completed": "COMPLETE"}[trial["status"]]
        steps = sorted(study.trials[number].intermediate_values)
        assert steps == [int(r) - 1 for r, _ in trial["reports"]]  # every report reached Optuna, steps from 0


def test_an_optuna_pruner_counts_steps_from_0_and_never_prunes_a_trial_at_its_last_epoch(tmp_path):
    """Optuna's steps start at 0 (its pruners assume so): with max_resource = the trial's epochs, Hyperband's last
    rung is past a trial's last report. Counting epochs done from 1 put a rung on the last epoch of every bracket, and
    this seed's sixth trial, trained to its end, was recorded pruned there (an Optuna PRUNED trial to TPE)."""
    optuna = pytest.importorskip("optuna")
    sweep_dir = tmp_path / "sweep"
    pruner = "+hydra.sweeper.pruner={_target_: optuna.pruners.HyperbandPruner, min_resource: 1, max_resource: 9}"
    run(sweep_dir, "x=choice(0,1,2,3,4,5,6)", *CURVES, pruner, "hydra.sweeper.max_trials=6", "hydra.sweeper.seed=1")
    study = optuna.load_study(study_name="greenai", storage=f"sqlite:///{sweep_dir / '.greenai' / 'optuna.db'}")
    launched = {e["job"]: e["strategy_id"] for e in events(sweep_dir, "launched")}
    books = finished(sweep_dir)
    assert len(books) == 6
    for job, trial in books.items():
        optuna_trial = study.trials[launched[job]]
        assert sorted(optuna_trial.intermediate_values) == list(range(len(trial["reports"])))
        if len(trial["reports"]) == 9:  # trained to its end: completed, and Optuna is told its objective
            assert (trial["status"], optuna_trial.state.name) == ("completed", "COMPLETE")
            assert optuna_trial.value == pytest.approx(trial["objective"])
    assert not [e for e in events(sweep_dir, "rung") if e["resource"] == 9 and e["decision"] == "pruned"]


def test_a_resume_replays_the_rung_decisions_and_continues_the_rungs(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    space = ("x=choice(0,1,2,3,4,5,6)", *ASHA, "hydra.sweeper.seed=4")
    run(whole, *space, "hydra.sweeper.max_trials=6")
    run(split, *space, "hydra.sweeper.max_trials=3")
    run(split, *space, "hydra.sweeper.max_trials=6", "hydra.sweeper.resume=true")

    def decisions(sweep_dir):
        return [(e["job"], e["rung"], e["decision"], e["reason"]) for e in events(sweep_dir, "rung")]

    assert decisions(split) == decisions(whole)  # the second session compared with the first session's scores
    assert any(job >= 3 and "earlier score" in reason for job, _, _, reason in decisions(split))
    assert report(split)["trials_by_status"] == report(whole)["trials_by_status"]


def test_a_lightning_trial_reports_at_each_validation_end_and_stops_where_it_is_pruned(tmp_path):
    sweep_dir = tmp_path / "sweep"
    asha = ("hydra.sweeper.strategy=asha", "hydra.sweeper.monitor=val/score", "hydra.sweeper.seed=1", CURVES[-1])
    run(sweep_dir, "x=3,0,9", "epochs=9", *asha, "hydra.sweeper.max_trials=3", task=MONITOR_TASK)
    assert launched_x(sweep_dir) == {0: 3.0, 1: 9.0, 2: 3.0}  # the seed's draws
    books = finished(sweep_dir)
    assert [books[job]["status"] for job in range(3)] == ["completed", "pruned", "completed"]
    assert [len(books[job]["reports"]) for job in range(3)] == [9, 1, 9]  # the pruned one trained its rung's epoch
    assert [r for r, _ in books[0]["reports"]] == [float(epoch) for epoch in range(1, 10)]  # epochs done
    assert books[1]["reports"][0][1] == pytest.approx(-3.59) and books[1]["max_resource"] == 9.0  # max_epochs
    pruned = next(e for e in events(sweep_dir, "rung") if e["decision"] == "pruned")
    assert (pruned["job"], pruned["reason"]) == (1, "rung 1 (1 epoch): -3.59 < top third 0.01 of 1 earlier score")
    assert books[1]["spend"]["energy_j"]["gpu:0"] > 0  # billed what it ran (exact billing: the plain task's test)
    assert report(sweep_dir)["trials_by_status"] == {"completed": 2, "pruned": 1}


@pytest.mark.parametrize(
    ("task", "overrides", "message"),
    [
        pytest.param(
            None,
            ("report=false", "steps=3", "hydra.sweeper.monitor=score", "hydra.sweeper.strategy=asha"),
            "hydra.sweeper.monitor='score' was never reported: trial 0 completed without a report of it",
            id="plain-task-never-reports",
        ),
        pytest.param(
            MONITOR_TASK,
            ("epochs=2", "hydra.sweeper.monitor=val/scor", "hydra.sweeper.strategy=asha"),
            "hydra.sweeper.monitor='val/scor' is not a metric this trial logs at validation end; it logs: val/score",
            id="lightning-unknown-monitor",
        ),
        pytest.param(
            None,
            (*CURVES, "hydra.sweeper.strategy=asha", "hydra.sweeper.asha.reduction_factor=1"),
            "`hydra.sweeper.asha.reduction_factor` must be an integer >= 2",
            id="reduction_factor",
        ),
        pytest.param(
            None,
            (
                *CURVES,
                "hydra.sweeper.strategy=asha",
                "hydra.sweeper.asha.min_resource=10",
                "hydra.sweeper.asha.max_resource=9",
            ),
            "`hydra.sweeper.asha.min_resource` (10) must be below max_resource (9)",
            id="min>max",
        ),
    ],
)
def test_a_bad_rung_setup_is_a_clear_error(tmp_path, task, overrides, message):
    extra = {} if task is None else {"task": task}
    proc = run(tmp_path / "sweep", "x=choice(0,1)", "hydra.sweeper.max_trials=2", *overrides, check=False, **extra)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-3000:]


def test_the_heartbeat_carries_the_reports_to_the_sweeper(tmp_path):
    sweep_dir = tmp_path / "sweep"
    run(sweep_dir, "x=3", *ASHA, "hydra.sweeper.max_trials=1")
    heartbeat = json.loads((sweep_dir / ".greenai" / "trials" / "0.json").read_text())
    assert [r for r, _ in heartbeat["reports"]] == list(range(1, 10)) and heartbeat["max_resource"] == 9
    assert heartbeat["status"] == "completed"
