"""`greenai report --format eu-ai-act|sci|cyclonedx|spdx`: what regulators and standards read, on a run and a sweep.

The run is a tiny real ``lightning.Trainer`` (fit, test, predict) with EnergyMonitor and FlopMonitor, its sensor a
100 W device on a scripted clock, so every figure is exact: fit 5 s (500 J), test 3 batches of 0.5 s (150 J), predict
4 batches of 0.25 s (100 J). CycloneDX is checked with cyclonedx-python-lib's validator (its bundled 1.6 schema), SPDX
with the official SPDX 3.0.1 JSON schema (tests/data).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from lightning_greenai import EnergyMonitor, FlopMonitor
from lightning_greenai.reporting.checklists import FORMATS, render_checklist
from lightning_greenai.reporting.cli import main
from lightning_greenai.reporting.standards.eu_ai_act import estimate_check
from lightning_greenai.reporting.standards.facts import project
from lightning_greenai.reporting.standards.sci import FUNCTIONAL_UNITS, sci
from lightning_greenai.reporting.summary import load
from lightning_greenai.sensors.fake import ConstantPowerSensor
from lightning_greenai.units import format_number
from tests.conftest import ClockedModel
from tests.reporting.test_checklists import sweep_with_failures

SPDX_SCHEMA = Path(__file__).resolve().parents[1] / "data" / "spdx-json-schema-3.0.1.json"
PEAK = 1e3  # FLOP/s of the (pretend) accelerator: the run's 1,940 training FLOPs in 5 s are 38.8 % of it


class ServedModel(ClockedModel):
    """ClockedModel whose predict steps take 0.25 s each."""

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        self.clock.advance(0.25)
        return super().predict_step(batch, batch_idx)


def real_run(root: Path, tiny_trainer, fake_clock) -> Path:
    """Fit 5 steps, test 3 batches, predict 4 batches: a run's price tag in ``root``."""
    energy = EnergyMonitor(
        grid={"country": "DE"},
        sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)],
        clock=fake_clock,
        verbose=None,
    )
    flops = FlopMonitor(peak_flops_per_s=PEAK, tokens_key=lambda batch: batch.numel())  # 32 tokens a sample
    trainer = tiny_trainer(
        callbacks=[energy, flops], max_steps=5, limit_test_batches=3, limit_predict_batches=4, default_root_dir=root
    )
    model = ServedModel(fake_clock)
    trainer.fit(model)
    trainer.test(model, verbose=False)
    trainer.predict(model)
    return root


@pytest.fixture
def run_dir(tmp_path, tiny_trainer, fake_clock):
    return real_run(tmp_path / "run", tiny_trainer, fake_clock)


@pytest.fixture
def sweep_dir(tmp_path, tiny_trainer, fake_clock):
    """Six trials from the ledger (one failed, one stopped by the budget); the best, trial 1, ran for real in ``1/``."""
    sweep = sweep_with_failures(tmp_path / "sweep")
    real_run(sweep / "1", tiny_trainer, fake_clock)
    return sweep


def _tag(folder: Path) -> dict:
    return json.loads(next(folder.glob("**/price_tag.json")).read_text())


# -- EU AI Act ----------------------------------------------------------------------------------------------------

EU_FIELDS = (
    "EU AI Act model documentation (Art. 53(1)(a), Annex XI",
    "Training compute (",
    "- Counted: ",
    "- Estimator 1, 6 x parameters x tokens (dense transformers): ",
    "- Estimator 2, accelerators x time x peak x utilisation: ",
    "Training time (",
    " hardware-days",
    "Training energy (",
    "Inference compute",
    "Methodology:",
    "- Sensors: ",
    "- Method per device: ",
    "- Estimated: ",
    "- Error bars: ",
    "- PUE: ",
    "- Carbon intensity: ",
)


