"""Nothing heavy is silently missed: PyTorch's fused inference fast paths, grouped (MoE) products, unknown kernels."""

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from lightning_greenai.flops.counter import FlopCounter

B, L, E, H, F = 2, 7, 32, 4, 64


class OpNames(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func))
        return func(*args, **(kwargs or {}))


def count(module, *inputs, mode):
    with mode(), FlopCounter() as counter:
        module(*inputs)
    return counter.count


def ops(module, *inputs, mode):
    with mode(), OpNames() as names:
        module(*inputs)
    return names.names


def mha_flops(b, lq, lk, e):
    return 2 * e * e * (b * lq + 2 * b * lk) + 4 * b * lq * lk * e + 2 * b * lq * e * e


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
def test_multihead_attention_fast_path_is_priced_like_the_slow_path(mode):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(E, H, batch_first=True).eval()
    x = torch.randn(B, L, E)

    def self_attention(q):
        return mha(q, q, q, need_weights=False)

    assert "aten._native_multi_head_attention.default" in ops(self_attention, x, mode=mode)
    fast = count(self_attention, x, mode=mode)
    slow = count(self_attention, x, mode=torch.enable_grad)  # grad on: the composite path of linear + SDPA
    assert fast.forward == slow.forward == mha_flops(B, L, L, E)
    assert not fast.uncounted


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
def test_cross_attention_fast_path(mode):
    mha = nn.MultiheadAttention(E, H, batch_first=True).eval()
    q, kv = torch.randn(B, L, E), torch.randn(B, 11, E)

    def cross(query, memory):
        return mha(query, memory, memory, need_weights=False)

    fast = count(cross, q, kv, mode=mode)
    assert fast.forward == count(cross, q, kv, mode=torch.enable_grad).forward == mha_flops(B, L, 11, E)


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
def test_transformer_encoder_fast_path_is_priced_like_the_slow_path(mode):
    layer = nn.TransformerEncoderLayer(E, H, F, batch_first=True)
    encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()
    x = torch.randn(B, L, E)
    assert "aten._transformer_encoder_layer_fwd.default" in ops(encoder, x, mode=mode)
    fast = count(encoder, x, mode=mode)
    slow = count(encoder, x, mode=torch.enable_grad)
    per_layer = mha_flops(B, L, L, E) + 2 * B * L * E * F * 2
    assert fast.forward == slow.forward == 2 * per_layer
    assert not fast.uncounted


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_a_padded_batch_through_the_nested_fast_path_counts_the_real_tokens():
    layer = nn.TransformerEncoderLayer(E, H, F, batch_first=True)
    encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=True).eval()
    x = torch.randn(B, L, E)
    padding = torch.zeros(B, L, dtype=torch.bool)
    padding[1, 4:] = True  # the second sequence has 4 real tokens
    with torch.inference_mode(), FlopCounter() as counter:
        encoder(x, src_key_padding_mask=padding)
    lengths = [L, 4]
    expected = sum(mha_flops(1, n, n, E) + 2 * n * E * F * 2 for n in lengths)
    assert counter.count.forward == expected  # the padding is never computed, so it is not counted


class TinyMoE(nn.Module):
    """A Mixtral-style expert layer: top-k routing, then each expert's SwiGLU on its tokens by grouped products."""

    def __init__(self, dim=32, hidden=48, experts=4, top_k=2):
        super().__init__()
        self.top_k, self.experts = top_k, experts
        self.router = nn.Linear(dim, experts, bias=False)
        self.w_gate_up = nn.Parameter(torch.randn(experts, dim, 2 * hidden) * 0.02)
        self.w_down = nn.Parameter(torch.randn(experts, hidden, dim) * 0.02)

    def forward(self, x):
        tokens = x.reshape(-1, x.shape[-1])
        weights, chosen = torch.topk(self.router(tokens).softmax(-1), self.top_k, dim=-1)
        flat = chosen.reshape(-1)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=self.experts)
        offs = torch.cumsum(counts, 0).to(torch.int32)
        routed = tokens.repeat_interleave(self.top_k, dim=0)[order]
        gate, up = torch._grouped_mm(routed, self.w_gate_up, offs=offs).chunk(2, dim=-1)
        out = torch._grouped_mm(nn.functional.silu(gate) * up, self.w_down, offs=offs)
        combined = torch.zeros_like(out).index_copy(0, order, out) * weights.reshape(-1, 1)
        return combined.reshape(-1, self.top_k, x.shape[-1]).sum(1).reshape(x.shape)


@pytest.mark.skipif(not hasattr(torch, "_grouped_mm"), reason="torch._grouped_mm arrived in torch 2.8")
def test_a_mixture_of_experts_counts_only_the_routed_tokens():
    torch.manual_seed(0)
    moe = TinyMoE()
    x = torch.randn(3, 5, 32)
    tokens = 15
    with FlopCounter() as counter:
        out = moe(x)
    router = 2 * tokens * 32 * 4
    experts = 2 * (tokens * 2) * 32 * (2 * 48) + 2 * (tokens * 2) * 48 * 32  # top-2: each token in two experts
    assert counter.count.forward == router + experts
    with FlopCounter() as backward:
        out.sum().backward()
    # x needs no gradient: the first grouped product and the router get weight gradients only, the second both
    gate_up = 2 * (tokens * 2) * 32 * (2 * 48)
    down = 2 * (tokens * 2) * 48 * 32
    assert backward.count.backward == gate_up + 2 * down + router
    assert not counter.count.uncounted and not backward.count.uncounted


def test_an_unknown_kernel_doing_a_product_is_flagged_whatever_its_name():
    @torch.library.custom_op("greenai_test::blend", mutates_args=())
    def blend(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x @ w

    x, w = torch.randn(8, 64), torch.randn(64, 32)
    with FlopCounter() as counter:
        blend(x, w)
    assert counter.count.forward == 0  # no formula: nothing invented
    assert counter.count.uncounted == {"greenai_test.blend.default": 1}  # but never a silent zero


def test_element_wise_and_reducing_kernels_are_not_flagged():
    @torch.library.custom_op("greenai_test::fused_gelu_scale", mutates_args=())
    def fused(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(x) * scale

    x, scale = torch.randn(64, 128), torch.randn(64, 128)
    with FlopCounter() as counter:
        fused(x, scale)
        torch.nn.functional.mse_loss(x, scale)
        torch.cat([x, scale])
    assert not counter.count.uncounted
