"""One account per trial process: every meter contributes, each counter is billed once, restores never rewind it."""

import json
import threading
import time
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from omegaconf import OmegaConf

from lightning_greenai import EnergyMonitor, FlopMonitor, Meter, Method, Spend
from lightning_greenai.sensors.fake import ConstantPowerSensor, FakeClock, FakeSensor
from lightning_greenai.trial.account import TrialReporter, current_trial
from lightning_greenai.trial.channel import read_record
from tests.conftest import ClockedModel


def gpu(joules: float, name: str = "gpu:0") -> Spend:
    return Spend(energy_j={name: joules}, methods={name: Method.COUNTER})


def test_account_adds_each_meters_growth_and_bills_a_shared_counter_once(tmp_path):
    clock = FakeClock()
    account = TrialReporter(tmp_path, 0, heartbeat_s=0, clock=clock)
    # pretrain, then finetune: two meters one after the other, on the same GPU
    account.contribute("pretrain", gpu(10.0))
    account.contribute("pretrain", gpu(25.0))
    account.release("pretrain")
    account.contribute("finetune", gpu(5.0))
    assert account.spend.energy_j == {"gpu:0": 30.0}
    # a meter around the finetune reading the same counter at the same time: the active owner's growth only
    account.contribute("outer", gpu(7.0))
    clock.advance(1.0)
    account.contribute("finetune", gpu(9.0))
    assert account.spend.energy_j == {"gpu:0": 34.0}
    account.release("finetune")
    clock.advance(1.0)
    # the counter passed to the outer meter: of its growth since its previous reading (5 J over 2 s), the second
    # after the handover is new; the first, the finetune meter billed
    account.contribute("outer", gpu(12.0))
    assert account.spend.energy_j == {"gpu:0": 36.5}
    clock.advance(1.0)
    account.contribute("outer", gpu(14.0))  # its own from then on
    assert account.spend.energy_j == {"gpu:0": 38.5}
    # another counter is added, FLOPs add up
    account.contribute("cpu-meter", Spend(energy_j={"cpu:0": 3.0}, methods={"cpu:0": Method.ESTIMATE}, flops=100.0))
    assert account.spend.energy_j == {"gpu:0": 38.5, "cpu:0": 3.0}
    assert account.spend.flops == 100.0
    assert account.spend.is_estimate
    assert read_record(tmp_path, 0).spend.energy_j == {"gpu:0": 38.5, "cpu:0": 3.0}


def test_two_monitors_on_one_trainer_bill_the_trial_once(in_sweep_job, tiny_trainer):
    # real clocks: the account hands a counter over pro rata of real time, as the energy accrues
    OmegaConf.update(HydraConfig.get(), "sweeper.grid", {"country": "DE"})
    # two settings of one grid (the sweep's, which each must price at), so Lightning takes two stateful monitors
    monitors = [
        EnergyMonitor(
            grid={"country": "DE", **pue},
            sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=time.monotonic)],
            verbose=False,
        )
        for pue in ({}, {"pue": 1.0})
    ]
    # logs every 50 steps: the second monitor's last reading before the end is at the start of the fit
    tiny_trainer(callbacks=monitors, max_steps=5, limit_val_batches=0, log_every_n_steps=50).fit(BoringModel())
    billed = read_record(in_sweep_job, 7).spend.energy_j["gpu:0"]
    first, second = (m.spend.energy_j["gpu:0"] for m in monitors)
    # the counter once: the first monitor's fit and what the second saw after it let go (was first + second)
    assert first <= billed < first + 0.5 * second


def test_account_keys_counters_by_uid_not_by_name(tmp_path):
    account = TrialReporter(tmp_path, 0, heartbeat_s=0)
    account.contribute("a", gpu(10.0), uids={"gpu:0": "GPU-aaaa"})
    account.contribute("b", gpu(4.0, "gpu:0@rank0"), uids={"gpu:0@rank0": "GPU-aaaa"})  # same card, other name
    account.contribute("c", gpu(6.0), uids={"gpu:0": "GPU-bbbb"})  # same name, another card
    assert account.spend.total_energy_j == 16.0


