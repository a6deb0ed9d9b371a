import time

from lightning_greenai import Method
from lightning_greenai.sensors import discover_sensors
from lightning_greenai.sensors.apportion import ApportionedSensor
from lightning_greenai.sensors.fake import FakeSensor, make_rapl_tree


def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_apportioned_share_is_at_most_the_counter_and_follows_cpu_time():
    counter = {"j": 0.0}
    sensor = ApportionedSensor(FakeSensor("cpu:package-0", lambda: counter["j"]))
    burn(0.2)
    counter["j"] = 100.0
    share = sensor.read_energy_j()
    assert 0.0 < share <= 100.0  # this process used CPU in the window: it gets part (or all) of the 100 J
    time.sleep(0.2)  # idle: the host's busy time comes from others, if any
    counter["j"] = 200.0
    assert sensor.read_energy_j() - share <= 100.0 + 1e-9  # float rounding of the running sum
    assert sensor.method is Method.COUNTER
    assert sensor.uid.startswith("cpu:package-0@pid")


def test_discovery_apportions_rapl_in_a_sweep(tmp_path):
    root = make_rapl_tree(tmp_path, packages=(0,))
    found = discover_sensors(gpus=None, rapl_root=root, apportion_host=True)
    assert all(isinstance(s, ApportionedSensor) for s in found.sensors)
    assert [s.name for s in found.sensors] == ["cpu:package-0", "dram:0"]
    assert "apportioned" in found.summary()


def test_a_share_never_exceeds_the_counter_and_never_decreases():
    counter = {"j": 0.0}
    sensor = ApportionedSensor(FakeSensor("cpu:package-0", lambda: counter["j"]))
    readings = []
    for step in range(1, 6):
        burn(0.02)
        counter["j"] = 10.0 * step
        readings.append(sensor.read_energy_j())
    assert readings == sorted(readings)
    assert readings[-1] <= 50.0 + 1e-9
