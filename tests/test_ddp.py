import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_greenai import Spend
from lightning_greenai.sensors.fake import make_rapl_tree

pytestmark = pytest.mark.ddp
SCRIPT = Path(__file__).with_name("ddp_train.py")


def run(tmp_path: Path, mode: str) -> tuple[Spend, Spend]:
    powercap = make_rapl_tree(
        tmp_path / "powercap", packages=(0,), dram=False, energy_uj=0, max_power_w=1e12
    )  # bumped per step, not per second
    for i in range(2):
        (tmp_path / f"gpu{i}_mj").write_text("0\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), str(powercap), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return tuple(Spend.from_dict(json.loads((tmp_path / f"rank{r}.json").read_text())) for r in (0, 1))


def test_ddp_two_ranks_each_gpu_once_and_host_cpu_once(tmp_path):
    rank0, rank1 = run(tmp_path, "distinct")
    assert rank0 == rank1  # totals are reduced across ranks on every rank
    # 4 steps x 2 ranks x 1 J into one package counter: read by one rank per node, so 8 J, not 16 J
    assert rank0.energy_j["cpu:package-0"] == pytest.approx(8.0)
    # each rank's own GPU: 4 steps x 10 J
    assert rank0.energy_j["gpu:0"] == pytest.approx(40.0)
    assert rank0.energy_j["gpu:1"] == pytest.approx(40.0)
    assert rank0.total_energy_j == pytest.approx(88.0)
    # the interval is summed the same way, each counter once: at least 5 % calibration, more for the NVML counter's
    # 100 ms edges over a fit this short
    assert set(rank0.energy_bounds_j) == {"cpu:package-0", "gpu:0", "gpu:1"}
    low, high = rank0.total_energy_bounds_j
    assert low == pytest.approx(sum(b[0] for b in rank0.energy_bounds_j.values()))
    assert low <= 0.95 * 88.0 and high >= 1.05 * 88.0
    # FLOPs summed over both ranks: BoringModel is Linear(32, 2) on batches of 1 -> 128 forward, 128 backward
    # (weight gradient only) per step; SGD 2 FLOPs x 66 parameters per optimizer step
    flops = [json.loads((tmp_path / f"flops{r}.json").read_text()) for r in (0, 1)]
    assert flops[0] == flops[1]
    assert flops[0]["train/forward"] == 2 * 4 * 128
    assert flops[0]["train/backward"] == 2 * 4 * 128
    assert flops[0]["train/optimizer"] == 2 * 4 * 2 * 66
    assert rank0.flops == 2 * 4 * (128 + 128 + 132)  # the energy monitor's spend carries the same FLOPs


def test_ddp_two_ranks_on_one_gpu_count_it_once(tmp_path):
    rank0, rank1 = run(tmp_path, "shared")
    assert rank0 == rank1
    # both ranks meter GPU-0 (same UUID): 4 steps x 2 ranks x 10 J, counted once
    assert {k: v for k, v in rank0.energy_j.items() if k.startswith("gpu")} == {"gpu:0": pytest.approx(80.0)}
    assert rank0.energy_j["cpu:package-0"] == pytest.approx(8.0)


_GROUP_AT_EXIT = """
import atexit, sys
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning_greenai import Meter
from lightning_greenai.metering.distributed import gather_records


def rank(index, init, out):
    dist.init_process_group("gloo", init_method=init, rank=index, world_size=2)
    # registered first, so it runs last: what is left of the group when the interpreter goes on to finalize
    atexit.register(lambda: open(f"{out}/rank{index}", "w").write(str(dist.is_initialized())))
    with Meter([], process=False) as meter:
        assert len(gather_records(meter)) == 2


if __name__ == "__main__":
    mp.spawn(rank, args=(sys.argv[1], sys.argv[2]), nprocs=2)  # spawned ranks exit through sys.exit, as ddp_spawn's
"""


@pytest.mark.timeout(300)
def test_a_rank_that_gathered_destroys_its_group_before_the_interpreter_finalizes(tmp_path):
    """A gloo group alive at finalization can abort a finished ddp_spawn rank (SIGABRT, once in a CI run)."""
    script = tmp_path / "ranks.py"
    script.write_text(_GROUP_AT_EXIT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    env.pop("LOCAL_RANK", None)
    init = f"file://{tmp_path / 'rendezvous'}"
    proc = subprocess.run(
        [sys.executable, str(script), init, str(tmp_path)], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["False", "False"]