def test_a_requeued_job_continues_its_earlier_attempt_and_a_new_one_does_not(tmp_path):
    first = TrialReporter(tmp_path, 3, heartbeat_s=0)
    first.contribute("m", gpu(8.0))
    again = TrialReporter(tmp_path, 3, heartbeat_s=0)  # same job number: a requeue
    again.contribute("m", gpu(2.0))
    assert read_record(tmp_path, 3).spend.total_energy_j == 10.0


def test_two_meter_blocks_in_one_trial_are_both_billed(in_sweep_job, fake_clock):
    for _ in range(2):  # pretrain, then finetune
        energy = {"j": 0.0}
        with Meter([FakeSensor("gpu:0", lambda e=energy: e["j"])], clock=fake_clock) as meter:
            energy["j"] += 15.0
            meter.sample()
    assert read_record(in_sweep_job, 7).spend.energy_j == {"gpu:0": 30.0}


def test_a_reused_meter_measures_its_second_block_and_the_trial_both(in_sweep_job, fake_clock):
    energy = {"j": 0.0}
    meter = Meter([FakeSensor("gpu:0", lambda: energy["j"])], clock=fake_clock)
    with meter:
        energy["j"] += 10.0
    with meter:
        energy["j"] += 4.0
    assert meter.spend.energy_j == {"gpu:0": 4.0}
    assert read_record(in_sweep_job, 7).spend.energy_j == {"gpu:0": 14.0}


def test_two_trainers_in_one_trial_are_both_billed(in_sweep_job, tiny_trainer, fake_clock):
    for _ in range(2):
        mon = EnergyMonitor(
            sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)], clock=fake_clock, verbose=False
        )
        tiny_trainer(callbacks=[mon], max_steps=3, limit_val_batches=0).fit(ClockedModel(fake_clock))
        assert mon.spend.energy_j == {"gpu:0": 300.0}
    assert read_record(in_sweep_job, 7).spend.energy_j == {"gpu:0": 600.0}


def test_a_meter_around_a_metered_fit_bills_the_counter_once(in_sweep_job, tiny_trainer, fake_clock):
    mon = EnergyMonitor(
        sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)], clock=fake_clock, verbose=False
    )
    with Meter([ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)], clock=fake_clock) as outer:
        tiny_trainer(callbacks=[mon], max_steps=3, limit_val_batches=0).fit(ClockedModel(fake_clock))
        fake_clock.advance(1.0)  # work outside the fit: only the outer meter sees it
    assert outer.spend.energy_j == {"gpu:0": 400.0}
    assert read_record(in_sweep_job, 7).spend.energy_j == {"gpu:0": 400.0}
    assert read_record(in_sweep_job, 7).spend.duration_s == pytest.approx(4.0)


def fit_then_test(tiny_trainer, fake_clock, tmp_path, monitors):
    trainer = tiny_trainer(
        callbacks=[*monitors, ModelCheckpoint(dirpath=tmp_path / "ckpt")],
        enable_checkpointing=True,
        max_steps=-1,
        max_epochs=1,
        limit_train_batches=4,
        limit_val_batches=2,
        limit_test_batches=2,
    )
    model = ClockedModel(fake_clock)
    trainer.fit(model)  # 4 x 1 s + 2 x 0.5 s at 100 W: 500 J
    trainer.test(model, ckpt_path="best")  # 2 x 0.5 s: 100 J
    return trainer


def test_test_from_the_best_checkpoint_adds_its_spend_instead_of_rewinding(in_sweep_job, tiny_trainer, fake_clock):
    mon = EnergyMonitor(
        sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)], clock=fake_clock, verbose=False
    )
    flops = FlopMonitor()
    trainer = fit_then_test(tiny_trainer, fake_clock, in_sweep_job, [mon, flops])
    assert mon.spend.energy_j == {"gpu:0": 600.0}
    assert mon.spend.stage_energy_j == {"train": 400.0, "validate": 100.0, "test": 100.0}
    record = read_record(in_sweep_job, 7)
    assert record.spend.energy_j == {"gpu:0": 600.0}
    # FLOPs billed once, from the FlopMonitor, though the EnergyMonitor also carries them in its own spend
    assert record.spend.flops == flops.training_flops > 0
    assert mon.spend.flops == flops.training_flops
    tag = json.loads((Path(trainer.log_dir) / "price_tag.json").read_text())
    assert tag["title"] == "test"
    assert tag["energy_kwh"] == pytest.approx(600.0 / 3.6e6)  # the run's running total, labelled as such
    assert tag["this_stage"]["energy_kwh"] == pytest.approx(100.0 / 3.6e6)
    assert tag["stages"]["fit"]["energy_kwh"] == pytest.approx(500.0 / 3.6e6)  # fit's tag is kept, not overwritten
    assert tag["stages"]["test"]["energy_kwh"] == pytest.approx(600.0 / 3.6e6)


