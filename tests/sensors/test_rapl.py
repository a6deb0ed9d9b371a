from pathlib import Path

import pytest

from lightning_greenai import GreenAIWarning, Meter, Method
from lightning_greenai.sensors import discover_rapl, discover_sensors
from lightning_greenai.sensors.fake import FakeClock, make_rapl_tree
from lightning_greenai.sensors.rapl import RAPLSensor


def write(path: Path, uj: int) -> None:
    (path / "energy_uj").write_text(f"{uj}\n")


def test_package_and_dram_are_read_core_is_skipped(tmp_path):
    root = make_rapl_tree(tmp_path, packages=(0, 1), dram=True)
    found = discover_rapl(root)
    assert sorted(s.name for s in found.sensors) == ["cpu:package-0", "cpu:package-1", "dram:0", "dram:1"]
    assert all(s.method is Method.COUNTER for s in found.sensors)


def test_energy_is_the_counter_delta_in_joules(tmp_path):
    root = make_rapl_tree(tmp_path, packages=(0,), energy_uj=1_000_000)
    sensor = RAPLSensor(root / "intel-rapl:0", "cpu:package-0")
    write(root / "intel-rapl:0", 3_500_000)
    assert sensor.read_energy_j() == 2.5
    write(root / "intel-rapl:0", 4_000_000)
    assert sensor.read_energy_j() == 3.0


def test_counter_wrap_around_uses_max_energy_range(tmp_path):
    root = make_rapl_tree(tmp_path, packages=(0,), energy_uj=900_000_000, max_energy_range_uj=999_999_999)
    clock = FakeClock()
    sensor = RAPLSensor(root / "intel-rapl:0", "cpu:package-0")
    assert sensor.wrap_j == pytest.approx(1000.0)  # max_energy_range_uj + 1 uJ
    with Meter([sensor], clock=clock, process=False) as meter:
        clock.advance(10.0)
        write(root / "intel-rapl:0", 100_000_000)  # wrapped: 100 J to the top, then 100 J
        assert meter.sample().energy_j["cpu:package-0"] == pytest.approx(200.0)
        clock.advance(10.0)
        write(root / "intel-rapl:0", 999_000_000)
        assert meter.sample().energy_j["cpu:package-0"] == pytest.approx(1099.0)
        clock.advance(10.0)
        write(root / "intel-rapl:0", 500)  # wraps again
    assert meter.spend.energy_j["cpu:package-0"] == pytest.approx(1100.0005)


def test_mmio_copy_of_a_package_is_counted_once(tmp_path):
    root = make_rapl_tree(tmp_path, packages=(0,), mmio=True, dram=False)
    found = discover_rapl(root)
    assert [s.name for s in found.sensors] == ["cpu:package-0"]
    assert any("MMIO copy" in note for note in found.notes)


def test_psys_is_not_summed_with_packages(tmp_path):
    root = make_rapl_tree(tmp_path, packages=(0,), psys=True, dram=False)
    assert [s.name for s in discover_rapl(root).sensors] == ["cpu:package-0"]


def test_psys_alone_is_used(tmp_path):
    root = make_rapl_tree(tmp_path, packages=(), psys=True)
    assert [s.name for s in discover_rapl(root).sensors] == ["cpu:psys"]


def test_mirrored_per_die_counters_are_counted_once(tmp_path):
    root = make_rapl_tree(tmp_path, packages=(0, 1), energy_uj=[5_000_000_000, 5_000_000_000], dram=False)
    found = discover_rapl(root)
    assert [s.name for s in found.sensors] == ["cpu:package-0"]
    assert any("mirrors" in note for note in found.notes)


def test_permission_denied_warns_with_the_fix_and_falls_back_to_an_estimate(tmp_path):
    root = make_rapl_tree(tmp_path, packages=(0,))

    def reader(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return path.read_text()

    found = discover_sensors(gpus=None, rapl_root=root, rapl_reader=reader)
    assert [s.name for s in found.sensors] == ["cpu:estimate", "dram:estimate"]
    assert found.warnings and "chmod a+r /sys/class/powercap" in found.warnings[0]
    meter = Meter(found.sensors, unavailable=found.unavailable).start()
    assert meter.stop().is_estimate


def test_no_powercap_tree_gives_an_estimate(tmp_path):
    found = discover_sensors(gpus=None, rapl_root=tmp_path / "missing")
    assert {s.method for s in found.sensors} == {Method.ESTIMATE}
    assert "RAPL: no powercap zones" in found.summary()


def test_package_without_dram_zone_marks_dram_unavailable(tmp_path):
    root = make_rapl_tree(tmp_path, packages=(0,), dram=False)
    found = discover_sensors(gpus=None, rapl_root=root)
    assert found.unavailable == ["dram"]
    clock = FakeClock()
    with Meter(found.sensors, unavailable=found.unavailable, clock=clock) as meter:
        write(root / "intel-rapl:0", 2_000_000)
        clock.advance(1.0)  # longer than the counter's 1 ms update period: not flagged
    assert meter.spend.energy_j == {"cpu:package-0": 2.0}
    assert meter.spend.methods["dram"] is Method.UNAVAILABLE
    assert not meter.spend.is_estimate


def test_a_window_shorter_than_the_counter_period_is_flagged(tmp_path):
    root = make_rapl_tree(tmp_path, packages=(0,), dram=False)
    clock = FakeClock()
    with Meter(discover_rapl(root).sensors, clock=clock) as meter:
        write(root / "intel-rapl:0", 2_000)
        clock.advance(0.0005)
    assert meter.spend.methods["cpu:package-0"] is Method.ESTIMATE
    low, high = meter.spend.energy_bounds_j["cpu:package-0"]
    # the counter's edges: 2 x 1 ms at the window's 4 W, on top of 5 % calibration
    assert low == pytest.approx(max(0.002 * 0.95 - 1e-6 - 2 * 0.001 * 4.0, 0.0))
    assert high == pytest.approx(0.002 * 1.05 + 1e-6 + 2 * 0.001 * 4.0)


def test_a_counter_failing_mid_run_keeps_its_energy(tmp_path, fake_clock):
    root = make_rapl_tree(tmp_path, packages=(0,), dram=False)
    sensor = RAPLSensor(root / "intel-rapl:0", "cpu:package-0")
    meter = Meter([sensor], clock=fake_clock).start()
    fake_clock.advance(10)
    write(root / "intel-rapl:0", 100_000_000)
    meter.sample()
    (root / "intel-rapl:0" / "energy_uj").unlink()
    fake_clock.advance(5)
    with pytest.warns(GreenAIWarning, match=r"'cpu:package-0' failed.*100 J counted so far are kept"):
        meter.sample()
    spend = meter.stop()
    assert spend.energy_j["cpu:package-0"] == pytest.approx(150.0)  # 100 J + 5 s at the 10 W seen so far
    assert spend.methods["cpu:package-0"] is Method.ESTIMATE
    assert spend.is_estimate
