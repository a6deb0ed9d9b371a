"""DDP in the shape of a real project: progress bar anywhere, checkpoints, early stopping, fit then test; no hang."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ddp
SCRIPT = Path(__file__).with_name("ddp_project.py")


def run(tmp_path: Path, bar_at: str, strategy: str, burn_s: float = 0.0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "LIGHTNING_GREENAI": "1"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(tmp_path), bar_at, strategy, str(burn_s)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a hang is killed with every rank it started
    )
    try:
        out, err = proc.communicate(timeout=240)  # a deadlock fails here instead of stalling CI
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"DDP run hung (progress bar {bar_at}, {strategy}): {err[-3000:]}")
    assert proc.returncode == 0, err[-4000:]
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def price_tags(tmp_path: Path) -> dict[str, dict]:
    tags = [json.loads(p.read_text()) for p in tmp_path.glob("logs/version_*/price_tag.json")]
    return {tag["title"]: tag for tag in tags}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("bar_at", ["first", "last"])
def test_ddp_with_a_rich_progress_bar_anywhere_never_hangs(tmp_path, bar_at):
    proc = run(tmp_path, bar_at, "ddp")
    (tag,) = price_tags(tmp_path).values()
    assert tag["title"] == "test"
    assert set(tag["stages"]) == {"fit", "test"}  # one tag per stage, the first kept
    assert tag["this_stage"]["energy_kwh"] < tag["stages"]["test"]["energy_kwh"]
    assert proc.stdout.count("lightning-greenai price tag (fit)") == 1  # the run's compact tag, by rank 0 only
    assert proc.stdout.count("[greenai] + test: ") == 1  # and one line for what its test added
    assert proc.stdout.count("lightning-greenai price tag") == 1
    # the price of a prediction counts both ranks' samples: 2 test batches of 1 per rank; validation 2 epochs x 3
    # batches + 2 sanity batches per rank
    predictions = tag["predictions"]
    assert (predictions["test"]["samples"], predictions["test"]["batch_size"]) == (2 * 2, 1)
    assert predictions["validate"]["samples"] == 2 * (2 * 3 + 2)
    assert predictions["test"]["j_per_sample"] == pytest.approx(tag["stages_energy_kwh"]["test"] * 3.6e6 / 4)


@pytest.mark.timeout(300)
def test_ddp_spawn_counts_every_ranks_cpu_time(tmp_path):
    burn_s = 0.15  # CPU seconds per step and rank: 2 epochs x 6 steps x 2 ranks = 3.6 CPU-s burnt in all
    run(tmp_path, "last", "ddp_spawn", burn_s)
    # spawned workers start from the main process's callbacks: each entry point (fit, test) has its own price tag
    tag = price_tags(tmp_path)["fit"]
    cpu = next(d for d in tag["devices"] if d["name"] == "cpu:estimate")
    # the estimate is TDP / logical CPUs x CPU seconds: at least both ranks' burnt seconds, not rank 0's alone
    from lightning_greenai.sensors.estimate import CPUEstimateSensor

    watts_per_cpu_s = CPUEstimateSensor().tdp_w / (os.cpu_count() or 1)
    cpu_s = cpu["energy_kwh"] * 3.6e6 / watts_per_cpu_s
    assert cpu_s >= 2 * 2 * 6 * burn_s * 0.95