def test_an_eval_run_from_a_checkpoint_reports_its_own_spend_only(tiny_trainer, fake_clock, tmp_path):
    mon = EnergyMonitor(
        sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)], clock=fake_clock, verbose=False
    )
    flops = FlopMonitor()
    fit_then_test(tiny_trainer, fake_clock, tmp_path, [mon, flops])
    ckpt = next((tmp_path / "ckpt").glob("*.ckpt"))
    # eval.py: a new process, a new trainer and monitor, the training run's checkpoint
    evaluator = EnergyMonitor(
        sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)], clock=fake_clock, verbose=False
    )
    eval_flops = FlopMonitor()
    tiny_trainer(callbacks=[evaluator, eval_flops], limit_test_batches=2).test(
        ClockedModel(fake_clock), ckpt_path=str(ckpt)
    )
    assert evaluator.spend.energy_j == {"gpu:0": 100.0}
    assert evaluator.spend.stage_energy_j == {"test": 100.0}
    assert eval_flops.totals["train/forward"] == 0.0
    assert eval_flops.totals["test/forward"] > 0


def test_resuming_fit_continues_the_checkpoints_total(tiny_trainer, fake_clock, tmp_path):
    def run(max_steps, ckpt_path=None):
        mon = EnergyMonitor(
            sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock)], clock=fake_clock, verbose=False
        )
        trainer = tiny_trainer(
            callbacks=[mon, ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)],
            enable_checkpointing=True,
            max_steps=max_steps,
            limit_val_batches=0,
        )
        trainer.fit(ClockedModel(fake_clock), ckpt_path=ckpt_path)
        return mon

    run(4)
    resumed = run(6, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert resumed.spend.energy_j == {"gpu:0": 600.0}


def test_sample_from_two_threads_never_double_counts(fake_clock):
    energy = {"j": 0.0}
    meter = Meter([FakeSensor("gpu:0", lambda: energy["j"])], clock=fake_clock).start()
    barrier = threading.Barrier(4)

    def work():
        barrier.wait()
        for _ in range(500):
            meter.sample()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(200):
        energy["j"] += 1.0
    for t in threads:
        t.join()
    assert meter.stop().energy_j == {"gpu:0": 200.0}


def test_no_account_outside_a_sweep():
    assert current_trial() is None


def test_a_stop_signal_that_is_not_json_still_stops_the_trial(tmp_path):
    account = TrialReporter(tmp_path, 0, heartbeat_s=0, signal_s=0.0)
    assert account.stop_request() is None
    account.channel.put("stop", None, "STOP (written by hand)")
    assert account.stop_request() == {"policy": "graceful", "reason": "STOP signal present"}
    account.channel.put("stop", None, '{"policy": "kill", "reason": "budget reached"}')
    assert account.stop_request() == {"policy": "kill", "reason": "budget reached"}


def test_each_job_of_a_process_reports_as_itself_though_its_context_is_read_once(in_sweep_job, monkeypatch):
    """The context is kept per job (BudgetStopping asks at every batch); the next job's config is another job."""
    from lightning_greenai.trial.account import job_context

    assert job_context() is job_context() and job_context().job_num == 7
    runtime = OmegaConf.create(
        {"hydra": {**OmegaConf.to_container(HydraConfig.get()), "job": {"num": 8}}}
    )  # the next job of a basic launcher: Hydra sets a new config
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: runtime.hydra))
    assert job_context().job_num == 8 and current_trial().job_num == 8
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: False))
    assert job_context() is None  # out of the sweep again
