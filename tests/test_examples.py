import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
    assert tag["flops_by_phase"]["train/forward"] > 0 and tag["flops_by_phase"]["val/forward"] > 0


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
        "marginal_value.png",
        "pareto.png",
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


def test_sweep_example_without_dash_m_says_one_trial_ran_and_how_to_sweep(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sweep.py"), "trainer.max_epochs=1", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "lightning-greenai price tag (fit)" in proc.stdout
    assert "[greenai] one trial ran (val/acc = " in proc.stdout
    assert "python examples/sweep.py -m" in proc.stdout


def test_the_command_line_search_space_replaces_the_examples_own(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "sweep.py"),
            "-m",
            f"hydra.sweep.dir={sweep_dir}",
            "hydra.sweeper.max_trials=4",
            "trainer.max_epochs=1",
            "model.lr=interval(0.05,0.06)",
            "model.width=choice(256)",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (sweep_dir / "budget_curve.csv").read_text().splitlines()[1:]
    for row in rows:  # the YAML's own params (width 16-128, lr 1e-3..3e-1) are replaced, not added to
        overrides = dict(o.split("=") for o in row.rsplit(",", 1)[1].split())
        assert overrides["model.width"] == "256"
        assert 0.05 <= float(overrides["model.lr"]) <= 0.06


@pytest.mark.timeout(300)
def test_ctrl_c_of_the_main_job_records_the_sweep_and_says_how_to_resume(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "sweep.py"),
            "-m",
            f"hydra.sweep.dir={sweep_dir}",
            "hydra.sweeper.budget.energy_kwh=10 kJ",  # the 16 trials of max_trials: long enough to interrupt
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 120
    while not (sweep_dir / ".greenai" / "trials" / "1.json").exists():  # a trial or two in: Ctrl-C
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted (Ctrl-C)" in out and "hydra.sweeper.resume=true" in out
    report = json.loads((sweep_dir / "budget_report.json").read_text())
    assert report["stop_reason"] == "interrupted: interrupted (Ctrl-C)"


def test_logger_mlflow_keeps_one_store_in_the_sweep_dir(tmp_path):
    from mlflow.tracking import MlflowClient

    sweep_dir = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "sweep.py"),
            "-m",
            f"hydra.sweep.dir={sweep_dir}",
            "logger=mlflow",
            "hydra.sweeper.max_trials=2",
            "trainer.max_epochs=1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists()  # not wherever the user ran it from
    client = MlflowClient(f"sqlite:///{sweep_dir / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "greenai"]
    names = sorted(r.info.run_name or "" for r in client.search_runs([experiment.experiment_id]))
    assert len(names) == 3 and "greenai-sweep" in names  # two trials and the sweep's curves, one store
