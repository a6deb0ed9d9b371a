import json
import re

import pytest
from omegaconf import OmegaConf

from lightning_greenai.reporting.cli import main
from lightning_greenai.reporting.summary import NothingToReportError, SweepSummary, load
from lightning_greenai.reporting.sweep_files import ReportedSweep as BudgetSweep
from tests.sweep.test_overshoot_property import LockstepLauncher


def test_report_of_a_run(run_dir, capsys):
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "lightning-greenai price tag (fit)" in out
    assert "  energy                         500 J (475 J to 525 J)" in out
    assert sorted(p.name for p in (run_dir / "greenai_report").glob("*.png")) == ["energy_by_device.png", "power.png"]


def test_report_of_a_price_tag_file_writes_its_plots_beside_it(run_dir, capsys):
    (tag,) = run_dir.rglob("price_tag.json")
    assert main(["report", str(tag)]) == 0  # was exit 2: "cannot write the plots there: Not a directory"
    assert (tag.parent / "greenai_report" / "energy_by_device.png").is_file()
    assert "plots: " in capsys.readouterr().out


def test_report_json_and_markdown(run_dir, capsys):
    assert main(["report", str(run_dir), "--json", "--no-plots"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "run"
    assert data["price_tag"]["energy_kwh"] == pytest.approx(500 / 3.6e6)
    assert main(["report", str(run_dir), "--markdown", "--no-plots"]) == 0
    md = capsys.readouterr().out
    assert "| Energy | 500 J (475 J to 525 J) |" in md  # a counter: 5 % calibration
    assert "| quantity | value |" in md and "FLOPs" in md


def test_report_of_a_sweep_with_evp(sweep_dir, capsys):
    assert main(["report", str(sweep_dir), "--plots", str(sweep_dir / "plots")]) == 0
    out = capsys.readouterr().out
    assert "random search, 8 trials" in out
    assert "expected best of 8 trials" in out
    names = sorted(p.name for p in (sweep_dir / "plots").glob("*.png"))
    assert names == [
        "budget_curve.png",
        "energy_by_device.png",
        "energy_per_trial.png",
        "evp.png",
        "marginal_value.png",
        "pareto.png",
    ]
    summary = load(sweep_dir)
    assert isinstance(summary, SweepSummary) and summary.iid
    evp = summary.evp()
    assert evp[-1]["unbiased"] == pytest.approx(max(summary.scores()))
    mean_kwh = summary.spend.energy_kwh / 8
    assert evp[2]["energy_kwh"] == pytest.approx(3 * mean_kwh)
    assert evp[2]["money"] == pytest.approx(3 * mean_kwh * 0.15)  # FR: indicative 0.15 EUR/kWh, PUE 1


def test_a_sweeps_printed_tag_is_the_compact_tag_with_its_trials_and_stop(capsys, sweep_dir):  # capsys first
    from lightning_greenai.reporting.render import to_compact_text

    out = capsys.readouterr().out  # what the sweep printed when it stopped (hydra.sweeper.verbose=false)
    printed = out[out.index("lightning-greenai price tag (sweep)") : out.index("[greenai] plots:")].rstrip("\n")
    summary = load(sweep_dir)
    assert printed == to_compact_text(summary, str(sweep_dir / "price_tag.json"))
    lines = printed.splitlines()
    assert len(lines) <= 10
    assert lines[1] == "  energy    28.0 J"  # the launcher's scripted 1 J steps: no interval
    assert lines[2] == "  carbon    0.000524 g CO2e (FR, 67 g/kWh); cost 1.17e-06 EUR"
    assert lines[3].startswith("  time      ") and "(trial time 0 s); FLOPs not counted" in lines[3]
    assert lines[4:] == [
        "  sweep     random search, 8 trials (completed 8); best 4",
        "  stopped   max_trials reached (8); budget 1.00 kWh",
        f"  full tag: {sweep_dir / 'price_tag.json'} (or: greenai report {sweep_dir})",
    ]
    # the full tag it points to: the same figures as `greenai report --json` gives
    written = json.loads((sweep_dir / "price_tag.json").read_text())
    assert main(["report", str(sweep_dir), "--json", "--no-plots"]) == 0
    reported = json.loads(capsys.readouterr().out)["price_tag"]
    assert written["spend"] == reported["spend"] and written["energy_kwh"] == pytest.approx(28.0 / 3.6e6)


def test_the_report_extrapolates_the_tuning_curve_past_the_trials_run(tmp_path, capsys):
    import numpy as np

    from tests.reporting.test_compare_verdict import write_sweep

    scores = np.random.default_rng(1).beta(5, 2, 10)
    sweep = write_sweep(tmp_path / "sweep", scores, energy_j=10.0, bounds=None)
    assert main(["report", str(sweep), "--score-bounds", "0", "1", "--json", "--no-plots"]) == 0
    data = json.loads(capsys.readouterr().out)["evp_extrapolated"]
    rows = data["rows"]
    assert [r["n"] for r in rows][:: len(rows) - 1] == [10, 40]  # from the trials run to 4x them
    assert rows[-1]["energy_kwh"] == pytest.approx(40 * 10.0 / 3.6e6)
    assert load(sweep).evp()[-1]["expected_lo"] is None  # no bounds in the ledger: the JSON's came from the flag
    assert all(r["lo"] <= r["expected"] <= r["hi"] <= 1 for r in rows)
    assert max(scores) <= data["best_reachable_interval"][0] <= data["best_reachable"] <= 1
    assert "quadratic tail" in data["estimator"]
    assert main(["report", str(sweep), "--no-plots"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "extrapolated expected best" in x)
    assert "20 trials" in line and "40 trials" in line and "best reachable" in line


def test_coarse_scores_are_not_extrapolated_and_the_report_says_why(sweep_dir, capsys):
    assert main(["report", str(sweep_dir), "--no-plots"]) == 0  # scores 0, 2, 3, 4 only
    out = capsys.readouterr().out
    assert "no extrapolation past the trials run: the top scores take only 4 distinct values" in out


def test_too_few_trials_to_extrapolate_say_so(tmp_path, capsys):
    sweep = BudgetSweep(strategy="random", max_trials=5, poll_s=3600, heartbeat_s=0, budget={"energy_kwh": "1 kWh"})
    out = tmp_path / "sweep"
    sweep.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(out)}}})
    sweep.launcher = LockstepLauncher(sweep, out, [[1.0] * (i + 1) for i in range(5)])
    sweep.sweep(["x=choice(0,1,2,3,4)"])
    assert main(["report", str(out), "--no-plots"]) == 0
    assert "extrapolation past the trials run needs at least 8 scored trials (have 5)" in capsys.readouterr().out


