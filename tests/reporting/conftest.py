import pytest
from omegaconf import OmegaConf

from lightning_greenai import EnergyMonitor, FlopMonitor
from lightning_greenai.budget.sweep import BudgetSweep
from lightning_greenai.sensors.fake import ConstantPowerSensor
from tests.conftest import ClockedModel
from tests.sweeper.test_overshoot_property import LockstepLauncher


@pytest.fixture
def run_dir(tmp_path, tiny_trainer, fake_clock):
    mon = EnergyMonitor(
        country="DE", sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)], clock=fake_clock, verbose=False
    )
    tiny_trainer(callbacks=[mon, FlopMonitor()], max_steps=5).fit(ClockedModel(fake_clock))
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
    sweep.launcher = LockstepLauncher(sweep, out, [[1.0] * (i + 1) for i in range(5)])
    sweep.sweep(["x=choice(0,1,2,3,4)"])
    return out
