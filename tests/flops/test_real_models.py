"""Real architectures from the libraries users train, counted against formulas written here (2 FLOPs per multiply-add).

transformers' GPT-2, Llama (grouped-query attention, RoPE, SwiGLU) and Mixtral (top-k routed experts through
``aten._grouped_mm``) in tiny configs, each with both attention implementations; torchvision's ResNet and MobileNet
against their published multiply-adds (``weights.meta["_ops"]``) where torchvision loads.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from lightning_greenai.flops import FlopCounter

transformers = pytest.importorskip("transformers")

B, T, V, D, LAYERS, HEADS = 3, 16, 101, 32, 2, 4
IMPLEMENTATIONS = ["sdpa", "eager"]


def counts(model: torch.nn.Module, x: torch.Tensor) -> tuple:
    """Forward under inference_mode (how Lightning validates), forward alone with grad, and a training step."""
    with torch.inference_mode(), FlopCounter() as inference:
        model(x)
    with FlopCounter() as forward:
        model(x)
    model.zero_grad()
    with FlopCounter() as step:
        model(x).logits.float().pow(2).mean().backward()
    return inference.count, forward.count, step.count


def check(model: torch.nn.Module, expected_forward: int) -> None:
    torch.manual_seed(0)
    x = torch.randint(0, V, (B, T))
    inference, forward, step = counts(model, x)
    assert inference.forward == forward.forward == expected_forward
    # the token embedding trains, so every product's input needs a gradient: dX and dW, twice the forward
    assert step.forward == expected_forward
    assert step.backward == 2 * expected_forward
    assert not (inference.uncounted or step.uncounted)


def attention(n_query_heads_dim: int) -> int:
    """Both attention products over the full T x T score matrix (causal masking does not skip the work)."""
    return 2 * 2 * B * T * T * n_query_heads_dim


def quiet(config_cls, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return config_cls(**kwargs)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_gpt2(impl):
    config = quiet(
        transformers.GPT2Config,
        vocab_size=V,
        n_positions=64,
        n_embd=D,
        n_layer=LAYERS,
        n_head=HEADS,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation=impl,
    )
    n = B * T
    per_layer = 2 * n * D * 3 * D + attention(D) + 2 * n * D * D + 2 * 2 * n * D * 4 * D  # qkv, attn, out, MLP
    check(transformers.GPT2LMHeadModel(config), LAYERS * per_layer + 2 * n * D * V)  # + the tied LM head


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_llama_with_grouped_query_attention(impl):
    kv_heads, intermediate = 2, 88
    config = quiet(
        transformers.LlamaConfig,
        vocab_size=V,
        hidden_size=D,
        intermediate_size=intermediate,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=kv_heads,
        max_position_embeddings=64,
        attn_implementation=impl,
    )
    n, head_dim = B * T, D // HEADS
    projections = 2 * (2 * n * D * D) + 2 * (2 * n * D * kv_heads * head_dim)  # q, o full; k, v per KV head
    swiglu = 3 * 2 * n * D * intermediate  # gate, up, down
    check(transformers.LlamaForCausalLM(config), LAYERS * (projections + attention(D) + swiglu) + 2 * n * D * V)


def mixtral(impl: str, experts_impl: str) -> tuple[torch.nn.Module, int]:
    """A tiny Mixtral and the forward FLOPs of a B x T batch: only the routed tokens go through experts."""
    kv_heads, intermediate, experts, top_k = 2, 88, 4, 2
    config = quiet(
        transformers.MixtralConfig,
        vocab_size=V,
        hidden_size=D,
        intermediate_size=intermediate,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=kv_heads,
        max_position_embeddings=64,
        num_local_experts=experts,
        num_experts_per_tok=top_k,
        attn_implementation=impl,
        experts_implementation=experts_impl,
    )
    n, head_dim = B * T, D // HEADS
    projections = 2 * (2 * n * D * D) + 2 * (2 * n * D * kv_heads * head_dim)
    router = 2 * n * D * experts
    routed_experts = n * top_k * 3 * 2 * D * intermediate  # each token through top_k SwiGLU experts, not all four
    per_layer = projections + attention(D) + router + routed_experts
    return transformers.MixtralForCausalLM(config), LAYERS * per_layer + 2 * n * D * V


@pytest.mark.parametrize("experts_impl", ["grouped_mm", "batched_mm", "eager"])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_mixtral_counts_only_the_routed_tokens(impl, experts_impl):
    # eager experts loop over the experts and add each one's tokens back with index_add_: no product, not flagged
    check(*mixtral(impl, experts_impl))


def test_mixtral_with_eager_experts_trains_under_flop_monitor_without_a_warning(tiny_trainer):
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_greenai import FlopMonitor

    class LM(L.LightningModule):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            return self.model(batch[0]).logits.float().pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    torch.manual_seed(0)
    model, forward = mixtral("eager", "eager")
    monitor = FlopMonitor()
    trainer = tiny_trainer(max_steps=-1, max_epochs=1, callbacks=[monitor], logger=False)
    tokens = torch.randint(0, V, (2 * B, T))
    trainer.fit(LM(model), DataLoader(TensorDataset(tokens), batch_size=B))  # a GreenAIWarning fails the test here
    assert not monitor.uncounted_ops
    # the second batch reuses the first's count (same signature): whatever the routing, top_k experts per token
    assert monitor.totals["train/forward"] == 2 * forward
    assert monitor.totals["train/backward"] == 2 * 2 * forward


def _torchvision():
    try:
        import torchvision.models as models
    except Exception as err:  # a wheel built for another torch: its C extension fails to register its operators
        pytest.skip(f"torchvision does not load against torch {torch.__version__}: {type(err).__name__}: {err}")
    return models


@pytest.mark.parametrize(
    ("name", "weights"), [("resnet18", "ResNet18_Weights"), ("mobilenet_v3_small", "MobileNet_V3_Small_Weights")]
)
def test_torchvision_models_match_their_published_multiply_adds(name, weights):
    models = _torchvision()
    published_gmacs = getattr(models, weights).DEFAULT.meta["_ops"]  # GMACs of one 224 x 224 image, 3 decimals
    model = getattr(models, name)().eval()
    with torch.inference_mode(), FlopCounter() as counter:
        model(torch.randn(1, 3, 224, 224))
    assert counter.count.forward / 2e9 == pytest.approx(published_gmacs, abs=0.0005 + 0.01 * published_gmacs)
    assert not counter.count.uncounted