def test_eu_ai_act_on_a_run_has_every_field_with_the_measured_figures(run_dir):
    tag = _tag(run_dir)
    assert tag["peak_flops_per_s"] == PEAK  # FlopMonitor's peak, kept in the price tag
    text = render_checklist(load(run_dir), "eu-ai-act")
    for field in EU_FIELDS:
        assert field in text, field
    assert "- Counted: 1940 FLOP, the reference for the estimates below." in text
    # fit: 500 J = 1.39e-07 MWh, its interval the counter's 5 %; 3 significant figures (the form asks >= 2)
    assert (
        "Training energy (the run, train and validation loops): 1.39e-07 MWh (interval 1.32e-07 to 1.46e-07 MWh)"
        in text
    )
    assert "Apart, testing (test): 4.17e-08 MWh." in text and "Apart, inference (predict): 2.78e-08 MWh." in text
    assert "Training time (the run): 5.00 s (5.79e-05 days); 1 accelerator(s) metered x 5.79e-05 days" in text
    assert "N = 66 parameters; not measured: the training tokens (D) were not counted" in text
    assert "utilisation not measured (give the utilisation you assume with --utilisation); the count implies a " \
        "utilisation of 38.8 % (MFU)" in text  # fmt: skip
    assert "- predict: 128 FLOP per sample, 4.00 FLOP per token (128 tokens); 25.0 J per sample (4 samples" in text
    assert "- test: 128 FLOP per sample" in text
    assert "gpu:0: a hardware energy counter" in text and "Estimated: nothing: every figure is a reading." in text
    assert "Carbon intensity: 365 gCO2e/kWh (Germany" in text
    assert "not measured" not in text.split("Methodology:")[1]  # everything of the method was measured


WITHIN, OUTSIDE = "within ±30 % of the count", "outside ±30 % of the count"


@pytest.mark.parametrize(
    ("tokens", "utilisation", "expected"),
    [
        (5, 0.4, [f"= 1980 FLOP: {WITHIN} (+2 %)", f"= 2000 FLOP: {WITHIN} (+3 %)"]),
        (10, 0.2, [f"= 3960 FLOP: {OUTSIDE} (+104 %)", f"= 1000 FLOP: {OUTSIDE} (-48 %)"]),
    ],
    ids=["within", "outside"],
)  # fmt: skip
def test_eu_ai_act_checks_both_estimators_against_the_count(run_dir, tokens, utilisation, expected):
    text = render_checklist(load(run_dir), "eu-ai-act", training_tokens=tokens, utilisation=utilisation)
    assert f"6 x 66 parameters x {tokens:,} tokens (declared with --training-tokens, not measured)" in text
    assert f"5.00 accelerator-seconds x 1000 FLOP/s peak x {utilisation:g} utilisation" in text
    for line in expected:
        assert line in text


def test_estimate_check_is_relative_to_the_count():
    assert estimate_check(130.0, 100.0) == "within ±30 % of the count (+30 %)"
    assert estimate_check(69.0, 100.0) == "outside ±30 % of the count (-31 %)"
    assert estimate_check(1.0, None) == "no counted FLOPs to check it against"


def test_eu_ai_act_on_a_sweep_reports_the_selected_run_every_other_trial_and_the_total(sweep_dir):
    text = render_checklist(load(sweep_dir), "eu-ai-act")
    for field in EU_FIELDS:
        assert field in text, field
    assert "Scope: a sweep of 6 trials" in text and "the selected model's run (trial 1)" in text
    # the selected model's figures come from its own price tag (trial 1 ran for real in <sweep>/1)
    assert "Training compute (trial 1):" in text and "N = 66 parameters" in text
    # the project: 17.1 kJ in all = 4.75e-06 MWh, failed and stopped trials included
    assert "Whole project (every trial, failed and stopped ones included): 4.75e-06 MWh metered" in text
    rows = [line for line in text.splitlines() if re.match(r"\| (\d|total)", line)]
    assert [r.split(" | ")[:3] for r in rows] == [
        ["| 0", "completed", "other"],
        ["| 1", "completed", "selected model"],
        ["| 2", "failed", "other"],
        ["| 3", "completed", "other"],
        ["| 4", "completed", "other"],
        ["| 5", "budget_stopped", "other"],
        ["| total", "6 trials", "project"],
    ]
    assert rows[2].split(" | ")[3] == "5.00e-07"  # the failed trial's 1.8 kJ
    assert rows[-1].split(" | ")[3] == "4.75e-06"
    # hardware-days: accelerator time, "not measured" for a trial that metered no accelerator (as the run's line says)
    for row, trial in zip(rows, [*load(sweep_dir).trials, None], strict=True):
        days = row.split(" | ")[5]
        gpu_s = sum(t.spend.gpu_s for t in load(sweep_dir).trials) if trial is None else trial.spend.gpu_s
        assert days == ("not measured" if gpu_s == 0 else format_number(gpu_s / 86400)), (row, gpu_s)


