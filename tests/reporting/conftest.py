import pytest

from lightning_greenai import EnergyMonitor, FlopMonitor
from lightning_greenai.sensors.fake import ConstantPowerSensor
from tests.conftest import ClockedModel


@pytest.fixture
def run_dir(tmp_path, tiny_trainer, fake_clock):
    mon = EnergyMonitor(
        grid={"country": "DE"},
        sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)],
        clock=fake_clock,
        verbose=False,
    )
    tiny_trainer(callbacks=[mon, FlopMonitor()], max_steps=5).fit(ClockedModel(fake_clock))
    return tmp_path
