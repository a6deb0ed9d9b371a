"""Only operators that contract over a dimension are flagged as unpriced; bilinear, cdist and solve are priced.

A flag that is usually wrong trains users to ignore the right one: pooling, padding, resampling, scatters and CTC
(forward and backward) must never be flagged, on ordinary shapes nor on shapes that happen to match a product's;
a kernel that really multiplies matrices without a formula must still be.
"""

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_greenai import FlopMonitor
from lightning_greenai.flops import FlopCounter


def step(fn, *shapes):
    """Count ``fn`` on fresh inputs that need a gradient, forward and backward."""
    torch.manual_seed(0)
    inputs = [torch.randn(*s, requires_grad=True) for s in shapes]
    with FlopCounter() as counter:
        out = fn(*inputs)
        out.float().sum().backward()
    return counter.count


def ctc(log_probs):
    t, b, _ = log_probs.shape
    targets = torch.randint(1, 20, (b, 10), generator=torch.Generator().manual_seed(0))
    return F.ctc_loss(log_probs.log_softmax(2), targets, torch.full((b,), t), torch.full((b,), 10))


def index_add_(source):
    index = torch.randint(0, 10, (source.shape[0],), generator=torch.Generator().manual_seed(0))
    return torch.zeros(10, source.shape[1]).index_add_(0, index, source)


def scatter_add(source):
    index = torch.randint(0, 10, source.shape, generator=torch.Generator().manual_seed(0))
    return torch.zeros(10, source.shape[1]).scatter_add(0, index, source)


NON_CONTRACTING = {
    "max_pool2d": (lambda x: F.max_pool2d(x, 2), (8, 16, 32, 32)),
    # gradient (3, 64, 3, 64) and input (3, 64, 6, 128): sizes a product could have
    "max_pool2d_product_shaped": (lambda x: F.max_pool2d(x, 2), (3, 64, 6, 128)),
    "max_pool3d": (lambda x: F.max_pool3d(x, 2), (2, 4, 8, 8, 8)),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 2), (8, 16, 32, 32)),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, 3), (8, 16, 32, 32)),
    "adaptive_max_pool2d": (lambda x: F.adaptive_max_pool2d(x, 3), (8, 16, 32, 32)),
    "index_add_": (index_add_, (50, 64)),
    "index_add_product_shaped": (index_add_, (64, 64)),
    "scatter_add": (scatter_add, (50, 64)),
    "grid_sampler_2d": (lambda x, grid: F.grid_sample(x, grid, align_corners=False), (2, 3, 16, 16), (2, 8, 8, 2)),
    "grid_sampler_3d_three_channels": (
        lambda x, grid: F.grid_sample(x, grid, align_corners=False),
        (2, 3, 8, 8, 8),
        (2, 4, 4, 4, 3),
    ),
    "ctc_loss": (ctc, (50, 4, 20)),
    "reflection_pad2d": (lambda x: F.pad(x, (2, 2, 2, 2), mode="reflect"), (2, 8, 16, 16)),
    "replication_pad2d": (lambda x: F.pad(x, (2, 2, 2, 2), mode="replicate"), (2, 8, 16, 16)),
    "glu_product_shaped": (F.glu, (32, 64)),  # gradient (32, 32) and input (32, 64): a product's sizes
    "upsample_bilinear2d": (lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), (2, 8, 16, 16)),
}


@pytest.mark.parametrize("name", list(NON_CONTRACTING))
def test_operators_that_contract_nothing_are_not_flagged(name):
    fn, *shapes = NON_CONTRACTING[name]
    count = step(fn, *shapes)
    assert not count.uncounted
    assert count.model == 0  # and nothing is invented for them


def test_linalg_checks_and_cross_products_are_not_flagged():
    count = step(lambda a, b: torch.linalg.cross(a, b).sum() + torch.linalg.inv_ex(a[:3]).inverse.sum(), (3, 3), (3, 3))
    assert "aten.linalg_cross.default" not in count.uncounted
    assert not any("check_errors" in op for op in count.uncounted)


