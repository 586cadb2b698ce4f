"""Hypergraph incidence in compressed form, built once and shared by every layer.

A hypergraph with ``num_nodes`` nodes and ``num_edges`` hyperedges is given as ``nnz``
(node, hyperedge) incidence pairs. Message passing runs in two directions:

* **V→E** (``Incidence.v2e``): one *segment* per hyperedge; its members (*sources*) are
  the hyperedge's nodes. ``out[e] = AGG_{v in e} f(x[v])``.
* **E→V** (``Incidence.e2v``): one segment per node; its sources are the hyperedges that
  contain it. ``out[v] = AGG_{e ∋ v} f(h[e])``.

Each direction is a :class:`mingle_bench.csr.CSR` (``indptr`` [S+1], ``indices`` [nnz] and the
cached transpose the fused op's backward walks; see :mod:`mingle_bench.csr`).

The transpose of ``v2e`` *is* ``e2v`` (same tensors), so the structure is built with two stable
sorts and never rebuilt per layer. Pairs are validated once here (``CSR.validated``); the ops of
:mod:`mingle_bench.ops` given one of these CSRs skip their per-call data checks.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import torch
from torch import Tensor

# CSR is also importable from here for older callers; new code imports it from mingle_bench.csr.
from mingle_bench.csr import CSR

__all__ = ["Incidence"]


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
