"""FLOP counts of the reference models against the hand-derived counts, per tool, as % off.

Run: python benchmarks/flops_accuracy.py [--device cuda]   (fvcore and ptflops: pip install fvcore ptflops)

Tools: ours (lightning_greenai.flops.FlopCounter), torch's FlopCounterMode on the real device, fvcore and ptflops
(forward only: they do not count backward). fvcore and ptflops report multiply-adds, which they call FLOPs: their
numbers are shown as reported, so a tool that counts MACs shows about -50 %; ptflops reports per sample, so its
figure is multiplied by the batch size before comparing.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_greenai.flops import FlopCounter
from tests.flops.reference_models import GPT, MLP, RNNLM, ResNetish


def cases(device):
    torch.manual_seed(0)
    fused = True if device.type == "cuda" else None  # cuDNN fuses the LSTM and the GRU backward; CPU only the LSTM
    return [
        ("MLP", MLP(), lambda: torch.randn(8, 64, device=device), lambda m: m.analytic(8)),
        (
            "GPT (SDPA)",
            GPT(sdpa=True),
            lambda: torch.randint(0, 256, (4, 32), device=device),
            lambda m: m.analytic(4, 32),
        ),
        (
            "GPT (hand-written attn)",
            GPT(sdpa=False),
            lambda: torch.randint(0, 256, (4, 32), device=device),
            lambda m: m.analytic(4, 32),
        ),
        (
            "ResNet-style CNN",
            ResNetish(),
            lambda: torch.randn(2, 3, 16, 16, device=device),
            lambda m: m.analytic(2, 16, 16),
        ),
        (
            "LSTM LM",
            RNNLM("lstm"),
            lambda: torch.randint(0, 200, (3, 12), device=device),
            lambda m: m.analytic(3, 12, fused=fused),
        ),
        (
            "GRU LM",
            RNNLM("gru"),
            lambda: torch.randint(0, 200, (3, 12), device=device),
            lambda m: m.analytic(3, 12, fused=fused),
        ),
    ]


def train_step(model, x):
    model.zero_grad()
    model(x).float().pow(2).mean().backward()


def ours(model, x):
    with FlopCounter() as f:
        model(x)
    with FlopCounter() as s:
        train_step(model, x)
    return f.count.forward, s.count.model


def torch_counter(model, x):
    with FlopCounterMode(display=False) as f:
        model(x)
    with FlopCounterMode(display=False) as s:
        train_step(model, x)
    return f.get_total_flops(), s.get_total_flops()


def fvcore_forward(model, x):
    try:
        from fvcore.nn import FlopCountAnalysis
    except ImportError:
        return None
    analysis = FlopCountAnalysis(model, (x,))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis.total()


def ptflops_forward(model, x):
    try:
        from ptflops import get_model_complexity_info
    except ImportError:
        return None
    macs, _ = get_model_complexity_info(
        model,
        tuple(x.shape),
        input_constructor=lambda _: x,
        as_strings=False,
        print_per_layer_stat=False,
        verbose=False,
    )
    return macs * x.shape[0]  # ptflops reports per sample: scale back to the batch


def pct(value, truth):
    return "n/a" if value is None else f"{100 * (value - truth) / truth:+.1f} %"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}\n")
    head = [
        "model",
        "analytic fwd",
        "ours fwd",
        "ours step",
        "FlopCounterMode fwd",
        "FlopCounterMode step",
        "fvcore fwd",
        "ptflops fwd",
    ]
    rows = []
    warnings.simplefilter("ignore")
    for label, model, make_x, analytic in cases(device):
        model.to(device)
        x = make_x()
        forward, backward = analytic(model)
        of, os_ = ours(model, x)
        tf, ts = torch_counter(model, x)
        fv = fvcore_forward(model, x) if device.type == "cpu" else None
        pt = ptflops_forward(model, x) if device.type == "cpu" else None
        rows.append(
            [
                label,
                f"{forward:.4g}",
                pct(of, forward),
                pct(os_, forward + backward),
                pct(tf, forward),
                pct(ts, forward + backward),
                pct(fv, forward),
                pct(pt, forward),
            ]
        )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