@pytest.mark.parametrize(
    ("op", "shapes"),
    [
        ("rectangular", ((8, 64), (64, 32))),
        ("square_weight", ((16, 64), (64, 64))),
        ("batched", ((4, 8, 64), (64, 32))),
    ],
)
def test_a_custom_kernel_that_multiplies_matrices_is_still_flagged(op, shapes):
    name = f"greenai_test::product_{op}"

    @torch.library.custom_op(name, mutates_args=())
    def product(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x @ w

    with FlopCounter() as counter:
        product(*(torch.randn(*s) for s in shapes))
    assert counter.count.forward == 0
    assert counter.count.uncounted == {f"greenai_test.product_{op}.default": 1}


def test_bilinear_is_priced_forward_and_backward():
    n, i, j, o = 16, 20, 30, 40
    count = step(F.bilinear, (n, i), (n, j), (o, i, j))
    # forward: per output feature, x1 W_k over I (n x J results, I multiply-adds each), then with x2 over J
    assert count.forward == 2 * n * o * j * (i + 1)
    # backward (ATen's _trilinear three times): dx1 = outer product of grad and W (n I J per feature), summed with x2
    # over J, added over features; dW = x1 times grad (n I), summed with x2 over n; dx2 = x1 W over I, times grad,
    # added over features
    dx1 = o * (n * i * j + 2 * n * i * j + n * i)
    dw = o * (n * i + 2 * n * i * j)
    dx2 = o * (2 * n * i * j + n * j + n * j)
    assert count.backward == dx1 + dw + dx2
    assert not count.uncounted


@pytest.mark.parametrize(("m", "n"), [(30, 40), (10, 12)], ids=["product_path", "direct_path"])
def test_cdist_is_priced_on_both_of_its_paths(m, n):
    d = 128
    with FlopCounter() as counter:
        torch.cdist(torch.randn(3, m, d), torch.randn(3, n, d))
    if m > 25:  # Euclidean distances of more than 25 rows: one product of the inputs padded to D + 2 columns
        assert counter.count.forward == 2 * 3 * m * n * (d + 2)
    else:  # a difference and a multiply-add for every pair of rows and every coordinate
        assert counter.count.forward == 3 * 3 * m * n * d
    assert not counter.count.uncounted
    backward = step(torch.cdist, (3, m, d), (3, n, d))
    assert not backward.uncounted
    if m <= 25:  # _cdist_backward once per input, over the same pairs
        assert backward.backward == 2 * 3 * 3 * m * n * d


def lu(n):
    """LU of an n x n matrix, counted by hand: step k divides n - k entries and updates (n - k)^2 (a multiply-add)."""
    return sum((n - k) + 2 * (n - k) ** 2 for k in range(1, n))


def substitutions(n, rhs):
    """Per right-hand side: forward (unit lower) n(n-1)/2 multiply-adds; back n(n-1)/2 multiply-adds, n divisions."""
    return rhs * (2 * (n * (n - 1) // 2) + 2 * (n * (n - 1) // 2) + n)


@pytest.mark.parametrize(
    ("a", "b", "left", "expected"),
    [
        ((32, 32), (32, 8), True, lu(32) + substitutions(32, 8)),
        ((32, 32), (32,), True, lu(32) + substitutions(32, 1)),
        ((4, 32, 32), (4, 32, 3), True, 4 * (lu(32) + substitutions(32, 3))),
        ((32, 32), (4, 32, 3), True, lu(32) + 4 * substitutions(32, 3)),  # one factorisation, broadcast to 4
        ((32, 32), (5, 32), False, lu(32) + substitutions(32, 5)),  # X A = B: five rows to solve for
    ],
    ids=["matrix", "vector", "batched", "broadcast", "right"],
)
def test_linalg_solve_is_priced(a, b, left, expected):
    torch.manual_seed(0)
    matrix = torch.randn(*a) + 32 * torch.eye(a[-1])
    with FlopCounter() as counter:
        torch.linalg.solve(matrix, torch.randn(*b), left=left)
    assert counter.count.forward == expected
    assert not counter.count.uncounted


def test_linalg_solve_backward_reuses_the_factorisation():
    n, k = 32, 8
    count = step(lambda a, b: torch.linalg.solve(a + n * torch.eye(n), b), (n, n), (n, k))
    # dB: the adjoint solve with the saved LU; dA = -dB X^T: one product
    assert count.backward == substitutions(n, k) + 2 * n * k * n
    assert not count.uncounted


class PoolingCNN(nn.Module):
    """A small CNN with every pooling and padding mode a vision model trains with."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect", bias=False)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, padding_mode="replicate")
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
        x = F.adaptive_avg_pool2d(F.relu(self.conv3(x)), 1).flatten(1)
        return self.fc(x)

    @staticmethod
    def analytic(batch):
        conv1 = 2 * batch * 8 * 16 * 16 * 3 * 9
        conv2 = 2 * batch * 16 * 8 * 8 * 8 * 9
        conv3 = 2 * batch * 16 * 4 * 4 * 16 * 9
        fc = 2 * batch * 16 * 10
        # conv1's input is data: its weight gradient only; the others: weight and input gradients
        return conv1 + conv2 + conv3 + fc, conv1 + 2 * (conv2 + conv3 + fc)


class Classifier(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = PoolingCNN()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_a_cnn_with_pooling_trains_without_a_false_alarm(tiny_trainer):
    batch = 4
    data = TensorDataset(torch.randn(3 * batch, 3, 16, 16), torch.randint(0, 10, (3 * batch,)))
    monitor = FlopMonitor()
    trainer = tiny_trainer(max_steps=-1, max_epochs=1, callbacks=[monitor], logger=False)
    trainer.fit(Classifier(), DataLoader(data, batch_size=batch))  # a GreenAIWarning (a false alarm) fails here
    assert not monitor.uncounted_ops
    forward, backward = PoolingCNN.analytic(batch)
    assert monitor.totals["train/forward"] == 3 * forward
    assert monitor.totals["train/backward"] == 3 * backward
