"""Curves pushed through real trackers and read back from their own stores."""

import csv

import pytest

from lightning_greenai.reporting.publish import curve_points, publish, step_unit
from lightning_greenai.reporting.summary import load
from lightning_greenai.testing import read_wandb_run


def expected_best(summary):
    return [p.best_so_far for p in curve_points(summary)]


def test_csv_logger(sweep_dir, tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    summary = load(sweep_dir)
    logger = CSVLogger(tmp_path, name="greenai-sweep")
    publish(summary, logger)
    with open(f"{logger.log_dir}/metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("greenai/sweep/best_so_far")]
    assert [float(r["greenai/sweep/best_so_far"]) for r in rows] == expected_best(summary)
    assert float(rows[-1]["greenai/sweep/energy_kwh"]) == pytest.approx(summary.spend.energy_kwh)
    with open(f"{logger.log_dir}/evp.csv") as fh:
        evp = list(csv.DictReader(fh))
    assert len(evp) == len(summary.scores())
    assert float(evp[-1]["unbiased"]) == pytest.approx(max(summary.scores()))
    assert all(float(r["median_lo"]) <= float(r["median"]) <= float(r["median_hi"]) for r in evp)
    with open(f"{logger.log_dir}/pareto.csv") as fh:
        pareto = list(csv.DictReader(fh))
    assert len(pareto) == len(summary.scores())
    front = [r for r in pareto if r["on_front"] == "True"]
    assert float(front[-1]["score"]) == max(summary.scores())  # the dearest point of the front is the best
    with open(f"{logger.log_dir}/marginal_value.csv") as fh:
        marginal = list(csv.DictReader(fh))
    assert [int(r["n"]) for r in marginal] == list(range(1, len(summary.scores())))


def test_tensorboard_logger(sweep_dir, tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = load(sweep_dir)
    logger = TensorBoardLogger(tmp_path, name="greenai-sweep")
    publish(summary, logger)
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    by_energy = acc.Scalars("greenai/sweep/best_vs_energy_kwh")
    assert [e.value for e in by_energy] == pytest.approx(expected_best(summary))
    points = curve_points(summary)
    label, factor = step_unit("energy_kwh", points[-1].spend["energy_kwh"])
    assert [e.step for e in by_energy] == [round(p.spend["energy_kwh"] * factor) for p in points]
    assert 1_000 <= by_energy[-1].step < 1_000_000  # a small sweep still draws a curve, not one stripe at step 0
    assert label.endswith("J")
    assert [e.step for e in acc.Scalars("greenai/evp/expected")] == list(range(1, len(summary.scores()) + 1))
    assert len(acc.Scalars("greenai/evp/median")) == len(summary.scores())
    # the band's edges, by n; without score bounds the upper edge is infinite beyond n = 1, and not logged
    assert [e.step for e in acc.Scalars("greenai/evp/median_hi")] == [1]
    assert acc.Scalars("greenai/pareto/front_score")[-1].value == max(summary.scores())
    marginal = acc.Scalars("greenai/marginal/expected_gain_per_kwh")
    assert [e.step for e in marginal] == list(range(1, len(summary.scores())))


def test_mlflow_logger_on_a_sqlite_store(sweep_dir, tmp_path):
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.tracking import MlflowClient

    summary = load(sweep_dir)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = MLFlowLogger(
        experiment_name="greenai",
        tracking_uri=uri,
        run_name="greenai-sweep",
        artifact_location=str(tmp_path / "artifacts"),
    )
    publish(summary, logger)
    client = MlflowClient(uri)
    history = client.get_metric_history(logger.run_id, "greenai/sweep/best_vs_trial")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(expected_best(summary))
    evp = client.get_metric_history(logger.run_id, "greenai/evp/unbiased")
    assert max(m.value for m in evp) == pytest.approx(max(summary.scores()))
    assert client.get_run(logger.run_id).data.params["greenai/curve"] == "expected"


def test_wandb_offline_read_back_from_the_run_file(sweep_dir, tmp_path, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    summary = load(sweep_dir)
    logger = WandbLogger(project="greenai", save_dir=str(tmp_path), offline=True, name="greenai-sweep")
    publish(summary, logger)
    run = read_wandb_run(tmp_path / "wandb")
    assert run.metrics["greenai/sweep/best_vs_energy_kwh"]["step_metric"] == "greenai/sweep/energy_kwh"
    assert run.metrics["greenai/sweep/best_vs_flops"]["step_metric"] == "greenai/sweep/flops"
    assert run.column("greenai/sweep/best_vs_energy_kwh") == pytest.approx(expected_best(summary))
    assert run.column("greenai/sweep/energy_kwh")[-1] == pytest.approx(summary.spend.energy_kwh)
    evp = [row for row in run.history if "greenai/evp_table/_type" in row]
    assert evp[0]["greenai/evp_table/_type"] == "table-file"
    assert run.config["_wandb/visualize/greenai/evp_chart"]["panel_config"]["panelDefId"] == "wandb/lineseries/v0"
    assert run.config["greenai/curve"] == "expected"
    assert run.config["_wandb/visualize/greenai/pareto_scatter"]["panel_config"]["panelDefId"] == "wandb/scatter/v0"
    assert any(row.get("greenai/pareto_table/_type") == "table-file" for row in run.history)


@pytest.mark.parametrize(
    ("axis", "total", "label"),
    [
        ("energy_kwh", 5 / 3.6e6, "mJ"),  # a 5 J sweep: 5,000 mJ
        ("energy_kwh", 2.0, "kJ"),  # 7.2 MJ: 7,200 kJ
        ("flops", 3e7, "kFLOPs"),
        ("flops", 4e18, "PFLOPs"),
        ("gpu_hours", 0.001, "mGPU-s"),
        ("co2e_kg", 0.002, "mgCO2e"),
    ],
)
def test_step_units_resolve_small_and_large_sweeps(axis, total, label):
    got, factor = step_unit(axis, total)
    assert got == label
    assert 1_000 <= total * factor < 1_000_000


def test_the_extrapolated_curve_reaches_csv_tensorboard_and_wandb(tmp_path, monkeypatch):
    import numpy as np
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.reporting.test_compare_verdict import write_sweep

    scores = np.random.default_rng(0).beta(5, 2, 12)
    sweep = write_sweep(tmp_path / "sweep", scores, energy_j=10.0)
    summary = load(sweep)
    fit = summary.extrapolation()
    assert fit is not None and fit.n[0] == 12 and fit.n[-1] == 48
    csv_logger = CSVLogger(tmp_path, name="csv")
    publish(summary, csv_logger)
    with open(f"{csv_logger.log_dir}/evp_extrapolated.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["n"]) for r in rows] == fit.n
    assert all(float(r["lo"]) <= float(r["expected"]) <= float(r["hi"]) <= 1 for r in rows)
    tb = TensorBoardLogger(tmp_path, name="tb")
    publish(load(sweep), tb)
    acc = EventAccumulator(tb.log_dir)
    acc.Reload()
    events = acc.Scalars("greenai/evp_extrapolated/expected")
    assert [e.step for e in events] == fit.n
    assert events[-1].value == pytest.approx(fit.expected[-1], rel=1e-6)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    publish(load(sweep), WandbLogger(project="greenai", save_dir=str(tmp_path), offline=True, name="extrapolated"))
    run = read_wandb_run(tmp_path / "wandb")
    chart = run.config["_wandb/visualize/greenai/evp_extrapolated_chart"]
    assert chart["panel_config"]["panelDefId"] == "wandb/lineseries/v0"
