"""`greenai report --format`: each venue's checklist and the model card, filled from the ledger and price tags."""

from __future__ import annotations

import json

import pytest
import yaml

from lightning_greenai.grid import Grid
from lightning_greenai.hardware import describe_hardware
from lightning_greenai.reporting.checklists import render_checklist
from lightning_greenai.reporting.cli import main
from lightning_greenai.reporting.summary import load
from lightning_greenai.sensors.fake import FakeGPU, FakeNVML
from lightning_greenai.sweep.ledger import Ledger

J = {"gpu:0": "counter"}


def sweep_with_failures(path):
    """Four scored trials of 3.6 kJ each, one failed after 1.8 kJ, one stopped by the budget after 0.9 kJ."""
    ledger = Ledger(path / ".greenai" / "ledger.jsonl")
    search = {"arguments": ["lr=interval(0.001, 0.1)", "width=choice(16, 32)"], "strategy": "random", "seed": 3,
              "direction": "max", "objective": "val/acc"}  # fmt: skip
    hardware = describe_hardware(FakeNVML([FakeGPU("GPU-a", name="NVIDIA H100 80GB HBM3")]))
    ledger.append(
        "header",
        search=search,
        budget={"energy_kwh": 0.01},
        grid=Grid.from_location("FR").to_dict(),
        score_bounds=[0, 1],
        hardware=hardware,
    )
    trials = [
        ("completed", 0.81, 3600.0),
        ("completed", 0.86, 3600.0),
        ("failed", None, 1800.0),
        ("completed", 0.84, 3600.0),
        ("completed", 0.79, 3600.0),
        ("budget_stopped", None, 900.0),
    ]
    for job, (status, score, energy_j) in enumerate(trials):
        ledger.append("launched", job=job, overrides=[f"lr=0.0{job + 1}", "width=32"])
        spend = {"energy_j": {"gpu:0": energy_j}, "methods": J, "flops": 1e12, "duration_s": 60.0, "gpu_s": 60.0}
        ledger.append("finished", job=job, status=status, objective=score, spend=spend)
    ledger.append("stopped", reason="budget `energy_kwh` spent")
    return path


def test_neurips_counts_the_failed_and_stopped_trials_in_the_project_total(tmp_path):
    text = render_checklist(load(sweep_with_failures(tmp_path)), "neurips")
    assert "(a) Compute workers: 1 x NVIDIA H100 80GB HBM3 (80 GB);" in text
    assert "Energy measured per device: gpu:0 (counter)" in text
    assert "(b) Compute per trial (mean of the scored trials): 1.00 Wh" in text  # 4 x 3.6 kJ / 4
    assert "Total of the reported experiments: 4.00 Wh" in text
    # the whole project: 17.1 kJ = 4.75 Wh, of which 2.7 kJ = 0.75 Wh in the failed and the stopped trial
    assert "(c) Full project compute: 4.75 Wh" in text and "of which 0.750 Wh in 2 trials that failed" in text
    assert "Search space (bounds): lr=interval(0.001, 0.1); width=choice(16, 32)." in text
    assert "Selection criterion: the highest val/acc (validation score)." in text
    assert "Best configuration: trial 1, score 0.86: lr=0.02 width=32." in text
    assert "The reported score is the maximum over 4 scored trials (not a mean)" in text
    assert "95 % simultaneous confidence band (Lourie, Cho & He 2024" in text


def test_acl_section_c_fields(tmp_path):
    text = render_checklist(load(sweep_with_failures(tmp_path)), "acl")
    lines = {line[:2]: line for line in text.splitlines() if line[:2] in ("C1", "C2", "C3", "C4")}
    assert set(lines) == {"C1", "C2", "C3", "C4"}
    assert "Number of parameters: not measured" in lines["C1"]  # no trial price tag under the sweep dir
    assert (
        "budget: 6.00 GPU-min (metered)" in lines["C1"] and "Computing infrastructure: 1 x NVIDIA H100" in lines["C1"]
    )
    assert "6 trials (budget_stopped 1, completed 4, failed 1)" in lines["C2"]
    assert "maximum over 4 scored trials" in lines["C3"]
    assert "lightning-greenai" in lines["C4"] and "torch" in lines["C4"]


