import threading

import pytest

from lightning_greenai import GreenAIWarning, Meter, Method
from lightning_greenai.sensors.fake import ConstantPowerSensor, FakeClock, FakeSensor


def test_meter_integrates_constant_power_exactly():
    clock = FakeClock()
    sensors = [
        ConstantPowerSensor("gpu:0", 300.0, clock=clock),
        ConstantPowerSensor("cpu:package-0", 50.0, clock=clock),
    ]
    with Meter(sensors, clock=clock) as meter:
        clock.advance(10.0)
    spend = meter.spend
    assert spend.energy_j == {"gpu:0": 3000.0, "cpu:package-0": 500.0}
    assert (spend.duration_s, spend.gpu_s, spend.is_estimate) == (10.0, 10.0, False)
    assert spend.methods == {"gpu:0": Method.COUNTER, "cpu:package-0": Method.COUNTER}


def test_meter_splits_energy_by_stage():
    clock = FakeClock()
    meter = Meter([ConstantPowerSensor("gpu:0", 100.0, clock=clock)], clock=clock).start()
    clock.advance(3.0)
    meter.set_stage("validate")
    clock.advance(1.0)
    meter.set_stage("train")
    clock.advance(2.0)
    assert meter.stop().stage_energy_j == {"train": 500.0, "validate": 100.0}


def test_scripted_readings_and_a_reading_that_goes_back_is_skipped():
    meter = Meter([FakeSensor("gpu:0", [10.0, 15.0, 12.0, 20.0])]).start()
    meter.sample()
    with pytest.warns(GreenAIWarning, match="'gpu:0' read 12.0 J, 3 J below the last good reading: a glitch"):
        meter.sample()
    assert meter.stop().energy_j == {"gpu:0": 10.0}  # +5, skipped (went back), +5 from the last good reading
    assert meter.glitches == {"gpu:0": 1}


def test_sensor_failure_warns_once_keeps_energy_and_flags_estimate():
    clock = FakeClock()
    meter = Meter([FakeSensor("gpu:0", lambda: 100.0 * clock(), fail_after=2)], clock=clock).start()
    clock.advance(4.0)
    meter.sample()  # 400 J at 100 W
    clock.advance(2.0)
    with pytest.warns(GreenAIWarning, match="'gpu:0' failed"):
        meter.sample()
    clock.advance(2.0)
    spend = meter.stop()  # no second warning: pytest turns our warnings into errors
    assert spend.energy_j["gpu:0"] == pytest.approx(800.0)
    assert spend.methods["gpu:0"] is Method.ESTIMATE and spend.is_estimate


def test_no_sensor_means_unknown_energy_not_zero():
    spend = Meter([], unavailable=["gpu:0"]).start().stop()
    assert spend.total_energy_j is None
    assert spend.unavailable_domains == ["gpu:0"]


def test_sync_runs_before_every_reading():
    calls = []
    meter = Meter([FakeSensor("gpu:0", [0.0])], sync=lambda: calls.append(1)).start()
    meter.sample()
    meter.stop()
    assert len(calls) == 3


def test_counter_sensors_start_no_thread():
    before = threading.active_count()
    clock = FakeClock()
    with Meter([ConstantPowerSensor("gpu:0", 1.0, clock=clock)], clock=clock) as meter:
        meter.sample()
        assert threading.active_count() == before


def test_meter_discovers_sensors_when_none_given():
    # This machine (and CI) has no GPU and no powercap tree: the CPU and DRAM estimates are chosen, and flagged.
    with Meter() as meter:
        sum(i * i for i in range(100_000))
    assert meter.discovery is not None
    assert set(meter.spend.methods) >= {"cpu:estimate", "dram:estimate"} or not meter.spend.is_estimate
    assert meter.spend.total_energy_j is not None


def test_stop_before_start_is_an_error():
    with pytest.raises(RuntimeError, match=r"before Meter\.start"):
        Meter([]).stop()