def test_grid_sweeps_are_labelled_observed_not_expected(tmp_path, capsys):
    sweep = BudgetSweep(poll_s=3600, heartbeat_s=0)
    out = tmp_path / "grid"
    sweep.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(out)}}})
    sweep.launcher = LockstepLauncher(sweep, out, [[1.0], [2.0], [1.0]])
    sweep.sweep(["x=0,1,2"])
    capsys.readouterr()  # the sweeper's own stop line
    assert main(["report", str(out), "--json", "--no-plots"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["evp"] is None and "not i.i.d." in data["evp_note"]


def test_nothing_to_report_is_a_clear_message(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "No run or sweep in" in capsys.readouterr().err
    with pytest.raises(NothingToReportError):
        load(tmp_path / "missing")


def test_corrupt_ledger_line_and_a_running_sweep_still_report(sweep_dir, capsys):
    ledger = sweep_dir / ".greenai" / "ledger.jsonl"
    lines = ledger.read_text().splitlines()
    lines.insert(3, "{not json")
    lines = [line for line in lines if '"event": "stopped"' not in line]
    ledger.write_text("\n".join(lines) + '\n{"event": "launched", "job": 99')
    assert main(["report", str(sweep_dir), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "ledger line 4 skipped: not valid JSON" in out
    assert "incomplete" in out
    assert "still running or was interrupted" in out


def test_compare_two_sweeps(sweep_dir, tmp_path, capsys):
    assert main(["compare", str(sweep_dir), str(sweep_dir), "--out", str(tmp_path / "cmp")]) == 0
    assert "expected best score at a budget in J" in capsys.readouterr().out  # the unit the figures need
    assert (tmp_path / "cmp" / "compare.png").exists()


def test_several_price_tags_the_note_names_the_one_reported(tmp_path, capsys):
    import os
    import time as _time

    for i, name in enumerate(["b", "a"]):  # "a" sorts first but is written last: the newest
        folder = tmp_path / name
        folder.mkdir()
        grid = {"intensity_g_per_kwh": 100.0}
        (folder / "price_tag.json").write_text(json.dumps({"title": name, "spend": {}, "grid": grid}))
        os.utime(folder / "price_tag.json", (_time.time() + i, _time.time() + i))
    summary = load(tmp_path)
    assert summary.tag["title"] == "a"
    assert summary.notes == [
        f"2 price tags under {tmp_path}: reporting the newest, {tmp_path / 'a' / 'price_tag.json'}"
    ]


def test_report_json_into_a_closed_pipe_is_not_an_error(tmp_path):
    import subprocess
    import sys

    tag = {"title": "fit", "spend": {}, "grid": {}, "timeline": [[i, i] for i in range(50_000)]}  # > a pipe's buffer
    (tmp_path / "price_tag.json").write_text(json.dumps(tag))
    code = (
        "import sys; from lightning_greenai.reporting.cli import main; "
        f"sys.exit(main(['report', {str(tmp_path)!r}, '--json', '--no-plots']))"
    )
    shell = f'{sys.executable} -c "{code}" | head -c 10'
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "BrokenPipeError" not in proc.stderr


def test_one_trial_is_one_trial(tmp_path, capsys):
    sweep = BudgetSweep(strategy="random", max_trials=1, poll_s=3600, heartbeat_s=0, budget={"energy_kwh": "1 kWh"})
    out = tmp_path / "sweep"
    sweep.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(out)}}})
    sweep.launcher = LockstepLauncher(sweep, out, [[1.0]] * 5)
    sweep.sweep(["x=choice(0,1,2,3,4)"])
    printed = capsys.readouterr().out
    assert "; 1 trial;" in printed and "random search, 1 trial (" in printed
    assert "1 trials" not in printed


@pytest.mark.parametrize(
    ("args", "heading"),
    [
        (["--unit", "money"], "a budget in EUR"),
        (["--unit", "co2e_kg"], "CO2e"),
        (["--energy-unit", "kWh"], "a budget in kWh"),
    ],
)
def test_compare_on_every_budget_axis_and_a_forced_unit(sweep_dir, tmp_path, capsys, args, heading):
    from lightning_greenai.units import set_display_units

    try:
        assert main(["compare", str(sweep_dir), str(sweep_dir), *args, "--out", str(tmp_path / "cmp")]) == 0
    finally:
        set_display_units(energy=None)
    out = capsys.readouterr().out
    assert heading in out.splitlines()[0]
    assert (tmp_path / "cmp" / "compare.png").exists()


@pytest.mark.parametrize("unit", ["flops", "gpu_hours"])
def test_compare_on_an_axis_neither_sweep_metered_is_one_clear_line(sweep_dir, capsys, unit):
    assert main(["compare", str(sweep_dir), str(sweep_dir), "--unit", unit]) == 2  # the fixture's trials: energy only
    assert f"neither sweep metered {unit} (every trial cost 0 on it): choose another --unit." in capsys.readouterr().err


def test_compare_without_a_price_says_which_unit_is_missing(tmp_path, capsys):
    sweep = BudgetSweep(strategy="random", max_trials=3, poll_s=3600, heartbeat_s=0, budget={"energy_kwh": "1 kWh"})
    out = tmp_path / "unpriced"
    sweep.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(out)}}})
    sweep.launcher = LockstepLauncher(sweep, out, [[1.0]] * 5)
    sweep.sweep(["x=choice(0,1,2,3,4)"])
    capsys.readouterr()
    assert main(["compare", str(out), str(out), "--unit", "money"]) == 2
    assert "has no money axis" in capsys.readouterr().err


