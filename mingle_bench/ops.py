"""Fused hyperedge-attention aggregation: the hot path of every hypergraph model here.

Two ops over a CSR of segments (``indptr`` int64 [S+1]) whose members are source rows
(``indices`` int64 [nnz] in ``[0, N)``), see :mod:`mingle_bench.csr`:

``segment_softmax_aggregate(src_logits [N,H], values [N,H,D], indptr, indices, dst_logits [S,H] | None,
negative_slope=0.2, impl="auto") -> out [S,H,D]``::

    z_i      = leaky_relu(src_logits[indices[i], h] + dst_logits[s, h], negative_slope)
    p_i      = softmax_{i in s}(z_i)
    out[s,h] = sum_{i in s} p_i * values[indices[i], h, :]      (an empty segment gives zeros)

``negative_slope=1.0`` means no activation. This is the set-attention pooling of AllSetTransformer
(MINGLE's HypEHR backbone; PMA uses only source logits) and HyperGAT's GAT-style attention
(source + destination logits).

``segment_aggregate(values [N,D], indptr, indices, weights [nnz] | None, reduce="sum"|"mean"|"max",
impl="auto") -> out [S,D]``: ``out[s] = REDUCE_{i in s} w_i * values[indices[i]]``; ``mean``
divides by the member count; empty segments give zeros; ``max`` sends the gradient to the first
maximal entry (the reference shares it among ties).

``impl``: ``"fused"`` (the compiled ``mingle::`` ops; error if unavailable), ``"reference"`` (the
pure-PyTorch scatter chain in :mod:`mingle_bench.ops_reference`), or ``"auto"`` (fused when built
for the tensors' device and dtype, else the reference with a one-time warning). :func:`last_impl`
tells callers which one ran, so every result can record it.

The compiled ops (``torch.ops.mingle.*``, registered in ``csrc/``) take ``num_segments``
explicitly, the transposed CSR as inputs, and ``data_checked`` (the index data was validated by
the caller, so the CPU kernels do not scan it again); their backward is an op of its own that
walks the transpose (no atomics, no scatter-add), so outputs and gradients are bitwise
reproducible. Fake kernels and autograd formulas are registered here, so the ops work under
``torch.compile(fullgraph=True)`` and pass ``torch.library.opcheck``.

Over a :class:`mingle_bench.csr.CSR` (e.g. ``inc.v2e``) call :func:`softmax_aggregate` /
:func:`aggregate` (or pass ``csr=``): they reuse the cached transpose and skip the per-call data
checks when the CSR was validated once (``csr.validated``).
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor

from mingle_bench.csr import CSR, check_csr_data, check_index_tensor, transpose_csr
from mingle_bench.ops_reference import (
    segment_aggregate_reference,
    segment_softmax_aggregate_reference,
)

__all__ = [
    "segment_softmax_aggregate",
    "segment_aggregate",
    "softmax_aggregate",
    "aggregate",
    "fused_available",
    "cuda_available",
    "last_impl",
    "extension_error",
]

_IMPLS = ("auto", "fused", "reference")
_REDUCES = ("sum", "mean", "max")
_CPU_DTYPES = (torch.float32, torch.float64)
_CUDA_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

_EXT_ERROR: str | None = None
try:  # Importing the (dummy) module runs the TORCH_LIBRARY static initialisers.
    from mingle_bench import _C  # noqa: F401

    _HAS_EXT = hasattr(torch.ops.mingle, "segment_softmax_aggregate")
except (ImportError, OSError) as exc:  # not built, or built against another torch
    import glob as _glob
    import os as _os

    _HAS_EXT = False
    if _glob.glob(_os.path.join(_os.path.dirname(__file__), "_C*")):
        _EXT_ERROR = f"{type(exc).__name__}: {exc}"

_LAST_IMPL: str | None = None
_WARNED: set[str] = set()


def fused_available(device: str | torch.device | None = None) -> bool:
    """True when the compiled extension is loaded (and, with ``device``, has kernels for it)."""
    if not _HAS_EXT:
        return False
    if device is None:
        return True
    dev = torch.device(device)
    if dev.type == "cpu":
        return True
    if dev.type == "cuda":
        return cuda_available()
    return False


def cuda_available() -> bool:
    """True when the extension was built with its CUDA kernels for this torch's CUDA major version."""
    if not (_HAS_EXT and bool(torch.ops.mingle.built_with_cuda())):
        return False
    built = int(torch.ops.mingle.cuda_version()) // 1000
    runtime = int(torch.version.cuda.split(".")[0]) if torch.version.cuda else None
    if runtime is not None and built != runtime:
        _warn_once("cuda-version", f"mingle_bench._C was compiled with CUDA {built}.x but torch uses CUDA "
                                   f"{torch.version.cuda}; rebuild it (pip install --no-build-isolation -e .). "
                                   f"Using the reference path on GPU.")
        return False
    return True