# -- SCI ----------------------------------------------------------------------------------------------------------

SCI_FIELDS = (
    "SCI = (E x I + M) per R",
    "Boundary: ",
    "E (energy",
    "I (carbon intensity",
    "M (embodied",
    "R (functional",
)


def test_sci_per_run_is_the_price_tags_operational_and_embodied_carbon(run_dir):
    tag = _tag(run_dir)
    figure = sci(project(load(run_dir)), "run")
    assert figure.functional_units == 1
    assert figure.energy_kwh == pytest.approx(tag["facility_energy_kwh"])
    assert figure.embodied_g == pytest.approx(1e3 * tag["embodied_co2e_kg"])
    assert figure.value_g == pytest.approx(1e3 * (tag["co2e_kg"] + tag["embodied_co2e_kg"]))
    low, high = figure.bounds_g
    assert low < figure.value_g < high
    assert low == pytest.approx(1e3 * (tag["co2e_kg_bounds"][0] + tag["embodied_co2e_kg"]))
    text = render_checklist(load(run_dir), "sci", functional_unit="run")
    for field in SCI_FIELDS:
        assert field in text, field
    assert "R (functional unit, per run): 1 run(s)." in text
    assert f"SCI: {figure.value_g:#.3g} gCO2e per run (interval " in text


def test_sci_per_sample_and_token_is_the_serving_stage(run_dir):
    tag = _tag(run_dir)
    read = project(load(run_dir))
    sample, token = sci(read, "sample"), sci(read, "token")
    assert "the predict stage of the run" in sample.boundary
    assert sample.functional_units == 4 and token.functional_units == 128  # 4 samples of 32 tokens
    assert sample.energy_kwh == pytest.approx(100.0 / 3.6e6)  # predict: 4 x 0.25 s x 100 W
    seconds = {"fit": 5.0, "test": 1.5, "predict": 1.0}
    embodied_g = 1e3 * tag["embodied_co2e_kg"] * seconds["predict"] / sum(seconds.values())
    assert sample.embodied_g == pytest.approx(embodied_g)
    expected = (sample.energy_kwh * sample.intensity_g_per_kwh + embodied_g) / 4
    assert sample.value_g == pytest.approx(expected)
    assert token.value_g == pytest.approx(expected * 4 / 128)


def test_sci_per_flop_counts_every_phase_of_a_run_and_the_ledgers_flops_of_a_sweep(run_dir, sweep_dir):
    tag = _tag(run_dir)
    per_flop = sci(project(load(run_dir)), "flop")
    assert per_flop.functional_units == sum(v for k, v in tag["flops_by_phase"].items() if not k.endswith("recompute"))
    sweep = sci(project(load(sweep_dir)), "flop")
    assert sweep.functional_units == 6e12  # six trials of 1e12 FLOPs in the ledger
    text = render_checklist(load(sweep_dir), "sci", functional_unit="flop")
    assert "Boundary: all 6 trials of the sweep (FLOPs as the ledger books them: training)." in text


def test_sci_on_a_sweep_serves_with_the_selected_trial_and_says_what_is_not_measured(sweep_dir, tmp_path):
    text = render_checklist(load(sweep_dir), "sci", functional_unit="sample")
    assert "Boundary: the predict stage of trial 1" in text and "R (functional unit, per sample): 4 sample(s)." in text
    bare = render_checklist(load(sweep_with_failures(tmp_path / "bare")), "sci", functional_unit="token")
    assert "R (functional unit, per token): not measured (no predict, test or validate stage of trial 1 ran)." in bare
    assert "SCI: not measured" in bare