def write_timed_ledger(path, sessions):
    """A ledger written by hand, each event at a given time: ``sessions`` is a list of event lists."""
    folder = path / ".greenai"
    folder.mkdir(parents=True)
    lines = []
    for events in sessions:
        lines.extend(json.dumps(e) for e in events)
    (folder / "ledger.jsonl").write_text("\n".join(lines) + "\n")
    return path


def trial_events(job, start, end):
    spend = {"energy_j": {"gpu:0": 10.0}, "methods": {"gpu:0": "counter"}, "duration_s": end - start}
    return [
        {"event": "launched", "time": start, "job": job, "overrides": [f"x={job}"]},
        {"event": "finished", "time": end, "job": job, "status": "completed", "objective": 1.0, "spend": spend},
    ]


HEADER = {"event": "header", "time": 1000.0, "search": {"arguments": ["x=0,1"], "strategy": "grid"}, "budget": {}}


@pytest.mark.parametrize("stopped", [True, False], ids=["stopped", "still-running"])
def test_a_sweeps_duration_is_its_wall_time_and_its_trials_time_is_summed_apart(tmp_path, capsys, stopped):
    # two trials of 600 s each that ran together, in a sweep of 700 s: 700 s long, 1200 s of trial time
    events = [HEADER, *trial_events(0, 1050.0, 1650.0), *trial_events(1, 1050.0, 1650.0)]
    if stopped:
        events.append({"event": "stopped", "time": 1700.0, "reason": "search space exhausted", "wall_s": 700.0})
    sweep = write_timed_ledger(tmp_path / "s", [events])
    wall_s = 700.0 if stopped else 650.0  # still running: as far as the ledger goes (its last event)
    assert main(["report", str(sweep), "--json"]) == 0
    tag = json.loads(capsys.readouterr().out)["price_tag"]
    assert (tag["duration_s"], tag["trial_time_sum_s"]) == (wall_s, 1200.0)
    assert main(["report", str(sweep), "--no-plots"]) == 0
    out = capsys.readouterr().out
    minutes = "0:11:40" if stopped else "0:10:50"
    assert re.search(rf"^  duration +{minutes}$", out, re.MULTILINE), out
    assert re.search(r"^  trial time \(sum\) +0:20:00$", out, re.MULTILINE), out
    assert main(["report", str(sweep), "--markdown", "--no-plots"]) == 0
    md = capsys.readouterr().out
    assert f"{minutes} of wall time (0:20:00 of trial time)" in md
    assert f"| Duration | {minutes} |" in md and "| Trial time (sum) | 0:20:00 |" in md


