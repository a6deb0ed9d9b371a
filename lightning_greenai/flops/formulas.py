"""FLOPs of each counted ATen operator: 2 FLOPs per multiply-add, dense matrix products only.

Counted: matrix products (``mm``, ``addmm``, ``bmm``, ``baddbmm``, ``_scaled_mm``, ``mv``, ``dot``), convolutions
(forward and both backward products), scaled-dot-product attention in every fused form (the two products over the
full L x S score matrix; backward: four products, plus the score recompute of flash-style kernels reported apart),
fused recurrent kernels (mkldnn on CPU, cuDNN on CUDA: the gate products of every step), the inference fast paths
of ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` (one kernel for the whole layer: in-projection, both
attention products over the full score matrix, out-projection, feed-forward), and grouped matrix products
(``_grouped_mm``, the experts of a mixture of experts: only the rows routed to an expert count), ``F.bilinear``
(``_trilinear``: its two pair products as ATen runs them), ``torch.cdist`` (the product of its Euclidean path, or 3
FLOPs per pair of rows and coordinate on its direct path) and ``torch.linalg.solve`` (LU factorisation and
substitutions, LAPACK's operation counts). Not counted:
bias additions, normalisation, activations, softmax and other element-wise work. Composite operators (``linear``,
``matmul``, ``einsum``, ``conv2d``, unfused RNNs) decompose into the operators below before they are seen.

Each formula returns ``(model_flops, recompute_flops)``: recompute is work a kernel repeats (flash attention
re-forming its score matrix in backward); it is hardware work, not model work.
"""

from __future__ import annotations

import collections
import itertools
import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

__all__ = ["FORMULAS", "HEAVY_OPERAND_NUMEL", "Formula", "is_heavy", "looks_heavy"]

aten = torch.ops.aten

Formula = Callable[[Sequence[Any], dict[str, Any], Any, bool], tuple[int, int]]


def _prod(values: Sequence[int]) -> int:
    return math.prod(int(v) for v in values)


