"""The fused segment ops against hand-computed cases and the pure-PyTorch reference.

Covers: hand tables, random comparisons (f32/f64, empty / one-member / 10k-member segments,
N=0, S=0, nnz=0, H 1..8, odd D up to 255, with/without dst logits, slopes 0.2 and 1.0),
gradients against the reference, gradcheck (f64), torch.library.opcheck, torch.compile,
bitwise determinism, CUDA variants (skipped without a GPU) and named input errors.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings

import pytest
import torch

import mingle_bench.ops as ops
from mingle_bench.csr import CSR
from mingle_bench.ops_reference import segment_aggregate_reference, segment_softmax_aggregate_reference

needs_fused = pytest.mark.skipif(not ops.fused_available(), reason="mingle_bench._C not built")
needs_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and ops.cuda_available()), reason="needs a GPU and the CUDA extension"
)
DEVICES = ["cpu", pytest.param("cuda", marks=[needs_cuda, pytest.mark.cuda])]
IMPLS = ["reference", pytest.param("fused", marks=needs_fused)]


def random_csr(counts, num_sources, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    counts = torch.as_tensor(counts, dtype=torch.long)
    indptr = torch.zeros(counts.numel() + 1, dtype=torch.long)
    indptr[1:] = counts.cumsum(0)
    nnz = int(indptr[-1])
    indices = torch.randint(0, max(num_sources, 1), (nnz,), generator=g) if nnz else torch.zeros(0, dtype=torch.long)
    return indptr.to(device), indices.to(device)


def random_inputs(N, S, H, D, dtype, seed=0, device="cpu", scale=2.0):
    g = torch.Generator().manual_seed(seed + 1)
    src = (scale * torch.randn(N, H, generator=g, dtype=torch.float64)).to(dtype)
    val = torch.randn(N, H, D, generator=g, dtype=torch.float64).to(dtype)
    dst = (scale * torch.randn(S, H, generator=g, dtype=torch.float64)).to(dtype)
    return src.to(device), val.to(device), dst.to(device)


def tol(dtype):
    return {"atol": 1e-5, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 1e-10, "rtol": 1e-9}


# ----------------------------------------------------------------------------- hand cases
@pytest.mark.parametrize("impl", IMPLS)
def test_softmax_aggregate_hand_case(impl):
    # segment 0 = sources {0, 1}, segment 1 = {}, segment 2 = {2}
    indptr = torch.tensor([0, 2, 2, 3])
    indices = torch.tensor([0, 1, 2])
    src = torch.tensor([[0.0], [math.log(3.0)], [5.0]], dtype=torch.float64)
    val = torch.tensor([[[1.0, 0.0]], [[0.0, 4.0]], [[7.0, -7.0]]], dtype=torch.float64)
    out = ops.segment_softmax_aggregate(src, val, indptr, indices, None, 1.0, impl=impl)
    # p = softmax(0, log 3) = (1/4, 3/4)
    expected = torch.tensor([[[0.25, 3.0]], [[0.0, 0.0]], [[7.0, -7.0]]], dtype=torch.float64)
    torch.testing.assert_close(out, expected)
    assert ops.last_impl() == impl
    # leaky_relu with dst: logits 0 + (-2) -> -0.4 and log3 - 2 < 0 -> 0.2 (log3 - 2)
    dst = torch.tensor([[-2.0], [0.0], [0.0]], dtype=torch.float64)
    out = ops.segment_softmax_aggregate(src, val, indptr, indices, dst, 0.2, impl=impl)
    z = torch.tensor([-0.4, 0.2 * (math.log(3.0) - 2.0)], dtype=torch.float64)
    p = torch.softmax(z, 0)
    torch.testing.assert_close(out[0, 0], p[0] * val[0, 0] + p[1] * val[1, 0])


@pytest.mark.parametrize("impl", IMPLS)
def test_segment_aggregate_hand_case(impl):
    indptr = torch.tensor([0, 3, 3, 4])
    indices = torch.tensor([0, 1, 1, 2])
    val = torch.tensor([[1.0, -1.0], [2.0, 5.0], [-3.0, -4.0]], dtype=torch.float64)
    w = torch.tensor([1.0, 0.5, 2.0, 3.0], dtype=torch.float64)
    s = ops.segment_aggregate(val, indptr, indices, None, "sum", impl=impl)
    assert s.tolist() == [[5.0, 9.0], [0.0, 0.0], [-3.0, -4.0]]
    m = ops.segment_aggregate(val, indptr, indices, None, "mean", impl=impl)
    torch.testing.assert_close(m, torch.tensor([[5 / 3, 3.0], [0.0, 0.0], [-3.0, -4.0]], dtype=torch.float64))
    x = ops.segment_aggregate(val, indptr, indices, w, "max", impl=impl)
    assert x.tolist() == [[4.0, 10.0], [0.0, 0.0], [-9.0, -12.0]]
    ws = ops.segment_aggregate(val, indptr, indices, w, "sum", impl=impl)
    assert ws.tolist() == [[1 + 1 + 4, -1 + 2.5 + 10], [0.0, 0.0], [-9.0, -12.0]]


# ----------------------------------------------------------------------------- random vs reference
SHAPES = [
    # (counts, N, H, D)
    ([3, 0, 1, 7, 0, 2, 12], 9, 1, 1),
    ([1] * 20 + [0] * 5, 30, 2, 17),
    ([4, 0, 9, 1, 33, 2], 11, 3, 64),
    ([5, 2, 0, 8], 13, 8, 255),
    ([10_000, 0, 1], 500, 4, 33),
    ([], 5, 2, 3),          # S = 0
    ([0, 0, 0], 4, 2, 3),   # nnz = 0
    ([0, 0], 0, 3, 5),      # N = 0
    ([94, 5, 0, 120, 1], 40, 4, 12),  # MINGLE's d=48, h=4: head boundaries inside vectors
    ([6, 0, 3, 11], 10, 12, 5),       # H > 8: expanded per-element weights
]


def _fwd_bwd(impl, src, val, dst, indptr, indices, slope, csr=None):
    src = src.detach().clone().requires_grad_()
    val = val.detach().clone().requires_grad_()
    dst = None if dst is None else dst.detach().clone().requires_grad_()
    out = ops.segment_softmax_aggregate(src, val, indptr, indices, dst, slope, impl, csr=csr)
    g = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
    out.backward(g)
    return out.detach(), src.grad, val.grad, None if dst is None else dst.grad


@needs_fused
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"S{len(s[0])}-N{s[1]}-H{s[2]}-D{s[3]}" if isinstance(s, tuple) else None)
@pytest.mark.parametrize("with_dst,slope", [(False, 0.2), (True, 0.2), (True, 1.0), (False, 1.0)])
def test_softmax_aggregate_matches_reference(device, dtype, shape, with_dst, slope):
    counts, N, H, D = shape
    indptr, indices = random_csr(counts, N, seed=len(counts) + H, device=device)
    src, val, dst = random_inputs(N, len(counts), H, D, dtype, seed=D, device=device)
    dst = dst if with_dst else None
    use_csr = CSR.from_csr(indptr, indices, N) if with_dst else None  # both call paths
    ref = _fwd_bwd("reference", src, val, dst, indptr, indices, slope)
    fused = _fwd_bwd("fused", src, val, dst, indptr, indices, slope, csr=use_csr)
    assert ops.last_impl() == "fused"
    for name, a, b in zip(("out", "grad_src", "grad_values", "grad_dst"), fused, ref):
        if b is None:
            assert a is None
            continue
        assert a.shape == b.shape, name
        torch.testing.assert_close(a, b, **tol(dtype), msg=lambda m, n=name: f"{n}: {m}")


@needs_fused
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[3], SHAPES[4], SHAPES[5], SHAPES[6], SHAPES[7]],
                         ids=["mixed", "D255", "10k", "S0", "nnz0", "N0"])
def test_segment_aggregate_matches_reference(device, dtype, reduce, weighted, shape):
    counts, N, H, D = shape
    indptr, indices = random_csr(counts, N, seed=3, device=device)
    g = torch.Generator().manual_seed(7)
    val = torch.randn(N, D, generator=g, dtype=torch.float64).to(dtype).to(device)
    w = torch.rand(indices.numel(), generator=g, dtype=torch.float64).add(0.5).to(dtype).to(device)
    w = w if weighted else None
    grads = []
    for impl in ("reference", "fused"):
        v = val.clone().requires_grad_()
        ww = None if w is None else w.clone().requires_grad_()
        out = ops.segment_aggregate(v, indptr, indices, ww, reduce, impl)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=dtype, device=device).reshape(out.shape))
        grads.append((out.detach(), v.grad, None if ww is None else ww.grad))
    for a, b in zip(grads[1], grads[0]):
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a, b, **tol(dtype))


# ----------------------------------------------------------------------------- gradcheck / opcheck
def _small_case(dtype=torch.float64, device="cpu"):
    indptr, indices = random_csr([3, 0, 1, 4, 2], 6, seed=11, device=device)
    src, val, dst = random_inputs(6, 5, 2, 3, dtype, seed=5, device=device, scale=1.0)
    return indptr, indices, src, val, dst


@needs_fused
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("slope", [0.2, 1.0])
def test_gradcheck_softmax_aggregate(device, slope):
    indptr, indices, src, val, dst = _small_case(device=device)
    for t in (src, val, dst):
        t.requires_grad_()
    fn = lambda s, v, d: ops.segment_softmax_aggregate(s, v, indptr, indices, d, slope, impl="fused")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (src, val, dst))
    fn2 = lambda s, v: ops.segment_softmax_aggregate(s, v, indptr, indices, None, slope, impl="fused")  # noqa: E731
    assert torch.autograd.gradcheck(fn2, (src, val))


@needs_fused
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_gradcheck_segment_aggregate(device, reduce):
    indptr, indices, _, val, _ = _small_case(device=device)
    v = val[:, 0].clone().requires_grad_()
    w = torch.linspace(0.5, 1.5, indices.numel(), dtype=torch.float64, device=device).requires_grad_()
    fn = lambda v, w: ops.segment_aggregate(v, indptr, indices, w, reduce, impl="fused")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (v, w))


def _op_samples(device, requires_grad):
    indptr, indices, src, val, dst = _small_case(torch.float32, device)
    csr = CSR.from_csr(indptr, indices, src.shape[0])
    S = indptr.numel() - 1
    src, val, dst = (t.requires_grad_(requires_grad) for t in (src, val, dst))
    w = torch.rand(indices.numel(), device=device).requires_grad_(requires_grad)
    v2 = val[:, 0].detach().clone().requires_grad_(requires_grad)
    t = (csr.t_indptr, csr.t_indices)
    return [
        (torch.ops.mingle.segment_softmax_aggregate.default, (src, val, indptr, indices, *t, dst, 0.2, S)),
        (torch.ops.mingle.segment_softmax_aggregate.default, (src, val, indptr, indices, *t, None, 1.0, S)),
        (torch.ops.mingle.segment_aggregate.default, (v2, indptr, indices, *t, csr.t_perm, w, "max", S)),
        (torch.ops.mingle.segment_aggregate.default, (v2, indptr, indices, *t, csr.t_perm, None, "mean", S)),
    ]


@needs_fused
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(device, requires_grad):
    for op, args in _op_samples(device, requires_grad):
        torch.library.opcheck(op, args)
    # the backward ops on their own
    indptr, indices, src, val, dst = _small_case(torch.float32, device)
    csr = CSR.from_csr(indptr, indices, src.shape[0])
    out, lse = torch.ops.mingle.segment_softmax_aggregate(src, val, indptr, indices, csr.t_indptr, csr.t_indices,
                                                          dst, 0.2, indptr.numel() - 1)
    torch.library.opcheck(torch.ops.mingle.segment_softmax_aggregate_backward.default,
                          (torch.randn_like(out), out, lse, src, val, indptr, indices, csr.t_indptr,
                           csr.t_indices, dst, 0.2))
    v2 = val[:, 0].contiguous()
    o2, arg = torch.ops.mingle.segment_aggregate(v2, indptr, indices, csr.t_indptr, csr.t_indices, csr.t_perm,
                                                 None, "max", indptr.numel() - 1)
    torch.library.opcheck(torch.ops.mingle.segment_aggregate_backward.default,
                          (torch.randn_like(o2), v2, arg, indptr, indices, csr.t_indptr, csr.t_indices,
                           csr.t_perm, None, "max"))


@needs_fused
def test_torch_compile_fullgraph():
    indptr, indices, src, val, dst = _small_case(torch.float32)
    csr = CSR.from_csr(indptr, indices, src.shape[0])
    csr2 = CSR.from_csr(indptr, indices % 5, 5)  # pools the 5 segment outputs again
    lin = torch.nn.Linear(3, 3)

    def layer(src, val, dst):
        h = ops.segment_softmax_aggregate(src, lin(val), indptr, indices, dst, 0.2, impl="fused", csr=csr)
        return ops.segment_aggregate(h.flatten(1), csr2.indptr, csr2.indices, None, "mean", impl="fused",
                                     csr=csr2).sum()

    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    src.requires_grad_()
    expected = layer(src, val, dst)
    (g_expected,) = torch.autograd.grad(expected, src)
    got = compiled(src, val, dst)
    (g_got,) = torch.autograd.grad(got, src)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(g_got, g_expected)


@needs_fused
@pytest.mark.parametrize("device", DEVICES)
def test_bitwise_deterministic(device):
    counts = torch.randint(0, 60, (3000,), generator=torch.Generator().manual_seed(2))
    indptr, indices = random_csr(counts, 700, seed=4, device=device)
    src, val, dst = random_inputs(700, 3000, 4, 32, torch.float32, seed=9, device=device)
    csr = CSR.from_csr(indptr, indices, 700)
    runs = [_fwd_bwd("fused", src, val, dst, indptr, indices, 0.2, csr=csr) for _ in range(2)]
    runs.append(_fwd_bwd("fused", src, val, dst, indptr, indices, 0.2))  # transpose derived per call
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert torch.equal(a, b)
    w = torch.rand(indices.numel(), device=device)
    aggs = []
    for _ in range(2):
        v = val[:, 0].clone().requires_grad_()
        ww = w.clone().requires_grad_()
        out = ops.segment_aggregate(v, indptr, indices, ww, "sum", "fused", csr=csr)
        out.backward(torch.ones_like(out))
        aggs.append((out, v.grad, ww.grad))
    for a, b in zip(*aggs):
        assert torch.equal(a, b)


@needs_fused
def test_base_isa_kernels_agree():
    """The portable kernels (MINGLE_CPU_ISA=base) agree with the default (AVX2 where available)."""
    code = (
        "import torch, mingle_bench.ops as ops\n"
        "from tests.test_ops import random_csr, random_inputs\n"
        "indptr, indices = random_csr([5, 0, 17, 1, 40], 30, seed=1)\n"
        "src, val, dst = random_inputs(30, 5, 3, 37, torch.float32, seed=2)\n"
        "out = ops.segment_softmax_aggregate(src, val, indptr, indices, dst, 0.2, 'fused')\n"
        "print(torch.ops.mingle.cpu_isa()); print(repr(out.flatten().tolist()))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                         env={**os.environ, "MINGLE_CPU_ISA": "base"}, timeout=120)
    assert res.returncode == 0, res.stderr
    isa, values = res.stdout.strip().splitlines()
    assert isa == "base"
    indptr, indices = random_csr([5, 0, 17, 1, 40], 30, seed=1)
    src, val, dst = random_inputs(30, 5, 3, 37, torch.float32, seed=2)
    out = ops.segment_softmax_aggregate(src, val, indptr, indices, dst, 0.2, "fused")
    torch.testing.assert_close(out.flatten(), torch.tensor(eval(values)), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- impl selection
def test_auto_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(ops, "_HAS_EXT", False)
    monkeypatch.setattr(ops, "_WARNED", set())
    indptr, indices, src, val, dst = _small_case()
    with pytest.warns(RuntimeWarning, match="reference path"):
        out = ops.segment_softmax_aggregate(src, val, indptr, indices, dst)
    assert ops.last_impl() == "reference"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out2 = ops.segment_softmax_aggregate(src, val, indptr, indices, dst)
    torch.testing.assert_close(out, out2)
    with pytest.raises(ValueError, match="impl='fused'.*not built"):
        ops.segment_softmax_aggregate(src, val, indptr, indices, dst, impl="fused")


@needs_fused
def test_unsupported_dtype_uses_reference():
    indptr, indices, src, val, dst = _small_case(torch.bfloat16)
    with pytest.warns(RuntimeWarning, match="bfloat16"):
        out = ops.segment_softmax_aggregate(src, val, indptr, indices, dst, impl="auto")
    assert ops.last_impl() == "reference" and out.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="impl='fused'"):
        ops.segment_softmax_aggregate(src, val, indptr, indices, dst, impl="fused")


# ----------------------------------------------------------------------------- malformed inputs
def _bad_cases():
    indptr, indices, src, val, dst = _small_case(torch.float32)
    N, S = src.shape[0], indptr.numel() - 1
    nnz = indices.numel()
    bad_mono = indptr.clone()
    bad_mono[2] = int(indptr[3]) + 1  # [0, 3, 5, 4, 8, 10]
    base = dict(src_logits=src, values=val, indptr=indptr, indices=indices, dst_logits=dst)
    cases = {
        "indptr dtype": ({**base, "indptr": indptr.int()}, r"indptr: expected dtype torch.int64"),
        "indices dtype": ({**base, "indices": indices.int()}, r"indices: expected dtype torch.int64"),
        "indptr 2-D": ({**base, "indptr": indptr[None]}, r"indptr: expected a 1-D"),
        "indptr start": ({**base, "indptr": indptr + 1}, r"indptr: indptr\[0\] must be 0"),
        "indptr end": ({**base, "indptr": torch.cat([indptr[:-1], indptr[-1:] - 1])}, r"indptr: indptr\[-1\] must equal"),
        "indptr monotone": ({**base, "indptr": bad_mono}, r"indptr: not monotone"),
        "indices high": ({**base, "indices": torch.full_like(indices, N)}, rf"indices: value {N} at position 0"),
        "indices negative": ({**base, "indices": torch.full_like(indices, -1)}, r"indices: value -1"),
        "values shape": ({**base, "values": val[:, :1]}, r"values: expected shape \[N=6, H=2, D\]"),
        "values rank": ({**base, "values": val[:, 0]}, r"values: expected a 3-D"),
        "values dtype": ({**base, "values": val.double()}, r"values: dtype torch.float64 differs"),
        "src int": ({**base, "src_logits": src.long()}, r"src_logits: expected a floating-point"),
        "dst shape": ({**base, "dst_logits": dst[:-1]}, rf"dst_logits: expected shape \[S={S}, H=2\]"),
        "dst dtype": ({**base, "dst_logits": dst.double()}, r"dst_logits: dtype"),
        "slope": ({**base, "negative_slope": float("nan")}, r"negative_slope"),
        "impl": ({**base, "impl": "fast"}, r"impl: expected one of"),
    }
    assert nnz > 0
    return cases


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(_bad_cases()))
def test_softmax_aggregate_named_errors(impl, case):
    kwargs, match = _bad_cases()[case]
    kwargs = {"impl": impl, **kwargs}
    with pytest.raises(ValueError, match=match):
        ops.segment_softmax_aggregate(**kwargs)


@pytest.mark.parametrize("impl", IMPLS)
def test_segment_aggregate_named_errors(impl):
    indptr, indices, _, val, _ = _small_case(torch.float32)
    v = val[:, 0]
    with pytest.raises(ValueError, match=r"reduce: expected one of"):
        ops.segment_aggregate(v, indptr, indices, None, "min", impl)
    with pytest.raises(ValueError, match=r"weights: expected shape \[nnz="):
        ops.segment_aggregate(v, indptr, indices, torch.ones(indices.numel() + 1), "sum", impl)
    with pytest.raises(ValueError, match=r"weights: dtype"):
        ops.segment_aggregate(v, indptr, indices, torch.ones(indices.numel(), dtype=torch.float64), "sum", impl)
    with pytest.raises(ValueError, match=r"indices: value 99"):
        ops.segment_aggregate(v, indptr, torch.full_like(indices, 99), None, "sum", impl)
    with pytest.raises(ValueError, match=r"values: expected a 2-D"):
        ops.segment_aggregate(val, indptr, indices, None, "sum", impl)


@needs_fused
def test_raw_ops_validate_inputs():
    """The registered ops check their inputs themselves (they may be called directly)."""
    indptr, indices, src, val, dst = _small_case(torch.float32)
    csr = CSR.from_csr(indptr, indices, src.shape[0])
    S, t = indptr.numel() - 1, (csr.t_indptr, csr.t_indices)
    f = torch.ops.mingle.segment_softmax_aggregate
    with pytest.raises(ValueError, match=r"indices\[0\]=99 is outside \[0, 6\)"):
        f(src, val, indptr, torch.full_like(indices, 99), *t, dst, 0.2, S)
    with pytest.raises(ValueError, match=r"indptr is not monotone"):
        f(src, val, torch.tensor([0, 5, 2, 2, 10, 10]), indices, *t, dst, 0.2, S)
    with pytest.raises(ValueError, match=r"indptr\[-1\] must equal"):
        f(src, val, indptr.clamp(max=3), indices, *t, dst, 0.2, S)
    with pytest.raises(ValueError, match=r"values must be contiguous"):
        f(src, val.transpose(0, 1).contiguous().transpose(0, 1), indptr, indices, *t, dst, 0.2, S)
    with pytest.raises(ValueError, match=r"indptr must have num_segments\+1"):
        f(src, val, indptr, indices, *t, dst, 0.2, S + 1)
    with pytest.raises(ValueError, match=r"float32 or float64"):
        f(src.half(), val.half(), indptr, indices, *t, dst.half(), 0.2, S)
    with pytest.raises(ValueError, match=r"reduce must be one of"):
        torch.ops.mingle.segment_aggregate(val[:, 0].contiguous(), indptr, indices, *t, csr.t_perm, None, "min", S)
    out, lse = f(src, val, indptr, indices, *t, dst, 0.2, S)
    with pytest.raises(ValueError, match=r"t_indices\[0\]=\d+ is outside"):
        torch.ops.mingle.segment_softmax_aggregate_backward(out, out, lse, src, val, indptr, indices, t[0],
                                                            torch.full_like(t[1], 50), dst, 0.2)


@needs_cuda
@pytest.mark.cuda
def test_cuda_half_precision_against_f32_reference():
    counts = torch.randint(0, 40, (500,), generator=torch.Generator().manual_seed(0))
    indptr, indices = random_csr(counts, 200, device="cuda")
    src, val, dst = random_inputs(200, 500, 4, 32, torch.float32, device="cuda")
    ref = segment_softmax_aggregate_reference(src, val, indptr, indices, dst, 0.2)
    for dt in (torch.float16, torch.bfloat16):
        out = ops.segment_softmax_aggregate(src.to(dt), val.to(dt), indptr, indices, dst.to(dt), 0.2, "fused")
        assert out.dtype == dt
        torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)
        agg = ops.segment_aggregate(val[:, 0].to(dt), indptr, indices, None, "mean", "fused")
        torch.testing.assert_close(agg.float(), segment_aggregate_reference(val[:, 0], indptr, indices, None, "mean"),
                                   atol=3e-2, rtol=3e-2)


@pytest.mark.slow
def test_package_works_without_extension():
    """With mingle_bench._C unavailable the ops run on the reference path (one warning)."""
    code = (
        "import sys, importlib.abc, warnings\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'mingle_bench._C':\n"
        "            raise ImportError('blocked for the test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import torch\n"
        "import mingle_bench.ops as ops\n"
        "from mingle_bench.incidence import Incidence\n"
        "assert not ops.fused_available() and not ops.cuda_available()\n"
        "inc = Incidence.from_pairs(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), 2, 2)\n"
        "src = torch.randn(2, 2, requires_grad=True)\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    out = ops.softmax_aggregate(inc.v2e, src, torch.randn(2, 2, 3))\n"
        "    out.sum().backward()\n"
        "assert ops.last_impl() == 'reference' and out.shape == (2, 2, 3) and src.grad is not None\n"
        "assert any('reference path' in str(x.message) for x in w)\n"
        "print('ok')\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


@needs_fused
def test_data_checked_schema_argument():
    """data_checked (default False) only skips the CPU data scan: same results either way."""
    for name in ("segment_softmax_aggregate", "segment_softmax_aggregate_backward", "segment_aggregate",
                 "segment_aggregate_backward"):
        arg = getattr(torch.ops.mingle, name).default._schema.arguments[-1]
        assert arg.name == "data_checked" and arg.default_value is False
    indptr, indices, src, val, dst = _small_case(torch.float32)
    csr = CSR.from_csr(indptr, indices, src.shape[0])
    S, t = indptr.numel() - 1, (csr.t_indptr, csr.t_indices)
    f = torch.ops.mingle.segment_softmax_aggregate
    a = f(src, val, indptr, indices, *t, dst, 0.2, S)
    b = f(src, val, indptr, indices, *t, dst, 0.2, S, True)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    # a validated CSR passes data_checked=True through forward and backward (gradients unchanged)
    grads = []
    for c in (csr, CSR.from_csr(indptr, indices, src.shape[0], validate=False)):
        s, v = src.clone().requires_grad_(), val.clone().requires_grad_()
        ops.softmax_aggregate(c, s, v, dst, 0.2, "fused").sum().backward()
        grads.append((s.grad, v.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
