"""A tabular learning-curve benchmark from real runs. Run: python benchmarks/learning_curves.py [--configs 240]

Trains configurations drawn from a seeded space of two model families (an MLP and a small CNN; learning rate,
weight decay, optimizer, batch size, width, depth) on scikit-learn's bundled digits (the split and data module of
``examples/digits.py``) with Lightning, for ``--epochs`` epochs each, and records after every epoch the validation
accuracy, the FLOPs counted by ``FlopMonitor`` and the energy metered by ``EnergyMonitor`` in that epoch (its training
and its validation). One JSON line per configuration goes to ``benchmarks/data/digits_curves.jsonl`` (the first line
is the table's metadata), appended and flushed as each configuration finishes: the script resumes where a killed run
stopped (a kill loses at most the configuration in progress), and the configurations are the same whatever was
resumed, since each is drawn from its own seed.

The table is what the sweeper's strategies are replayed against (``benchmarks/search_energy.py``), as LCBench or
NAS-Bench-201 are for other searches: no training, every trial's per-epoch score and energy read from here.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import random
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from digits import DigitsClassifier, DigitsDataModule  # noqa: E402

from lightning_greenai import EnergyMonitor, FlopMonitor  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "data" / "digits_curves.jsonl"
#: Bumped when the space, the model or what a line holds changes: a table of another version is never appended to.
VERSION = 1
SPACE = {
    "family": ["mlp", "cnn"],
    "optimizer": ["adam", "sgd"],
    "lr": "log-uniform [1e-4, 0.3]",
    "weight_decay": "log-uniform [1e-6, 0.1]",
    "batch_size": [16, 32, 64, 128, 256],
    "mlp": {"width": [16, 32, 64, 128, 256], "depth": [1, 2, 3]},
    "cnn": {"width": [4, 8, 16, 32], "depth": [1, 2]},
}


def draw_config(config_id: int, seed: int) -> dict[str, Any]:
    """The configuration ``config_id`` of the table: drawn from its own generator, so a resume draws the same."""
    rng = random.Random(seed * 1_000_003 + config_id)
    family = rng.choice(SPACE["family"])
    sizes = SPACE[family]
    return {
        "id": config_id,
        "family": family,
        "optimizer": rng.choice(SPACE["optimizer"]),
        "lr": float(f"{10 ** rng.uniform(math.log10(1e-4), math.log10(0.3)):.3g}"),
        "weight_decay": float(f"{10 ** rng.uniform(-6, -1):.3g}"),
        "batch_size": rng.choice(SPACE["batch_size"]),
        "width": rng.choice(sizes["width"]),
        "depth": rng.choice(sizes["depth"]),
    }


def build_net(family: str, width: int, depth: int) -> nn.Module:
    """An MLP of ``depth`` hidden layers of ``width``, or a CNN of ``depth`` 3x3 conv blocks of ``width`` channels."""
    if family == "mlp":
        layers: list[nn.Module] = []
        size = 64
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ReLU()]
            size = width
        return nn.Sequential(*layers, nn.Linear(size, 10))
    layers = [nn.Unflatten(1, (1, 8, 8))]
    channels, side = 1, 8
    for _ in range(depth):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        channels, side = width, side // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * side * side, 10))


class CurveModel(DigitsClassifier):
    """The example's classifier (its steps and ``val/acc``) with the configuration's network and optimizer."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config["width"], config["lr"])
        self.config = config
        self.net = build_net(config["family"], config["width"], config["depth"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        c = self.config
        if c["optimizer"] == "adam":
            return torch.optim.AdamW(self.parameters(), lr=c["lr"], weight_decay=c["weight_decay"])
        return torch.optim.SGD(self.parameters(), lr=c["lr"], momentum=0.9, weight_decay=c["weight_decay"])


class CachedDigits(DigitsDataModule):
    """The example's digits data module, loaded once and kept in memory for every configuration."""

    def setup(self, stage: str) -> None:
        if not hasattr(self, "train_set"):
            super().setup(stage)


class EpochRecorder(L.Callback):
    """After each epoch's validation: the score, and the energy and FLOPs the monitors metered in that epoch.

    The EnergyMonitor reads its sensors only when asked here (``log_every_n_steps`` is set beyond the fit), so each
    epoch's energy is one reading's difference: its training and its validation.
    """

    def __init__(self, energy: EnergyMonitor, flops: FlopMonitor) -> None:
        self.energy, self.flops = energy, flops
        self.score: list[float] = []
        self.energy_j: list[float] = []
        self.flop_counts: list[float] = []
        self._last_j = self._last_flops = 0.0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.energy.every_n_steps_work(trainer, pl_module)  # one reading of the monitor's sensors, FLOPs synced
        spend = self.energy.spend
        joules = sum(spend.energy_j.values())
        flops = sum(v for k, v in self.flops.totals.items() if not k.endswith("recompute"))
        self.score.append(float(trainer.callback_metrics["val/acc"]))
        self.energy_j.append(joules - self._last_j)
        self.flop_counts.append(flops - self._last_flops)
        self._last_j, self._last_flops = joules, flops


def run_config(
    config: dict[str, Any], data: CachedDigits, epochs: int, seed: int, extra: Sequence[L.Callback] = ()
) -> tuple[dict[str, Any], bool]:
    """Train one configuration; return its table line and whether its energy is an estimate.

    ``extra`` callbacks join the trainer after the table's own (``benchmarks/train_trial.py`` adds ``BudgetStopping``,
    through which a sweep's trial reports its score and is pruned); they change no number the table records.
    """
    L.seed_everything(seed * 1_000_003 + config["id"], verbose=False)
    data.batch_size = config["batch_size"]
    energy = EnergyMonitor(verbose=None, prog_bar=False, per_device=False, log_every_n_steps=10**9)
    flops = FlopMonitor(log_every_n_steps=10**9)
    recorder = EpochRecorder(energy, flops)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        callbacks=[energy, flops, recorder, *extra],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    started = time.perf_counter()
    model = CurveModel(config)
    trainer.fit(model, data)
    line = {
        **config,
        "parameters": sum(p.numel() for p in model.parameters()),
        "wall_s": round(time.perf_counter() - started, 2),
        "score": [round(s, 4) for s in recorder.score],
        "energy_j": [float(f"{e:.3g}") for e in recorder.energy_j],
        "mflops": [float(f"{f / 1e6:.4g}") for f in recorder.flop_counts],
    }
    return line, energy.spend.is_estimate


def metadata(epochs: int, seed: int) -> dict[str, Any]:
    """The table's first line: what it holds, how it was made, on what."""
    return {
        "table": "digits learning curves",
        "version": VERSION,
        "epochs": epochs,
        "seed": seed,
        "space": SPACE,
        "data": "scikit-learn load_digits (1,797 8x8 images), split 80/20 by examples/digits.py (seed 0): "
        "1,438 train, 359 validation",
        "score": "validation accuracy after each epoch (val/acc), higher is better",
        "energy_j": "energy metered by EnergyMonitor in each epoch (its training and validation), joules, 3 "
        "significant figures; the first epoch also pays the run's start (the first step's FLOP count, warm-up)",
        "mflops": "millions of FLOPs counted by FlopMonitor in each epoch (training forward, backward and optimizer "
        "estimate, validation forward), 4 significant figures",
        "wall_s": "seconds of the whole fit (Trainer set-up included)",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "lightning": L.__version__},
        "energy_is_estimate": None,  # set from the first configuration's spend (see `energy_note`)
        "energy_note": "",
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def read_table(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The metadata and the finished configurations of a table; a torn last line (a kill mid-write) is dropped."""
    if not path.exists():
        return None, []
    lines = path.read_text().splitlines()
    rows: list[dict[str, Any]] = []
    for number, text in enumerate(lines):
        try:
            rows.append(json.loads(text))
        except json.JSONDecodeError:
            if number != len(lines) - 1:
                raise
    if rows and "table" in rows[0]:
        return rows[0], rows[1:]
    return None, rows


def _rewrite(path: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in [meta, *rows]))
    os.replace(tmp, path)


def _append(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=250, help="how many configurations the table holds")
    parser.add_argument("--epochs", type=int, default=27)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a tiny model is fastest on one thread, and the CPU estimate charges the work only
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|LeafSpec|GPU available).*")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta, rows = read_table(args.out)
    if meta is not None and (meta["version"], meta["epochs"], meta["seed"]) != (VERSION, args.epochs, args.seed):
        raise SystemExit(f"{args.out} holds another table ({meta['version']=}, {meta['epochs']=}, {meta['seed']=})")
    meta = meta or metadata(args.epochs, args.seed)
    _rewrite(args.out, meta, rows)  # drops a torn last line
    done = {r["id"] for r in rows}
    data = CachedDigits()
    started = time.perf_counter()
    for config_id in range(args.configs):
        if config_id in done:
            continue
        line, estimate = run_config(draw_config(config_id, args.seed), data, args.epochs, args.seed)
        if meta["energy_is_estimate"] is None:
            meta["energy_is_estimate"] = estimate
            meta["energy_note"] = (
                "ESTIMATE: no energy counter was readable, so CPU energy is TDP / logical CPUs x CPU-seconds and "
                "DRAM energy 0.375 W/GB of resident memory (lightning_greenai.sensors.estimate); ratios between "
                "configurations hold better than absolute joules"
                if estimate
                else "measured by energy counters"
            )
            _rewrite(args.out, meta, rows)
        _append(args.out, line)
        rows.append(line)
        new = len(rows) - len(done)
        per = (time.perf_counter() - started) / new
        print(
            f"config {config_id}: {line['family']} best {max(line['score']):.3f}, {sum(line['energy_j']):.3g} J, "
            f"{line['wall_s']} s; {per:.1f} s per config, about {per * (args.configs - len(rows)) / 60:.0f} min left",
            flush=True,
        )
    if len(rows) >= args.configs and "finished" not in meta:
        meta["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        _rewrite(args.out, meta, rows)


if __name__ == "__main__":
    main()
