"""Check on a real NVIDIA GPU what only a GPU can show. Run: PYTHONPATH=. python benchmarks/gpu_check.py [OUT_DIR]

1. The EnergyMonitor's GPU energy over a ~30 s Lightning fit against the NVML energy counter read directly around
   the same window (target: within 1 %), and against 10 Hz power polling integrated over that window.
2. A 50 ms window: shorter than the counter's update period, so it must be priced as power x time and flagged.
3. UUID mapping (torch <-> NVML), MIG mode, power limit.
4. Step-time overhead of the EnergyMonitor on the GPU (bare and metered blocks alternated, median step time).
5. The uncertainty line: the interval the monitor gives the fit's GPU energy (counter period, resolution, 5 %
   calibration) and whether the direct counter and the 10 Hz polling fall inside it; the 50 ms window's interval.

Writes gpu_check.json into OUT_DIR (default: the current directory) and prints a summary. Changes no GPU setting.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import pynvml
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_greenai import EnergyMonitor, Meter
from lightning_greenai.sensors.nvml import NVMLEnergySensor
from lightning_greenai.sensors.sampling import SampledPowerSensor

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")


class Noise(Dataset):
    def __init__(self, n: int, dim: int) -> None:
        self.n, self.dim = n, dim

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class Burner(L.LightningModule):
    """A stack of bf16 matmuls: steady, heavy GPU load."""

    def __init__(self, dim: int = 4096, depth: int = 6, batch: int = 8192) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[nn.Sequential(nn.Linear(dim, dim), nn.GELU()) for _ in range(depth)])
        self.dim, self.batch = dim, batch

    def training_step(self, batch, batch_idx):
        x = torch.randn(self.batch, self.dim, device=self.device, dtype=torch.bfloat16)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return self.layers(x).float().pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-4)

    def train_dataloader(self):
        return DataLoader(Noise(10**9, self.dim), batch_size=1)


class DirectNVML(L.Callback):
    """Reads the NVML counter directly, and polls power at 10 Hz, over exactly the fit."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.poller = SampledPowerSensor("poll", "poll", lambda: pynvml.nvmlDeviceGetPowerUsage(handle) / 1e3)

    def on_fit_start(self, trainer, pl_module):
        torch.cuda.synchronize()
        self.t0 = time.monotonic()
        self.e0_mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        self.p0_j = self.poller.read_energy_j()

    def on_fit_end(self, trainer, pl_module):
        torch.cuda.synchronize()
        self.energy_j = (pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) - self.e0_mj) / 1e3
        self.polled_j = self.poller.read_energy_j() - self.p0_j
        self.seconds = time.monotonic() - self.t0
        self.poller.close()


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        torch.cuda.synchronize()
        self.t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self.t)


def trainer(callbacks, **kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="gpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        **kwargs,
    )


def main() -> None:
    pynvml.nvmlInit()
    torch.backends.cuda.matmul.allow_tf32 = True
    index = torch.cuda.current_device()
    uuid_torch = f"GPU-{torch.cuda.get_device_properties(index).uuid}"
    handle = pynvml.nvmlDeviceGetHandleByUUID(uuid_torch)
    info = {
        "device": torch.cuda.get_device_name(index),
        "driver": pynvml.nvmlSystemGetDriverVersion(),
        "torch": torch.__version__,
        "uuid_torch": uuid_torch,
        "uuid_nvml": pynvml.nvmlDeviceGetUUID(handle),
        "architecture": pynvml.nvmlDeviceGetArchitecture(handle),
        "power_limit_w": pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1e3,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    try:
        info["mig_mode"] = pynvml.nvmlDeviceGetMigMode(handle)[0]
    except pynvml.NVMLError as err:
        info["mig_mode"] = f"n/a ({err})"
    print(json.dumps(info, indent=2), flush=True)

    # 1. ~30 s fit: monitor vs direct counter vs polling
    monitor = EnergyMonitor(grid={"country": "US"}, verbose=True)
    direct = DirectNVML(handle)
    trainer([monitor, direct], max_time={"seconds": 30}).fit(Burner())
    gpu_j = monitor.spend.energy_j["gpu:0"]
    check = {
        "window_s": direct.seconds,
        "monitor_gpu_j": gpu_j,
        "monitor_method": monitor.spend.methods["gpu:0"].value,
        "direct_counter_j": direct.energy_j,
        "polled_10hz_j": direct.polled_j,
        "monitor_vs_counter_pct": 100 * (gpu_j - direct.energy_j) / direct.energy_j,
        "polled_vs_counter_pct": 100 * (direct.polled_j - direct.energy_j) / direct.energy_j,
        "mean_power_w": direct.energy_j / direct.seconds,
    }
    print(json.dumps(check, indent=2), flush=True)

    # 5. the uncertainty line: the monitor's interval, and whether the other two readings fall inside it
    low_j, high_j = monitor.spend.bounds_of("gpu:0")
    uncertainty = {
        "gpu_j": gpu_j,
        "low_j": low_j,
        "high_j": high_j,
        "half_width_pct": 100 * (high_j - low_j) / 2 / gpu_j,
        "direct_counter_inside": low_j <= direct.energy_j <= high_j,
        "polled_10hz_inside": low_j <= direct.polled_j <= high_j,
    }
    print("uncertainty:", uncertainty, flush=True)

    # 2. a 50 ms window
    sensor = NVMLEnergySensor(pynvml, handle, "gpu:0", uuid_torch)
    with Meter([sensor]) as meter:
        time.sleep(0.05)
    short = {
        "energy_j": meter.spend.energy_j["gpu:0"],
        "method": meter.spend.methods["gpu:0"].value,
        "duration_s": meter.spend.duration_s,
        "bounds_j": list(meter.spend.bounds_of("gpu:0")),
    }
    print("short window:", short, flush=True)

    # 4. overhead: alternate bare and metered blocks of 150 steps, median step time of each kind
    bare_t: list[float] = []
    metered_t: list[float] = []
    model = Burner(dim=4096, depth=4, batch=4096)
    for block in range(6):
        timer = StepTimer()
        cbs = [timer] if block % 2 == 0 else [EnergyMonitor(verbose=False), timer]
        trainer(cbs, max_steps=150, log_every_n_steps=10).fit(model)
        (bare_t if block % 2 == 0 else metered_t).extend(timer.times[10:])
    overhead = {
        "bare_median_step_ms": 1e3 * statistics.median(bare_t),
        "metered_median_step_ms": 1e3 * statistics.median(metered_t),
        "ratio": statistics.median(metered_t) / statistics.median(bare_t),
        "log_every_n_steps": 10,
    }
    print("overhead:", overhead, flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gpu_check.json").write_text(
        json.dumps(
            {**info, "fit": check, "uncertainty": uncertainty, "short_window": short, "overhead": overhead}, indent=2
        )
    )


if __name__ == "__main__":
    main()
