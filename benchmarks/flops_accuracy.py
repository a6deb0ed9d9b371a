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
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_greenai.flops.counter import StepFlops
from tests.flops.reference_models import GPT, MLP, RNNLM, ResNetish
from tests.flops.test_fast_paths import TinyMoE


class SelfAttention(nn.Module):
    """nn.MultiheadAttention as self-attention; in eval with autograd off it takes PyTorch's fused fast path."""

    def __init__(self, e=64, heads=4):
        super().__init__()
        self.e = e
        self.mha = nn.MultiheadAttention(e, heads, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]

    def analytic(self, b, t):
        e, n = self.e, b * t
        forward = 2 * n * e * 3 * e + 4 * b * t * t * e + 2 * n * e * e  # in-projection, QK^T and PV, out-projection
        # the input is data: the in-projection gets its weight gradient only; attention and out-projection dX and dW
        return forward, 2 * n * e * 3 * e + 8 * b * t * t * e + 4 * n * e * e


class Encoder(nn.Module):
    """Two nn.TransformerEncoderLayer (fused into one operator per layer in eval with autograd off)."""

    def __init__(self, e=64, heads=4, ff=128, layers=2):
        super().__init__()
        self.e, self.ff, self.layers = e, ff, layers
        layer = nn.TransformerEncoderLayer(e, heads, ff, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x):
        return self.encoder(x)

    def analytic(self, b, t):
        e, n = self.e, b * t
        attention = 2 * n * e * 3 * e + 4 * b * t * t * e + 2 * n * e * e
        feed_forward = 2 * 2 * n * e * self.ff
        forward = self.layers * (attention + feed_forward)
        # only the first layer's input is data (its in-projection: weight gradient only)
        return forward, 2 * forward - 2 * n * e * 3 * e


class MoE(TinyMoE):
    def analytic(self, tokens):
        d, hidden, k = 32, 48, self.top_k
        router = 2 * tokens * d * self.experts
        gate_up, down = 2 * tokens * k * d * 2 * hidden, 2 * tokens * k * hidden * d
        return router + gate_up + down, router + gate_up + 2 * down  # the input is data: no dX for the first two


def transformers_cases(device):
    try:
        import transformers
    except ImportError:
        return []
    b, t, v, d, layers, heads, kv_heads, inter = 4, 32, 256, 64, 2, 4, 2, 176
    n, head_dim = b * t, d // heads
    attention = 4 * b * t * t * d
    gpt2 = lambda impl: transformers.GPT2LMHeadModel(  # noqa: E731
        transformers.GPT2Config(
            vocab_size=v,
            n_positions=t,
            n_embd=d,
            n_layer=layers,
            n_head=heads,
            bos_token_id=0,
            eos_token_id=0,
            attn_implementation=impl,
        )
    )
    gpt2_fwd = layers * (24 * n * d * d + attention) + 2 * n * d * v
    llama = lambda impl: transformers.LlamaForCausalLM(  # noqa: E731
        transformers.LlamaConfig(
            vocab_size=v,
            hidden_size=d,
            intermediate_size=inter,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            attn_implementation=impl,
        )
    )
    projections = 4 * n * d * d + 4 * n * d * kv_heads * head_dim
    llama_fwd = layers * (projections + attention + 6 * n * d * inter) + 2 * n * d * v
    mixtral = lambda impl: transformers.MixtralForCausalLM(  # noqa: E731
        transformers.MixtralConfig(
            vocab_size=v,
            hidden_size=d,
            intermediate_size=inter,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            num_local_experts=4,
            num_experts_per_tok=2,
            attn_implementation=impl,
        )
    )
    mixtral_fwd = layers * (projections + attention + 2 * n * d * 4 + 2 * 6 * n * d * inter) + 2 * n * d * v
    tokens = lambda: torch.randint(0, v, (b, t), device=device)  # noqa: E731
    out = []
    for impl in ("sdpa", "eager"):
        out += [
            (f"transformers GPT-2 ({impl})", gpt2(impl), tokens, lambda m, f=gpt2_fwd: (f, 2 * f)),
            (f"transformers Llama GQA ({impl})", llama(impl), tokens, lambda m, f=llama_fwd: (f, 2 * f)),
            (f"transformers Mixtral top-2 of 4 ({impl})", mixtral(impl), tokens, lambda m, f=mixtral_fwd: (f, 2 * f)),
        ]
    return out


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
            "GPT (SDPA), torch.compile",
            torch.compile(GPT(sdpa=True)),
            lambda: torch.randint(0, 256, (4, 32), device=device),
            lambda m: m._orig_mod.analytic(4, 32),
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
        (
            "nn.MultiheadAttention",
            SelfAttention(),
            lambda: torch.randn(4, 32, 64, device=device),
            lambda m: m.analytic(4, 32),
        ),
        (
            "nn.TransformerEncoder (2 layers)",
            Encoder(),
            lambda: torch.randn(4, 32, 64, device=device),
            lambda m: m.analytic(4, 32),
        ),
        ("MoE top-2 of 4 (_grouped_mm)", MoE(), lambda: torch.randn(3, 5, 32, device=device), lambda m: m.analytic(15)),
        *transformers_cases(device),
    ]


def output(y):
    """The tensor a model returns (transformers' ``logits``, a module's first output)."""
    y = getattr(y, "logits", y)
    return y[0] if isinstance(y, tuple) else y


def train_step(model, x):
    model.zero_grad()
    output(model(x)).float().pow(2).mean().backward()


def ours(model, x):
    """Forward, forward in eval under inference_mode, and a training step, counted as FlopMonitor counts them."""
    steps = StepFlops()
    with steps.step("forward"):
        model(x)
    forward = steps.last.forward
    model.eval()
    with torch.inference_mode(), steps.step("inference"):
        model(x)
    inference = steps.last.forward
    model.train()
    with steps.step("step"):
        train_step(model, x)
    return forward, inference, steps.last.model


def torch_counter(model, x):
    def counted(fn):
        try:
            with FlopCounterMode(display=False) as f:
                fn()
        except Exception:
            return FAILED
        return f.get_total_flops()

    forward = counted(lambda: model(x))
    model.eval()
    with torch.inference_mode():
        inference = counted(lambda: model(x))
    model.train()
    return forward, inference, counted(lambda: train_step(model, x))


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


FAILED = object()  # the tool raised on this model


def attempt(tool, model, x):
    try:
        return tool(model, x)
    except Exception:
        return FAILED


def pct(value, truth):
    if value is FAILED:
        return "fails"
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
        "ours inference",
        "ours step",
        "FlopCounterMode fwd",
        "FlopCounterMode inference",
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
        ours_fwd, ours_inference, ours_step = ours(model, x)
        torch_fwd, torch_inference, torch_step = torch_counter(model, x)
        fv = attempt(fvcore_forward, model, x) if device.type == "cpu" else None
        pt = attempt(ptflops_forward, model, x) if device.type == "cpu" else None
        rows.append(
            [
                label,
                f"{forward:.4g}",
                pct(ours_fwd, forward),
                pct(ours_inference, forward),
                pct(ours_step, forward + backward),
                pct(torch_fwd, forward),
                pct(torch_inference, forward),
                pct(torch_step, forward + backward),
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
