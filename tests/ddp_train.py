"""Run by tests/test_ddp.py: a real 2-process DDP fit on CPU (gloo) with fake RAPL and fake NVML counters.

Usage: python tests/ddp_train.py OUT_DIR POWERCAP_ROOT {distinct,shared}

Every training step, each rank adds 1 J to the host's package counter (shared by both ranks, as on one node) and
10 J to its GPU counter: its own GPU in ``distinct`` mode, GPU 0 (the same UUID on both ranks) in ``shared`` mode.
"""

import json
import os
import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.demos.boring_classes import BoringModel

from lightning_greenai import EnergyMonitor, FlopMonitor
from lightning_greenai.sensors.fake import FakeGPU, FakeNVML
from tests.counter_files import bump, counter

out_dir, powercap, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
local_rank = int(os.environ.get("LOCAL_RANK", "0"))
gpu_files = [out_dir / f"gpu{i}_mj" for i in range(2)]


class Model(BoringModel):
    def training_step(self, batch, batch_idx):
        bump(powercap / "intel-rapl:0" / "energy_uj", 1_000_000)
        gpu = 0 if mode == "shared" else self.trainer.local_rank
        bump(gpu_files[gpu], 10_000)
        return super().training_step(batch, batch_idx)


# the fake counters rise by a bump per step, however fast the machine: no power limit may call that a glitch
BUMPS_NOT_WATTS_MW = 10**15
nvml = FakeNVML(
    [FakeGPU(f"GPU-{i}", energy_mj=counter(gpu_files[i]), power_limit_mw=BUMPS_NOT_WATTS_MW) for i in range(2)]
)
monitor = EnergyMonitor(
    gpus=[0 if mode == "shared" else local_rank], nvml=nvml, rapl_root=powercap, verbose=False, log_every_n_steps=1
)
trainer = L.Trainer(
    accelerator="cpu",
    devices=2,
    strategy="ddp",
    max_steps=4,
    limit_val_batches=0,
    enable_progress_bar=False,
    enable_checkpointing=False,
    enable_model_summary=False,
    logger=False,
    default_root_dir=out_dir,
    callbacks=[monitor, flops := FlopMonitor()],
)
trainer.fit(Model())
(out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(monitor.spend.to_dict()))
(out_dir / f"flops{trainer.global_rank}.json").write_text(json.dumps(flops.totals))

# Tear gloo down before the interpreter exits; otherwise its threads can abort the process at exit.
import torch.distributed as dist  # noqa: E402

if dist.is_initialized():
    dist.barrier()
    dist.destroy_process_group()