def test_show_your_work_has_every_field_and_the_evp_table(tmp_path):
    text = render_checklist(load(sweep_with_failures(tmp_path)), "showyourwork")
    for field in (
        "Description of computing infrastructure:",
        "Average runtime / estimated energy cost per trial:",
        "Number of parameters:",
        "Number of training and evaluation runs: 6 trials, 4 scored",
        "Search space (bounds):",
        "Best configuration:",
        "Method of choosing hyperparameter values: random search",
        "Summary statistics:",
        "Budget set: 10.0 Wh; stopped: budget `energy_kwh` spent",
    ):
        assert field in text, field
    table = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(table) == 4  # n = 1..4 scored trials
    assert "| n | expected | SD | expected band | energy (Wh) |" in text  # the unit of its largest figure, 4 Wh
    assert [line.rsplit("|", 2)[1].strip() for line in table] == ["1.00", "2.00", "3.00", "4.00"]  # n x 1 Wh


def test_hugging_face_card_block_parses_with_emissions_in_grams(tmp_path):
    summary = load(sweep_with_failures(tmp_path))
    block = yaml.safe_load(render_checklist(summary, "hf-card", training_type="fine-tuning"))["co2_eq_emissions"]
    assert set(block) == {"emissions", "source", "training_type", "geographical_location", "hardware_used"}
    assert block["emissions"] == pytest.approx(summary.grid.co2e_g(summary.spend), rel=1e-4)
    assert block["training_type"] == "fine-tuning"
    assert block["geographical_location"] == "FR"
    assert block["hardware_used"].startswith("1 x NVIDIA H100 80GB HBM3")
    unset = yaml.safe_load(render_checklist(summary, "hf-card"))["co2_eq_emissions"]
    assert unset["training_type"] == "not measured"


def test_latex_names_the_estimators_and_flags_estimates(tmp_path, run_dir):
    text = render_checklist(load(sweep_with_failures(tmp_path / "sweep")), "latex")
    assert r"\begin{tabular}{ll}" in text and "(Dodge et al., 2019)" in text and "(Lourie et al., 2024)" in text
    assert r"its 95\,\% simultaneous confidence band is [" in text  # the band's numbers, not only its name
    assert "$^*$" not in text  # counters only: nothing estimated
    run = render_checklist(load(run_dir), "latex")
    assert "GPU time & 5.00 GPU-s \\\\" in run  # 5 s on one GPU: the unit every other surface shows it in


def test_a_single_runs_checklist_has_its_parameters_and_says_what_a_run_cannot(run_dir):
    tag = json.loads(next(run_dir.glob("**/price_tag.json")).read_text())
    assert tag["parameters"] == {"total": 66, "trainable": 66}  # BoringModel: Linear(32, 2)
    assert tag["hardware"]["cpu_count"] >= 1
    text = render_checklist(load(run_dir), "acl")
    assert "C1 Number of parameters: 66 (66 trainable)." in text
    assert "Hyperparameter search: not measured (a single run" in text
    neurips = render_checklist(load(run_dir), "neurips")
    assert "(c) Full project compute: not measured: one run" in neurips


def test_the_command_line_takes_each_format_and_refuses_an_unknown_one(tmp_path, capsys):
    sweep = sweep_with_failures(tmp_path)
    for fmt in ("neurips", "acl", "showyourwork", "hf-card", "latex"):
        assert main(["report", str(sweep), "--no-plots", "--format", fmt]) == 0
        assert capsys.readouterr().out.strip()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(sweep), "--format", "iclr"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'iclr'" in capsys.readouterr().err
