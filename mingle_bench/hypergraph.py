"""The EHR hypergraph: medical codes are nodes, admissions are hyperedges.

Structure (as in HypEHR / MINGLE):

* **Nodes** ``0 .. N-1``: the codes of the train-fitted vocabulary
  (:class:`~mingle_bench.vocab.CodeVocab`), each with a description text.
* **Visit hyperedges** ``0 .. V_e-1``: one per admission that takes part in message passing;
  hyperedge ``e`` joins the input codes of admission ``edge_visit[e]`` (the task's input view
  of that admission). Labelled sample hyperedges are a subset; which admissions take part is
  the ``graph_scope`` of :func:`mingle_bench.features.build_task_data`.
* **Self-loop hyperedges** ``V_e .. V_e+N-1``: hyperedge ``V_e + v`` holds node ``v`` alone, so
  every node keeps its own features in the E→V step (one per node, also for nodes that already
  sit in a singleton visit). They are marked in ``is_self_loop``, have ``edge_visit = -1`` and are
  never prediction targets.

The incidence matrix ``H`` (``[N, E]``, ``H[v, e] = 1`` iff ``v ∈ e``) is held as an
:class:`mingle_bench.incidence.Incidence`: a :class:`mingle_bench.csr.CSR` in both orientations (``incidence.v2e``:
segments = hyperedges, sources = nodes; ``incidence.e2v``: segments = nodes, sources =
hyperedges). A visit whose codes were all dropped (unseen at validation/test time) is an
empty hyperedge (a zero-length segment), counted in ``report["empty_visit_edges"]``.

Example: 3 nodes, visits {0, 1} and {1, 2}::

    H = [[1, 0, 1, 0, 0],      columns: visit 0, visit 1, self-loops of nodes 0, 1, 2
         [1, 1, 0, 1, 0],
         [0, 1, 0, 0, 1]]
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from mingle_bench.csr import CSR
from mingle_bench.incidence import Incidence


@dataclass(eq=False)
class EHRHypergraph:
    """Hypergraph over code nodes with visit and self-loop hyperedges.

    Attributes:
        num_nodes: N.
        num_edges: E = number of visit hyperedges + N self-loops.
        num_visit_edges: number of visit hyperedges (they come first).
        edge_visit: int64 [E], the visit id of each hyperedge, -1 for self-loops.
        is_self_loop: bool [E].
        incidence: CSR in both orientations (see module docstring).
    """

    num_nodes: int
    num_edges: int
    num_visit_edges: int
    edge_visit: Tensor
    is_self_loop: Tensor
    incidence: Incidence
    report: dict = field(default_factory=dict)

    @classmethod
    def build(cls, visit_codes_indptr: Tensor, visit_codes: Tensor, edge_visits: Tensor, num_nodes: int,
              self_loops: bool = True) -> "EHRHypergraph":
        """Build from the per-visit code CSR (``visit_codes_indptr`` int64 [n_visits+1],
        ``visit_codes`` int64 [nnz] node ids) and the visits that become hyperedges
        (``edge_visits`` int64 [V_e], in hyperedge order)."""
        indptr = torch.as_tensor(visit_codes_indptr, dtype=torch.int64)
        codes = torch.as_tensor(visit_codes, dtype=torch.int64)
        edge_visits = torch.as_tensor(edge_visits, dtype=torch.int64)
        n_visits = indptr.numel() - 1
        if edge_visits.numel() and (int(edge_visits.min()) < 0 or int(edge_visits.max()) >= n_visits):
            raise ValueError(f"edge_visits: visit ids must lie in [0, {n_visits})")
        if edge_visits.unique().numel() != edge_visits.numel():
            raise ValueError("edge_visits: a visit appears twice")
        starts, ends = indptr[edge_visits], indptr[edge_visits + 1]
        sizes = ends - starts
        ve = int(edge_visits.numel())
        edge_of_entry = torch.repeat_interleave(torch.arange(ve), sizes)
        # positions of each selected visit's codes in visit_codes
        offsets = torch.arange(int(sizes.sum())) - torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes)
        node_of_entry = codes[torch.repeat_interleave(starts, sizes) + offsets]
        n_loops = int(num_nodes) if self_loops else 0
        if self_loops:
            node_of_entry = torch.cat([node_of_entry, torch.arange(num_nodes)])
            edge_of_entry = torch.cat([edge_of_entry, ve + torch.arange(num_nodes)])
        num_edges = ve + n_loops
        incidence = Incidence.from_pairs(node_of_entry, edge_of_entry, int(num_nodes), num_edges)
        edge_visit = torch.cat([edge_visits, torch.full((n_loops,), -1, dtype=torch.int64)])
        is_self_loop = torch.zeros(num_edges, dtype=torch.bool)
        is_self_loop[ve:] = True
        report = {
            "nodes": int(num_nodes), "visit_edges": ve, "self_loop_edges": n_loops,
            "incidences": incidence.nnz, "empty_visit_edges": int((sizes == 0).sum()),
            "mean_visit_edge_size": float(sizes.float().mean()) if ve else 0.0,
        }
        return cls(int(num_nodes), num_edges, ve, edge_visit, is_self_loop, incidence, report)

    @property
    def v2e(self) -> CSR:
        """CSR with one segment per hyperedge over its nodes."""
        return self.incidence.v2e

    @property
    def e2v(self) -> CSR:
        """CSR with one segment per node over its hyperedges."""
        return self.incidence.e2v

    def dense(self) -> Tensor:
        """The incidence matrix ``H`` float32 [N, E] (for tests and small graphs)."""
        h = torch.zeros(self.num_nodes, self.num_edges)
        v2e = self.incidence.v2e
        edge = torch.repeat_interleave(torch.arange(self.num_edges), v2e.counts)
        h[v2e.indices, edge] = 1.0
        return h

    def to(self, device: torch.device | str) -> "EHRHypergraph":
        return EHRHypergraph(self.num_nodes, self.num_edges, self.num_visit_edges, self.edge_visit.to(device),
                             self.is_self_loop.to(device), self.incidence.to(device), dict(self.report))
