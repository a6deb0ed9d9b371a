"""examples/project: an app shaped like the Lightning + Hydra template, run end to end as its users run it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sweep.test_sweeper import assert_books_balance

ROOT = Path(__file__).parents[1]
APP = ROOT / "examples" / "project"


def run(tmp_path: Path, script: str, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(APP / script), *overrides],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def test_callbacks_dict_composes_with_the_greenai_bundle_and_fit_then_test_are_priced(tmp_path):
    out = tmp_path / "run"
    proc = run(tmp_path, "train.py", "callbacks=[default,greenai]", "trainer.max_epochs=1", f"hydra.run.dir={out}")
    # one compact tag for the run, then one line for what its test added: not a second table
    assert proc.stdout.count("lightning-greenai price tag") == 1 and "lightning-greenai price tag (fit)" in proc.stdout
    assert proc.stdout.count("[greenai] + test: ") == 1
    (tag_path,) = out.glob("csv/version_0/price_tag.json")  # the first logger of the dict
    tag = json.loads(tag_path.read_text())
    assert set(tag["stages"]) == {"fit", "test"}
    assert tag["flops_by_phase"]["train/forward"] > 0 and tag["flops_by_phase"]["test/forward"] > 0
    hparams = (tag_path.parent / "hparams.yaml").read_text()
    assert "greenai/price_tag/fit/energy_kwh" in hparams and "greenai/price_tag/test/energy_kwh" in hparams


@pytest.mark.timeout(600)
def test_the_templates_ddp_sim_preset_prices_fit_and_test_each_with_its_flops(tmp_path):
    """ddp_sim is ddp_spawn: each entry point spawns its ranks afresh from the main process's callbacks and loggers.

    So fit and test each get their own price tag (and, Lightning's doing, their own logger version); neither may keep
    only one stage or lose its FLOPs (issue 20: the JSON kept only the test stage, with 0 FLOPs).
    """
    out = tmp_path / "run"
    args = ("callbacks=[default,greenai]", "trainer=ddp_sim", "trainer.max_epochs=1", f"hydra.run.dir={out}")
    proc = run(tmp_path, "train.py", *args)
    assert proc.stdout.count("lightning-greenai price tag (fit)") == 1
    assert proc.stdout.count("lightning-greenai price tag (test)") == 1
    fit, test = (json.loads(p.read_text()) for p in sorted(out.glob("csv/version_*/price_tag.json")))
    assert list(fit["stages"]) == ["fit"] and list(test["stages"]) == ["test"]
    assert fit["flops_by_phase"]["train/forward"] > 0 and fit["flops_by_phase"]["val/forward"] > 0
    assert test["flops_by_phase"]["test/forward"] > 0
    assert sum(fit["spend"]["energy_j"].values()) > 0 and sum(test["spend"]["energy_j"].values()) > 0


@pytest.mark.timeout(600)
def test_the_templates_optuna_search_runs_on_the_greenai_sweeper_with_ddp_trials(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run(
        tmp_path,
        "train.py",
        "-m",
        "hparams_search=digits_greenai",
        "hydra.sweeper.n_trials=2",
        "trainer=ddp_sim",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert_books_balance(sweep_dir, proc.stdout)
    report = json.loads((sweep_dir / "budget_report.json").read_text())
    assert report["trials_by_status"] == {"completed": 2}
    assert report["strategy"] == "optuna" and report["direction"] == "max"
    assert 0.0 < report["best"]["objective"] <= 1.0
    # each trial spawned its own 2 ranks for its fit and again for its test, never a sweep of its own in rank 1
    assert (proc.stdout + proc.stderr).count("Initializing distributed: GLOBAL_RANK: 1") == 4
    assert "A new study created" in proc.stderr + proc.stdout  # Optuna, with the template's TPE sampler
    # the dict of loggers: the sweep's curves went to each of them
    assert "logged to TensorBoardLogger" in proc.stdout and "logged to CSVLogger" in proc.stdout
    for job in (0, 1):
        assert "energy_j" in json.loads((sweep_dir / ".greenai" / "trials" / f"{job}.json").read_text())["spend"]


@pytest.mark.parametrize("preset", ["debug=default", "~callbacks"])
def test_the_env_route_meters_runs_without_callbacks(tmp_path, preset):
    out = tmp_path / "run"
    proc = run(tmp_path, "train.py", preset, f"hydra.run.dir={out}", env={"LIGHTNING_GREENAI": "1"})
    assert "lightning-greenai price tag (fit)" in proc.stdout


def test_eval_script_without_callbacks_is_metered_with_the_env_var(tmp_path):
    out = tmp_path / "train"
    run(tmp_path, "train.py", "trainer.max_epochs=1", f"hydra.run.dir={out}")
    ckpt = out / "checkpoints" / "last.ckpt"
    assert ckpt.exists()
    proc = run(
        tmp_path, "eval.py", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'eval'}", env={"LIGHTNING_GREENAI": "1"}
    )
    assert "lightning-greenai price tag (test)" in proc.stdout
    assert "of which" not in proc.stdout  # the eval's own spend: not the training run's from the checkpoint