def test_sci_refuses_an_unknown_functional_unit_naming_the_allowed_ones(run_dir, capsys):
    with pytest.raises(ValueError, match=r"Unknown SCI functional unit 'page'\. Allowed: token, sample, run, flop\."):
        render_checklist(load(run_dir), "sci", functional_unit="page")
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(run_dir), "--no-plots", "--format", "sci", "--functional-unit", "page"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'page' (choose from 'token', 'sample', 'run', 'flop')" in capsys.readouterr().err
    assert FUNCTIONAL_UNITS == ("token", "sample", "run", "flop")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "acl", "--functional-unit", "run"], "--functional-unit applies to --format sci, not acl."),
        (
            ["--format", "sci", "--utilisation", "0.4"],
            "--training-tokens and --utilisation apply to --format eu-ai-act",
        ),
        (["--format", "eu-ai-act", "--utilisation", "40"], "--utilisation must be a fraction in (0, 1] (0.4 for 40 %)"),
        (["--format", "eu-ai-act", "--training-tokens", "0"], "--training-tokens must be a whole number > 0, got 0."),
    ],
    ids=["unit-elsewhere", "utilisation-elsewhere", "percent", "zero-tokens"],
)
def test_the_command_line_refuses_options_out_of_place_or_range(run_dir, capsys, args, message):
    assert main(["report", str(run_dir), "--no-plots", *args]) == 2
    assert message in capsys.readouterr().err


# -- CycloneDX and SPDX -------------------------------------------------------------------------------------------


def _cyclonedx_errors(text: str):
    return JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)


def _energy_consumptions(bom: dict) -> list[dict]:
    (component,) = bom["components"]
    return component["modelCard"]["considerations"]["environmentalConsiderations"]["energyConsumptions"]


def _properties(entry: dict) -> dict[str, str]:
    return {p["name"].removeprefix("lightning-greenai:"): p["value"] for p in entry.get("properties", [])}


def test_cyclonedx_on_a_run_is_a_valid_ml_bom_with_each_activity(run_dir):
    text = render_checklist(load(run_dir), "cyclonedx")
    assert _cyclonedx_errors(text) is None
    bom = json.loads(text)
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
    assert bom["components"][0]["type"] == "machine-learning-model"
    entries = {e["activity"]: e for e in _energy_consumptions(bom)}
    assert set(entries) == {"training", "validation", "inference"}  # fit, test, predict
    tag = _tag(run_dir)
    intensity = tag["grid"]["intensity_g_per_kwh"]
    for activity, energy_j in (("training", 500.0), ("validation", 150.0), ("inference", 100.0)):
        entry = entries[activity]
        assert set(entry) == {"activity", "energyProviders", "activityEnergyCost", "co2CostEquivalent", "properties"}
        assert entry["activityEnergyCost"] == {"value": pytest.approx(energy_j / 3.6e6, rel=1e-5), "unit": "kWh"}
        assert entry["co2CostEquivalent"]["unit"] == "tCO2eq"
        assert entry["co2CostEquivalent"]["value"] == pytest.approx(energy_j / 3.6e6 * intensity / 1e6, rel=1e-5)
        (provider,) = entry["energyProviders"]
        assert provider["organization"] == {"name": "electricity grid (DE)"}
        assert provider["energySource"] == "unknown" and provider["energyProvided"] == entry["activityEnergyCost"]
        assert _properties(entry)["co2CostOffset"] == "not measured"  # nothing measures offsets: no number made up
    assert _properties(entries["training"])["energy_kwh_interval"] == f"{475 / 3.6e6:.6g} to {525 / 3.6e6:.6g}"


def test_cyclonedx_on_a_sweep_has_every_trial_and_names_what_was_not_measured(sweep_dir):
    text = render_checklist(load(sweep_dir), "cyclonedx", training_type="fine-tuning")
    assert _cyclonedx_errors(text) is None
    bom = json.loads(text)
    entries = _energy_consumptions(bom)
    training = [e for e in entries if e["activity"] == "fine-tuning"]
    assert [_properties(e)["run"] for e in training] == [f"trial {i}" for i in range(6)]
    assert [_properties(e)["status"] for e in training][2::3] == ["failed", "budget_stopped"]
    assert [_properties(e)["selected"] for e in training].count("true") == 1
    total = sum(e["activityEnergyCost"]["value"] for e in entries)
    assert total == pytest.approx(17100.0 / 3.6e6, rel=1e-5)  # every trial's energy, once
    considerations = bom["components"][0]["modelCard"]["considerations"]["environmentalConsiderations"]
    names = _properties(considerations)
    assert names["testing.energy"] == names["inference.energy"] == "not measured"  # the ledger keeps no stages


def test_the_cyclonedx_validator_would_catch_a_broken_bom(run_dir):
    bom = json.loads(render_checklist(load(run_dir), "cyclonedx"))
    _energy_consumptions(bom)[0]["activityEnergyCost"]["unit"] = "J"
    assert _cyclonedx_errors(json.dumps(bom)) is not None


