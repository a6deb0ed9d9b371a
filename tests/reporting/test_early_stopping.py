"""Reports that say what stopping early bought: the rung table, the energy of pruned trials, the run-to-end estimate.

A real asha sweep of ``meter_task.py`` (1 J an epoch, 9 epochs, scores whose ranking never changes) makes the figures
exact: every trial run to the end costs 9 J. Hand-written ledgers cover what a real sweep rarely shows.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from lightning_greenai.grid import Grid
from lightning_greenai.reporting.cli import main
from lightning_greenai.reporting.summary import SweepSummary, load
from lightning_greenai.sweep.ledger import Ledger
from lightning_greenai.units import j_to_kwh
from tests.sweep.test_pruning import events, finished
from tests.sweep.test_sweeper import report, run

ASHA_RUN = ("report=true", "steps=9", "hydra.sweeper.monitor=score", "hydra.sweeper.strategy=asha")


@pytest.fixture(scope="module")
def asha_sweep(tmp_path_factory):
    """Seven trials under asha (seed 1): five pruned at rung 1, one at rung 2 (3 epochs), one run to the end."""
    sweep_dir = tmp_path_factory.mktemp("asha") / "sweep"
    proc = run(sweep_dir, "x=0,3,9,2,1,4,5", *ASHA_RUN, "hydra.sweeper.max_trials=7", "hydra.sweeper.seed=1")
    return sweep_dir, proc.stdout


def rung_lines(text: str) -> dict[int, tuple[int, int]]:
    """The text report's rung table: rung -> (reached, pruned)."""
    found = re.findall(r"^    rung (\d+) \(\d+ epochs?\) +reached by (\d+), pruned (\d+)", text, re.MULTILINE)
    return {int(rung): (int(reached), int(pruned)) for rung, reached, pruned in found}


def test_a_pruned_sweeps_report_counts_the_rungs_and_prices_running_the_trials_to_the_end(asha_sweep):
    sweep_dir, _ = asha_sweep
    books = finished(sweep_dir)
    pruned = {job: t for job, t in books.items() if t["status"] == "pruned"}
    assert len(pruned) == 6 and len(books) == 7  # the seed's draws, as in the printed tag below
    stopping = report(sweep_dir)["early_stopping"]
    assert (stopping["strategy"], stopping["resource"], stopping["trials"], stopping["pruned"]) == (
        "asha",
        "epochs",
        7,
        6,
    )
    assert [(r["rung"], r["resource"], r["reached"], r["pruned"], r["went_on"]) for r in stopping["rungs"]] == [
        (1, 1.0, 7, 5, 2),
        (2, 3.0, 2, 1, 1),
    ]
    # the pruned trials' energy is the ledger's: 1 J an epoch each, for the epochs each one ran
    pruned_j = sum(t["spend"]["energy_j"]["gpu:0"] for t in pruned.values())
    assert pruned_j == pytest.approx(5 * 1.0 + 3.0)
    assert stopping["pruned_energy_kwh"] == pytest.approx(j_to_kwh(pruned_j))
    assert [r["pruned_energy_kwh"] for r in stopping["rungs"]] == pytest.approx([j_to_kwh(5.0), j_to_kwh(3.0)])
    # run to the end, every trial of 1 J an epoch would have cost its 9 epochs: the estimate is exact here
    assert stopping["run_to_end_energy_kwh"] == pytest.approx(j_to_kwh(7 * 9.0))
    assert stopping["energy_kwh"] == pytest.approx(j_to_kwh(9.0 + pruned_j))
    assert stopping["saving_ratio"] == pytest.approx(63.0 / 17.0)
    assert stopping["run_to_end_is_estimate"] is True
    assert stopping["run_to_end_method"].startswith(
        "an estimate: each pruned trial's energy per epoch so far x 9 epochs"
    )


