"""The price of a prediction: energy, CO2e and FLOPs per sample and per token of validate, test and predict."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset

from lightning_greenai import EnergyMonitor, FlopMonitor
from lightning_greenai.callbacks.samples import SampleCounter
from lightning_greenai.reporting.cli import main as greenai
from lightning_greenai.sensors.fake import ConstantPowerSensor
from tests.conftest import ClockedModel

POWER_W = 100.0
LINEAR_FLOPS = 2 * 32 * 2  # BoringModel's Linear(32, 2): FLOPs per sample


class Rows(Dataset):
    def __init__(self, n: int) -> None:
        self.data = torch.randn(n, 32)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.data[i]


class PricedModel(ClockedModel):
    """Training batches of 4, validation and test of 4, predict of 8; a predict step takes 0.25 s on the fake clock."""

    def train_dataloader(self):
        return DataLoader(Rows(64), batch_size=4)

    def val_dataloader(self):
        return DataLoader(Rows(64), batch_size=4)

    def test_dataloader(self):
        return DataLoader(Rows(64), batch_size=4)

    def predict_dataloader(self):
        return DataLoader(Rows(64), batch_size=8)

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        self.clock.advance(0.25)
        return self(batch)


def monitors(clock, **flop_kwargs):
    energy = EnergyMonitor(
        grid={"country": "DE"}, sensors=[ConstantPowerSensor("gpu:0", POWER_W, clock=clock)], clock=clock, verbose=False
    )
    return energy, FlopMonitor(**flop_kwargs)


def metrics(log_dir: str) -> dict[str, float]:
    """The last logged value of every metric in a CSVLogger's file."""
    out: dict[str, float] = {}
    with open(Path(log_dir) / "metrics.csv") as fh:
        for row in csv.DictReader(fh):
            out.update({k: float(v) for k, v in row.items() if v not in ("", None) and k != "step"})
    return out


def test_each_evaluation_stage_has_its_price_per_sample_logged_and_in_the_price_tag(tiny_trainer, fake_clock, tmp_path):
    energy, flops = monitors(fake_clock)
    trainer = tiny_trainer(
        max_steps=5,
        limit_val_batches=2,
        limit_test_batches=3,
        limit_predict_batches=2,
        val_check_interval=5,
        callbacks=[energy, flops],
        logger=CSVLogger(tmp_path),
    )
    model = PricedModel(fake_clock)
    trainer.fit(model)
    trainer.test(model)
    trainer.predict(model)

    # validation: 2 batches x 4 samples in 2 x 0.5 s; test: 3 x 4 in 3 x 0.5 s; predict: 2 x 8 in 2 x 0.25 s (100 W)
    tag = energy.price_tag
    predictions = tag.predictions
    assert predictions["validate"]["samples"] == 8 and predictions["validate"]["batch_size"] == 4
    assert predictions["validate"]["j_per_sample"] == pytest.approx(100.0 / 8)
    assert predictions["test"]["samples"] == 12
    assert predictions["test"]["j_per_sample"] == pytest.approx(150.0 / 12)
    assert predictions["predict"] == pytest.approx(
        {
            "samples": 16,
            "tokens": None,
            "batches": 2,
            "batch_size": 8,
            "energy_j": 50.0,
            "flops": 16 * LINEAR_FLOPS,
            "j_per_sample": 50.0 / 16,
            "co2e_g_per_sample": 50.0 / 16 / 3.6e6 * tag.grid.intensity_g_per_kwh,
            "flops_per_sample": LINEAR_FLOPS,
            "j_per_token": None,
            "flops_per_token": None,
        }
    )
    # serving (predict) against training: 5 training steps of 1 s at 100 W = 500 J
    even = tag.break_even
    assert even["stage"] == "predict"
    assert even["predictions_by_energy"] == pytest.approx(500.0 / (50.0 / 16))
    assert even["predictions_by_flops"] == pytest.approx(flops.training_flops / LINEAR_FLOPS)

    logged = metrics(trainer.log_dir)
    assert logged["greenai/test/j_per_sample"] == pytest.approx(12.5)
    assert logged["greenai/test/flops_per_sample"] == LINEAR_FLOPS
    assert logged["greenai/validate/j_per_sample"] == pytest.approx(12.5)
    assert logged["greenai/predict/j_per_sample"] == pytest.approx(50.0 / 16)
    assert logged["greenai/predict/co2e_g_per_sample"] == pytest.approx(predictions["predict"]["co2e_g_per_sample"])
    assert "greenai/predict/j_per_token" not in logged  # no tokens_key: no per-token figure

    written = json.loads((Path(trainer.log_dir) / "price_tag.json").read_text())
    assert written["predictions"]["predict"]["j_per_sample"] == pytest.approx(50.0 / 16)
    assert written["break_even"]["stage"] == "predict"
    text = tag.to_text()
    assert "price of a prediction" in text and "predict: 3.12 J, 128 FLOPs per sample (16 samples, batch 8)" in text
    assert "serving = training after" in text