@pytest.fixture(scope="module")
def spdx_validator():
    schema = json.loads(SPDX_SCHEMA.read_text())
    assert schema["properties"]["@context"]["const"] == "https://spdx.org/rdf/3.0.1/spdx-context.jsonld"
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _package(document: dict) -> dict:
    return next(e for e in document["@graph"] if e["type"] == "ai_AIPackage")


def test_spdx_on_a_run_is_valid_with_energy_by_activity_and_co2e_annotated(run_dir, spdx_validator):
    document = json.loads(render_checklist(load(run_dir), "spdx"))
    assert list(spdx_validator.iter_errors(document)) == []
    consumption = _package(document)["ai_energyConsumption"]
    assert set(consumption) == {"type", "ai_trainingEnergyConsumption", "ai_inferenceEnergyConsumption"}
    (training,) = consumption["ai_trainingEnergyConsumption"]
    assert training == {
        "type": "ai_EnergyConsumptionDescription",
        "ai_energyQuantity": "0.000138889",  # 500 J, as xsd:decimal text
        "ai_energyUnit": "kilowattHour",
    }
    inference = [float(d["ai_energyQuantity"]) for d in consumption["ai_inferenceEnergyConsumption"]]
    assert inference == pytest.approx([150.0 / 3.6e6, 100.0 / 3.6e6], rel=1e-5)  # test, then predict
    statements = [e["statement"] for e in document["@graph"] if e["type"] == "Annotation"]
    assert len(statements) == 3 and all("kgCO2e (DE); CO2 offset not measured" in s for s in statements)


def test_spdx_on_a_sweep_is_valid_with_one_entry_per_trial(sweep_dir, spdx_validator):
    document = json.loads(render_checklist(load(sweep_dir), "spdx", training_type="fine-tuning"))
    assert list(spdx_validator.iter_errors(document)) == []
    consumption = _package(document)["ai_energyConsumption"]
    assert set(consumption) == {"type", "ai_finetuningEnergyConsumption"}
    quantities = [float(d["ai_energyQuantity"]) for d in consumption["ai_finetuningEnergyConsumption"]]
    assert quantities == pytest.approx([e / 3.6e6 for e in (3600, 3600, 1800, 3600, 3600, 900)], rel=1e-5)
    assert "not measured: testing, inference." in _package(document)["comment"]


def test_the_spdx_schema_would_catch_a_broken_document(run_dir, spdx_validator):
    document = json.loads(render_checklist(load(run_dir), "spdx"))
    _package(document)["ai_energyConsumption"]["ai_trainingEnergyConsumption"][0]["ai_energyUnit"] = "kWh"
    assert list(spdx_validator.iter_errors(document))


def test_every_new_format_runs_from_the_command_line(run_dir, sweep_dir, capsys):
    assert FORMATS[-4:] == ("eu-ai-act", "sci", "cyclonedx", "spdx")
    for folder in (run_dir, sweep_dir):
        for fmt in FORMATS[-4:]:
            assert main(["report", str(folder), "--no-plots", "--format", fmt]) == 0
            out = capsys.readouterr().out
            if fmt in ("cyclonedx", "spdx"):
                json.loads(out)  # the JSON alone on stdout, nothing printed around it
            else:
                assert out.strip()


def test_a_damaged_trial_price_tag_is_read_as_far_as_it_goes(sweep_dir, capsys):
    """A trial's tag is read as it is (the sweep's ledger is the record): damaged figures count as not measured."""
    path = next((sweep_dir / "1").glob("**/price_tag.json"))
    tag = json.loads(path.read_text())
    tag.update(parameters="x", peak_flops_per_s="fast", stages=[1], flops_by_phase={"train/forward": "many"})
    tag["predictions"]["predict"].update(flops_per_sample="x", samples=None, tokens="y")
    tag["nodes_energy_kwh"] = 3
    path.write_text(json.dumps(tag))
    for fmt in FORMATS[-4:]:
        assert main(["report", str(sweep_dir), "--no-plots", "--format", fmt]) == 0, fmt
    text = render_checklist(load(sweep_dir), "eu-ai-act")
    assert "the price tag has no parameter count (N)" in text
    assert "- predict: FLOPs per sample not measured, per token not measured (no tokens_key)" in text
    assert "(samples not measured, batch 1)" in text
