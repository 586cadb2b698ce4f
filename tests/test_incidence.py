"""Incidence / CSR: both orientations, the transpose the backward walks, validation."""
from __future__ import annotations

import pytest
import torch

from mingle_bench import ops
from mingle_bench.csr import CSR, transpose_csr
from mingle_bench.incidence import Incidence


def _pairs():
    # edge 0 = {0, 1}, edge 1 = {1, 2}, edge 2 = {0}, edge 3 = {} ; node 3 is isolated
    nodes = torch.tensor([1, 0, 2, 1, 0])
    edges = torch.tensor([0, 0, 1, 1, 2])
    return nodes, edges


def test_from_pairs_both_orientations():
    inc = Incidence.from_pairs(*_pairs(), num_nodes=4, num_edges=4)
    assert inc.nnz == 5 and inc.num_duplicates == 0
    assert inc.v2e.indptr.tolist() == [0, 2, 4, 5, 5]
    assert inc.v2e.indices.tolist() == [0, 1, 1, 2, 0]
    assert inc.e2v.indptr.tolist() == [0, 2, 4, 5, 5]
    assert inc.e2v.indices.tolist() == [0, 2, 0, 1, 1]
    assert (inc.v2e.num_segments, inc.v2e.num_sources) == (4, 4)
    assert inc.v2e.validated and inc.e2v.validated  # ops skip their per-call data checks
    # the transpose of v2e is e2v, shared
    assert inc.v2e.t_indptr is inc.e2v.indptr and inc.v2e.t_indices is inc.e2v.indices
    node_deg, edge_size = inc.degrees()
    assert node_deg.tolist() == [2, 2, 1, 0] and edge_size.tolist() == [2, 2, 1, 0]


@pytest.mark.parametrize("direction", ["v2e", "e2v"])
def test_transpose_semantics(direction):
    g = torch.Generator().manual_seed(0)
    nodes = torch.randint(0, 30, (200,), generator=g)
    edges = torch.randint(0, 40, (200,), generator=g)
    with pytest.warns(UserWarning, match="duplicate"):
        inc = Incidence.from_pairs(nodes, edges, 30, 40)
    csr = getattr(inc, direction)
    seg = csr.segment_ids
    # entry t_perm[j] has source n (the transposed segment) and segment t_indices[j]
    t_seg = torch.repeat_interleave(torch.arange(csr.num_sources), csr.t_indptr.diff())
    assert torch.equal(csr.indices[csr.t_perm], t_seg)
    assert torch.equal(seg[csr.t_perm], csr.t_indices)
    # stable: positions ascend within a source
    for n in range(csr.num_sources):
        part = csr.t_perm[csr.t_indptr[n]:csr.t_indptr[n + 1]]
        assert torch.all(part[1:] > part[:-1])
    # transpose of transpose is the original
    back = csr.transpose().transpose()
    for name in ("indptr", "indices", "t_indptr", "t_indices", "t_perm"):
        assert torch.equal(getattr(back, name), getattr(csr, name)), name


def test_duplicates_counted_and_dropped():
    with pytest.warns(UserWarning, match="dropped 2 duplicate"):
        inc = Incidence.from_pairs(torch.tensor([0, 0, 1, 0]), torch.tensor([1, 1, 1, 1]), 2, 2)
    assert inc.num_duplicates == 2 and inc.nnz == 2
    assert inc.v2e.indptr.tolist() == [0, 0, 2]


def test_empty_incidence():
    inc = Incidence.from_pairs(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long), 3, 0)
    assert inc.v2e.indptr.tolist() == [0] and inc.e2v.indptr.tolist() == [0, 0, 0, 0]
    assert inc.v2e.t_indptr.tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize(
    "nodes,edges,nn,ne,match",
    [
        ([0, 5], [0, 0], 3, 1, r"node_idx: value 5 at position 1"),
        ([0, 1], [0, -1], 3, 1, r"edge_idx: value -1 at position 1"),
        ([0, 1], [0], 3, 1, r"node_idx/edge_idx: lengths differ"),
        ([[0, 1]], [[0, 0]], 3, 1, r"node_idx: expected a 1-D"),
        ([0.0], [0], 3, 1, r"node_idx: expected an integer"),
        ([0], [0], -1, 1, r"num_nodes/num_edges"),
    ],
)
def test_from_pairs_errors(nodes, edges, nn, ne, match):
    with pytest.raises(ValueError, match=match):
        Incidence.from_pairs(torch.tensor(nodes), torch.tensor(edges), nn, ne)


def test_csr_from_csr_validates():
    with pytest.raises(ValueError, match=r"indptr: not monotone at position 2"):
        CSR.from_csr(torch.tensor([0, 2, 1, 3]), torch.tensor([0, 0, 0]), 1)
    with pytest.raises(ValueError, match=r"indices: value 4 at position 0"):
        CSR.from_csr(torch.tensor([0, 1]), torch.tensor([4]), 2)
    with pytest.raises(ValueError, match=r"indptr: expected dtype torch.int64"):
        CSR.from_csr(torch.tensor([0, 1], dtype=torch.int32), torch.tensor([0]), 2)
    csr = CSR.from_csr(torch.tensor([0, 1, 1, 3]), torch.tensor([1, 0, 1]), 2)
    ti, tx, tp = transpose_csr(csr.indptr, csr.indices, 2)
    assert ti.tolist() == [0, 1, 3] and tx.tolist() == [2, 0, 2] and tp.tolist() == [1, 0, 2]


def test_direction_helpers_match_dense_attention():
    """inc.v2e.softmax_aggregate equals a dense masked softmax (an oracle independent of the scatter chain)."""
    g = torch.Generator().manual_seed(1)
    nodes = torch.tensor([0, 1, 2, 2, 3, 4, 0])
    edges = torch.tensor([0, 0, 0, 1, 1, 1, 2])
    inc = Incidence.from_pairs(nodes, edges, 5, 4)  # edge 3 empty
    H, D = 2, 3
    src = torch.randn(5, H, generator=g, dtype=torch.float64)
    dst = torch.randn(4, H, generator=g, dtype=torch.float64)
    val = torch.randn(5, H, D, generator=g, dtype=torch.float64)
    mask = torch.zeros(4, 5, dtype=torch.bool)
    mask[edges, nodes] = True
    logits = torch.nn.functional.leaky_relu(src.T[:, None, :] + dst.T[:, :, None], 0.2)  # [H,S,N]
    p = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1).nan_to_num(0.0)
    dense = torch.einsum("hsn,nhd->shd", p, val)
    for impl in ("reference", "auto"):
        out = ops.softmax_aggregate(inc.v2e, src, val, dst, 0.2, impl=impl)
        torch.testing.assert_close(out, dense)
    agg = ops.aggregate(inc.e2v, torch.arange(4, dtype=torch.float64)[:, None], reduce="sum", impl="reference")
    assert agg.flatten().tolist() == [0 + 2, 0, 0 + 1, 1, 1]