def extension_error() -> str | None:
    """Why the extension failed to load (``None`` when it loaded or was simply not built)."""
    return _EXT_ERROR


def last_impl() -> str | None:
    """Which implementation the most recent op call ran: ``"fused"``, ``"reference"`` or None."""
    return _LAST_IMPL


def _set_last(impl: str) -> None:
    global _LAST_IMPL
    _LAST_IMPL = impl


def _warn_once(key: str, msg: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(msg, RuntimeWarning, stacklevel=4)


# ----------------------------------------------------------------------------- validation
def _is_compiling() -> bool:
    try:
        return torch.compiler.is_compiling()
    except AttributeError:  # pragma: no cover
        return False


def _check_float(t: Tensor, name: str, dim: int) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {t.dtype}")
    if t.dim() != dim:
        raise ValueError(f"{name}: expected a {dim}-D tensor, got shape {tuple(t.shape)}")


def _check_common(indptr: Tensor, indices: Tensor, device: torch.device, csr: CSR | None,
                  num_sources: int) -> bool:
    """Metadata checks of the CSR arguments, then the data checks unless ``csr`` was validated.

    Returns whether the index data is known to be valid (``data_checked`` of the compiled ops,
    which then do not scan it again); False only while tracing under ``torch.compile`` with an
    unvalidated CSR, where the compiled op scans it on CPU.
    """
    check_index_tensor(indptr, "indptr")
    check_index_tensor(indices, "indices")
    for name, t in (("indptr", indptr), ("indices", indices)):
        if t.device != device:
            raise ValueError(f"{name}: on {t.device}, expected {device} (the device of the values)")
    if indptr.numel() < 1:
        raise ValueError("indptr: must have at least one element (S+1 with S >= 0)")
    if csr is not None:
        if csr.indptr is not indptr and csr.indptr.shape != indptr.shape:
            raise ValueError(f"csr: has {csr.num_segments} segments but indptr has {indptr.numel() - 1}")
        if csr.indices is not indices and csr.indices.shape != indices.shape:
            raise ValueError(f"csr: has {csr.nnz} entries but indices has {indices.numel()}")
        if csr.num_sources != num_sources:
            raise ValueError(f"csr: built for {csr.num_sources} sources but the inputs have {num_sources} rows")
        if csr.indptr.device != device:
            raise ValueError(f"csr: on {csr.indptr.device}, expected {device}")
        if csr.validated:
            return True
    if _is_compiling():
        return False
    check_csr_data(indptr, indices, num_sources)
    return True


def _choose_impl(impl: str, device: torch.device, dtype: torch.dtype, op: str) -> str:
    if impl not in _IMPLS:
        raise ValueError(f"impl: expected one of {_IMPLS}, got {impl!r}")
    if impl == "reference":
        return "reference"
    ok_dtypes = _CPU_DTYPES if device.type == "cpu" else _CUDA_DTYPES
    usable = fused_available(device) and dtype in ok_dtypes
    if usable:
        return "fused"
    if not fused_available():
        why = "the compiled extension mingle_bench._C is not built" + (f" ({_EXT_ERROR})" if _EXT_ERROR else "")
    elif not fused_available(device):
        why = f"the extension has no kernels for device {device.type}"
    else:
        why = f"the fused kernels on {device.type} support {[str(d) for d in ok_dtypes]}, not {dtype}"
    if impl == "fused":
        raise ValueError(f"impl='fused' for {op}: {why}")
    _warn_once(f"{op}:{why}", f"{op}: using the pure-PyTorch reference path because {why}")
    return "reference"


def _transpose_for(indptr: Tensor, indices: Tensor, num_sources: int, csr: CSR | None,
                   need: bool) -> tuple[Tensor, Tensor, Tensor]:
    if csr is not None:
        return csr.t_indptr, csr.t_indices, csr.t_perm
    if need:
        return transpose_csr(indptr, indices, num_sources)
    empty = indices.new_empty(0)
    return empty, empty, empty


# ----------------------------------------------------------------------------- public ops
def segment_softmax_aggregate(
    src_logits: Tensor,
    values: Tensor,
    indptr: Tensor,
    indices: Tensor,
    dst_logits: Tensor | None = None,
    negative_slope: float = 0.2,
    impl: str = "auto",
    *,
    csr: CSR | None = None,
) -> Tensor:
    """Softmax-weighted segment sum (see module docstring). Returns [S,H,D].

    Differentiable in ``src_logits``, ``dst_logits`` and ``values``. Raises ``ValueError`` naming
    the argument for a wrong dtype/shape/device, a non-monotone ``indptr`` (or one that does not
    start at 0 / end at nnz) and out-of-range ``indices``.
    """
    _check_float(src_logits, "src_logits", 2)
    _check_float(values, "values", 3)
    N, H = src_logits.shape
    if values.shape[0] != N or values.shape[1] != H:
        raise ValueError(f"values: expected shape [N={N}, H={H}, D], got {tuple(values.shape)}")
    if values.dtype != src_logits.dtype:
        raise ValueError(f"values: dtype {values.dtype} differs from src_logits dtype {src_logits.dtype}")
    device = src_logits.device
    if values.device != device:
        raise ValueError(f"values: on {values.device}, src_logits on {device}")
    data_checked = _check_common(indptr, indices, device, csr, N)
    S = indptr.numel() - 1
    if dst_logits is not None:
        _check_float(dst_logits, "dst_logits", 2)
        if tuple(dst_logits.shape) != (S, H):
            raise ValueError(f"dst_logits: expected shape [S={S}, H={H}], got {tuple(dst_logits.shape)}")
        if dst_logits.dtype != src_logits.dtype:
            raise ValueError(f"dst_logits: dtype {dst_logits.dtype} differs from src_logits dtype {src_logits.dtype}")
        if dst_logits.device != device:
            raise ValueError(f"dst_logits: on {dst_logits.device}, src_logits on {device}")
    slope = float(negative_slope)
    if not slope == slope or slope < 0:
        raise ValueError(f"negative_slope: expected a finite value >= 0, got {negative_slope}")
    chosen = _choose_impl(impl, device, src_logits.dtype, "segment_softmax_aggregate")
    _set_last(chosen)
    if chosen == "reference":
        seg = csr.segment_ids if csr is not None else None
        return segment_softmax_aggregate_reference(src_logits, values, indptr, indices, dst_logits, slope, seg=seg)
    need_t = torch.is_grad_enabled() and (src_logits.requires_grad or values.requires_grad
                                          or (dst_logits is not None and dst_logits.requires_grad))
    t_indptr, t_indices, _ = _transpose_for(indptr, indices, N, csr, need_t)
    out, _lse = torch.ops.mingle.segment_softmax_aggregate(
        src_logits.contiguous(), values.contiguous(), indptr.contiguous(), indices.contiguous(),
        t_indptr, t_indices, None if dst_logits is None else dst_logits.contiguous(), slope, S, data_checked)
    return out


def segment_aggregate(
    values: Tensor,
    indptr: Tensor,
    indices: Tensor,
    weights: Tensor | None = None,
    reduce: str = "sum",
    impl: str = "auto",
    *,
    csr: CSR | None = None,
) -> Tensor:
    """Weighted segment reduction (sum | mean | max, see module docstring). Returns [S,D].

    Differentiable in ``values`` and ``weights``.
    """
    _check_float(values, "values", 2)
    N = values.shape[0]
    device = values.device
    if reduce not in _REDUCES:
        raise ValueError(f"reduce: expected one of {_REDUCES}, got {reduce!r}")
    data_checked = _check_common(indptr, indices, device, csr, N)
    S = indptr.numel() - 1
    if weights is not None:
        _check_float(weights, "weights", 1)
        if weights.numel() != indices.numel():
            raise ValueError(f"weights: expected shape [nnz={indices.numel()}], got {tuple(weights.shape)}")
        if weights.dtype != values.dtype:
            raise ValueError(f"weights: dtype {weights.dtype} differs from values dtype {values.dtype}")
        if weights.device != device:
            raise ValueError(f"weights: on {weights.device}, values on {device}")
    chosen = _choose_impl(impl, device, values.dtype, "segment_aggregate")
    _set_last(chosen)
    if chosen == "reference":
        seg = csr.segment_ids if csr is not None else None
        return segment_aggregate_reference(values, indptr, indices, weights, reduce, seg=seg)
    need_t = torch.is_grad_enabled() and (values.requires_grad or (weights is not None and weights.requires_grad))
    t_indptr, t_indices, t_perm = _transpose_for(indptr, indices, N, csr, need_t)
    out, _arg = torch.ops.mingle.segment_aggregate(
        values.contiguous(), indptr.contiguous(), indices.contiguous(), t_indptr, t_indices, t_perm,
        None if weights is None else weights.contiguous(), reduce, S, data_checked)
    return out


def softmax_aggregate(csr: CSR, src_logits: Tensor, values: Tensor, dst_logits: Tensor | None = None,
                      negative_slope: float = 0.2, impl: str = "auto") -> Tensor:
    r""":func:`segment_softmax_aggregate` over one direction ``csr`` of an incidence.

    .. math::
        \mathbf{out}_{s,h} = \sum_{i \in s} \operatorname{softmax}_{i \in s}\big(
        \operatorname{LeakyReLU}(a_{n_i,h} + b_{s,h})\big)\, \mathbf{v}_{n_i,h}

    Shapes: ``src_logits`` [N,H], ``values`` [N,H,D], ``dst_logits`` [S,H] or None -> [S,H,D],
    with ``S = csr.num_segments`` and ``N = csr.num_sources``. Reuses the cached transpose and,
    when ``csr.validated``, skips the data checks.
    """
    return segment_softmax_aggregate(src_logits, values, csr.indptr, csr.indices, dst_logits,
                                     negative_slope, impl, csr=csr)


def aggregate(csr: CSR, values: Tensor, weights: Tensor | None = None, reduce: str = "sum",
              impl: str = "auto") -> Tensor:
    r""":func:`segment_aggregate` over one direction ``csr`` of an incidence.

    .. math::
        \mathbf{out}_s = \operatorname{REDUCE}_{i \in s}\; w_i\, \mathbf{x}_{n_i}
        \qquad \text{REDUCE} \in \{\text{sum}, \text{mean}, \text{max}\}

    Shapes: ``values`` [N,D], ``weights`` [nnz] or None -> [S,D].
    """
    return segment_aggregate(values, csr.indptr, csr.indices, weights, reduce, impl, csr=csr)


# ----------------------------------------------------------------------------- registration
def _ensure_transpose(indptr: Tensor, indices: Tensor, t_indptr: Tensor, t_indices: Tensor,
                      t_perm: Tensor | None, num_sources: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """Derive the transpose inside backward when the forward was called without it."""
    if t_indptr.numel() == num_sources + 1 and t_indices.numel() == indices.numel() and (
            t_perm is None or t_perm.numel() == indices.numel()):
        return t_indptr, t_indices, t_perm
    ti, tx, tp = transpose_csr(indptr, indices, num_sources)
    return ti, tx, (tp if t_perm is not None else None)


def _data_checked(inputs: tuple, position: int) -> bool:
    """The forward op's ``data_checked`` argument (False when the caller left the default)."""
    return bool(inputs[position]) if len(inputs) > position else False


if _HAS_EXT:

    @torch.library.register_fake("mingle::segment_softmax_aggregate")
    def _ssa_fake(src_logits, values, indptr, indices, t_indptr, t_indices, dst_logits, negative_slope,
                  num_segments, data_checked=False):
        torch._check(src_logits.dim() == 2 and values.dim() == 3)
        torch._check(indptr.shape[0] == num_segments + 1)
        N, H = src_logits.shape
        D = values.shape[2]
        out = values.new_empty((num_segments, H, D))
        lse = src_logits.new_empty((num_segments, H), dtype=torch.float32 if src_logits.dtype in
                                   (torch.float16, torch.bfloat16) else src_logits.dtype)
        return out, lse

    @torch.library.register_fake("mingle::segment_softmax_aggregate_backward")
    def _ssa_bwd_fake(grad_out, out, lse, src_logits, values, indptr, indices, t_indptr, t_indices,
                      dst_logits, negative_slope, data_checked=False):
        torch._check(grad_out.shape == out.shape)
        S = indptr.shape[0] - 1
        H = src_logits.shape[1]
        g_dst = src_logits.new_empty((S, H) if dst_logits is not None else (0, H))
        return torch.empty_like(src_logits), torch.empty_like(values), g_dst

    def _ssa_setup(ctx, inputs, output):
        src_logits, values, indptr, indices, t_indptr, t_indices, dst_logits, slope, _S = inputs[:9]
        out, lse = output
        ctx.slope, ctx.has_dst, ctx.data_checked = slope, dst_logits is not None, _data_checked(inputs, 9)
        ctx.save_for_backward(out, lse, src_logits, values, indptr, indices, t_indptr, t_indices,
                              dst_logits if dst_logits is not None else None)

    def _ssa_backward(ctx, grad_out, _grad_lse):
        out, lse, src_logits, values, indptr, indices, t_indptr, t_indices, dst_logits = ctx.saved_tensors
        t_indptr, t_indices, _ = _ensure_transpose(indptr, indices, t_indptr, t_indices, None,
                                                   src_logits.shape[0])
        g_src, g_val, g_dst = torch.ops.mingle.segment_softmax_aggregate_backward(
            grad_out.contiguous(), out, lse, src_logits, values, indptr, indices, t_indptr, t_indices,
            dst_logits, ctx.slope, ctx.data_checked)
        return g_src, g_val, None, None, None, None, (g_dst if ctx.has_dst else None), None, None, None

    torch.library.register_autograd("mingle::segment_softmax_aggregate", _ssa_backward,
                                    setup_context=_ssa_setup)

    @torch.library.register_fake("mingle::segment_aggregate")
    def _sa_fake(values, indptr, indices, t_indptr, t_indices, t_perm, weights, reduce, num_segments,
                 data_checked=False):
        torch._check(values.dim() == 2)
        torch._check(indptr.shape[0] == num_segments + 1)
        D = values.shape[1]
        out = values.new_empty((num_segments, D))
        arg = indices.new_empty((num_segments, D) if reduce == "max" else (0,))
        return out, arg

    @torch.library.register_fake("mingle::segment_aggregate_backward")
    def _sa_bwd_fake(grad_out, values, arg, indptr, indices, t_indptr, t_indices, t_perm, weights, reduce,
                     data_checked=False):
        g_w = values.new_empty((indices.shape[0],) if weights is not None else (0,))
        return torch.empty_like(values), g_w

    def _sa_setup(ctx, inputs, output):
        values, indptr, indices, t_indptr, t_indices, t_perm, weights, reduce, _S = inputs[:9]
        _out, arg = output
        ctx.reduce, ctx.has_w, ctx.data_checked = reduce, weights is not None, _data_checked(inputs, 9)
        ctx.save_for_backward(values, arg, indptr, indices, t_indptr, t_indices, t_perm, weights)

    def _sa_backward(ctx, grad_out, _grad_arg):
        values, arg, indptr, indices, t_indptr, t_indices, t_perm, weights = ctx.saved_tensors
        t_indptr, t_indices, t_perm = _ensure_transpose(indptr, indices, t_indptr, t_indices, t_perm,
                                                        values.shape[0])
        g_val, g_w = torch.ops.mingle.segment_aggregate_backward(
            grad_out.contiguous(), values, arg, indptr, indices, t_indptr, t_indices, t_perm, weights,
            ctx.reduce, ctx.data_checked)
        return g_val, None, None, None, None, None, (g_w if ctx.has_w else None), None, None, None

    torch.library.register_autograd("mingle::segment_aggregate", _sa_backward, setup_context=_sa_setup)
