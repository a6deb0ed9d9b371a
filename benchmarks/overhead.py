"""EnergyMonitor overhead on CPU, side by side in one run. Run: python benchmarks/overhead.py [--quick] [--only ...]

1. Median training-step time of one model: bare, with EnergyMonitor, and with CodeCarbon's
   OfflineEmissionsTracker around the same loop (if codecarbon is installed: pip install -e ".[bench]").
   Blocks of each are interleaved (A B C A B C ...) so machine-load drift hits all alike.
   Target: EnergyMonitor <= 1.01x bare for a step of >= 10 ms.
2. Memory over 10,000 steps with the monitor sampling every step (its worst case), against bare: RSS growth from
   step 1,000 to step 10,000. Target: no growth beyond bare's.
3. Start-up: importing lightning_greenai and starting a Meter, beyond importing torch and lightning themselves
   (median of fresh interpreters). Target: <= 0.3 s. CodeCarbon measured the same way.
4. Hook time: the time spent inside EnergyMonitor's hooks during training, per step, against the median bare step
   of a 3-layer MLP (batch 64, one torch thread: a step of a few ms, where a reading weighs most), bare and metered
   fits interleaved. Ratio = (bare step + hook time per step) / bare step. Target: <= 1.01x.
5. The cost of one reading: ``Meter().sample()`` as discovered here (on a GPU-less machine without RAPL: the CPU and
   DRAM estimates), median ms of many. ``--against DIR`` (a checkout of another commit's package, e.g. from
   ``git archive``) alternates fresh interpreters of both trees, so the two are compared side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
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
        self.cpu_times: list[float] = []  # the main thread's CPU time: what other processes' load does not stretch
        self.rss: dict[int, int] = {}
        self.rss_at = rss_at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.t, self.cpu_t = time.perf_counter(), time.thread_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter() - self.t)
        self.cpu_times.append(time.thread_time() - self.cpu_t)
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
                    callbacks.insert(0, EnergyMonitor(grid={"country": "FR"}, verbose=False))
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


class HookTimer(EnergyMonitor):
    """An EnergyMonitor that times its training-batch hooks: ``seconds[i]`` (``cpu_seconds[i]``: the thread's CPU
    time) is the time spent in them at step i."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []

    def on_train_batch_start(self, *args, **kwargs):
        t0, cpu0 = time.perf_counter(), time.thread_time()
        super().on_train_batch_start(*args, **kwargs)
        self.seconds.append(time.perf_counter() - t0)
        self.cpu_seconds.append(time.thread_time() - cpu0)

    def on_train_batch_end(self, *args, **kwargs):
        t0, cpu0 = time.perf_counter(), time.thread_time()
        super().on_train_batch_end(*args, **kwargs)
        self.seconds[-1] += time.perf_counter() - t0
        self.cpu_seconds[-1] += time.thread_time() - cpu0


HOOK_DIMS = (512, 1024, 1024, 10)


