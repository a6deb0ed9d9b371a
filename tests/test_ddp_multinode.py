"""Lightning multi-node DDP (2 nodes x 2 processes) simulated on loopback: every counter counted once, per node."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_greenai import Spend
from lightning_greenai.sensors.fake import make_rapl_tree
from tests.services import free_port

pytestmark = [pytest.mark.ddp, pytest.mark.timeout(600)]
SCRIPT = Path(__file__).with_name("ddp_multinode.py")


def test_two_nodes_count_each_cpu_once_per_node_and_each_gpu_once(tmp_path):
    port = free_port()
    procs = []
    for node in (0, 1):
        node_dir = tmp_path / f"node{node}"
        make_rapl_tree(
            node_dir / "powercap", packages=(0,), dram=False, energy_uj=0, max_power_w=1e12
        )  # bumped per step, not per second
        for i in range(2):
            (node_dir / f"gpu{i}_mj").write_text("0\n")
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK")},
            "PYTHONPATH": str(Path(__file__).parents[1]),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "NODE_RANK": str(node),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(SCRIPT), str(tmp_path), str(node_dir)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=400)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 0, err[-4000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(4)]
    spends = [Spend.from_dict(r["spend"]) for r in results]
    assert all(s == spends[0] for s in spends)  # the same totals on every rank of both nodes
    total = spends[0]
    # each node's package: 4 steps x its 2 ranks x 1 J, read by one rank per node: 8 J per node, not 16
    assert total.energy_j["cpu:package-0@node0"] == pytest.approx(8.0)
    assert total.energy_j["cpu:package-0@node1"] == pytest.approx(8.0)
    # four GPUs, each read by its own rank: 4 steps x 10 J
    gpus = {k: v for k, v in total.energy_j.items() if k.startswith("gpu")}
    assert len(gpus) == 4 and all(v == pytest.approx(40.0) for v in gpus.values()), gpus
    assert total.total_energy_j == pytest.approx(2 * 8.0 + 4 * 40.0)
    host = socket.gethostname()
    by_node = results[0]["tag"]["nodes_energy_kwh"]
    assert by_node == {
        f"node 0 ({host})": pytest.approx(88.0 / 3.6e6),
        f"node 1 ({host})": pytest.approx(88.0 / 3.6e6),
    }
    assert "by node" in results[0]["text"] and f"node 1 ({host}) 88.0 J" in results[0]["text"]
