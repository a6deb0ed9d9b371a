"""Step-time cost of FLOP metering, side by side in one run. Run: python benchmarks/flops_overhead.py [--quick]

Modes, interleaved in blocks on the same models: bare; FlopMonitor; torch's FlopCounterMode around every step;
Lightning's ThroughputMonitor fed by `measure_flops` (counted once on the meta device, as its docs show).
Reports the median step time after the first step of each block, and the first step's extra cost.
Targets: FlopMonitor <= 1.02x bare after the first step of each signature; its first step costs <= one extra
forward+backward (about one median step). torch.compile: the same models compiled, eager and compiled without
metering and compiled with FlopMonitor, interleaved: metering must keep the compiled speed (not fall back to eager).
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
from tests.flops.reference_models import GPT, MLP, ResNetish


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


def run(make_net, example, steps, rounds, modes=MODES, nets=None):
    """Median step and first-step time per mode; ``nets`` gives a mode its own network (eager against compiled)."""
    data = DataLoader(TensorDataset(example.repeat(steps, *([1] * (example.dim() - 1)))), batch_size=len(example))
    times = {m: [] for m in modes}
    first = {m: [] for m in modes}
    for _ in range(rounds):
        for mode, callbacks in modes.items():
            torch._dynamo.reset()  # every block compiles afresh (the compiled models' first steps are comparable)
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
            ).fit(Task((nets or {}).get(mode, make_net), example), data)
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
    compiled = {
        "MLP 1024-2048-2048-10, batch 256": (lambda: MLP((1024, 2048, 2048, 10)), torch.randn(256, 1024)),
        "GPT d=256 L=4 T=128, batch 8": (
            lambda: GPT(vocab=1024, d=256, heads=8, layers=4, block=128),
            torch.randint(0, 1024, (8, 128)),
        ),
        # a model whose compiled step is clearly faster than its eager one on CPU (fused conv + batch norm)
        "ResNet-style CNN c=32, batch 32 of 32x32": (lambda: ResNetish(c=32), torch.randn(32, 3, 32, 32)),
    }
    compiled_modes = {
        "eager, bare": MODES["bare"],
        "compiled, bare": MODES["bare"],
        "compiled, FlopMonitor": MODES["FlopMonitor"],
    }
    for name, (make_net, example) in models.items():
        report(name, *run(make_net, example, steps, rounds), "bare")
    for name, (make_net, example) in compiled.items():
        nets = {"eager, bare": make_net}
        median, first = run(lambda m=make_net: torch.compile(m()), example, steps, rounds, compiled_modes, nets)
        report(f"torch.compile: {name}", median, first, "compiled, bare")


def report(name, median, first, base):
    rounds_steps = "interleaved blocks, median step after the first"
    print(f"\n{name} ({rounds_steps}; ratios to {base})")
    for mode, t in median.items():
        extra = (first[mode] - first[base]) / median[base]
        print(f"  {mode:<34} {1e3 * t:8.2f} ms  x{t / median[base]:.3f}   first step: {extra:+.2f} median steps")


if __name__ == "__main__":
    main()