def hook_time(rounds: int, steps: int) -> dict[str, float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model, data = MLP(HOOK_DIMS), loader(64 * 100, HOOK_DIMS[0], 64)
        bare: list[float] = []
        bare_cpu: list[float] = []
        hooks: list[list[float]] = []
        hooks_cpu: list[list[float]] = []
        with tempfile.TemporaryDirectory() as root:
            for _ in range(rounds):
                timer = StepTimer()
                fit(model, data, [timer], steps, root)
                bare.extend(timer.times[5:])
                bare_cpu.extend(timer.cpu_times[5:])
                monitor = HookTimer(country="FR", verbose=False)
                fit(model, data, [monitor], steps, root)
                hooks.append(monitor.seconds)
                hooks_cpu.append(monitor.cpu_seconds)
    finally:
        torch.set_num_threads(threads)
    step_s = statistics.median(bare)
    every = 50  # the trainer's log_every_n_steps: a reading at every 50th step
    per_step_s = sum(map(sum, hooks)) / sum(map(len, hooks))
    step_cpu_s, per_step_cpu_s = statistics.median(bare_cpu), sum(map(sum, hooks_cpu)) / sum(map(len, hooks_cpu))
    return {
        "bare step (ms)": 1e3 * step_s,
        "hooks per step (ms)": 1e3 * per_step_s,
        "step without reading (ms)": 1e3 * statistics.median(t for h in hooks for i, t in enumerate(h) if i % every),
        "first reading (ms)": 1e3 * statistics.median(h[every - 1] for h in hooks),
        "later readings (ms)": 1e3 * statistics.median(t for h in hooks for t in h[2 * every - 1 :: every]),
        "hook-time ratio": (step_s + per_step_s) / step_s,
        "bare step CPU (ms)": 1e3 * step_cpu_s,
        "hooks per step CPU (ms)": 1e3 * per_step_cpu_s,
        "hook-CPU ratio": (step_cpu_s + per_step_cpu_s) / step_cpu_s,
    }


def in_tree(path: str, args: list[str]) -> str:
    """Run this script with ``args`` in a fresh interpreter that imports the package from ``path``."""
    env = dict(os.environ, PYTHONPATH=path)
    return subprocess.run(
        [sys.executable, "-P", __file__, *args], env=env, check=True, capture_output=True, text=True
    ).stdout


READING = (
    "import statistics, time, warnings; warnings.simplefilter('ignore'); from lightning_greenai import Meter; "
    "m = Meter(report=False).start(); [m.sample() for _ in range(20)]; t = []\n"
    "for _ in range({reads}): t0 = time.perf_counter(); m.sample(); t.append(time.perf_counter() - t0)\n"
    "print(statistics.median(t))"
)


def reading_cost(rounds: int, reads: int, trees: dict[str, str]) -> dict[str, float]:
    seconds: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(rounds):
        for name, path in trees.items():  # alternated: machine-load drift hits both alike
            env = dict(os.environ, PYTHONPATH=path)
            out = subprocess.run(
                [sys.executable, "-P", "-c", READING.format(reads=reads)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            seconds[name].append(float(out.stdout.split()[-1]))
    return {name: 1e3 * statistics.median(s) for name, s in seconds.items()}


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
    parser.add_argument(
        "--only", default="steps,memory,startup,hooks,reading", help="comma-separated sections to run (default: all)"
    )
    parser.add_argument("--against", help="hooks and reading: also time this checkout of the package, alternated")
    parser.add_argument("--json", action="store_true", help="hooks: print the figures as one JSON line")
    args = parser.parse_args()
    sections = set(args.only.split(","))
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    rounds, steps, mem_steps, runs = (1, 30, 1200, 1) if args.quick else (4, 150, 10_000, 5)
    hook_rounds, hook_steps, reads = (1, 150, 50) if args.quick else (4, 500, 300)

    if "steps" in sections:
        med = step_times(rounds, steps)
        print(f"median step time ({rounds} interleaved blocks of {steps} steps each):")
        for mode, t in med.items():
            print(f"  {mode:<14} {1e3 * t:8.2f} ms   ratio to bare {t / med['bare']:.4f}")
    if "memory" in sections:
        mem = memory(mem_steps)
        print(f"RSS growth from step 1,000 to step {mem_steps:,} (monitor sampling every step):")
        for mode, mib in mem.items():
            print(f"  {mode:<14} {mib:+8.2f} MiB")
    if "startup" in sections:
        start = startup(runs)
        print(f"start-up beyond `import torch, lightning` (median of {runs} fresh interpreters):")
        for name, s in start.items():
            print(f"  {name:<27} {s:6.3f} s")
    if "hooks" in sections and args.json:
        print(json.dumps(hook_time(hook_rounds, hook_steps)))
    elif "hooks" in sections:
        trees = {"this tree": os.getcwd()} | ({} if args.against is None else {args.against: args.against})
        runs_of: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for _ in range(1 if args.quick else 3):
            for name, path in trees.items():  # fresh interpreters, alternated
                flags = ["--only", "hooks", "--json", *(["--quick"] if args.quick else [])]
                runs_of[name].append(json.loads(in_tree(os.path.abspath(path), flags).splitlines()[-1]))
        print(
            f"EnergyMonitor's hooks, MLP {'-'.join(map(str, HOOK_DIMS))}, batch 64, 1 thread: {hook_rounds} x "
            f"{hook_steps} steps, bare and metered fits interleaved, a median of {len(runs_of['this tree'])} "
            "alternated interpreters:"
        )
        for name, results in runs_of.items():
            figures = {key: statistics.median(r[key] for r in results) for key in results[0]}
            print(f"  {name}: " + ", ".join(f"{key} {value:.4f}" for key, value in figures.items()))
            for key in ("hook-time ratio", "hook-CPU ratio"):
                print(f"    {key} of each run: {', '.join(f'{r[key]:.4f}' for r in results)}")
    if "reading" in sections:
        trees = {"this tree": os.getcwd()} | ({} if args.against is None else {args.against: args.against})
        cost = reading_cost(runs, reads, {name: os.path.abspath(path) for name, path in trees.items()})
        print(f"Meter().sample(), median of {reads} readings, median of {runs} alternated interpreters:")
        for name, ms in cost.items():
            print(f"  {name:<27} {ms:6.3f} ms")


if __name__ == "__main__":
    main()
