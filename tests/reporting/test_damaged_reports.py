"""A damaged ledger header or price tag gives a note or one clear line from `greenai report`, never a traceback."""

from __future__ import annotations

import json
import math

import pytest

from lightning_greenai.reporting.checklists import FORMATS
from lightning_greenai.reporting.cli import main
from lightning_greenai.reporting.summary import load
from lightning_greenai.units import kwh_to_j
from tests.reporting.test_compare_verdict import write_sweep

VIEWS = [[], ["--json"], ["--markdown"], *[["--format", f] for f in FORMATS]]


def damage_header(path, change):
    ledger = path / ".greenai" / "ledger.jsonl"
    lines = ledger.read_text().splitlines()
    header = json.loads(lines[0])
    lines[0] = change(header) if callable(change) else change
    ledger.write_text("\n".join(lines) + "\n")


def with_field(key, value):
    def change(header):
        header[key] = value
        return json.dumps(header)

    return change


HEADER_DAMAGE = {
    "cut": lambda h: json.dumps(h)[:120],
    "garbage": "#$%^ not json",
    "list": "[1, 2, 3]",
    "grid-string": with_field("grid", "DE"),
    "grid-incomplete": with_field("grid", {"country": "DE"}),
    "search-null": with_field("search", None),
    "budget-string": with_field("budget", "lots"),
    "hardware-string": with_field("hardware", "x"),
    "bounds-string": with_field("score_bounds", "zero to one"),
}


@pytest.mark.parametrize("damage", list(HEADER_DAMAGE))
def test_a_damaged_ledger_header_is_reported_with_a_note(tmp_path, capsys, damage):
    sweep = write_sweep(tmp_path / "s", [0.5, 0.7, 0.6, 0.8], energy_j=5.0)
    damage_header(sweep, HEADER_DAMAGE[damage])
    for view in VIEWS:
        assert main(["report", str(sweep), "--no-plots", *view]) == 0, view
    assert main(["report", str(sweep), "--plots", str(tmp_path / "plots")]) == 0
    assert load(sweep).notes  # what was skipped or ignored is said


def test_a_nan_budget_in_the_header_is_left_out_with_a_note(tmp_path):
    sweep = write_sweep(tmp_path / "s", [0.5, 0.7], energy_j=5.0)
    ledger = sweep / ".greenai" / "ledger.jsonl"
    ledger.write_text(ledger.read_text().replace('"budget": {}', '"budget": {"energy_kwh": NaN}', 1))
    summary = load(sweep)
    assert summary.header["budget"] == {}
    assert any("unreadable limits (energy_kwh)" in n for n in summary.notes)


def run_tag(run_dir):
    return next(run_dir.glob("**/price_tag.json"))


TAG_DAMAGE = {
    "no-grid": lambda t: {k: v for k, v in t.items() if k != "grid"},
    "grid-string": lambda t: {**t, "grid": "DE"},
    "grid-nan": lambda t: {**t, "grid": {**t["grid"], "intensity_g_per_kwh": math.nan}},
    "no-spend": lambda t: {k: v for k, v in t.items() if k != "spend"},
    "spend-list": lambda t: {**t, "spend": [1]},
    "spend-negative": lambda t: {**t, "spend": {**t["spend"], "energy_j": {"gpu:0": -5}}},
    "predictions-string": lambda t: {**t, "predictions": "x"},
    "timeline-mixed": lambda t: {**t, "timeline": [[1, "a"], [None, 2]]},
    "hardware-string": lambda t: {**t, "hardware": "x"},
    "parameters-string": lambda t: {**t, "parameters": "x"},
}


@pytest.mark.parametrize("damage", list(TAG_DAMAGE))
def test_a_damaged_price_tag_is_reported_with_a_note(run_dir, tmp_path, damage):
    path = run_tag(run_dir)
    tag = json.loads(path.read_text())
    path.write_text(json.dumps(TAG_DAMAGE[damage](tag)).replace("NaN", "NaN"))
    for view in VIEWS:
        assert main(["report", str(run_dir), "--no-plots", *view]) == 0, view
    assert main(["report", str(run_dir), "--plots", str(tmp_path / "plots")]) == 0


def test_a_price_tag_without_spend_keeps_the_figures_it_still_has(run_dir, capsys):
    path = run_tag(run_dir)
    tag = json.loads(path.read_text())
    energy_kwh = tag["energy_kwh"]
    del tag["spend"]
    path.write_text(json.dumps(tag))
    summary = load(run_dir)
    assert summary.spend.energy_kwh == pytest.approx(energy_kwh)
    assert any("its spend is missing; rebuilt from the tag's devices" in n for n in summary.notes)


def test_a_damaged_interval_keeps_the_rest_of_the_spend_and_the_devices_intervals(run_dir, capsys):
    path = run_tag(run_dir)
    tag = json.loads(path.read_text())
    tag["spend"]["host_share_s"] = 2.0
    tag["spend"]["energy_bounds_j"] = {"gpu:0": [20.0, 10.0]}  # damaged: low above high
    path.write_text(json.dumps(tag))
    summary = load(run_dir)
    assert any("its spend is damaged" in n for n in summary.notes)
    assert summary.spend.host_share_s == 2.0  # the embodied carbon's basis survives
    [device] = [d for d in tag["devices"] if d["name"] == "gpu:0"]
    low, high = (kwh_to_j(v) for v in device["energy_kwh_bounds"])
    assert summary.spend.energy_bounds_j["gpu:0"] == pytest.approx((low, high))  # from the devices' own intervals


