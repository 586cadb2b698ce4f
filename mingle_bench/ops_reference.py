"""Pure-PyTorch reference of the segment ops: the unfused scatter chain.

This is the test oracle, the fallback when the compiled extension is missing, and the
"reference" arm of ``mingle-bench profile-kernel``. It is what PyG-style message passing does:
gather per incidence, ``scatter_reduce(amax)``, ``exp``, ``index_add``, divide, gather,
``index_add``; it materialises [nnz,H] logits and an [nnz,H,D] message tensor.

Definitions (segment ``s`` = entries ``indptr[s] .. indptr[s+1]-1``, ``n_i = indices[i]``)::

    z_i      = leaky_relu(src_logits[n_i, h] + dst_logits[s, h], negative_slope)
    p_i      = exp(z_i - max_j z_j) / sum_j exp(z_j - max_j z_j)
    out[s,h] = sum_i p_i * values[n_i, h, :]                 (zeros for an empty segment)

    segment_aggregate: out[s] = REDUCE_i w_i * values[n_i]   (sum | mean | max; zeros if empty)

``mean`` divides by the number of members (not by the sum of weights).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mingle_bench.csr import segment_ids


def segment_softmax_aggregate_reference(src_logits: Tensor, values: Tensor, indptr: Tensor, indices: Tensor,
                                        dst_logits: Tensor | None = None, negative_slope: float = 0.2,
                                        seg: Tensor | None = None) -> Tensor:
    """Unfused softmax-weighted segment sum. Shapes: [N,H], [N,H,D], [S+1], [nnz], [S,H] -> [S,H,D].

    The arguments of :func:`mingle_bench.ops.segment_softmax_aggregate`; ``seg`` [nnz] are the
    precomputed segment ids (:func:`mingle_bench.csr.segment_ids`), derived when None.
    """
    num_segments = indptr.numel() - 1
    nnz = indices.numel()
    H, D = values.shape[1], values.shape[2]
    if seg is None:
        seg = segment_ids(indptr, nnz)
    z = src_logits.index_select(0, indices)                                   # [nnz,H]
    if dst_logits is not None:
        z = z + dst_logits.index_select(0, seg)
    if negative_slope != 1.0:
        z = F.leaky_relu(z, negative_slope)
    seg_h = seg.unsqueeze(1).expand(nnz, H)
    zmax = torch.full((num_segments, H), float("-inf"), dtype=z.dtype, device=z.device)
    zmax = zmax.scatter_reduce(0, seg_h, z.detach(), reduce="amax", include_self=True)
    e = torch.exp(z - zmax.index_select(0, seg))                              # [nnz,H]
    denom = torch.zeros((num_segments, H), dtype=z.dtype, device=z.device).index_add(0, seg, e)
    p = e / denom.index_select(0, seg)
    msg = p.unsqueeze(-1) * values.index_select(0, indices)                   # [nnz,H,D]
    out = torch.zeros((num_segments, H, D), dtype=values.dtype, device=values.device)
    return out.index_add(0, seg, msg)


def segment_aggregate_reference(values: Tensor, indptr: Tensor, indices: Tensor, weights: Tensor | None = None,
                                reduce: str = "sum", seg: Tensor | None = None) -> Tensor:
    """Unfused weighted segment reduction. Shapes: [N,D], [S+1], [nnz], [nnz] -> [S,D].

    The arguments of :func:`mingle_bench.ops.segment_aggregate`; ``seg`` as above.
    """
    num_segments = indptr.numel() - 1
    nnz = indices.numel()
    D = values.shape[1]
    if seg is None:
        seg = segment_ids(indptr, nnz)
    msg = values.index_select(0, indices)                                      # [nnz,D]
    if weights is not None:
        msg = msg * weights.unsqueeze(1)
    out = torch.zeros((num_segments, D), dtype=values.dtype, device=values.device)
    if reduce == "max":
        # include_self=False: an empty segment keeps its 0; ties share the gradient evenly.
        return out.scatter_reduce(0, seg.unsqueeze(1).expand(nnz, D), msg, reduce="amax", include_self=False)
    out = out.index_add(0, seg, msg)
    if reduce == "mean":
        counts = (indptr[1:] - indptr[:-1]).clamp_min(1).to(values.dtype)
        out = out / counts.unsqueeze(1)
    return out