def test_a_resumed_sweeps_duration_counts_every_session(tmp_path, capsys):
    first = [HEADER, *trial_events(0, 1010.0, 1110.0)]  # crashed after its last event at 1110 s
    second = [
        {"event": "resumed", "time": 5000.0, "trials": 1, "rerun": []},
        *trial_events(1, 5010.0, 5110.0),
    ]
    sweep = write_timed_ledger(tmp_path / "s", [first, second])
    assert load(sweep).wall_s == 110.0 + 110.0  # not the hours between the sessions


@pytest.mark.parametrize(
    ("budget", "axis"),
    [({}, "energy_kwh"), ({"co2e_kg": 0.5}, "co2e_kg"), ({"money": 1.0, "currency": "EUR"}, "money"),
     ({"energy_kwh": 1.0, "co2e_kg": 0.5}, "energy_kwh"), ({"gpu_hours": 2.0}, "gpu_hours")],
)  # fmt: skip
def test_a_sweeps_plots_use_its_budgets_axis(tmp_path, budget, axis):
    """Issue 22: a sweep held to a CO2e or money budget drew its curves against energy (energy first of several)."""
    from lightning_greenai.reporting.plots import budget_axis, write_plots
    from tests.reporting.test_compare_verdict import write_sweep

    sweep = load(write_sweep(tmp_path / "s", [0.5, 0.7, 0.6, 0.8], energy_j=3600.0, budget=budget))
    assert budget_axis(sweep) == axis
    assert "budget_curve.png" in {p.name for p in write_plots(sweep, tmp_path / "plots")}
