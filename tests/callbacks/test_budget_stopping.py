"""BudgetStopping inside a (simulated) sweep job: STOP signal, trial allowance, own budget, kill policy."""

import time

import pytest

from lightning_greenai import BudgetStopping, EnergyMonitor
from lightning_greenai.errors import TrialKilledError
from lightning_greenai.io import write_json_atomic
from lightning_greenai.sensors.fake import ConstantPowerSensor
from lightning_greenai.trial.channel import read_record
from lightning_greenai.trial.record import state_dir
from lightning_greenai.trial.stopping import BudgetStoppingReason
from tests.conftest import ClockedModel


def monitor(clock, power_w=100.0):
    return EnergyMonitor(
        sensors=[ConstantPowerSensor("gpu:0", power_w, clock=clock)], clock=clock, verbose=False, log_every_n_steps=1
    )


def test_stop_signal_ends_training_cleanly_and_marks_the_trial(in_sweep_job, tiny_trainer, fake_clock):
    class StopAfterThree(ClockedModel):
        def training_step(self, batch, batch_idx):
            if batch_idx == 3:
                write_json_atomic(state_dir(in_sweep_job) / "STOP", {"policy": "graceful", "reason": "budget reached"})
            return super().training_step(batch, batch_idx)

    stopper = BudgetStopping()
    trainer = tiny_trainer(callbacks=[monitor(fake_clock), stopper], max_steps=20, limit_val_batches=2)
    trainer.fit(StopAfterThree(fake_clock))
    assert trainer.global_step == 4  # stopped at the end of the step that saw the signal
    assert stopper.stopping_reason is BudgetStoppingReason.SWEEP_BUDGET
    record = read_record(in_sweep_job, 7)
    assert record.status == "budget_stopped"
    assert record.spend.energy_j["gpu:0"] == pytest.approx(400.0 + 100.0)  # 4 steps + the validation it ran


def test_trial_allowance_from_the_sweeper(in_sweep_job, tiny_trainer, fake_clock):
    write_json_atomic(state_dir(in_sweep_job) / "trials" / "7.allowance.json", {"energy_kwh": 350.0 / 3.6e6})
    stopper = BudgetStopping()
    trainer = tiny_trainer(callbacks=[monitor(fake_clock), stopper], max_steps=20, limit_val_batches=0)
    trainer.fit(ClockedModel(fake_clock))
    assert trainer.global_step == 4  # 400 J >= 350 J after the 4th step
    assert stopper.stopping_reason is BudgetStoppingReason.TRIAL_ALLOWANCE


def test_own_budget_outside_a_sweep(tiny_trainer, fake_clock):
    stopper = BudgetStopping("250 J")
    trainer = tiny_trainer(callbacks=[monitor(fake_clock), stopper], max_steps=20, limit_val_batches=0)
    trainer.fit(ClockedModel(fake_clock))
    assert trainer.global_step == 3
    assert stopper.stopping_reason is BudgetStoppingReason.OWN_BUDGET
    assert "energy_kwh" in stopper.stopping_reason_message


def test_kill_policy_aborts_the_trial_recorded_killed_not_failed(in_sweep_job, tiny_trainer, fake_clock):
    write_json_atomic(state_dir(in_sweep_job) / "STOP", {"policy": "kill", "reason": "budget reached"})
    trainer = tiny_trainer(callbacks=[monitor(fake_clock), BudgetStopping()], max_steps=20, limit_val_batches=0)
    with pytest.raises(TrialKilledError, match="stop_policy=kill"):
        trainer.fit(ClockedModel(fake_clock))
    record = read_record(in_sweep_job, 7)
    assert record.status == "killed"  # billed, no score, and not a failure of the sweep
    assert record.spend.energy_j == {"gpu:0": 100.0}  # one step at 100 W before the check


def test_bad_check_interval():
    with pytest.raises(ValueError, match=r"`check_every_n_steps` must be >= 1, got 0"):
        BudgetStopping(check_every_n_steps=0)


