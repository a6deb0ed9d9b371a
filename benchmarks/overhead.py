"""EnergyMonitor overhead on CPU, side by side in one run. Run: python benchmarks/overhead.py [--quick]

1. Median training-step time of one model: bare, with EnergyMonitor, and with CodeCarbon's
   OfflineEmissionsTracker around the same loop (if codecarbon is installed: pip install -e ".[bench]").
   Blocks of each are interleaved (A B C A B C ...) so machine-load drift hits all alike.
   Target: EnergyMonitor <= 1.01x bare for a step of >= 10 ms.
2. Memory over 10,000 steps with the monitor sampling every step (its worst case), against bare: RSS growth from
   step 1,000 to step 10,000. Target: no growth beyond bare's.
3. Start-up: importing lightning_greenai and starting a Meter, beyond importing torch and lightning themselves
   (median of fresh interpreters). Target: <= 0.3 s. CodeCarbon measured the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import statistics
import subprocess
import sys
import tempfile
import time

import lightning as L
import psutil
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_greenai import EnergyMonitor

try:
    from codecarbon import OfflineEmissionsTracker
except ImportError:  # optional: pip install -e ".[bench]"
    OfflineEmissionsTracker = None


class MLP(L.LightningModule):
    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers[:-1])

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


class StepTimer(L.Callback):
    def __init__(self, rss_at: tuple[int, ...] = ()) -> None:
        self.times: list[float] = []
        self.rss: dict[int, int] = {}
        self.rss_at = rss_at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter() - self.t)
        if trainer.global_step in self.rss_at:
            self.rss[trainer.global_step] = psutil.Process().memory_info().rss


def loader(n: int, dim: int, batch: int) -> DataLoader:
    x, y = torch.randn(n, dim), torch.randint(0, 10, (n,))
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)


def fit(model, data, callbacks, steps: int, root: str) -> None:
    L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        default_root_dir=root,
    ).fit(model, data)


def step_times(rounds: int, steps: int) -> dict[str, float]:
    torch.manual_seed(0)
    model, data = MLP((1024, 1024, 1024, 10)), loader(256 * 8, 1024, 256)
    times: dict[str, list[float]] = {"bare": [], "EnergyMonitor": []}
    if OfflineEmissionsTracker is not None:
        times["CodeCarbon"] = []
    with tempfile.TemporaryDirectory() as root:
        for _ in range(rounds):
            for mode in times:
                timer = StepTimer()
                callbacks: list[L.Callback] = [timer]
                tracker = contextlib.nullcontext()
                if mode == "EnergyMonitor":
                    callbacks.insert(0, EnergyMonitor(country="FR", verbose=False))
                elif mode == "CodeCarbon":
                    tracker = OfflineEmissionsTracker(
                        country_iso_code="FRA", output_dir=root, log_level="error", save_to_file=False
                    )
                with tracker:
                    fit(model, data, callbacks, steps, root)
                times[mode].extend(timer.times[5:])
    return {mode: statistics.median(t) for mode, t in times.items()}


def memory(steps: int) -> dict[str, float]:
    model, data = MLP((16, 16, 10)), loader(64 * 100, 16, 64)
    out = {}
    with tempfile.TemporaryDirectory() as root:
        for mode in ("bare", "EnergyMonitor"):
            timer = StepTimer(rss_at=(1000, steps))
            cbs: list[L.Callback] = [timer]
            if mode == "EnergyMonitor":
                cbs.insert(0, EnergyMonitor(verbose=False, log_every_n_steps=1))
            fit(model, data, cbs, steps, root)
            out[mode] = (timer.rss[steps] - timer.rss[1000]) / 2**20
    return out


def startup(runs: int) -> dict[str, float]:
    base = "import torch, lightning"
    programs = {
        "torch+lightning": base,
        "lightning_greenai": base + "; import lightning_greenai; from lightning_greenai import EnergyMonitor, Meter; "
        "Meter().start().stop()",
    }
    if OfflineEmissionsTracker is not None:
        programs["codecarbon"] = (
            base + "; from codecarbon import OfflineEmissionsTracker; "
            "t = OfflineEmissionsTracker(country_iso_code='FRA', save_to_file=False, log_level='error'); "
            "t.start(); t.stop()"
        )
    seconds: dict[str, list[float]] = {name: [] for name in programs}
    for _ in range(runs):
        for name, code in programs.items():  # interleaved, so the page cache warms all alike
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
            seconds[name].append(time.perf_counter() - t0)
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    return {name: m - medians["torch+lightning"] for name, m in medians.items() if name != "torch+lightning"} | {
        "torch+lightning (absolute)": medians["torch+lightning"]
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rounds and steps (a smoke run)")
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    rounds, steps, mem_steps, runs = (1, 30, 1200, 1) if args.quick else (4, 150, 10_000, 5)

    med = step_times(rounds, steps)
    print(f"median step time ({rounds} interleaved blocks of {steps} steps each):")
    for mode, t in med.items():
        print(f"  {mode:<14} {1e3 * t:8.2f} ms   ratio to bare {t / med['bare']:.4f}")
    mem = memory(mem_steps)
    print(f"RSS growth from step 1,000 to step {mem_steps:,} (monitor sampling every step):")
    for mode, mib in mem.items():
        print(f"  {mode:<14} {mib:+8.2f} MiB")
    start = startup(runs)
    print(f"start-up beyond `import torch, lightning` (median of {runs} fresh interpreters):")
    for name, s in start.items():
        print(f"  {name:<27} {s:6.3f} s")


if __name__ == "__main__":
    main()
