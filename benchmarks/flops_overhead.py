"""Step-time cost of FLOP metering, side by side in one run. Run: python benchmarks/flops_overhead.py [--quick]

Modes, interleaved in blocks on the same models: bare; FlopMonitor; torch's FlopCounterMode around every step;
Lightning's ThroughputMonitor fed by `measure_flops` (counted once on the meta device, as its docs show).
Reports the median step time after the first step of each block, and the first step's extra cost.
Targets: FlopMonitor <= 1.02x bare after the first step of each signature; its first step costs <= one extra
forward+backward (about one median step).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.throughput import measure_flops
from lightning.pytorch.callbacks import ThroughputMonitor
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_greenai import FlopMonitor
from tests.flops.reference_models import GPT, MLP


class Task(L.LightningModule):
    def __init__(self, make_net, example):
        super().__init__()
        self.make_net, self.example = make_net, example
        self.net = make_net()

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.net(x).float().pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


class FlopsPerBatch(L.Callback):
    """What ThroughputMonitor's docs ask the user to do: measure once on the meta device, set flops_per_batch."""

    def setup(self, trainer, pl_module, stage):
        with torch.device("meta"):
            net = pl_module.make_net()
            x = pl_module.example.to("meta")
        pl_module.flops_per_batch = measure_flops(net, lambda: net(x), lambda y: y.float().pow(2).mean())


class CounterModeEveryStep(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.mode = FlopCounterMode(display=False)
        self.mode.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.mode.__exit__(None, None, None)


class StepTimer(L.Callback):
    def __init__(self):
        self.times = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter() - self.t)


MODES = {
    "bare": lambda: [],
    "FlopMonitor": lambda: [FlopMonitor()],
    "FlopCounterMode every step": lambda: [CounterModeEveryStep()],
    "ThroughputMonitor + measure_flops": lambda: [FlopsPerBatch(), ThroughputMonitor(lambda b: b[0].shape[0])],
}


def run(make_net, example, steps, rounds):
    data = DataLoader(TensorDataset(example.repeat(steps, *([1] * (example.dim() - 1)))), batch_size=len(example))
    times = {m: [] for m in MODES}
    first = {m: [] for m in MODES}
    for _ in range(rounds):
        for mode, callbacks in MODES.items():
            torch.manual_seed(0)
            timer = StepTimer()
            L.Trainer(
                max_steps=steps,
                accelerator="cpu",
                logger=mode.startswith("Throughput"),
                enable_progress_bar=False,
                enable_checkpointing=False,
                enable_model_summary=False,
                callbacks=[*callbacks(), timer],
                log_every_n_steps=10,
                default_root_dir="/tmp/greenai-flops-bench",
            ).fit(Task(make_net, example), data)
            first[mode].append(timer.times[0])
            times[mode].extend(timer.times[1:])
    return {m: statistics.median(t) for m, t in times.items()}, {m: statistics.median(t) for m, t in first.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steps, rounds = (10, 1) if args.quick else (40, 3)
    models = {
        "MLP 1024-2048-2048-10, batch 256": (lambda: MLP((1024, 2048, 2048, 10)), torch.randn(256, 1024)),
        "GPT d=256 L=4 T=128, batch 8": (
            lambda: GPT(vocab=1024, d=256, heads=8, layers=4, block=128),
            torch.randint(0, 1024, (8, 128)),
        ),
    }
    for name, (make_net, example) in models.items():
        median, first = run(make_net, example, steps, rounds)
        print(f"\n{name}: median step after the first ({rounds} interleaved blocks of {steps} steps)")
        for mode, t in median.items():
            extra = (first[mode] - first["bare"]) / median["bare"]
            print(f"  {mode:<34} {1e3 * t:8.2f} ms  x{t / median['bare']:.3f}   first step: +{extra:.2f} median steps")


if __name__ == "__main__":
    main()
