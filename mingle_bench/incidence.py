"""Hypergraph incidence in compressed form, built once and shared by every layer.

A hypergraph with ``num_nodes`` nodes and ``num_edges`` hyperedges is given as ``nnz``
(node, hyperedge) incidence pairs. Message passing runs in two directions:

* **V→E** (``Incidence.v2e``): one *segment* per hyperedge; its members (*sources*) are
  the hyperedge's nodes. ``out[e] = AGG_{v in e} f(x[v])``.
* **E→V** (``Incidence.e2v``): one segment per node; its sources are the hyperedges that
  contain it. ``out[v] = AGG_{e ∋ v} f(h[e])``.

Each direction is a :class:`CSR`:

* ``indptr``  int64 [S+1]: segment ``s`` owns entries ``indptr[s] .. indptr[s+1]-1``;
* ``indices`` int64 [nnz]: the source row of each entry;
* ``t_indptr`` int64 [N+1], ``t_indices`` int64 [nnz], ``t_perm`` int64 [nnz]: the transpose,
  i.e. for source ``n`` the entries ``t_perm[t_indptr[n]:t_indptr[n+1]]`` (positions into
  ``indices``, ascending) and their segments ``t_indices[...]``. The fused op's backward walks
  this to give gradients for source rows without atomics or scatter-add, which keeps it
  deterministic.

The transpose of ``v2e`` *is* ``e2v`` (same tensors), so the structure is built with two stable
sorts and never rebuilt per layer. Pairs are validated once here; ops given a ``csr=`` from this
module skip their per-call data checks.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

__all__ = ["CSR", "Incidence"]


def _segment_ids(indptr: Tensor, nnz: int) -> Tensor:
    """Segment id of every entry: int64 [nnz] (no host sync: output size is given)."""
    num_segments = indptr.numel() - 1
    counts = indptr[1:] - indptr[:-1]
    return torch.repeat_interleave(
        torch.arange(num_segments, device=indptr.device), counts, output_size=nnz
    )


def transpose_csr(indptr: Tensor, indices: Tensor, num_sources: int) -> tuple[Tensor, Tensor, Tensor]:
    """Transpose a CSR: returns ``(t_indptr [N+1], t_indices [nnz], t_perm [nnz])``.

    ``t_perm`` lists entry positions grouped by source (stable, so ascending within a source);
    ``t_indices`` gives the segment of each. Uses only sorts and ``searchsorted`` (no
    data-dependent shapes, no host sync, deterministic on every device).
    """
    nnz = indices.numel()
    seg = _segment_ids(indptr, nnz)
    sorted_src, t_perm = torch.sort(indices, stable=True)
    t_indices = seg.index_select(0, t_perm)
    t_indptr = torch.searchsorted(
        sorted_src, torch.arange(num_sources + 1, device=indices.device, dtype=indices.dtype)
    )
    return t_indptr, t_indices, t_perm


@dataclass(frozen=True, eq=False)
class CSR:
    """One direction of an incidence: segments over sources, plus its transpose.

    Shapes: ``indptr`` [S+1], ``indices`` [nnz] in ``[0, N)``, ``t_indptr`` [N+1],
    ``t_indices`` [nnz] in ``[0, S)``, ``t_perm`` [nnz]; all int64 on one device.
    """

    indptr: Tensor
    indices: Tensor
    num_segments: int
    num_sources: int
    t_indptr: Tensor
    t_indices: Tensor
    t_perm: Tensor
    validated: bool = True
    _seg: list = field(default_factory=list, repr=False)

    @classmethod
    def from_csr(cls, indptr: Tensor, indices: Tensor, num_sources: int, validate: bool = True) -> "CSR":
        """Build from ``indptr``/``indices``, deriving the transpose.

        With ``validate=True`` (default) the structure is checked once (monotone ``indptr``
        starting at 0 and ending at nnz, ``indices`` in ``[0, num_sources)``) and ops given
        this object skip their per-call data checks.
        """
        from mingle_bench.ops import _check_csr_data, _check_index_tensor

        _check_index_tensor(indptr, "indptr")
        _check_index_tensor(indices, "indices")
        if indptr.numel() < 1:
            raise ValueError("indptr: must have at least one element (S+1 with S >= 0)")
        if validate:
            _check_csr_data(indptr, indices, int(num_sources))
        t_indptr, t_indices, t_perm = transpose_csr(indptr, indices, int(num_sources))
        return cls(indptr, indices, indptr.numel() - 1, int(num_sources), t_indptr, t_indices, t_perm, validate)

    @property
    def nnz(self) -> int:
        return int(self.indices.numel())

    @property
    def segment_ids(self) -> Tensor:
        """Segment of every entry, int64 [nnz] (computed once, cached)."""
        if not self._seg:
            self._seg.append(_segment_ids(self.indptr, self.nnz))
        return self._seg[0]

    @property
    def counts(self) -> Tensor:
        """Members per segment, int64 [S]."""
        return self.indptr[1:] - self.indptr[:-1]

    def transpose(self) -> "CSR":
        """The opposite direction (segments become sources), sharing tensors where possible."""
        inv_perm = torch.empty_like(self.t_perm)
        inv_perm[self.t_perm] = torch.arange(self.nnz, device=self.t_perm.device)
        return CSR(self.t_indptr, self.t_indices, self.num_sources, self.num_segments,
                   self.indptr, self.indices, inv_perm, self.validated)

    def to(self, device: torch.device | str) -> "CSR":
        """A copy on ``device``."""
        return CSR(*(getattr(self, k).to(device) for k in ("indptr", "indices")),
                   self.num_segments, self.num_sources,
                   *(getattr(self, k).to(device) for k in ("t_indptr", "t_indices", "t_perm")),
                   self.validated)

    # Convenience wrappers so models call the op for one direction in one line.
    def softmax_aggregate(self, src_logits: Tensor, values: Tensor, dst_logits: Tensor | None = None,
                          negative_slope: float = 0.2, impl: str = "auto") -> Tensor:
        """``mingle_bench.ops.segment_softmax_aggregate`` over this direction: [S,H,D]."""
        from mingle_bench.ops import segment_softmax_aggregate

        return segment_softmax_aggregate(src_logits, values, self.indptr, self.indices, dst_logits,
                                         negative_slope, impl, csr=self)

    def aggregate(self, values: Tensor, weights: Tensor | None = None, reduce: str = "sum",
                  impl: str = "auto") -> Tensor:
        """``mingle_bench.ops.segment_aggregate`` over this direction: [S,D]."""
        from mingle_bench.ops import segment_aggregate

        return segment_aggregate(values, self.indptr, self.indices, weights, reduce, impl, csr=self)


@dataclass(frozen=True, eq=False)
class Incidence:
    """Node–hyperedge incidence with cached CSR in both orientations.

    ``v2e``: segments = hyperedges, sources = nodes (entries sorted by (edge, node)).
    ``e2v``: segments = nodes, sources = hyperedges (entries sorted by (node, edge)).
    ``v2e.t_*`` and ``e2v.indptr/indices`` are the same tensors.
    ``num_duplicates`` counts repeated (node, edge) pairs dropped at construction.
    """

    num_nodes: int
    num_edges: int
    v2e: CSR
    e2v: CSR
    num_duplicates: int = 0

    @classmethod
    def from_pairs(cls, node_idx: Tensor, edge_idx: Tensor, num_nodes: int, num_edges: int) -> "Incidence":
        """Build from incidence pairs ``(node_idx[k], edge_idx[k])``, int64 [nnz] each.

        Out-of-range ids raise ``ValueError`` naming the argument and the first bad position.
        Duplicate pairs are dropped (a code appears once per visit) and counted in
        ``num_duplicates`` with a warning.
        """
        node_idx = torch.as_tensor(node_idx)
        edge_idx = torch.as_tensor(edge_idx)
        for name, t in (("node_idx", node_idx), ("edge_idx", edge_idx)):
            if t.dim() != 1:
                raise ValueError(f"{name}: expected a 1-D tensor, got shape {tuple(t.shape)}")
            if t.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
                raise ValueError(f"{name}: expected an integer tensor, got {t.dtype}")
        if node_idx.numel() != edge_idx.numel():
            raise ValueError(f"node_idx/edge_idx: lengths differ ({node_idx.numel()} vs {edge_idx.numel()})")
        if node_idx.device != edge_idx.device:
            raise ValueError(f"node_idx/edge_idx: on different devices ({node_idx.device} vs {edge_idx.device})")
        num_nodes, num_edges = int(num_nodes), int(num_edges)
        if num_nodes < 0 or num_edges < 0:
            raise ValueError(f"num_nodes/num_edges: must be >= 0, got {num_nodes}/{num_edges}")
        node_idx = node_idx.to(torch.int64)
        edge_idx = edge_idx.to(torch.int64)
        for name, t, bound in (("node_idx", node_idx, num_nodes), ("edge_idx", edge_idx, num_edges)):
            bad = (t < 0) | (t >= bound)
            if bool(bad.any()):
                pos = int(bad.nonzero()[0, 0])
                raise ValueError(f"{name}: value {int(t[pos])} at position {pos} is outside [0, {bound})")
        # Sort by (edge, node) and drop duplicate pairs.
        key = edge_idx * max(num_nodes, 1) + node_idx
        key_sorted, _ = torch.sort(key)
        keep = torch.ones_like(key_sorted, dtype=torch.bool)
        if key_sorted.numel() > 1:
            keep[1:] = key_sorted[1:] != key_sorted[:-1]
        num_dup = int(key_sorted.numel() - int(keep.sum()))
        if num_dup:
            warnings.warn(f"Incidence.from_pairs: dropped {num_dup} duplicate (node, edge) pairs", stacklevel=2)
        key_sorted = key_sorted[keep]
        edges = torch.div(key_sorted, max(num_nodes, 1), rounding_mode="floor")
        nodes = key_sorted - edges * max(num_nodes, 1)
        v2e_indptr = torch.searchsorted(edges, torch.arange(num_edges + 1, device=edges.device))
        # The pairs were range-checked above and indptr is built from sorted ids: no second pass.
        v2e = replace(CSR.from_csr(v2e_indptr, nodes.contiguous(), num_nodes, validate=False), validated=True)
        e2v = v2e.transpose()
        return cls(num_nodes, num_edges, v2e, e2v, num_dup)

    @property
    def nnz(self) -> int:
        return self.v2e.nnz

    def to(self, device: torch.device | str) -> "Incidence":
        """A copy on ``device`` (both orientations; ``e2v`` shares ``v2e``'s transpose)."""
        v2e = self.v2e.to(device)
        return Incidence(self.num_nodes, self.num_edges, v2e, v2e.transpose(), self.num_duplicates)

    def degrees(self) -> tuple[Tensor, Tensor]:
        """(node degree int64 [num_nodes], hyperedge size int64 [num_edges])."""
        return self.e2v.counts, self.v2e.counts
