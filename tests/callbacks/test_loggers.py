"""The monitors inside real trackers: fit, then test from the best checkpoint, read back from each store."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger

from lightning_greenai import EnergyMonitor, FlopMonitor
from lightning_greenai.sensors.fake import ConstantPowerSensor
from tests.conftest import ClockedModel
from tests.services import free_port, wait_for_http


def fit_then_test(tiny_trainer, fake_clock, tmp_path, logger):
    monitors = [
        EnergyMonitor(
            grid={"country": "DE"},
            sensors=[
                ConstantPowerSensor("gpu:0", 100.0, clock=fake_clock),
                ConstantPowerSensor("cpu:estimate", 10.0, clock=fake_clock),
            ],
            clock=fake_clock,
            verbose=False,
        ),
        FlopMonitor(),
    ]
    trainer = tiny_trainer(
        callbacks=[*monitors, ModelCheckpoint(dirpath=tmp_path / "ckpt")],
        enable_checkpointing=True,
        logger=logger,
        max_steps=-1,
        max_epochs=1,
        limit_train_batches=4,
        limit_val_batches=2,
        limit_test_batches=2,
    )
    model = ClockedModel(fake_clock)
    trainer.fit(model)
    trainer.test(model, ckpt_path="best")
    return monitors[0]


class RecordingLogger(Logger):
    """Keeps every metric and field name it is given."""

    def __init__(self):
        super().__init__()
        self.keys: set[str] = set()

    @property
    def name(self):
        return "recording"

    @property
    def version(self):
        return 0

    def log_metrics(self, metrics, step=None):
        self.keys.update(metrics)

    def log_hyperparams(self, params, *args, **kwargs):
        self.keys.update(params if isinstance(params, dict) else vars(params))


def test_no_logged_key_is_a_path_prefix_of_another(tiny_trainer, fake_clock, tmp_path, sweep_dir):
    from lightning_greenai.reporting.publish import publish
    from lightning_greenai.reporting.summary import load

    logger = RecordingLogger()
    fit_then_test(tiny_trainer, fake_clock, tmp_path, logger)
    publish(load(sweep_dir), logger)
    keys = sorted(k for k in logger.keys if k.startswith("greenai/"))
    assert "greenai/energy_kwh" in keys and "greenai/device_energy_kwh/gpu_0" in keys
    clashes = [(a, b) for a in keys for b in keys if b.startswith(a + "/")]
    assert clashes == []  # MLflow's file store keeps keys as paths: a prefix would be a file and a folder


def mlflow_logger(uri: str, tmp_path: Path):
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(experiment_name="greenai", tracking_uri=uri, run_name="fit-then-test")


def check_mlflow_run(uri: str, run_id: str, monitor: EnergyMonitor) -> None:
    from mlflow.tracking import MlflowClient

    run = MlflowClient(uri).get_run(run_id)
    params, metrics = run.data.params, run.data.metrics
    # the price tag of each stage as params, each logged once (MLflow refuses to change a param)
    assert float(params["greenai/price_tag/fit/energy_kwh"]) == pytest.approx(550.0 / 3.6e6)
    assert float(params["greenai/price_tag/test/energy_kwh"]) == pytest.approx(660.0 / 3.6e6)
    assert metrics["greenai/energy_kwh"] == pytest.approx(monitor.spend.energy_kwh)
    assert metrics["greenai/device_energy_kwh/gpu_0"] == pytest.approx(600.0 / 3.6e6)
    assert metrics["greenai/device_energy_kwh/cpu_estimate"] == pytest.approx(60.0 / 3.6e6)


@pytest.mark.parametrize("store", ["sqlite", "file"])
def test_mlflow_fit_then_test(tiny_trainer, fake_clock, tmp_path, monkeypatch, store):
    pytest.importorskip("mlflow")
    if store == "file":
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        uri = (tmp_path / "mlruns").as_uri()
    else:
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = mlflow_logger(uri, tmp_path)
    monitor = fit_then_test(tiny_trainer, fake_clock, tmp_path, logger)
    check_mlflow_run(uri, logger.run_id, monitor)
    # price_tag.json in the run's folder (the file store's, else the Trainer's root), where `greenai report` reads it
    tag = json.loads(((tmp_path / "mlruns" if store == "file" else tmp_path) / "price_tag.json").read_text())
    assert set(tag["stages"]) == {"fit", "test"}


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend), started here and stopped after the module."""
    pytest.importorskip("flask")
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(root / "server.log", "w")  # noqa: SIM115 (the server writes it until the fixture ends)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'server.db'}", "--default-artifact-root", str(root / "art"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{uri}/health", proc, timeout_s=120, log=root / "server.log", what="mlflow server")
    except RuntimeError as err:
        pytest.fail(str(err))
    yield uri
    os.killpg(proc.pid, 15)
    proc.wait(timeout=30)
    log.close()


@pytest.mark.timeout(300)
def test_mlflow_fit_then_test_on_a_real_tracking_server(tiny_trainer, fake_clock, tmp_path, mlflow_server):
    logger = mlflow_logger(mlflow_server, tmp_path)
    monitor = fit_then_test(tiny_trainer, fake_clock, tmp_path, logger)
    check_mlflow_run(mlflow_server, logger.run_id, monitor)
    assert set(json.loads((tmp_path / "price_tag.json").read_text())["stages"]) == {"fit", "test"}


def test_tensorboard_hparams_view_gets_the_price_tag(tiny_trainer, fake_clock, tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="tb", default_hp_metric=False)
    fit_then_test(tiny_trainer, fake_clock, tmp_path, logger)
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")  # the HParams plugin's record
    assert "greenai/price_tag/test/energy_kwh" in acc.Tags()["scalars"]  # its metric