@pytest.mark.parametrize(
    ("minimums", "batches_per_epoch", "budget", "stop_step", "outranks"),
    [
        # the lightning-hydra-template's default: Lightning counts an epoch toward min_epochs once it has ended
        pytest.param({"min_epochs": 1}, 40, "250 J", 3, "min_epochs=1, min_steps=None", id="min_epochs=1"),
        pytest.param({"min_epochs": 5}, 4, "250 J", 3, "min_epochs=5, min_steps=None", id="min_epochs=5"),
        # in the last epoch that min_epochs asks for (epoch 2 of 3): not the end of that epoch (step 9)
        pytest.param({"min_epochs": 3}, 3, "650 J", 7, "min_epochs=3, min_steps=None", id="min_epochs=3-last"),
        # Lightning sets min_epochs=1 beside min_steps
        pytest.param({"min_steps": 30}, 4, "250 J", 3, "min_epochs=1, min_steps=30", id="min_steps=30"),
        pytest.param({"min_epochs": 1}, 3, "650 J", 7, None, id="min_epochs=1-met"),  # nothing to outrank
    ],
)
def test_the_budget_outranks_min_epochs_and_min_steps_and_says_so_once(
    tiny_trainer, fake_clock, caplog, minimums, batches_per_epoch, budget, stop_step, outranks
):
    stopper = BudgetStopping(budget)
    trainer = tiny_trainer(
        callbacks=[monitor(fake_clock), stopper],
        max_steps=-1,
        max_epochs=10,
        limit_train_batches=batches_per_epoch,
        limit_val_batches=0,
        **minimums,
    )
    with caplog.at_level("INFO"):
        trainer.fit(ClockedModel(fake_clock))
    assert trainer.global_step == stop_step  # 100 J a step: the first step whose total reaches the budget
    messages = [r.getMessage() for r in caplog.records if "BudgetStopping" in r.getMessage()]
    assert len(messages) == 1
    assert (f"outranks {outranks}." in messages[0]) if outranks else ("outranks" not in messages[0])
    assert not any("Training will continue" in r.getMessage() for r in caplog.records)
    # the trainer keeps its minimums (as the fit began with them: min_steps brings min_epochs=1) for a later fit
    min_epochs = minimums.get("min_epochs", 1 if "min_steps" in minimums else None)
    assert (trainer.fit_loop.min_epochs, trainer.min_steps) == (min_epochs, minimums.get("min_steps"))


def test_a_sweeps_wall_budget_is_a_deadline_the_trial_stops_at(in_sweep_job, tiny_trainer, fake_clock):
    # the deadline is a clock time: a job's start-up counts against the sweep's wall budget, as on its clock
    allowance = {"policy": "graceful", "sweep": {"energy_kwh": 1.0}, "deadline_unix_s": time.time() - 1.0}
    write_json_atomic(state_dir(in_sweep_job) / "trials" / "7.allowance.json", allowance)
    stopper = BudgetStopping()
    trainer = tiny_trainer(callbacks=[monitor(fake_clock), stopper], max_steps=20, limit_val_batches=0)
    trainer.fit(ClockedModel(fake_clock))
    assert trainer.global_step <= 1
    assert stopper.stopping_reason is BudgetStoppingReason.SWEEP_BUDGET
    assert "wall-time budget ran out" in stopper.stopping_reason_message


def test_a_sweeps_co2e_caps_are_priced_with_the_sweeps_grid_by_the_hour(in_sweep_job, tiny_trainer, fake_clock):
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    csv = in_sweep_job / "hourly.csv"
    # the meter files energy under the real UTC hour: this one and its neighbours, should the fit straddle one
    hours = [time.strftime("%Y-%m-%dT%H:00:00", time.gmtime(time.time() + d)) for d in (-3600, 0, 3600)]
    csv.write_text("datetime,carbon_intensity_g_per_kwh\n" + "".join(f"{h},1000\n" for h in hours))
    OmegaConf.update(HydraConfig.get(), "sweeper.grid", {"intensity_g_per_kwh": 1.0, "intensity_csv": str(csv)})
    # 100 W steps of 1 s: 100 J = 0.0278 g at 1000 g/kWh; the cap 0.1 g is reached at the 4th step (at the yearly
    # 1 g/kWh it would take 3,600 steps)
    allowance = {"policy": "graceful", "sweep": {"co2e_kg": 1e-4}}
    write_json_atomic(state_dir(in_sweep_job) / "trials" / "7.allowance.json", allowance)
    stopper = BudgetStopping()
    trainer = tiny_trainer(callbacks=[monitor(fake_clock), stopper], max_steps=20, limit_val_batches=0)
    trainer.fit(ClockedModel(fake_clock))
    assert stopper.stopping_reason is BudgetStoppingReason.SWEEP_BUDGET
    assert trainer.global_step == 4
