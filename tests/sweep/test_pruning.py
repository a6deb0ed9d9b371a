"""Stopping bad trials early: real multiruns under asha, hyperband and an Optuna pruner, with exact books.

The plain task (``meter_task.py`` with ``report=true``) trains ``steps`` epochs of 1 J each and reports a score whose
ranking by ``x`` never changes; every report at a rung waits for the sweeper's verdict, so what is pruned where is
decided by the scores alone, never by timing.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest

from lightning_greenai.sweep.ledger import Ledger
from lightning_greenai.sweep.rungs import RungOptions, SuccessiveHalving
from lightning_greenai.trial.channel import open_channel, read_record
from lightning_greenai.trial.record import TrialStatus
from tests.sweep.test_faults import JOBLIB_2
from tests.sweep.test_sweeper import assert_books_balance, finished, report, run

MONITOR_TASK = Path(__file__).with_name("monitor_task.py")
CURVES = ("report=true", "steps=9", "hydra.sweeper.monitor=score", "hydra.sweeper.report=false")
ASHA = (*CURVES, "hydra.sweeper.strategy=asha")
SPEND_ASHA = (
    "hydra.sweeper.strategy=asha",
    "hydra.sweeper.asha.resource=energy_kwh",
    "hydra.sweeper.asha.min_resource=2 J",
)


def events(sweep_dir: Path, kind: str) -> list[dict]:
    return [e for e in Ledger(sweep_dir / ".greenai" / "ledger.jsonl").events() if e["event"] == kind]


def launched_x(sweep_dir: Path) -> dict[int, float]:
    return {e["job"]: float(e["overrides"][0].split("=")[1]) for e in events(sweep_dir, "launched")}


def assert_rungs_replay(sweep_dir: Path) -> list[dict]:
    """Every ``rung`` event is the decision the rungs give for the same reports in the ledger's order; returns them."""
    xs, rungs = launched_x(sweep_dir), events(sweep_dir, "rung")
    ladder = SuccessiveHalving(RungOptions(), direction="max")
    for event in rungs:
        score = -((xs[event["job"]] - 3.0) ** 2) / 10 + event["resource"] / 100
        verdict = ladder.report(event["job"], event["resource"], score, max_resource=9)
        assert (event["decision"], event["reason"]) == (verdict.decision, verdict.reason)
        assert event["score"] == pytest.approx(score)
    return rungs


def two_good_then_two_bad_in_batches_of_two(
    sweep_dir: Path, *launcher: str, storage: str | None = None
) -> subprocess.CompletedProcess:
    """An asha sweep of two good trials run at once, then two bad ones at once, on ``launcher``; returns its run.

    The seed draws x = 3, 3, 0, 0 and the launcher runs two at a time, so whichever of a pair reports first, the
    good pair goes on at rungs 1 and 2 and runs to the end, and the bad pair, below the good scores at rung 1, is
    pruned there: every trial's fate is decided by the scores alone, never by which job of a batch is faster.
    """
    space = ("x=choice(0,3)", *ASHA, "hydra.sweeper.max_trials=4", "hydra.sweeper.seed=13")
    proc = run(sweep_dir, *space, *launcher, *([f"hydra.sweeper.storage={storage}"] if storage else []))
    assert launched_x(sweep_dir) == {0: 3.0, 1: 3.0, 2: 0.0, 3: 0.0}  # the seed's draws
    rep = assert_books_balance(sweep_dir, proc.stdout)
    assert rep["max_batch_size"] == 2
    rungs = assert_rungs_replay(sweep_dir)
    assert sorted((e["job"], e["rung"], e["decision"]) for e in rungs) == [
        (0, 1, "promoted"),
        (0, 2, "promoted"),
        (1, 1, "promoted"),
        (1, 2, "promoted"),
        (2, 1, "pruned"),
        (3, 1, "pruned"),
    ]
    for event in rungs:
        if event["decision"] == "pruned":  # compared with the good pair's 0.01 (and the other bad one's, if first)
            assert re.fullmatch(r"rung 1 \(1 epoch\): -0\.89 < top third 0\.01 of [23] earlier scores", event["reason"])
    books = finished(sweep_dir)
    assert {job: t["status"] for job, t in books.items()} == {0: "completed", 1: "completed", 2: "pruned", 3: "pruned"}
    for job, trial in books.items():
        epochs = 9 if job < 2 else 1  # the pruned ones trained their rung's epoch, and stopped
        assert [r for r, _ in trial["reports"]] == list(range(1, epochs + 1))
        assert trial["spend"]["energy_j"] == {"gpu:0": pytest.approx(float(epochs))}  # billed what it ran: 1 J/epoch
        assert trial["objective"] == pytest.approx(trial["reports"][-1][1])  # what it returned: its last score
    assert "reading each trial's record instead" not in proc.stdout + proc.stderr  # every job's return came back
    assert rep["trials_by_status"] == {"completed": 2, "pruned": 2}
    # no trial is left running: each one's last heartbeat is its final record, with the status the ledger holds
    sweep_id = Ledger(sweep_dir / ".greenai" / "ledger.jsonl").header()["sweep_id"]
    channel = open_channel(sweep_dir, storage, key=sweep_id, cwd=sweep_dir.parent)
    assert {job: read_record(channel, job).status for job in books} == {
        job: TrialStatus(t["status"]) for job, t in books.items()
    }
    return proc


