"""The counter against FLOPs derived by hand, forward and training step, within 1 % (on CPU)."""

import pytest
import torch

from lightning_greenai.flops import FlopCounter
from tests.flops.reference_models import GPT, MLP, RNNLM, ResNetish


def count(model, x):
    with FlopCounter() as fwd:
        model(x)
    model.zero_grad()
    with FlopCounter() as step:
        model(x).float().pow(2).mean().backward()
    return fwd.count, step.count


def check(model, x, analytic):
    fwd, step = count(model, x)
    forward, backward = analytic
    assert fwd.forward == pytest.approx(forward, rel=0.01)
    assert fwd.backward == 0
    assert step.forward == pytest.approx(forward, rel=0.01)
    assert step.model == pytest.approx(forward + backward, rel=0.01)
    assert not step.uncounted
    return step


def test_mlp():
    model = MLP()
    check(model, torch.randn(8, 64), model.analytic(8))


@pytest.mark.parametrize("sdpa", [True, False], ids=["sdpa", "handwritten"])
def test_gpt_decoder(sdpa):
    torch.manual_seed(0)
    model = GPT(sdpa=sdpa)
    step = check(model, torch.randint(0, 256, (4, 32)), model.analytic(4, 32))
    if sdpa:  # the fused backward forms the score matrix again: hardware work, reported apart
        assert step.recompute == 2 * 2 * 4 * 32 * 32 * 64
    else:
        assert step.recompute == 0


def test_resnet_style_cnn():
    model = ResNetish()
    check(model, torch.randn(2, 3, 16, 16), model.analytic(2, 16, 16))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_rnn_language_models(kind):
    model = RNNLM(kind)
    check(model, torch.randint(0, 200, (3, 12)), model.analytic(3, 12))


def test_linear_example_from_the_docs():
    with FlopCounter() as counter:
        torch.nn.Linear(16, 32)(torch.randn(4, 16))
    assert counter.count.forward == 4096


@pytest.mark.parametrize("mode", ["inference_mode", "no_grad"])
def test_forward_is_counted_under_inference_mode_and_no_grad(mode):
    torch.manual_seed(0)
    for model, x, analytic in [
        (MLP(), torch.randn(8, 64), MLP().analytic(8)),
        (GPT(), torch.randint(0, 256, (4, 32)), GPT().analytic(4, 32)),
        (ResNetish(), torch.randn(2, 3, 16, 16), ResNetish().analytic(2, 16, 16)),
        (RNNLM("lstm"), torch.randint(0, 200, (3, 12)), RNNLM("lstm").analytic(3, 12)),
        (RNNLM("gru"), torch.randint(0, 200, (3, 12)), RNNLM("gru").analytic(3, 12)),
    ]:
        with getattr(torch, mode)(), FlopCounter() as counter:
            model(x)
        assert counter.count.forward == analytic[0], type(model).__name__


def test_meter_counts_flops_for_a_plain_loop_and_a_flop_budget_applies():
    from lightning_greenai import Budget, Meter

    model = MLP()
    forward, backward = model.analytic(8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    budget = Budget.parse("2 GFLOPs")
    with Meter([]) as meter:
        steps = 0
        while not budget.exceeded_by(meter.spend):
            x = torch.randn(8, 64)
            with meter.count_flops(signature=tuple(x.shape)):
                model(x).pow(2).mean().backward()
            optimizer.step()
            optimizer.zero_grad()
            steps += 1
            meter.sample()
    assert meter.spend.flops == steps * (forward + backward)
    assert steps == -(-2e9 // (forward + backward))  # the first step that reaches the budget stops the loop
    assert meter.last_flops.forward == forward
    with Meter([]) as uncached, uncached.count_flops():
        model(torch.randn(8, 64))
    assert uncached.spend.flops == forward
