import pytest
import torch

from lightning_greenai.flops import peak_flops_per_s, precision_dtype


@pytest.mark.parametrize(
    ("name", "dtype", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", torch.bfloat16, 989.4e12),
        ("NVIDIA H100 80GB HBM3", "tfloat32", 494.7e12),
        ("NVIDIA A100-SXM4-80GB", torch.bfloat16, 312e12),
        ("NVIDIA A100-SXM4-80GB", torch.float32, 19.5e12),
        ("Tesla T4", torch.float16, 65e12),
        pytest.param("Some Future GPU", torch.bfloat16, None, id="unknown"),
    ],
)
def test_dense_peak_by_device_name(monkeypatch, name, dtype, expected):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "highest")
    peak = peak_flops_per_s(torch.device("cuda", 0), dtype)
    assert peak == (None if expected is None else pytest.approx(expected))


def test_cpu_has_no_peak_unless_given():
    assert peak_flops_per_s(torch.device("cpu"), torch.float32) is None
    assert peak_flops_per_s(torch.device("cpu"), torch.float32, user_peak=2e12) == 2e12


@pytest.mark.parametrize(
    ("precision", "dtype"), [("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16), ("64-true", torch.float64)]
)
def test_precision_to_dtype(precision, dtype):
    assert precision_dtype(precision) == dtype


def test_fp32_is_tf32_when_matmul_precision_allows(monkeypatch):
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    assert precision_dtype("32-true") == "tfloat32"
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "highest")
    assert precision_dtype("32-true") == torch.float32