@pytest.mark.parametrize("content", ["null", "[1, 2]"])
def test_a_price_tag_that_is_not_an_object_is_one_clear_line(run_dir, capsys, content):
    run_tag(run_dir).write_text(content)
    assert main(["report", str(run_dir), "--no-plots"]) == 2
    assert "not a price tag (a JSON object)" in capsys.readouterr().err


def test_a_ledger_that_is_a_folder_is_one_clear_line(tmp_path, capsys):
    (tmp_path / ".greenai" / "ledger.jsonl").mkdir(parents=True)
    assert main(["report", str(tmp_path), "--no-plots"]) == 2
    assert "is a folder, not a sweep's ledger" in capsys.readouterr().err


def test_an_output_path_that_is_a_file_is_one_clear_line(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "s", [0.5, 0.7, 0.6], energy_j=5.0)
    a_file = tmp_path / "a.log"
    a_file.write_text("x")
    assert main(["report", str(sweep), "--plots", str(a_file)]) == 2
    assert "greenai: cannot write the plots there:" in capsys.readouterr().err
    assert main(["compare", str(sweep), str(sweep), "--out", str(a_file)]) == 2
    assert "greenai compare: cannot write compare.png there:" in capsys.readouterr().err


def test_checklists_carry_the_notes_and_do_not_claim_every_trial_when_a_line_was_skipped(tmp_path):
    from lightning_greenai.reporting.checklists import render_checklist

    sweep = write_sweep(tmp_path / "s", [0.5, 0.7, 0.6], energy_j=5.0)
    ledger = sweep / ".greenai" / "ledger.jsonl"
    lines = ledger.read_text().splitlines()
    lines[4] = lines[4][:40]  # the second trial's "finished" line, torn
    ledger.write_text("\n".join(lines) + "\n")
    summary = load(sweep)
    neurips = render_checklist(summary, "neurips")
    assert "parts of the ledger could not be read (see the notes): the project may have used more" in neurips
    assert "Note (lightning-greenai): ledger line 5" in neurips
    assert "# Note (lightning-greenai): ledger line 5" in render_checklist(summary, "hf-card")
    assert "% Note (lightning-greenai): ledger line 5" in render_checklist(summary, "latex")


def test_tiny_emissions_keep_their_significant_digits_in_the_model_card(tmp_path):
    import yaml

    from lightning_greenai.reporting.checklists import render_checklist

    sweep = write_sweep(tmp_path / "s", [0.5, 0.7], energy_j=1e-6)
    summary = load(sweep)
    block = yaml.safe_load(render_checklist(summary, "hf-card"))["co2_eq_emissions"]
    assert block["emissions"] == pytest.approx(summary.grid.co2e_g(summary.spend), rel=1e-5)
    assert block["emissions"] > 0


def test_bounds_given_again_replace_the_note_about_the_old_ones(tmp_path):
    sweep = write_sweep(tmp_path / "s", [0.5, 0.7, 0.6], energy_j=5.0, bounds=[0, 0.6])
    summary = load(sweep)
    assert sum("score_bounds [0, 0.6] are ignored" in n for n in summary.notes) == 1
    summary.set_score_bounds((0.0, 1.0))
    assert not any("are ignored" in n for n in summary.notes)
    summary.set_score_bounds((0.0, 0.6))
    assert sum("are ignored" in n for n in summary.notes) == 1


def test_a_run_without_flops_says_not_measured_in_markdown(run_dir, capsys):
    path = run_tag(run_dir)
    tag = json.loads(path.read_text())
    tag["spend"]["flops"] = 0.0
    path.write_text(json.dumps(tag))
    assert main(["report", str(run_dir), "--no-plots", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| FLOPs | not measured |" in out and "FLOPs not measured" in out


def test_a_sweep_with_no_scored_trial_says_so_in_its_statistics(tmp_path):
    from lightning_greenai.reporting.checklists import render_checklist

    sweep = write_sweep(tmp_path / "s", [], energy_j=5.0)
    assert "Statistics: not measured (no trial of the sweep was scored)." in render_checklist(load(sweep), "neurips")


def test_a_price_tag_file_can_be_named_directly(run_dir, capsys):
    assert main(["report", str(run_tag(run_dir)), "--no-plots"]) == 0
    assert "lightning-greenai price tag" in capsys.readouterr().out
    assert main(["report", str(run_dir), "--no-plots", "--score-bounds", "0", "1"]) == 0
    assert "--score-bounds applies to sweeps" in capsys.readouterr().out


DEEP = "[" * 100_000 + "]" * 100_000  # parsed as it is, it raised RecursionError


def test_a_deeply_nested_price_tag_is_one_clear_line(run_dir, capsys):
    run_tag(run_dir).write_text(DEEP)
    assert main(["report", str(run_dir), "--no-plots"]) == 2
    assert "is not valid JSON (nested 100000 levels deep, more than the 64 levels" in capsys.readouterr().err


def test_a_deeply_nested_ledger_line_is_skipped_with_a_note(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "s", [0.5, 0.7, 0.6], energy_j=5.0)
    ledger = sweep / ".greenai" / "ledger.jsonl"
    lines = ledger.read_text().splitlines()
    ledger.write_text("\n".join([*lines[:2], DEEP, *lines[2:]]) + "\n")
    assert main(["report", str(sweep), "--no-plots"]) == 0
    assert "ledger line 3 skipped: not valid JSON (nested 100000 levels deep" in capsys.readouterr().out
    assert len(load(sweep).trials) == 3  # every other line is kept
