"""Every counting path leaves a ``torch.compile``d model compiled: the counted call runs eagerly, later calls compile.

Under a dispatch mode dynamo would skip the frame and remember the skip for good (the model would run eagerly for
the whole run); every :class:`FlopCounter` runs compiled code under the ``force_eager`` stance instead. The backend
here counts the calls that reach the compiled graph (no code generation: quick on CPU).
"""

import pytest
import torch

from lightning_greenai import FlopMonitor, Meter
from lightning_greenai.flops import FlopCounter, StepFlops
from tests.flops.reference_models import MLP


def bare_counter(model, x):
    with FlopCounter() as counter:
        model(x)
    return counter.count.forward


def meter_without_signature(model, x):
    with Meter([]) as meter, meter.count_flops():
        model(x)
    return meter.spend.flops


def meter_with_signature(model, x):
    with Meter([]) as meter, meter.count_flops(signature=tuple(x.shape)):
        model(x)
    return meter.spend.flops


def step_flops(model, x):
    steps = StepFlops()
    with steps.step(tuple(x.shape)):
        model(x)
    return steps.last.forward


def counting_backend(graph_calls):
    """A dynamo backend that runs the captured graph as is and notes each call of it."""

    def backend(graph_module, example_inputs):
        def run(*args):
            graph_calls.append(1)
            return graph_module.forward(*args)

        return run

    return backend


@pytest.mark.parametrize("count", [bare_counter, meter_without_signature, meter_with_signature, step_flops])
def test_the_model_is_still_compiled_after_a_counted_first_call(count):
    graph_calls = []
    torch._dynamo.reset()
    torch.manual_seed(0)
    mlp = MLP()
    model = torch.compile(mlp, backend=counting_backend(graph_calls))
    x = torch.randn(8, 64)
    assert count(model, x) == mlp.analytic(8)[0]  # counted as its eager self
    assert not graph_calls  # the counted call ran eagerly
    model(x)
    model(x)
    assert len(graph_calls) == 2  # and the calls after it ran the compiled graph


def test_flop_monitor_counts_a_compiled_model_as_its_eager_self_and_compiles_the_rest(tmp_path):
    from tests.flops.test_flop_monitor import Wrapper, loader, trainer

    def fit(model):
        mon = FlopMonitor()
        trainer(tmp_path, [mon]).fit(Wrapper(model), loader(4), loader(2))
        return mon.totals

    torch.manual_seed(0)
    eager = fit(MLP())
    graph_calls = []
    torch._dynamo.reset()
    torch.manual_seed(0)
    compiled = fit(torch.compile(MLP(), backend=counting_backend(graph_calls)))
    assert compiled == eager  # the counted steps ran eagerly; every later step reused their counts
    assert len(graph_calls) == 3 + 1  # and the other training and validation steps ran the compiled graph
