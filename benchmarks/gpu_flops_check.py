"""On an NVIDIA GPU: FLOP accuracy on CUDA, MFU, and metering overhead at a >= 10 ms step.

Run: PYTHONPATH=. python benchmarks/gpu_flops_check.py [OUT_DIR]

1. The reference-model accuracy table on CUDA (ours and torch's FlopCounterMode against the hand-derived counts).
2. A bf16 Lightning fit of a matmul stack with FlopMonitor: counted FLOPs per step against the analytic count, and
   the logged MFU against FLOPs / time / the card's dense peak.
3. Step time bare, with EnergyMonitor, and with EnergyMonitor + FlopMonitor (default logging), blocks alternated.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import Burner, StepTimer, trainer

from lightning_greenai import EnergyMonitor, FlopMonitor
from lightning_greenai.flops import peak_flops_per_s

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")


class Rate(L.Callback):
    """Wall time of the training steps, for an independent FLOP/s."""

    def __init__(self):
        self.seconds, self.steps = 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        torch.cuda.synchronize()
        self.t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        torch.cuda.synchronize()
        if batch_idx >= 5:  # after warm-up
            self.seconds += time.perf_counter() - self.t
            self.steps += 1


def main():
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    table = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("flops_accuracy.py")), "--device", "cuda"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    print(table, flush=True)
    results["accuracy_table"] = table

    dim, depth, batch = 4096, 8, 8192
    model = Burner(dim=dim, depth=depth, batch=batch)
    mon, rate = FlopMonitor(log_every_n_steps=10), Rate()
    trainer([mon, rate], max_steps=60, precision="bf16-mixed").fit(model)
    steps = 60
    forward = 2 * batch * dim * dim * depth
    backward = 2 * forward - 2 * batch * dim * dim  # the first layer's input is data: no input gradient
    counted = (mon.totals["train/forward"] + mon.totals["train/backward"]) / steps
    peak = peak_flops_per_s(torch.device("cuda", 0), torch.bfloat16)
    achieved = counted * rate.steps / rate.seconds
    results["mfu"] = {
        "counted_flops_per_step": counted,
        "analytic_flops_per_step": forward + backward,
        "counted_vs_analytic_pct": 100 * (counted - forward - backward) / (forward + backward),
        "peak_bf16_dense_flops_per_s": peak,
        "achieved_flops_per_s": achieved,
        "mfu_independent": achieved / peak if peak else None,
        "uncounted_ops": dict(mon.uncounted_ops),
    }
    print(json.dumps(results["mfu"], indent=2), flush=True)

    blocks = {"bare": [], "EnergyMonitor": [], "EnergyMonitor+FlopMonitor": []}
    small = Burner(dim=4096, depth=6, batch=8192)
    for _ in range(2):
        for name in blocks:
            timer = StepTimer()
            cbs = {
                "bare": [],
                "EnergyMonitor": [EnergyMonitor(verbose=False)],
                "EnergyMonitor+FlopMonitor": [EnergyMonitor(verbose=False), FlopMonitor()],
            }[name]
            trainer([*cbs, timer], max_steps=150, precision="bf16-mixed").fit(small)
            blocks[name].extend(timer.times[10:])
    bare = statistics.median(blocks["bare"])
    results["overhead"] = {
        name: {"median_step_ms": 1e3 * statistics.median(t), "ratio": statistics.median(t) / bare}
        for name, t in blocks.items()
    }
    print(json.dumps(results["overhead"], indent=2), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gpu_flops_check.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