@pytest.mark.parametrize("storage", [None, "sqlite:///s.db"], ids=["files", "sqlite"])
def test_asha_decides_by_the_scores_alone_when_a_launcher_runs_trials_at_once(tmp_path, storage):
    sweep_dir = tmp_path / "sweep"
    two_good_then_two_bad_in_batches_of_two(sweep_dir, *JOBLIB_2, storage=storage)
    # through a database the reports and the verdicts never touch the sweep dir
    assert (sweep_dir / ".greenai" / "trials").exists() == (storage is None)


def test_asha_prunes_a_trial_bad_at_rung_1_bills_what_it_spent_and_the_ledger_says_why(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run(
        sweep_dir, "x=0,3,9,2", *ASHA, "hydra.sweeper.max_trials=4", "hydra.sweeper.seed=1", "hydra.sweeper.report=true"
    )
    # every decision the ledger holds is the one the rungs give for the same reports, in the same order
    rungs = assert_rungs_replay(sweep_dir)
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


def test_rungs_that_count_energy_take_each_trials_metered_spend_and_say_it_in_joules(tmp_path):
    sweep_dir = tmp_path / "sweep"
    spend_rungs = (
        "report_spend=true",
        "hydra.sweeper.asha.resource=energy_kwh",
        "hydra.sweeper.asha.min_resource=2 J",
        "hydra.sweeper.asha.max_resource=9 J",
    )
    run(sweep_dir, "x=3,2,0", *ASHA, *spend_rungs, "hydra.sweeper.max_trials=3", "hydra.sweeper.seed=1")
    assert launched_x(sweep_dir) == {0: 3.0, 1: 0.0, 2: 3.0}  # the seed's draws
    # each report is the trial's spend as its Meter last sampled it: 1 J a step, so rungs at 2 J and 6 J
    assert [(e["job"], e["decision"], e["reason"]) for e in events(sweep_dir, "rung")] == [
        (0, "promoted", "rung 1 (2.00 J): 0.02, the first score at this rung, goes on"),
        (0, "promoted", "rung 2 (6.00 J): 0.06, the first score at this rung, goes on"),
        (1, "pruned", "rung 1 (2.00 J): -0.88 < top third 0.02 of 1 earlier score"),
        (2, "promoted", "rung 1 (2.00 J): 0.02 >= top third -0.28 of 2 earlier scores"),
        (2, "promoted", "rung 2 (6.00 J): 0.06 >= top third 0.06 of 1 earlier score"),
    ]
    assert [e["resource"] * 3.6e6 for e in events(sweep_dir, "rung")] == pytest.approx([2, 6, 2, 2, 6])
    books = finished(sweep_dir)
    assert {job: t["status"] for job, t in books.items()} == {0: "completed", 1: "pruned", 2: "completed"}
    assert books[1]["spend"]["energy_j"] == {"gpu:0": pytest.approx(2.0)}  # billed what it metered to its rung
    assert [r * 3.6e6 for r, _ in books[1]["reports"]] == pytest.approx([1.0, 2.0])


def test_energy_rungs_without_max_resource_say_the_run_to_the_end_is_not_estimated(tmp_path, capsys):
    """No trial under energy rungs says how far it would spend (BudgetStopping never does), so with max_resource null
    every pruned trial counted at what it spent, and every surface said stopping early saved nothing: '1.00x'."""
    from lightning_greenai.reporting.cli import main

    sweep_dir = tmp_path / "sweep"
    spend_rungs = ("report_spend=true", *SPEND_ASHA[1:], "hydra.sweeper.report=true")
    proc = run(
        sweep_dir,
        "x=3,2,0",
        *CURVES[:-1],
        SPEND_ASHA[0],
        *spend_rungs,
        "hydra.sweeper.max_trials=3",
        "hydra.sweeper.seed=1",
    )
    assert {job: t["status"] for job, t in finished(sweep_dir).items()} == {0: "completed", 1: "pruned", 2: "completed"}
    assert "  pruned    1 of 3 trials at rungs, 2.00 J; run to the end not estimated (no max_resource)\n" in proc.stdout
    stopping = report(sweep_dir)["early_stopping"]
    assert (stopping["run_to_end_energy_kwh"], stopping["saved_energy_kwh"], stopping["saving_ratio"]) == (None,) * 3
    assert stopping["not_estimated"] == [1]
    assert main(["report", str(sweep_dir), "--no-plots"]) == 0
    assert (
        "  the same trials run to the end: not estimated (no pruned trial's max_resource is known: rungs counting "
        "energy_kwh without max_resource); every trial counts at what it spent; set the strategy's max_resource to "
        "estimate it\n"
    ) in capsys.readouterr().out


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


def test_a_lightning_trial_under_rungs_that_count_flops_reports_its_flops_read_at_validation_end(tmp_path):
    sweep_dir = tmp_path / "sweep"
    asha = ("hydra.sweeper.strategy=asha", "hydra.sweeper.monitor=val/score", "hydra.sweeper.seed=1", CURVES[-1])
    flops = ("flops=true", "hydra.sweeper.asha.resource=flops", "hydra.sweeper.asha.min_resource=1000")
    run(sweep_dir, "x=3,0,9", "epochs=9", *asha, *flops, "hydra.sweeper.max_trials=3", task=MONITOR_TASK)
    assert launched_x(sweep_dir) == {0: 3.0, 1: 9.0, 2: 3.0}  # the seed's draws
    books = finished(sweep_dir)
    # FlopMonitor counts 776 training FLOPs an epoch (2 batches of BoringModel), handed over at each validation end
    assert [r for r, _ in books[0]["reports"]] == [776.0 * epoch for epoch in range(1, 10)]
    assert [books[job]["status"] for job in range(3)] == ["completed", "pruned", "completed"]
    assert [(e["job"], e["decision"], e["rung"], e["resource"]) for e in events(sweep_dir, "rung")] == [
        (0, "promoted", 1, 1000.0),  # rung 1 at 1,000 FLOPs, reached by the report after epoch 2 (1,552)
        (0, "promoted", 2, 3000.0),  # rung 2 at 3,000 FLOPs, after epoch 4 (3,104)
        (1, "pruned", 1, 1000.0),
        (2, "promoted", 1, 1000.0),
        (2, "promoted", 2, 3000.0),
    ]
    assert len(books[1]["reports"]) == 2 and books[1]["spend"]["flops"] == 1552.0  # stopped at its rung, billed so
    reason = next(e["reason"] for e in events(sweep_dir, "rung") if e["decision"] == "pruned")
    assert reason.startswith("rung 1 (1.00 kFLOPs): -3.58 < top third 0.02 of 1 earlier score"), reason


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
            "`hydra.sweeper.asha.min_resource` (10 epochs) must be below max_resource (9 epochs)",
            id="min>max",
        ),
        pytest.param(  # report_score(score, epoch) was read as epoch kWh: 1 J trials pruned at a 6 J rung
            None,
            (*CURVES, *SPEND_ASHA),
            "The sweep's rungs count energy_kwh, this trial's spend as metered: call report_score(score) without a "
            "resource (after Meter.sample()), and the spend is taken. Got resource=1, which would be read as 1.00 kWh.",
            id="epochs-reported-under-energy-rungs",
        ),
        pytest.param(  # every report at 0 J: no rung was ever reached, every trial ran to its end, 'pruned 0'
            None,
            (*CURVES, *SPEND_ASHA, "report_spend=true", "sensor=none"),
            "hydra.sweeper.asha.resource=energy_kwh, but trial 0 completed with every report at 0 J: no energy_kwh "
            "was metered when it reported, so no trial could reach the first rung (2.00 J)",
            id="energy-rungs-nothing-metered",
        ),
        pytest.param(
            None,
            (*CURVES, "hydra.sweeper.strategy=asha", "hydra.sweeper.asha.resource=flops", "report_spend=true"),
            "hydra.sweeper.asha.resource=flops, but trial 0 completed with every report at 0 FLOPs",
            id="flops-rungs-nothing-metered",
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
