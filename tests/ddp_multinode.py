"""Run by tests/test_ddp_multinode.py: one "node" of a real 2-node x 2-process DDP fit on CPU (gloo) on loopback.

Usage: NODE_RANK=n MASTER_ADDR=127.0.0.1 MASTER_PORT=p python tests/ddp_multinode.py OUT_DIR NODE_DIR

Each node has its own fake RAPL tree (``NODE_DIR/powercap``) and two fake GPUs whose UUIDs name the node. Every
training step, each rank adds 1 J to its node's package counter (shared by the node's two ranks) and 10 J to its own
GPU's counter. Lightning's launcher starts the node's second process itself, as on a real node.
"""

import json
import os
import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.demos.boring_classes import BoringModel

from lightning_greenai import EnergyMonitor
from lightning_greenai.sensors.fake import FakeGPU, FakeNVML
from tests.counter_files import bump, counter

out_dir, node_dir = Path(sys.argv[1]), Path(sys.argv[2])
node = int(os.environ["NODE_RANK"])
local_rank = int(os.environ.get("LOCAL_RANK", "0"))
powercap = node_dir / "powercap"
gpu_files = [node_dir / f"gpu{i}_mj" for i in range(2)]


class Model(BoringModel):
    def training_step(self, batch, batch_idx):
        bump(powercap / "intel-rapl:0" / "energy_uj", 1_000_000)
        bump(gpu_files[self.trainer.local_rank], 10_000)
        return super().training_step(batch, batch_idx)


# the fake counters rise by a bump per step, however fast the machine: no power limit may call that a glitch
BUMPS_NOT_WATTS_MW = 10**15
nvml = FakeNVML(
    [
        FakeGPU(f"GPU-node{node}-{i}", energy_mj=counter(gpu_files[i]), power_limit_mw=BUMPS_NOT_WATTS_MW)
        for i in range(2)
    ]
)
monitor = EnergyMonitor(gpus=[local_rank], nvml=nvml, rapl_root=powercap, verbose=False, log_every_n_steps=1)
trainer = L.Trainer(
    accelerator="cpu",
    devices=2,
    num_nodes=2,
    strategy="ddp",
    max_steps=4,
    limit_val_batches=0,
    enable_progress_bar=True,  # a progress bar reads the logged totals on every rank
    enable_checkpointing=False,
    enable_model_summary=False,
    logger=False,
    default_root_dir=out_dir,
    callbacks=[monitor],
)
trainer.fit(Model())
tag = monitor.price_tag
(out_dir / f"rank{trainer.global_rank}.json").write_text(
    json.dumps({"spend": monitor.spend.to_dict(), "tag": tag.to_dict(), "text": tag.to_text()})
)

import torch.distributed as dist  # noqa: E402

if dist.is_initialized():  # tear gloo down before the interpreter exits (its threads can abort the exit)
    dist.barrier()
    dist.destroy_process_group()
