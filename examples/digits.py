"""Train a small MLP on scikit-learn's bundled digits data with the EnergyMonitor and FlopMonitor; print its price tag.

    python examples/digits.py --country DE --max-epochs 5

Runs on CPU in well under two minutes; on a machine with a GPU it meters the GPU through NVML too.
"""

from __future__ import annotations

import argparse

import lightning as L
import torch
import torchmetrics
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split

from lightning_greenai import EnergyMonitor, FlopMonitor


class DigitsDataModule(L.LightningDataModule):
    """The 1,797 8x8 digit images that ship with scikit-learn, split 80/20."""

    def __init__(self, batch_size: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.batch_size, self.seed = batch_size, seed

    def setup(self, stage: str) -> None:
        data = load_digits()
        x = torch.tensor(data.data, dtype=torch.float32) / 16.0
        y = torch.tensor(data.target, dtype=torch.long)
        n_val = len(x) // 5
        generator = torch.Generator().manual_seed(self.seed)
        self.train_set, self.val_set = random_split(TensorDataset(x, y), [len(x) - n_val, n_val], generator=generator)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)  # the held-out 20 %: an example has no third split


class DigitsClassifier(L.LightningModule):
    """A two-layer MLP."""

    def __init__(self, width: int = 128, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_acc(self(x).argmax(dim=-1), y)
        self.log("val/acc", self.val_acc, prog_bar=True, sync_dist=True)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test/acc", (self(x).argmax(dim=-1) == y).float().mean(), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main(argv: list[str] | None = None) -> EnergyMonitor:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--country", default="DE", help="ISO code or name of the grid's country")
    parser.add_argument("--max-epochs", type=int, default=5)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--root", default="outputs/digits", help="where logs and price_tag.json go")
    args = parser.parse_args(argv)

    L.seed_everything(0, verbose=False)
    monitor = EnergyMonitor(grid={"country": args.country})
    trainer = L.Trainer(
        max_epochs=args.max_epochs,
        callbacks=[monitor, FlopMonitor()],
        default_root_dir=args.root,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=5,
    )
    trainer.fit(DigitsClassifier(args.width, args.lr), DigitsDataModule())
    print(
        f"val/acc = {trainer.callback_metrics['val/acc']:.3f}   price tag written to {trainer.log_dir}/price_tag.json"
    )
    return monitor


if __name__ == "__main__":
    main()
