from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.demos.boring_classes import BoringModel
from omegaconf import OmegaConf

from lightning_greenai.reporting.sweep_files import ReportedSweep as BudgetSweep
from lightning_greenai.sensors.fake import FakeClock
from lightning_greenai.trial import account as trial_module


class ClockedModel(BoringModel):
    """A BoringModel whose every training/validation/test step advances a fake clock, so energy is exact."""

    def __init__(self, clock: FakeClock, train_step_s: float = 1.0, eval_step_s: float = 0.5) -> None:
        super().__init__()
        self.clock, self.train_step_s, self.eval_step_s = clock, train_step_s, eval_step_s

    def training_step(self, batch, batch_idx):
        self.clock.advance(self.train_step_s)
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        self.clock.advance(self.eval_step_s)
        return super().validation_step(batch, batch_idx)

    def test_step(self, batch, batch_idx):
        self.clock.advance(self.eval_step_s)
        return super().test_step(batch, batch_idx)


SERVICES = ("slurm", "ray", "postgresql", "prometheus")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that starts a service ``services``, so ``-m "not services"`` is the fast subset."""
    for item in items:
        if any(item.get_closest_marker(name) for name in SERVICES):
            item.add_marker(pytest.mark.services)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock(100.0)


@pytest.fixture
def tiny_trainer(tmp_path):
    def make(**overrides) -> L.Trainer:
        kwargs = dict(
            default_root_dir=tmp_path,
            max_steps=5,
            limit_val_batches=2,
            num_sanity_val_steps=0,
            enable_progress_bar=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            accelerator="cpu",
            devices=1,
            log_every_n_steps=1,
        )
        kwargs.update(overrides)
        return L.Trainer(**kwargs)

    return make


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def in_sweep_job(tmp_path, monkeypatch):
    """Make this process look like job 7 of a greenai sweep in tmp_path (what run_job sets up in a real job)."""
    cfg = OmegaConf.create(
        {
            "hydra": {
                "mode": RunMode.MULTIRUN,
                "sweeper": {
                    "_target_": "hydra_plugins.greenai_sweeper.greenai_sweeper.GreenAISweeper",
                    "heartbeat_s": 0.0,
                },
                "sweep": {"dir": str(tmp_path)},
                "job": {"num": 7},
            }
        }
    )
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: cfg.hydra))
    monkeypatch.setattr(trial_module, "_REPORTERS", {})
    return tmp_path


@pytest.fixture
def sweep_dir(tmp_path):
    sweep = BudgetSweep(
        strategy="random",
        max_trials=8,
        max_batch_size=2,
        poll_s=3600,
        heartbeat_s=0,
        budget={"energy_kwh": "1 kWh"},
        grid={"country": "FR"},
    )
    out = tmp_path / "sweep"
    sweep.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(out)}}})
    from tests.sweep.test_overshoot_property import LockstepLauncher

    sweep.launcher = LockstepLauncher(sweep, out, [[1.0] * (i + 1) for i in range(5)])
    sweep.sweep(["x=choice(0,1,2,3,4)"])
    return out