def test_a_pruned_sweeps_price_tag_bills_every_pruned_trial(asha_sweep):
    sweep_dir, printed = asha_sweep
    books = finished(sweep_dir)
    total_j = sum(t["spend"]["energy_j"]["gpu:0"] for t in books.values())
    pruned_j = sum(t["spend"]["energy_j"]["gpu:0"] for t in books.values() if t["status"] == "pruned")
    assert pruned_j > 0 and total_j == pytest.approx(9.0 + pruned_j)  # the completed trial's 9 J and the pruned
    tag = json.loads((sweep_dir / "price_tag.json").read_text())
    assert tag["spend"]["energy_j"]["gpu:0"] == pytest.approx(total_j)
    assert report(sweep_dir)["spend"]["energy_j"]["gpu:0"] == pytest.approx(total_j)
    assert "  energy    17.0 J" in printed


def test_the_printed_tag_the_text_the_json_and_the_markdown_agree_with_the_ledger(asha_sweep, capsys):
    sweep_dir, printed = asha_sweep
    tag = printed[printed.rindex("lightning-greenai price tag (sweep)") : printed.index("[greenai] plots:")]
    assert len(tag.strip().splitlines()) <= 10
    assert "  sweep     asha search, 7 trials (completed 1, pruned 6); best 0.09\n" in tag
    assert "  pruned    6 of 7 trials at rungs, 8.00 J; run to the end ≈63.0 J, 3.71x the spend (estimate)\n" in tag
    assert main(["report", str(sweep_dir), "--json", "--no-plots"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["early_stopping"] == report(sweep_dir)["early_stopping"]  # greenai report = budget_report.json
    assert data["evp"] is None and data["iid"] is False
    assert data["evp_note"].startswith("not i.i.d. (asha stops trials at rungs: its scores come from trials trained")
    assert data["evp_note"] == report(sweep_dir)["evp_note"]
    assert main(["report", str(sweep_dir), "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert rung_lines(text) == {r["rung"]: (r["reached"], r["pruned"]) for r in data["early_stopping"]["rungs"]}
    assert "  early stopping (asha): pruned 6 of 7 trials at rungs, 8.00 J of the sweep's 17.0 J\n" in text
    assert "    rung 2 (3 epochs)  reached by 2, pruned 1 (3.00 J)\n" in text
    assert "  the same trials run to the end: ≈63.0 J, 3.71x the 17.0 J spent (46.0 J saved); an estimate: " in text
    assert "  no EVP curve: asha stops trials at rungs: " in text and "expected best of" not in text
    assert main(["report", str(sweep_dir), "--markdown", "--no-plots"]) == 0
    md = capsys.readouterr().out
    assert "Early stopping (asha): 6 of 7 trials were pruned at rungs; they used 8.00 J of the sweep's 17.0 J." in md
    assert "| rung 1 (1 epoch) | 7 | 5 | 5.00 J |\n| rung 2 (3 epochs) | 2 | 1 | 3.00 J |\n" in md


def test_the_sweeper_pages_report_lines_are_this_sweeps(asha_sweep, capsys):
    """docs/sweeper.md shows the lines of this very sweep: they must stay what the sweep prints."""
    sweep_dir, printed = asha_sweep
    page = (Path(__file__).parents[2] / "docs" / "sweeper.md").read_text()
    start = page.index("**What stopping early bought.**")
    compact, full = re.findall(r"```text\n(.*?)```", page[start:], re.DOTALL)[:2]
    assert set(compact.splitlines()) <= set(printed.splitlines())
    assert main(["report", str(sweep_dir), "--no-plots"]) == 0
    assert set(full.splitlines()) <= set(capsys.readouterr().out.splitlines())


def test_a_pruned_sweeps_evp_plot_is_the_observed_best_and_its_title_says_why(asha_sweep, tmp_path, monkeypatch):
    from lightning_greenai.reporting import plots

    sweep_dir, _ = asha_sweep
    assert (sweep_dir / "greenai_report" / "evp.png").is_file()  # the sweep wrote it (hydra.sweeper.report=true)
    titles, labels = {}, {}
    original = plots.save_figure

    def keep(plt, fig, path):
        titles[path.name] = fig.axes[0].get_title()
        labels[path.name] = fig.axes[0].get_legend_handles_labels()[1]
        return original(plt, fig, path)

    monkeypatch.setattr(plots, "save_figure", keep)
    plots.write_plots(load(sweep_dir), tmp_path / "plots")
    assert titles["evp.png"] == "Observed best so far (asha search)\nno EVP curve: asha stops trials at rungs"
    assert labels["evp.png"] == ["observed best so far (not i.i.d.: no expectation)"]
    assert "marginal_value.png" not in titles  # an EVP reading too


def test_trackers_get_the_rung_table_and_no_evp_keys(asha_sweep, tmp_path):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lightning_greenai.reporting.publish import publish

    sweep_dir, _ = asha_sweep
    stopping = report(sweep_dir)["early_stopping"]
    logger = CSVLogger(tmp_path, name="greenai-sweep")
    publish(load(sweep_dir), logger)
    folder = Path(logger.log_dir)
    with open(folder / "rungs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["label"], int(r["reached"]), int(r["pruned"])) for r in rows] == [
        ("rung 1 (1 epoch)", 7, 5),
        ("rung 2 (3 epochs)", 2, 1),
    ]
    assert sum(float(r["pruned_energy_kwh"]) for r in rows) == pytest.approx(stopping["pruned_energy_kwh"])
    assert not (folder / "evp.csv").exists() and not (folder / "marginal_value.csv").exists()
    with open(folder / "metrics.csv") as fh:
        totals = next(r for r in csv.DictReader(fh) if r.get("greenai/early_stopping/pruned"))
    assert int(float(totals["greenai/early_stopping/pruned"])) == stopping["pruned"] == 6
    assert float(totals["greenai/early_stopping/pruned_energy_kwh"]) == pytest.approx(stopping["pruned_energy_kwh"])
    assert float(totals["greenai/early_stopping/saving_ratio"]) == pytest.approx(stopping["saving_ratio"])
    with open(folder / "hparams.yaml") as fh:
        assert "asha stops trials at rungs" in fh.read()  # greenai/no_evp says why no EVP was logged

    board = TensorBoardLogger(tmp_path, name="tb")
    publish(load(sweep_dir), board)
    acc = EventAccumulator(board.log_dir)
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert not [t for t in tags if t.startswith("greenai/evp")]
    assert [(e.step, e.value) for e in acc.Scalars("greenai/rungs/pruned")] == [(1, 5.0), (2, 1.0)]
    assert [e.value for e in acc.Scalars("greenai/rungs/reached")] == [7.0, 2.0]


def test_wandb_gets_the_rung_table_and_no_evp_chart(asha_sweep, tmp_path, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger

    from lightning_greenai.reporting.publish import publish
    from lightning_greenai.testing import read_wandb_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    sweep_dir, _ = asha_sweep
    logger = WandbLogger(project="greenai", save_dir=str(tmp_path), offline=True, name="greenai-sweep")
    publish(load(sweep_dir), logger)
    run = read_wandb_run(tmp_path / "wandb")
    assert any(row.get("greenai/rungs_table/_type") == "table-file" for row in run.history)
    assert run.column("greenai/early_stopping/pruned") == [6]
    assert run.column("greenai/early_stopping/saving_ratio") == pytest.approx([63.0 / 17.0])
    assert not any("greenai/evp_table/_type" in row for row in run.history)
    assert "_wandb/visualize/greenai/evp_chart" not in run.config
    assert run.config["greenai/curve"] == "observed best so far"
    assert run.config["greenai/no_evp"].startswith("asha stops trials at rungs: ")


# -- ledgers written by hand -------------------------------------------------------------------------------------

ASHA_SEARCH = {
    "arguments": ["x=interval(0,1)"],
    "strategy": "asha",
    "seed": 0,
    "direction": "max",
    "monitor": "val/acc",
    "asha": {"min_resource": 1.0, "max_resource": None, "reduction_factor": 3, "resource": "epochs"},
}


def write_pruned_sweep(path: Path, trials: list[dict], rungs: list[dict], search: dict | None = None) -> Path:
    """A finished sweep's ledger as the sweeper writes it: ``trials`` are finished events less job and event."""
    ledger = Ledger(path / ".greenai" / "ledger.jsonl")
    ledger.append("header", search=search or ASHA_SEARCH, budget={}, grid=Grid.from_location("FR").to_dict())
    for job in range(len(trials)):
        ledger.append("launched", job=job, overrides=[f"x={job}"])
    for event in rungs:
        ledger.append("rung", **{"score": 0.5, "reason": "", "bracket": None, "max_resource": None, **event})
    for job, trial in enumerate(trials):
        spend = {"energy_j": {"gpu:0": trial.pop("energy_j")}, "methods": {"gpu:0": "counter"}}
        ledger.append("finished", job=job, spend=spend, objective=0.5, **trial)
    ledger.append("stopped", reason="max_trials reached")
    return path


def epochs(n: int) -> list[list[float]]:
    return [[float(e), 0.5] for e in range(1, n + 1)]


def test_the_estimate_is_per_epoch_and_the_table_counts_only_trials_that_stopped_there(tmp_path, capsys):
    trials = [
        {"status": "completed", "energy_j": 18.0, "reports": epochs(9), "max_resource": 9},
        {"status": "pruned", "energy_j": 5.0, "reports": epochs(1), "max_resource": 9},  # a costly first epoch
        {"status": "pruned", "energy_j": 6.0, "reports": epochs(3), "max_resource": 9},
        {"status": "pruned", "energy_j": 4.0, "reports": epochs(1)},  # never said how far it would train
        {"status": "completed", "energy_j": 18.0, "reports": epochs(9), "max_resource": 9},  # pruned late: ran on
        {"status": "interrupted", "energy_j": 2.0, "reports": epochs(1), "max_resource": 9},  # run again: forgotten
    ]
    rungs = [
        {"job": 0, "rung": 1, "resource": 1.0, "decision": "promoted"},
        {"job": 0, "rung": 2, "resource": 3.0, "decision": "promoted"},
        {"job": 1, "rung": 1, "resource": 1.0, "decision": "pruned"},
        {"job": 2, "rung": 1, "resource": 1.0, "decision": "promoted"},
        {"job": 2, "rung": 2, "resource": 3.0, "decision": "pruned"},
        {"job": 3, "rung": 1, "resource": 1.0, "decision": "pruned"},
        {"job": 4, "rung": 1, "resource": 1.0, "decision": "pruned", "late": True},
        {"job": 5, "rung": 1, "resource": 1.0, "decision": "promoted"},
    ]
    summary = load(write_pruned_sweep(tmp_path / "s", trials, rungs))
    assert isinstance(summary, SweepSummary)
    stopping = summary.early_stopping()
    assert stopping is not None
    assert [(r.rung, r.reached, r.pruned, r.pruned_energy_j, r.full_energy_j) for r in stopping.rows] == [
        (1, 5, 2, 9.0, 5.0 * 9 + 4.0),  # job 3 counts at what it spent: its end is unknown
        (2, 2, 1, 6.0, 6.0 / 3 * 9),
    ]
    assert (stopping.trials, stopping.pruned, stopping.pruned_energy_j, stopping.energy_j) == (6, 3, 15.0, 53.0)
    assert stopping.full_energy_j == 53.0 - 15.0 + 45.0 + 18.0 + 4.0
    assert stopping.not_estimated == [3]
    assert stopping.estimate_method == (
        "an estimate: each pruned trial's energy per epoch so far x 9 epochs, as if every epoch cost the same; "
        "the other trials at what they spent; pruned job(s) [3] without a known max_resource at what they spent"
    )
    assert main(["report", str(summary.path), "--no-plots"]) == 0
    assert rung_lines(capsys.readouterr().out) == {1: (5, 2), 2: (2, 1)}


def test_an_optuna_pruners_rungs_are_its_steps_and_it_has_no_evp(tmp_path, capsys):
    search = {"arguments": ["x=interval(0,1)"], "strategy": "optuna", "seed": 0, "direction": "max",
              "pruner": {"_target_": "optuna.pruners.MedianPruner"}}  # fmt: skip
    trials = [
        {"status": "completed", "energy_j": 4.0, "reports": epochs(4), "max_resource": 4},
        {"status": "pruned", "energy_j": 2.0, "reports": epochs(2), "max_resource": 4},
    ]
    rungs = [{"job": 0, "rung": None, "resource": float(s), "decision": "continued"} for s in range(1, 5)]
    rungs += [
        {"job": 1, "rung": None, "resource": 1.0, "decision": "continued"},
        {"job": 1, "rung": None, "resource": 2.0, "decision": "pruned"},
    ]
    sweep = write_pruned_sweep(tmp_path / "s", trials, rungs, search)
    assert main(["report", str(sweep), "--json", "--no-plots"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["evp"] is None and data["evp_note"].startswith("not i.i.d. (an Optuna pruner stops trials early: ")
    stopping = data["early_stopping"]
    assert [(r["resource"], r["reached"], r["pruned"]) for r in stopping["rungs"]] == [
        (1.0, 2, 0),
        (2.0, 2, 1),
        (3.0, 1, 0),
        (4.0, 1, 0),
    ]
    assert stopping["run_to_end_energy_kwh"] == pytest.approx(j_to_kwh(4.0 + 4.0))
    assert main(["report", str(sweep), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "    step 1 (2 steps)  reached by 2, pruned 1 (2.00 J)\n" in out, out  # Optuna counts steps from 0


def test_a_random_search_run_to_the_end_keeps_its_evp_and_has_no_rung_table(tmp_path, capsys):
    from tests.reporting.test_compare_verdict import write_sweep

    summary = load(write_sweep(tmp_path / "s", [0.5, 0.7, 0.6], energy_j=10.0))
    assert isinstance(summary, SweepSummary)
    assert summary.iid and summary.no_evp_reason is None and summary.early_stopping() is None
    assert main(["report", str(summary.path), "--json", "--no-plots"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["evp"] and data["evp_note"] is None and data["early_stopping"] is None
    assert main(["report", str(summary.path), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "early stopping" not in out and "no EVP curve" not in out


def test_a_random_sweeps_budget_report_has_evp_and_no_rung_table(tmp_path):
    sweep_dir = tmp_path / "sweep"
    run(sweep_dir, "x=choice(0,1,2,3)", "hydra.sweeper.strategy=random", "hydra.sweeper.max_trials=3")
    rep = report(sweep_dir)
    assert (rep["iid"], rep["evp_note"], rep["early_stopping"]) == (True, None, None)
    assert not events(sweep_dir, "rung")


def test_compare_draws_a_pruned_sweep_as_its_observed_best_and_says_why_it_has_no_evp(asha_sweep, tmp_path, capsys):
    from tests.reporting.test_compare_verdict import write_sweep

    sweep_dir, _ = asha_sweep
    random = write_sweep(tmp_path / "random", [0.2, 0.5, 0.4, 0.6], energy_j=9.0)
    summary = load(sweep_dir)
    assert main(["compare", str(sweep_dir), str(random), "--energy-unit", "J", "--out", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "best score at a budget in J (i.i.d. sweeps: expected best of n trials x mean trial cost; "
        "others: observed best so far against the energy spent so far)\n"
    )
    assert f"  sweep has no EVP curve: {summary.no_evp_reason}\n" in out
    assert "  random (random, expected): 9.00 J -> 0.425" in out  # the mean of the four, one trial's cost
    # the pruned sweep's points: its best so far against everything spent before it, pruned trials included
    line = next(x for x in out.splitlines() if x.startswith("  sweep (asha, observed best so far): "))
    points = [(float(j), float(s)) for j, s in re.findall(r"([\d.]+) J -> ([\d.]+)", line)]
    first = next(r for r in summary.curve() if r["best_so_far"] is not None)
    assert points[0] == pytest.approx((first["energy_kwh"] * 3.6e6, first["best_so_far"]), rel=5e-3)
    assert all(j <= summary.spend.energy_kwh * 3.6e6 * 1.005 for j, _ in points)
    assert [s for _, s in points] == sorted(s for _, s in points)  # a best so far never falls (direction max)
    assert "confidence: needs random (i.i.d.) search on both sides" in out
    assert (tmp_path / "plots" / "compare.png").is_file()
