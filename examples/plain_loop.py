"""Meter a plain PyTorch loop (no Lightning) with the Meter context manager, and price it."""

from __future__ import annotations

import torch
from torch import nn

from lightning_greenai import Grid, Meter, PriceTag


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(512, 256), torch.randint(0, 10, (512,))
    with Meter() as meter:
        for step in range(200):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            if step % 50 == 0:
                meter.sample()  # live figures; also keeps RAPL wrap-around detectable on long runs
    print(
        PriceTag(meter.spend, Grid.from_location("SE"), sensors=meter.discovery.summary(), title="plain loop").to_text()
    )


if __name__ == "__main__":
    main()