def _mm(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    a, b = args[0], args[1]
    return 2 * a.shape[0] * a.shape[1] * b.shape[1], 0


def _addmm(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    return _mm(args[1:], kwargs, out, causal)


def _bmm(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    a, b = args[0], args[1]
    return 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2], 0


def _baddbmm(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    return _bmm(args[1:], kwargs, out, causal)


def _addbmm(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    return _bmm(args[1:], kwargs, out, causal)


def _mv(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    return 2 * args[0].shape[0] * args[0].shape[1], 0


def _addmv(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    return _mv(args[1:], kwargs, out, causal)


def _dot(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    return 2 * args[0].shape[0], 0


def _conv_flops(x_shape: Sequence[int], w_shape: Sequence[int], out_shape: Sequence[int], transposed: bool) -> int:
    # weight: [C_out, C_in / groups, *kernel] (transposed: [C_in, C_out / groups, *kernel])
    kernel = _prod(w_shape[2:])
    if transposed:
        return 2 * _prod(x_shape) * w_shape[1] * kernel
    batch, c_out = out_shape[0], out_shape[1]
    return 2 * batch * c_out * _prod(out_shape[2:]) * w_shape[1] * kernel


def _convolution(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    x, w = args[0], args[1]
    transposed = bool(args[6]) if len(args) > 6 else bool(kwargs.get("transposed", False))
    return _conv_flops(x.shape, w.shape, out.shape, transposed), 0


def _convolution_backward(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    grad_out, x, w = args[0], args[1], args[2]
    transposed, mask = bool(args[7]), args[10]
    one = _conv_flops(x.shape, w.shape, grad_out.shape, transposed)
    return one * (int(bool(mask[0])) + int(bool(mask[1]))), 0


def _attention_products(q: Any, k: Any, v: Any, causal: bool) -> int:
    """FLOPs of Q K^T and P V for q [..., L, E], k [..., S, E], v [..., S, Ev]."""
    batch_heads = _prod(q.shape[:-2])
    length, embed, source, embed_v = q.shape[-2], q.shape[-1], k.shape[-2], v.shape[-1]
    flops = int(2 * batch_heads * length * source * (embed + embed_v))
    return flops // 2 if causal else flops


def _is_causal(args: Sequence[Any], kwargs: dict[str, Any], index: int) -> bool:
    if "is_causal" in kwargs:
        return bool(kwargs["is_causal"])
    return len(args) > index and isinstance(args[index], bool) and args[index]


def _sdpa_forward(causal_index: int) -> Formula:
    def formula(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
        half = causal and _is_causal(args, kwargs, causal_index)
        return _attention_products(args[0], args[1], args[2], half), 0

    return formula


def _sdpa_backward(causal_index: int | None) -> Formula:
    def formula(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
        q, k, v = args[1], args[2], args[3]
        half = causal and causal_index is not None and _is_causal(args, kwargs, causal_index)
        # dV = P^T dO and dP = dO V^T (over Ev), dQ = dS K and dK = dS^T Q (over E): twice the forward products.
        model = 2 * _attention_products(q, k, v, half)
        batch_heads = _prod(q.shape[:-2])
        recompute = 2 * batch_heads * q.shape[-2] * k.shape[-2] * q.shape[-1]  # S = Q K^T formed again
        return model, recompute // 2 if half else recompute

    return formula


def _rnn_tokens(x: Any, batch_sizes: Sequence[int]) -> int:
    if batch_sizes:  # packed sequence: one row per token
        return int(x.shape[0])
    return int(x.numel() // x.shape[-1])


def _mkldnn_rnn_layer(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    x, w_ih, w_hh, batch_sizes = args[0], args[1], args[2], args[8]
    return 2 * _rnn_tokens(x, batch_sizes) * (w_ih.numel() + w_hh.numel()), 0


def _mkldnn_rnn_layer_backward(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    x, w_ih, w_hh, batch_sizes = args[0], args[1], args[2], args[20]
    # grad of input and hidden state, and of both weight matrices: twice the forward products
    return 4 * _rnn_tokens(x, batch_sizes) * (w_ih.numel() + w_hh.numel()), 0


def _cudnn_weights(weights: Sequence[Any]) -> int:
    return sum(int(w.numel()) for w in weights if w is not None and w.dim() == 2)


def _cudnn_rnn(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    x, weights, batch_sizes = args[0], args[1], args[14]
    return 2 * _rnn_tokens(x, batch_sizes) * _cudnn_weights(weights), 0


def _cudnn_rnn_backward(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    x, weights, batch_sizes, mask = args[0], args[1], args[18], args[21]
    one = 2 * _rnn_tokens(x, batch_sizes) * _cudnn_weights(weights)
    return one * (1 + int(bool(mask[3]))), 0  # data and hidden gradients always; weight gradients if asked


def _rows(x: Any) -> list[int]:
    """Sequence lengths of a ``[..., L, E]`` tensor: one per sequence (a nested tensor's own lengths)."""
    if getattr(x, "is_nested", False):
        return [int(t.shape[-2]) if t.dim() >= 2 else 1 for t in x.unbind()]
    batch = _prod(x.shape[:-2]) if x.dim() >= 2 else 1
    return [int(x.shape[-2]) if x.dim() >= 2 else 1] * batch


def _mha_flops(query: Any, key: Any, embed: int, with_in_proj: bool = True) -> int:
    """Self or cross attention of the fused kernels: in-projections, Q K^T and P V over the full scores, out-proj."""
    q_rows, k_rows = _rows(query), _rows(key)
    in_proj = 2 * embed * embed * (sum(q_rows) + 2 * sum(k_rows)) if with_in_proj else 0
    scores = sum(4 * lq * lk * embed for lq, lk in zip(q_rows, k_rows, strict=True))  # 2 products, heads summed
    out_proj = 2 * embed * embed * sum(q_rows)
    return in_proj + scores + out_proj


def _native_mha(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    # _native_multi_head_attention(query, key, value, embed_dim, num_head, qkv_weight, qkv_bias, proj_weight, ...):
    # nn.MultiheadAttention's inference fast path, one kernel for the whole layer
    return _mha_flops(args[0], args[1], int(args[3])), 0


def _transformer_encoder_layer(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    # _transformer_encoder_layer_fwd(src, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias,
    #     use_gelu, norm_first, eps, norm_weight_1, norm_bias_1, norm_weight_2, norm_bias_2, ffn_weight_1, ...):
    # nn.TransformerEncoderLayer's inference fast path: self-attention and the feed-forward block in one kernel
    src, embed, ffn_weight_1 = args[0], int(args[1]), args[14]
    feed_forward = 2 * sum(_rows(src)) * 2 * embed * int(ffn_weight_1.shape[0])
    return _mha_flops(src, src, embed) + feed_forward, 0


def _grouped_mm(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    # _grouped_mm(mat_a, mat_b, offs=None, ...): a group of matrix products in one kernel (MoE experts). ``offs`` ends
    # each group; rows (or columns, or the inner dimension) past the last offset are padding and do no work.
    a, b = args[0], args[1]
    offs = args[2] if len(args) > 2 else kwargs.get("offs")
    used = int(offs[-1]) if offs is not None and offs.numel() else None
    if a.dim() == 2 and b.dim() == 3:  # rows of a grouped: [M, K] x [G, K, N]
        return 2 * (used if used is not None else a.shape[0]) * a.shape[1] * b.shape[2], 0
    if a.dim() == 3 and b.dim() == 2:  # columns of b grouped: [G, M, K] x [K, N]
        return 2 * a.shape[1] * a.shape[2] * (used if used is not None else b.shape[1]), 0
    if a.dim() == 2 and b.dim() == 2:  # the inner dimension grouped (weight gradients): [M, K] x [K, N]
        return 2 * a.shape[0] * (used if used is not None else a.shape[1]) * b.shape[1], 0
    return 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2], 0  # batched: [G, M, K] x [G, K, N]


def _arg(args: Sequence[Any], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    """An operator's argument given by position or keyword."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _euclidean_dist(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    # torch.cdist's product path (p=2, more than 25 rows): x1 [..., M, D] and x2 [..., N, D] padded with their squared
    # norms and ones to D + 2 columns, then one product [M, D + 2] x [D + 2, N] (the norms are element-wise work)
    d = int(args[0].shape[-1])
    return 2 * out.numel() * (d + 2), 0


def _cdist_pairs(x1: Any, x2: Any, batch: int) -> int:
    """torch.cdist's direct path: for every pair of rows and every coordinate a difference and a multiply-add."""
    return 3 * batch * int(x1.shape[-2]) * int(x2.shape[-2]) * int(x1.shape[-1])


def _cdist_forward(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    # _cdist_forward(x1 [..., M, D], x2 [..., N, D], p, compute_mode) -> [..., M, N]: p != 2, or 25 rows or fewer
    return _cdist_pairs(args[0], args[1], _prod(out.shape[:-2])), 0


def _cdist_backward(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    # _cdist_backward(grad, x1, x2, p, cdist) -> the gradient of x1 [..., M, D]: the same pairs (once per input)
    return _cdist_pairs(args[1], args[2], _prod(out.shape[:-2])), 0


def _trilinear(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    # _trilinear(i1, i2, i3, expand1, expand2, expand3, sumdim, unroll_dim=1): F.bilinear and its gradients. ATen
    # unsqueezes each input at its expand dims, then for every index of unroll_dim forms (i1 . i2) summed over the
    # sumdims i3 lacks, then (that . i3) summed over the sumdims i3 has, adding the slices when unroll_dim is summed.
    # A pair product over summed dims is 2 FLOPs per multiply-add; one with nothing to sum is an outer product of 1
    # FLOP per element; summing the slices is 1 FLOP per element added.
    inputs = args[:3]
    expands = [{int(d) for d in e} for e in args[3:6]]
    sumdim = {int(d) for d in args[6]}
    unroll = int(_arg(args, kwargs, 7, "unroll_dim", 1))
    total = inputs[0].dim() + len(expands[0])
    sizes: list[list[int]] = []  # each input's size in each of the total dims (1 where it is unsqueezed)
    for tensor, expand in zip(inputs, expands, strict=True):
        own = iter(int(s) for s in tensor.shape)
        sizes.append([1 if d in expand else next(own) for d in range(total)])
    dims = [d for d in range(total) if d != unroll]
    sum12 = [d for d in dims if d in sumdim and d in expands[2]]
    sum23 = [d for d in dims if d in sumdim and d not in expands[2]]
    pair12 = [max(sizes[0][d], sizes[1][d]) for d in range(total)]
    left = [1 if d in sum12 else pair12[d] for d in range(total)]
    pair23 = [max(left[d], sizes[2][d]) for d in range(total)]
    per_slice = (2 if sum12 else 1) * _prod([pair12[d] for d in dims])
    per_slice += (2 if sum23 else 1) * _prod([pair23[d] for d in dims])
    if unroll in sumdim:
        per_slice += _prod([1 if d in sumdim else pair23[d] for d in dims])  # adding this slice into the output
    slices = max(s[unroll] for s in sizes)
    return slices * per_slice, 0


def _lu_flops(n: int) -> int:
    """An n x n LU factorisation: n(n-1)/2 divisions and (n-1)n(2n-1)/6 multiply-adds (LAPACK getrf, LAWN 41)."""
    return (4 * n**3 - 3 * n**2 - n) // 6


def _lu_solve_flops(n: int, rhs: int) -> int:
    """Forward and back substitution with an n x n LU: per right-hand side n(n-1) multiply-adds and n divisions."""
    return rhs * (2 * n * n - n)


def _solve_rhs(result: Any, left: bool, vector: bool) -> tuple[int, int]:
    """``(batch, right-hand sides)`` of a solve's result."""
    if vector:
        return _prod(result.shape[:-1]), 1
    return _prod(result.shape[:-2]), int(result.shape[-1] if left else result.shape[-2])


def _linalg_solve(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    # _linalg_solve_ex(A, B, *, left=True, check_errors=False) -> (result, LU, pivots, info): LU-factorise A (once per
    # matrix of A's batch), then substitute every right-hand side (B's batch). B is a vector when it has A's shape
    # without its last dimension (or is 1-D).
    a, b = args[0], args[1]
    result, lu = out[0], out[1]
    n = int(a.shape[-1])
    vector = b.dim() == 1 or (b.dim() == a.dim() - 1 and tuple(b.shape) == tuple(a.shape[:-1]))
    batch, rhs = _solve_rhs(result, bool(_arg(args, kwargs, 2, "left", True)), vector)
    return _prod(lu.shape[:-2]) * _lu_flops(n) + batch * _lu_solve_flops(n, rhs), 0


def _linalg_lu_solve(args: Sequence[Any], kwargs: dict[str, Any], out: Any, causal: bool) -> tuple[int, int]:
    # linalg_lu_solve(LU, pivots, B, *, left=True, adjoint=False): the substitutions alone (linalg.solve's backward)
    n = int(args[0].shape[-1])
    batch, rhs = _solve_rhs(out, bool(_arg(args, kwargs, 3, "left", True)), vector=False)
    return batch * _lu_solve_flops(n, rhs), 0


FORMULAS: dict[Any, Formula] = {
    aten.mm: _mm,
    aten.addmm: _addmm,
    aten._addmm_activation: _addmm,
    aten.bmm: _bmm,
    aten.baddbmm: _baddbmm,
    aten.addbmm: _addbmm,
    aten._scaled_mm: _mm,
    aten.mv: _mv,
    aten.addmv: _addmv,
    aten.dot: _dot,
    aten.vdot: _dot,
    aten.convolution: _convolution,
    aten._convolution: _convolution,
    aten.convolution_backward: _convolution_backward,
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_forward(causal_index=4),
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward(causal_index=7),
    aten._scaled_dot_product_flash_attention: _sdpa_forward(causal_index=4),
    aten._scaled_dot_product_flash_attention_backward: _sdpa_backward(causal_index=11),
    aten._scaled_dot_product_efficient_attention: _sdpa_forward(causal_index=6),
    aten._scaled_dot_product_efficient_attention_backward: _sdpa_backward(causal_index=11),
    aten._scaled_dot_product_cudnn_attention: _sdpa_forward(causal_index=6),
    aten._scaled_dot_product_cudnn_attention_backward: _sdpa_backward(causal_index=14),
    aten.mkldnn_rnn_layer: _mkldnn_rnn_layer,
    aten.mkldnn_rnn_layer_backward: _mkldnn_rnn_layer_backward,
    aten._cudnn_rnn: _cudnn_rnn,
    aten._cudnn_rnn_backward: _cudnn_rnn_backward,
    aten._native_multi_head_attention: _native_mha,
    aten._transformer_encoder_layer_fwd: _transformer_encoder_layer,
    aten._trilinear: _trilinear,
    aten._euclidean_dist: _euclidean_dist,
    aten._cdist_forward: _cdist_forward,
    aten._cdist_backward: _cdist_backward,
    aten._linalg_solve_ex: _linalg_solve,
    aten.linalg_lu_solve: _linalg_lu_solve,
}
if hasattr(aten, "_grouped_mm"):  # torch >= 2.8
    FORMULAS[aten._grouped_mm] = _grouped_mm

_HEAVY_TOKENS = frozenset(
    [
        "mm",
        "bmm",
        "matmul",
        "conv",
        "convolution",
        "attention",
        "rnn",
        "lstm",
        "gru",
        "fft",
        "rfft",
        "irfft",
        "ifft",
        "hfft",
        "cholesky",
        "svd",
        "qr",
        "einsum",
        "tensordot",
        "ger",
        "kron",
        "solve",
        "eig",
        "eigh",
        "lu",
        "addmv",
        "addr",
        "outer",
        "mv",
        "dot",
        "vdot",
        "addmm",
        "baddbmm",
        "addbmm",
    ]
)


#: Name parts of operators that are not heavy whatever else their name says: linalg_vector_norm (gradient clipping),
#: layer and batch norms (reductions), linalg_cross (three products per row), _linalg_check_errors (no arithmetic).
_NOT_HEAVY_TOKENS = frozenset(["norm", "cross", "check"])

#: Elements of an operand at which an unpriced two-operand product is taken for heavy work (a small weight matrix).
HEAVY_OPERAND_NUMEL = 1024


def _sizes(t: torch.Tensor) -> collections.Counter[int]:
    """The sizes of a tensor's dimensions, as a multiset; size-1 dimensions (kept or broadcast) are left out."""
    return collections.Counter(int(s) for s in t.shape if s != 1)


def _sub_multisets(sizes: collections.Counter[int]) -> Iterator[collections.Counter[int]]:
    """Every non-empty sub-multiset of ``sizes``."""
    items = list(sizes.items())
    for counts in itertools.product(*(range(n + 1) for _, n in items)):
        if any(counts):
            yield collections.Counter({size: n for (size, _), n in zip(items, counts, strict=True) if n})


def contracts(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether ``out`` can be a product of ``a`` and ``b`` summed over dimensions they share (a contraction).

    Judged by sizes: ``out`` must be what is left of ``a`` and ``b`` once one or more sizes they share are summed
    away, with dimensions both keep (a batch) appearing once: ``[M, K] x [K, N] -> [M, N]``, ``[B, M, K] x [B, K, N]
    -> [B, M, N]``. A gradient or a scatter into one operand's shape (pooling and padding backward, ``index_add``)
    keeps every size the two share, so it is not a contraction.
    """
    sa, sb, so = _sizes(a), _sizes(b), _sizes(out)
    for summed in _sub_multisets(sa & sb):
        left_a, left_b = sa - summed, sb - summed
        left = left_a + left_b
        if not (so - left) and not ((left - so) - (left_a & left_b)):
            return True
    return False


def looks_heavy(args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> bool:
    """Whether an operator without a formula contracted operands over a dimension, judged by shapes, not its name.

    Heavy: two floating-point operands of two or more dimensions, one of them weight-sized, whose product summed
    over a dimension they share has the shape of a floating-point output (:func:`contracts`), and an output that is
    not an element-wise image of them (their broadcast shape). Element-wise work, reductions, gathers and scatters
    with integer indices, pooling, padding and resampling (forward and backward) are not.
    """
    operands = [
        a
        for a in (*args, *kwargs.values())
        if isinstance(a, torch.Tensor) and a.is_floating_point() and a.dim() >= 2 and not a.is_nested
    ]
    if len(operands) < 2 or max(a.numel() for a in operands) < HEAVY_OPERAND_NUMEL:
        return False
    result = out[0] if isinstance(out, tuple | list) and out else out  # the main result (not a gradient's second)
    if not isinstance(result, torch.Tensor) or not result.is_floating_point() or result.dim() == 0 or result.is_nested:
        return False
    try:
        broadcast = torch.broadcast_shapes(*(a.shape for a in operands))  # type: ignore[no-untyped-call]
        if tuple(result.shape) == tuple(broadcast):
            return False  # an element-wise operator
    except RuntimeError:
        pass  # operands that do not broadcast together: not an element-wise operator
    return any(contracts(a, b, result) for a, b in itertools.combinations(operands, 2))


def is_heavy(op_name: str) -> bool:
    """Whether an ATen operator name (``"aten._int_mm.default"``) names FLOP-heavy work (matmul, conv, ...)."""
    base = op_name.split(".")[1] if op_name.startswith("aten.") else op_name.split(".")[0]
    tokens = [t for t in re.split(r"_+", base) if t]
    if _NOT_HEAVY_TOKENS.intersection(tokens):
        return False
    if any(t in _HEAVY_TOKENS for t in tokens):
        return True
    return any(t.startswith(("linalg", "conv", "fft")) for t in tokens)
