import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from lightning_greenai import EnergyMonitor, FlopMonitor, GreenAIWarning
from lightning_greenai.sensors.fake import ConstantPowerSensor, FakeClock
from tests.flops.reference_models import GPT, MLP

B = 8


class Wrapper(L.LightningModule):
    def __init__(self, net, lr=0.1, optimizer="sgd"):
        super().__init__()
        self.net, self.lr, self.optimizer = net, lr, optimizer

    def step(self, batch):
        (x,) = batch
        return self.net(x).float().pow(2).mean()

    def training_step(self, batch, batch_idx):
        return self.step(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.step(batch))

    def test_step(self, batch, batch_idx):
        self.step(batch)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr)
        return torch.optim.SGD(params, lr=self.lr)


def loader(n_batches=4, dim=64):
    return DataLoader(TensorDataset(torch.randn(B * n_batches, dim)), batch_size=B)


def trainer(tmp_path, callbacks, **kwargs):
    args = dict(
        default_root_dir=tmp_path,
        max_epochs=1,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        logger=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    args.update(kwargs)
    return L.Trainer(callbacks=callbacks, **args)


def n_params(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_train_and_validation_flops_are_exact_and_apart(tmp_path):
    mlp = MLP()
    forward, backward = mlp.analytic(B)
    mon = FlopMonitor()
    t = trainer(tmp_path, [mon])
    model = Wrapper(mlp)
    t.fit(model, loader(4), loader(2))
    totals = mon.totals
    assert totals["train/forward"] == 4 * forward
    assert totals["train/backward"] == 4 * backward
    assert totals["train/optimizer"] == 4 * 2 * n_params(mlp)  # SGD: 2 FLOPs per element
    assert totals["val/forward"] == 2 * forward
    assert mon.spend.flops == 4 * (forward + backward + 2 * n_params(mlp))
    t.validate(model, loader(3))
    assert mon.totals["val/forward"] == 5 * forward
    assert mon.spend.flops == 4 * (forward + backward + 2 * n_params(mlp))  # validate() does not inflate training
    t.test(model, loader(1))
    assert mon.totals["test/forward"] == forward


def test_frozen_layers_get_no_weight_gradient_and_no_input_gradient_below_them(tmp_path):
    mlp = MLP((64, 128, 96, 10))
    mlp.layers[0].requires_grad_(False)
    mon = FlopMonitor()
    trainer(tmp_path, [mon]).fit(Wrapper(mlp), loader(2))
    # layer 1 frozen: no dW; layer 2's input needs no gradient: dW only; layer 3: dW and dX
    backward = 2 * B * 128 * 96 + 4 * B * 96 * 10
    assert mon.totals["train/backward"] == 2 * backward


def test_gradient_accumulation_counts_every_micro_batch(tmp_path):
    mlp = MLP()
    forward, backward = mlp.analytic(B)
    mon = FlopMonitor()
    trainer(tmp_path, [mon], accumulate_grad_batches=2).fit(Wrapper(mlp), loader(4))
    assert mon.totals["train/forward"] == 4 * forward
    assert mon.totals["train/backward"] == 4 * backward
    assert mon.totals["train/optimizer"] == 2 * 2 * n_params(mlp)  # two optimizer steps


def test_adam_is_estimated_per_parameter(tmp_path):
    mlp = MLP()
    mon = FlopMonitor()
    trainer(tmp_path, [mon], max_steps=3).fit(Wrapper(mlp, optimizer="adam"), loader(4))
    assert mon.totals["train/optimizer"] == 3 * 12 * n_params(mlp)


class SeqDataset(torch.utils.data.Dataset):
    lengths = (8, 16, 8, 32, 16)

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, i):
        return (torch.randint(0, 256, (4, self.lengths[i])),)


def test_variable_sequence_lengths_are_priced_per_step(tmp_path):
    torch.manual_seed(0)
    gpt = GPT()
    mon = FlopMonitor()
    data = DataLoader(SeqDataset(), batch_size=None)
    trainer(tmp_path, [mon]).fit(Wrapper(gpt), data)
    expected = sum(sum(gpt.analytic(4, t)) for t in SeqDataset.lengths)
    assert mon.totals["train/forward"] + mon.totals["train/backward"] == expected
    assert len(mon._steps.cache) == 3  # three distinct shapes counted; the repeats reused


class Spectral(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(64, 64)

    def forward(self, x):
        return torch.fft.rfft(self.lin(x), dim=-1).abs()


def test_unpriced_heavy_ops_are_listed_and_warned_once(tmp_path):
    mon = FlopMonitor()
    with pytest.warns(GreenAIWarning, match=r"cannot price .*aten\._fft_r2c"):
        trainer(tmp_path, [mon]).fit(Wrapper(Spectral()), loader(3))
    assert mon.uncounted_ops["aten._fft_r2c.default"] >= 1
    assert mon.totals["train/forward"] == 3 * 2 * B * 64 * 64  # the linear layer is still counted


class Checkpointed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = MLP()

    def forward(self, x):
        return torch.utils.checkpoint.checkpoint(self.mlp, x, use_reentrant=False)


def test_activation_checkpoint_recompute_is_reported_apart(tmp_path):
    model = Checkpointed()
    forward, backward = model.mlp.analytic(B)
    mon = FlopMonitor()
    trainer(tmp_path, [mon], max_steps=2).fit(Wrapper(model), loader(2))
    assert mon.totals["train/forward"] == 2 * forward
    assert mon.totals["train/backward"] == 2 * backward
    # the recompute stops once every saved tensor backward needs is rebuilt: the last layer's output is not
    # needed, so its product is not run again (torch.utils.checkpoint's early stop)
    assert mon.totals["train/recompute"] == 2 * (forward - 2 * B * 96 * 10)


def read_csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_logged_keys_and_mfu_only_with_a_known_peak(tmp_path):
    mlp = MLP()
    mon = FlopMonitor(peak_flops_per_s=1e12)
    t = trainer(tmp_path, [mon], logger=CSVLogger(tmp_path))
    t.fit(Wrapper(mlp), loader(4))
    rows = read_csv(Path(t.log_dir) / "metrics.csv")
    flops = [float(r["greenai/flops"]) for r in rows if r.get("greenai/flops")]
    assert flops[-1] == mon.spend.flops
    per_step = [float(r["greenai/flops_per_step"]) for r in rows if r.get("greenai/flops_per_step")]
    forward, backward = mlp.analytic(B)
    assert per_step[-1] == forward + backward + 2 * n_params(mlp)
    mfu = [float(r["greenai/mfu"]) for r in rows if r.get("greenai/mfu")]
    rate = [float(r["greenai/flops_per_s"]) for r in rows if r.get("greenai/flops_per_s")]
    assert mfu and mfu[-1] == pytest.approx(rate[-1] / 1e12)

    mon2 = FlopMonitor()
    t2 = trainer(tmp_path / "cpu", [mon2], logger=CSVLogger(tmp_path / "cpu"))
    t2.fit(Wrapper(MLP()), loader(2))
    assert not any(r.get("greenai/mfu") for r in read_csv(Path(t2.log_dir) / "metrics.csv"))


def test_checkpoint_resume_keeps_the_totals(tmp_path):
    mlp = MLP()
    forward, backward = mlp.analytic(B)
    t = trainer(tmp_path, [FlopMonitor()], max_steps=2, max_epochs=-1)
    model = Wrapper(mlp)
    t.fit(model, loader(8))
    t.save_checkpoint(tmp_path / "two.ckpt")
    resumed = FlopMonitor()
    trainer(tmp_path, [resumed], max_steps=5, max_epochs=-1).fit(
        Wrapper(MLP()), loader(8), ckpt_path=tmp_path / "two.ckpt"
    )
    assert resumed.totals["train/forward"] == 5 * forward
    assert resumed.totals["train/backward"] == 5 * backward


def test_energy_monitor_price_tag_gains_the_flop_lines(tmp_path):
    clock = FakeClock()
    energy = EnergyMonitor(
        grid={"country": "DE"}, sensors=[ConstantPowerSensor("gpu:0", 100.0, clock=clock)], clock=clock, verbose=False
    )
    flops = FlopMonitor()
    trainer(tmp_path, [energy, flops]).fit(Wrapper(MLP()), loader(3))
    assert energy.spend.flops == flops.spend.flops > 0
    tag = energy.price_tag.to_dict()
    assert tag["flops"] == flops.spend.flops
    assert tag["flops_by_phase"]["train/forward"] == flops.totals["train/forward"]
    assert "FLOPs" in energy.price_tag.to_text()


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`peak_flops_per_s` must be > 0 or None, got -1"):
        FlopMonitor(peak_flops_per_s=-1)
    with pytest.raises(ValueError, match=r"`log_every_n_steps` must be >= 1 or None, got 0"):
        FlopMonitor(log_every_n_steps=0)


def test_progress_bar_shows_the_rate_and_mfu_when_asked(tmp_path):
    mon = FlopMonitor(prog_bar=True, peak_flops_per_s=1e12)
    t = trainer(tmp_path, [mon])
    t.fit(Wrapper(MLP()), loader(3))
    assert t.progress_bar_metrics["greenai/flops_per_s"] > 0
    assert t.progress_bar_metrics["greenai/mfu"] == pytest.approx(t.progress_bar_metrics["greenai/flops_per_s"] / 1e12)


def test_gradient_clipping_is_not_reported_as_an_uncounted_heavy_op(tmp_path):
    mlp = MLP()
    forward, _ = mlp.analytic(B)
    mon = FlopMonitor()
    trainer(tmp_path, [mon], gradient_clip_val=1.0).fit(Wrapper(mlp), loader(2))  # a GreenAIWarning would fail here
    assert not mon.uncounted_ops
    assert mon.totals["train/forward"] == 2 * forward


class Predictor(Wrapper):
    def predict_step(self, batch, batch_idx):
        return self.net(batch[0])


def test_each_predict_call_gets_its_own_figures(tmp_path):
    torch.manual_seed(0)
    gpt = GPT()
    mon = FlopMonitor(tokens_key=0)
    t = trainer(tmp_path, [mon], logger=CSVLogger(tmp_path))
    model = Predictor(gpt)

    def tokens(n, length):
        return DataLoader(TensorDataset(torch.randint(0, 256, (n, length))), batch_size=4)

    short, long = gpt.analytic(1, 8)[0], gpt.analytic(1, 32)[0]  # forward FLOPs of one sequence
    t.predict(model, tokens(8, 8))
    assert mon.predictions["predict"]["flops_per_sample"] == short
    t.predict(model, tokens(4, 32))
    second = mon.predictions["predict"]
    assert second["samples"] == 4 and second["flops_per_sample"] == long  # not (8 short + 4 long) / 12
    assert second["flops_per_token"] == pytest.approx(long / 32)
    assert mon.totals["predict/forward"] == 8 * short + 4 * long  # the totals still add up every call
    assert mon.samples["predict"].samples == 12
    rows = read_csv(Path(t.log_dir) / "metrics.csv")
    logged = [float(r["greenai/predict/flops_per_sample"]) for r in rows if r.get("greenai/predict/flops_per_sample")]
    assert logged == [short, long]
