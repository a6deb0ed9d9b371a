"""BudgetStopping's per-batch check inside a sweep's trial, side by side. Run: python benchmarks/stopping_overhead.py

Each round runs one trial of a greenai sweep (a real Hydra multirun, the file transport) that trains a small MLP
(64-64-10, batch 64, one torch thread: a step of under a millisecond, where a per-batch check weighs most) for 400
steps with an EnergyMonitor and a BudgetStopping, and times the time spent in BudgetStopping's batch hook (it checks
the sweep's STOP, its own prune signal and its allowance at every batch, as the overshoot promise needs). Reported:
the median step without the hook and the hook's median, and their ratio ``(step + hook) / step``.

``--against DIR`` (a checkout of another commit's package, e.g. from ``git archive``) runs the same trial with that
tree first on ``PYTHONPATH``, alternated with this one, so the two are compared in one run on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRIAL = "GREENAI_STOPPING_OVERHEAD_TRIAL"  # set: this process is the sweep (and its trial), not the driver


def trial() -> None:
    """The sweep: one trial, timed; prints one JSON line of its figures."""
    import hydra
    import lightning as L
    import torch
    from omegaconf import DictConfig
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_greenai import BudgetStopping, EnergyMonitor

    class MLP(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=1e-3)

    class TimedStopping(BudgetStopping):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_train_batch_end(self, *args, **kwargs):
            t0 = time.perf_counter()
            super().on_train_batch_end(*args, **kwargs)
            self.seconds.append(time.perf_counter() - t0)

    class StepTimer(L.Callback):  # first in the list: its batch end comes before the others' hooks
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._t0 = 0.0

        def on_train_batch_start(self, *args):
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, *args):
            self.seconds.append(time.perf_counter() - self._t0)

    @hydra.main(version_base="1.3", config_path=None, config_name=None)
    def main(cfg: DictConfig) -> float:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        data = DataLoader(TensorDataset(torch.randn(64 * 400, 64), torch.randint(0, 10, (64 * 400,))), batch_size=64)
        steps, stopping = StepTimer(), TimedStopping()
        trainer = L.Trainer(
            max_steps=400, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[steps, EnergyMonitor(verbose=False), stopping],
        )  # fmt: skip
        trainer.fit(MLP(), data)
        figures = {"step_ms": 1e3 * statistics.median(steps.seconds[5:])}
        figures["hook_ms"] = 1e3 * statistics.median(stopping.seconds[5:])
        print("FIGURES " + json.dumps(figures), flush=True)
        return 0.0

    main()


def run_trial(tree: Path) -> dict[str, float]:
    """One sweep of one trial with ``tree`` first on the path; its figures."""
    env = {**os.environ, TRIAL: "1", "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as sweep_dir:
        proc = subprocess.run(
            [
                sys.executable, __file__, "-m", "hydra/sweeper=greenai", "+x=1",
                "+hydra.sweeper.budget.energy_kwh=1 kWh", f"hydra.sweep.dir={sweep_dir}",
                "hydra.sweeper.report=false", "hydra.sweeper.log_curves=false",
            ],
            env=env, capture_output=True, text=True, timeout=600, cwd=sweep_dir,
        )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("FIGURES ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the trial with {tree} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("FIGURES "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", type=Path, help="another checkout's tree, alternated with this one")
    args = parser.parse_args()
    trees = {"this tree": ROOT} | ({"against": args.against} if args.against else {})
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            runs[name].append(run_trial(tree))
    print(f"BudgetStopping's batch hook in a sweep's trial, MLP 64-64-10, batch 64, 1 thread: medians of {args.rounds}")
    for name, figures in runs.items():
        step = statistics.median(f["step_ms"] for f in figures)
        hook = statistics.median(f["hook_ms"] for f in figures)
        ratio = (step + hook) / step
        print(f"  {name:<10} step {step:.3f} ms, hook {1e3 * hook:.1f} us, (step + hook) / step {ratio:.3f}x")


if __name__ == "__main__":
    if os.environ.get(TRIAL):
        trial()
    else:
        main()