def test_the_report_sets_training_against_serving(tiny_trainer, fake_clock, tmp_path, capsys):
    energy, flops = monitors(fake_clock)
    trainer = tiny_trainer(limit_test_batches=3, callbacks=[energy, flops], logger=CSVLogger(tmp_path))
    model = PricedModel(fake_clock)
    trainer.fit(model)
    trainer.test(model)
    capsys.readouterr()
    assert greenai(["report", trainer.log_dir, "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "training against serving (batch 4, test standing in for serving):" in out
    assert "1,000,000 predictions" in out
    # 500 J of training steps / 12.5 J per test sample
    assert "break-even                40 predictions by energy" in out
    assert "1,000,000,000 predictions 3.47 MWh, 1.27 t CO2e, 128 GFLOPs" in out  # 12.5 J a sample
    assert greenai(["report", trainer.log_dir, "--no-plots", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["price_tag"]["break_even"]["predictions_by_energy"] == pytest.approx(40.0)
    assert greenai(["report", trainer.log_dir, "--no-plots", "--markdown"]) == 0
    assert "| Per test sample (batch 4) | 12.5 J, 128 FLOPs |" in capsys.readouterr().out


class TokenBatches(Dataset):
    """Dict batches of token ids with a padding mask: sequence i has 3 + i % 3 real tokens out of 6."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        mask = torch.zeros(6, dtype=torch.long)
        mask[: 3 + i % 3] = 1
        return {"input_ids": torch.randint(0, 50, (6,)), "attention_mask": mask}


class TokenModel(ClockedModel):
    def __init__(self, clock) -> None:
        super().__init__(clock)
        self.embed = torch.nn.Embedding(50, 16)
        self.head = torch.nn.Linear(16, 50)

    def forward(self, batch):
        return self.head(self.embed(batch["input_ids"]))

    def test_step(self, batch, batch_idx):
        self.clock.advance(0.5)
        return {"loss": self(batch).float().mean()}

    def test_dataloader(self):
        return DataLoader(TokenBatches(), batch_size=4)


@pytest.mark.parametrize(
    ("tokens_key", "tokens"),
    [("input_ids", 12 * 6), (lambda b: b["attention_mask"].sum(), sum(3 + i % 3 for i in range(12)))],
    ids=["key", "callable-real-tokens"],
)
def test_per_token_figures_with_a_tokens_key(tiny_trainer, fake_clock, tmp_path, tokens_key, tokens):
    energy, flops = monitors(fake_clock, tokens_key=tokens_key)  # the EnergyMonitor takes the FlopMonitor's key
    trainer = tiny_trainer(limit_test_batches=3, callbacks=[energy, flops], logger=CSVLogger(tmp_path))
    trainer.test(TokenModel(fake_clock))
    test = energy.price_tag.predictions["test"]
    head_flops = 12 * 6 * 2 * 16 * 50  # every position goes through the head, padding included
    assert test["tokens"] == tokens
    assert test["j_per_token"] == pytest.approx(150.0 / tokens)
    assert test["flops_per_token"] == pytest.approx(head_flops / tokens)
    logged = metrics(trainer.log_dir)
    assert logged["greenai/test/j_per_token"] == pytest.approx(150.0 / tokens)
    assert logged["greenai/test/flops_per_token"] == pytest.approx(head_flops / tokens)
    assert f"per token ({tokens:,} tokens)" in energy.price_tag.to_text()


def test_a_wrong_tokens_key_is_a_clear_error(tiny_trainer, fake_clock):
    with pytest.raises(TypeError, match=r"`tokens_key` must be .* got float: 1.5"):
        FlopMonitor(tokens_key=1.5)
    energy, flops = monitors(fake_clock, tokens_key="input_id")
    trainer = tiny_trainer(limit_test_batches=1, callbacks=[energy, flops])
    with pytest.raises(KeyError, match=r"tokens_key='input_id' is not in the batch; its keys are \['attention_mask', "):
        trainer.test(TokenModel(fake_clock))
    with pytest.raises(KeyError, match="no such position in a list batch"):
        SampleCounter(tokens_key=3).add("test", [torch.zeros(2, 4)])


def test_a_batch_without_tensors_leaves_per_sample_figures_out_with_a_warning():
    counter = SampleCounter()
    with pytest.warns(UserWarning, match="Cannot tell how many samples a predict batch holds"):
        counter.add("predict", ["a sentence", "another"])
    counter.add("predict", torch.zeros(3, 2))
    counter.settle_locally()
    assert counter.totals["predict"].samples is None
    assert counter.totals["predict"].batches == 2


def test_a_resumed_fit_divides_the_resumed_energy_by_the_resumed_samples(tiny_trainer, fake_clock, tmp_path):
    def run(max_steps, ckpt_path=None):
        energy, flops = monitors(fake_clock)
        trainer = tiny_trainer(
            max_steps=max_steps,
            max_epochs=-1,
            limit_train_batches=4,
            limit_val_batches=2,
            callbacks=[energy, flops, ModelCheckpoint(tmp_path / "ckpt", save_last=True)],
            enable_checkpointing=True,
        )
        trainer.fit(PricedModel(fake_clock), ckpt_path=ckpt_path)
        return energy, flops

    first, _ = run(4)
    assert first.price_tag.predictions["validate"]["samples"] == 8  # one validation of 2 batches of 4
    energy, flops = run(8, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    validate = energy.price_tag.predictions["validate"]
    assert validate["samples"] == 16  # the checkpoint's 8 continue, like its energy
    assert validate["j_per_sample"] == pytest.approx(50.0 / 4)  # a 0.5 s batch of 4 at 100 W, before and after
    assert flops.samples["validate"].samples == 16
    assert flops.predictions["validate"]["flops_per_sample"] == LINEAR_FLOPS
