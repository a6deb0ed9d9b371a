import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_digits_example_prints_and_writes_a_price_tag(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "digits.py"), "--max-epochs", "1", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "lightning-greenai price tag (fit)" in proc.stdout
    (tag_path,) = tmp_path.rglob("price_tag.json")
    tag = json.loads(tag_path.read_text())
    assert tag["energy_kwh"] > 0
    assert tag["grid"]["country"] == "DE"
    assert tag["stages_energy_kwh"].keys() == {"train", "validate"}


def test_plain_loop_example(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "plain_loop.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "price tag (plain loop)" in proc.stdout


def test_sweep_example_runs_as_a_real_multirun(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "sweep.py"),
            "-m",
            f"hydra.sweep.dir={sweep_dir}",
            "hydra.sweeper.max_trials=3",
            "trainer.max_epochs=1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[greenai] sweep stopped:" in proc.stdout
    report = json.loads((sweep_dir / "budget_report.json").read_text())
    assert sum(report["trials_by_status"].values()) == 3
    assert report["iid"] is True and 0.0 < report["best"]["objective"] <= 1.0
    for job in range(3):
        trial = json.loads((sweep_dir / ".greenai" / "trials" / f"{job}.json").read_text())
        assert trial["spend"]["flops"] > 0  # FlopMonitor's FLOPs travel with the EnergyMonitor's energy
        assert sum(trial["spend"]["energy_j"].values()) > 0
        assert trial["status"] in ("completed", "budget_stopped")
    assert "lightning-greenai price tag (sweep)" in proc.stdout
    assert sorted(p.name for p in (sweep_dir / "greenai_report").glob("*.png")) == [
        "budget_curve.png",
        "energy_by_device.png",
        "energy_per_trial.png",
        "evp.png",
    ]
    curves = list((sweep_dir / "greenai-sweep").rglob("evp.csv"))  # logger=csv (default): the summary run
    assert curves and "[greenai] budget curves logged to CSVLogger" in proc.stdout


def test_sweep_example_with_wandb_offline_in_one_override(tmp_path):
    from lightning_greenai.testing import read_wandb_run

    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "WANDB_SILENT": "true"}
    env.pop("WANDB_API_KEY", None)
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "sweep.py"),
            "-m",
            f"hydra.sweep.dir={sweep_dir}",
            "logger=wandb",
            "hydra.sweeper.max_trials=2",
            "trainer.max_epochs=1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary_run = read_wandb_run(sweep_dir / "wandb")  # the sweep's summary run, beside the trials' own runs
    assert len(summary_run.column("greenai/sweep/best_vs_energy_kwh")) == 2
    assert summary_run.metrics["greenai/sweep/best_vs_energy_kwh"]["step_metric"] == "greenai/sweep/energy_kwh"
    trial_run = read_wandb_run(sweep_dir / "0" / "wandb")
    assert trial_run.column("greenai/energy_kwh")  # live metrics of the trial itself
