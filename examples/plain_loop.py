"""Meter a plain PyTorch loop (no Lightning) with the Meter context manager, and price it: energy and FLOPs.

``meter.count_flops`` wraps the forward *and* the backward of a step: what runs inside it is counted. With a
``signature`` (the input shape here) the first step is counted and the count reused for the steps that follow.
"""

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
            with meter.count_flops(signature=tuple(x.shape)):
                nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            if step % 50 == 0:
                meter.sample()  # live figures; also keeps RAPL wrap-around detectable on long runs
    print(
        PriceTag(meter.spend, Grid.from_location("SE"), sensors=meter.discovery.summary(), title="plain loop").to_text()
    )
    # 2 FLOPs per multiply-add; forward and backward of both layers (the first layer's input needs no gradient)
    per_step = 2 * 512 * (256 * 512 + 512 * 10) + 2 * 512 * (256 * 512 + 2 * 512 * 10)
    assert meter.spend.flops == 200 * per_step, (meter.spend.flops, 200 * per_step)


if __name__ == "__main__":
    main()