def test_flops_are_carried_in_the_spend():
    meter = Meter([]).start()
    meter.add_flops(4096)
    assert meter.stop().flops == 4096


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_one_nan_or_inf_reading_is_discarded_with_a_warning_not_kept(bad):
    meter = Meter([FakeSensor("gpu:0", [10.0, 15.0, bad, 20.0, 26.0])]).start()
    meter.sample()
    with pytest.warns(GreenAIWarning, match=rf"'gpu:0' read {bad} J, not a number: a glitch. The reading is skipped"):
        meter.sample()
    meter.sample()  # the next good reading covers the interval
    spend = meter.stop()  # and the sensor stays trusted: no estimate, no second warning
    assert spend.energy_j == {"gpu:0": 16.0}
    assert spend.methods["gpu:0"] is Method.COUNTER


@pytest.mark.parametrize("flops", [-1.0, float("nan"), float("inf"), "12"])
def test_add_flops_refuses_what_is_not_a_count(flops):
    with pytest.raises(ValueError, match="`flops` must be a finite number >= 0"):
        Meter([]).add_flops(flops)


def test_one_reading_reads_the_process_tree_once_for_the_estimates_and_the_host_share():
    import time

    import psutil

    from lightning_greenai.sensors.estimate import CPUEstimateSensor, DRAMEstimateSensor, ProcessTree

    cpus = psutil.cpu_count() or 1
    sensors = [CPUEstimateSensor(tdp_w=float(cpus), logical_cpus=cpus), DRAMEstimateSensor()]  # 1 W a CPU: J = CPU s
    meter = Meter(sensors).start()
    tree = ProcessTree.of(psutil.Process())  # the one the sensors and the meter share
    reads = tree.reads
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    spend = meter.sample()
    assert tree.reads == reads + 1
    # the CPU estimate and the host share took the same reading: the same CPU seconds since the start.
    # /proc counts CPU time in 10 ms ticks, so a 50 ms loop shows at least 4 whole ticks; their difference
    # in floats can land a hair under 0.04 (CI once read 0.03999999999999915).
    assert spend.energy_j["cpu:estimate"] >= 0.04 - 1e-9
    assert spend.energy_j["cpu:estimate"] == pytest.approx(spend.host_share_s * cpus, rel=1e-9)
    meter.stop()


class _Account:
    """A trial's account that records what a meter bills it."""

    def __init__(self) -> None:
        self.billed: list[tuple[object, dict[str, float], bool]] = []
        self.released: list[object] = []

    def contribute(self, key, spend, *, uids=None, force=False):
        self.billed.append((key, dict(spend.energy_j), force))

    def release(self, key):
        self.released.append(key)


def test_a_meter_reports_to_the_account_it_is_given():
    clock = FakeClock()
    account = _Account()
    with Meter([ConstantPowerSensor("gpu:0", 10.0, clock=clock)], clock=clock, account=account) as meter:
        clock.advance(2.0)
        meter.sample()
    assert account.billed[0][1] == {"gpu:0": 0.0}  # claimed from the start
    assert account.billed[-1][1:] == ({"gpu:0": 20.0}, True)  # the final figure, forced out at the stop
    assert account.released == [account.billed[0][0]]


def test_a_meter_that_does_not_report_uses_no_account():
    account = _Account()
    with Meter([FakeSensor("gpu:0", [0.0, 5.0])], report=False, account=account) as meter:
        meter.sample()
        assert not meter.should_stop()
    assert account.billed == [] and account.released == []


def test_the_default_account_is_the_current_trials_looked_up_once(monkeypatch):
    from lightning_greenai.trial import account as trial_account

    account, lookups = _Account(), []
    monkeypatch.setattr(trial_account, "current_trial", lambda: lookups.append(1) or account)
    meter = Meter([FakeSensor("gpu:0", [0.0, 1.0, 2.0])])
    with meter:
        meter.sample()
    assert lookups == [1] and account.billed[-1][1] == {"gpu:0": 2.0}


def test_outside_a_sweep_a_meter_has_no_account_and_never_stops():
    with Meter([]) as meter:
        assert not meter.should_stop()


def test_an_account_that_is_not_one_is_refused():
    with pytest.raises(ValueError, match="`account` must be a trial's account, 'current' or None, got 'trial'"):
        Meter([], account="trial")
