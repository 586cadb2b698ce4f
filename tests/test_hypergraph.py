"""The EHR hypergraph (CSR both ways, self-loops, dense oracle) and DeepWalk features."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from mingle_bench.deepwalk import DeepWalkParams, cooccurrence_graph, deepwalk_embeddings, random_walks
from mingle_bench.hypergraph import EHRHypergraph


def _visits(seed: int, n_visits: int, n_nodes: int):
    rng = np.random.default_rng(seed)
    rows = [sorted(rng.choice(n_nodes, size=int(rng.integers(0, min(6, n_nodes) + 1)), replace=False).tolist())
            for _ in range(n_visits)]
    indptr = torch.tensor(np.concatenate([[0], np.cumsum([len(r) for r in rows])]), dtype=torch.int64)
    codes = torch.tensor([c for r in rows for c in r], dtype=torch.int64)
    return rows, indptr, codes


def test_docstring_example():
    g = EHRHypergraph.build(torch.tensor([0, 2, 4]), torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1]), 3)
    expected = torch.tensor([[1, 0, 1, 0, 0], [1, 1, 0, 1, 0], [0, 1, 0, 0, 1]], dtype=torch.float32)
    assert torch.equal(g.dense(), expected)
    assert g.edge_visit.tolist() == [0, 1, -1, -1, -1]
    assert g.is_self_loop.tolist() == [False, False, True, True, True]


@pytest.mark.parametrize("seed,n_visits,n_nodes", [(0, 12, 5), (1, 4, 15), (2, 30, 30), (3, 1, 1)])
def test_dense_oracle_csr_transposes_and_self_loops(seed, n_visits, n_nodes):
    rows, indptr, codes = _visits(seed, n_visits, n_nodes)
    edge_visits = torch.arange(n_visits - 1, -1, -2)  # a subset, in a custom order
    g = EHRHypergraph.build(indptr, codes, edge_visits, n_nodes)
    # dense oracle built straight from the visit lists
    oracle = torch.zeros(n_nodes, len(edge_visits) + n_nodes)
    for e, v in enumerate(edge_visits.tolist()):
        for c in rows[v]:
            oracle[c, e] = 1
    oracle[torch.arange(n_nodes), len(edge_visits) + torch.arange(n_nodes)] = 1
    assert torch.equal(g.dense(), oracle)
    # v2e: one segment per hyperedge over nodes; e2v: one per node over hyperedges; transposes
    v2e, e2v = g.v2e, g.e2v
    dense_v2e = torch.zeros(g.num_edges, g.num_nodes)
    dense_v2e[torch.repeat_interleave(torch.arange(g.num_edges), v2e.counts), v2e.indices] = 1
    dense_e2v = torch.zeros(g.num_nodes, g.num_edges)
    dense_e2v[torch.repeat_interleave(torch.arange(g.num_nodes), e2v.counts), e2v.indices] = 1
    assert torch.equal(dense_v2e, oracle.T) and torch.equal(dense_e2v, oracle)
    # self-loops: exactly one singleton per node, marked, never a visit
    loops = torch.nonzero(g.is_self_loop).flatten()
    assert loops.numel() == n_nodes and bool((g.edge_visit[loops] == -1).all())
    assert bool((v2e.counts[loops] == 1).all())
    assert sorted(v2e.indices[v2e.indptr[loops]].tolist()) == list(range(n_nodes))
    assert g.edge_visit[: len(edge_visits)].tolist() == edge_visits.tolist()
    assert g.report["empty_visit_edges"] == sum(1 for v in edge_visits.tolist() if not rows[v])


def test_segment_aggregate_matches_dense_mean_oracle():
    from mingle_bench.ops import segment_aggregate

    rows, indptr, codes = _visits(5, 20, 9)
    g = EHRHypergraph.build(indptr, codes, torch.arange(20), 9)
    x = torch.randn(9, 4, dtype=torch.float64)
    h = g.dense().double()
    edge_mean = segment_aggregate(x, g.v2e.indptr, g.v2e.indices, reduce="mean", impl="reference")
    size = h.sum(0).clamp(min=1)
    assert torch.allclose(edge_mean, (h.T @ x) / size[:, None])
    node_sum = segment_aggregate(edge_mean, g.e2v.indptr, g.e2v.indices, reduce="sum", impl="reference")
    assert torch.allclose(node_sum, h @ edge_mean)


def test_bad_edge_visits_are_rejected():
    _, indptr, codes = _visits(0, 3, 4)
    with pytest.raises(ValueError, match="edge_visits"):
        EHRHypergraph.build(indptr, codes, torch.tensor([0, 3]), 4)
    with pytest.raises(ValueError, match="appears twice"):
        EHRHypergraph.build(indptr, codes, torch.tensor([1, 1]), 4)


def test_cooccurrence_graph_and_walks_stay_on_edges():
    rows = [[0, 1, 2], [2, 3], [5]]
    indptr = np.array([0, 3, 5, 6])
    adj = cooccurrence_graph(indptr, np.array([c for r in rows for c in r]), 7)
    dense = adj.toarray()
    assert dense.tolist() == [[0, 1, 1, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0, 0], [1, 1, 0, 1, 0, 0, 0],
                              [0, 0, 1, 0, 0, 0, 0], [0] * 7, [0] * 7, [0] * 7]
    walks = random_walks(adj, walks_per_node=3, walk_length=6, seed=0)
    assert len(walks) == 21
    for w in walks:
        nodes = [int(t) for t in w]
        if dense[nodes[0]].sum() == 0:
            assert len(nodes) == 1  # isolated vertex: walk of length one
        for a, b in zip(nodes, nodes[1:]):
            assert dense[a, b] == 1


def test_deepwalk_is_seeded_cached_and_shaped(tmp_path):
    _, indptr, codes = _visits(4, 60, 25)
    p = DeepWalkParams(dim=8, walks_per_node=3, walk_length=8, seed=1)
    a, rep_a = deepwalk_embeddings(indptr, codes, 26, p, cache_dir=tmp_path)
    assert a.shape == (26, 8) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert not rep_a["cache_hit"] and rep_a["isolated_nodes"] >= 1  # node 25 never occurs
    b, rep_b = deepwalk_embeddings(indptr, codes, 26, p, cache_dir=tmp_path)
    assert rep_b["cache_hit"] and torch.equal(a, b)
    c, rep_c = deepwalk_embeddings(indptr, codes, 26, p, cache_dir=None)  # recomputed: bit-identical
    assert not rep_c["cache_hit"] and torch.equal(a, c)
    d, _ = deepwalk_embeddings(indptr, codes, 26, DeepWalkParams(dim=8, walks_per_node=3, walk_length=8, seed=2))
    assert not torch.equal(a, d)
    assert len(list((tmp_path / "deepwalk").glob("*.safetensors"))) == 1
    assert not list((tmp_path / "deepwalk").glob(".*"))


@pytest.mark.slow
def test_deepwalk_same_across_processes(tmp_path):
    """Word2Vec must not depend on PYTHONHASHSEED: two fresh interpreters agree."""
    import subprocess
    import sys

    code = ("import torch, numpy as np; from mingle_bench.deepwalk import *; "
            "e,_=deepwalk_embeddings(np.array([0,3,5]), np.array([0,1,2,2,3]), 4, DeepWalkParams(dim=4, walks_per_node=2, walk_length=5)); "
            "print(e.numpy().tobytes().hex())")
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**__import__("os").environ, "PYTHONHASHSEED": s}).stdout for s in ("1", "2")]
    assert outs[0] == outs[1] and outs[0]


def test_deepwalk_params_are_validated():
    with pytest.raises(ValueError, match="deepwalk dim"):
        DeepWalkParams(dim=0)


def _dw_nan(path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    t = load_file(str(path))
    t["embeddings"][2] = float("nan")
    meta["sha256"] = hashlib.sha256(t["embeddings"].numpy().tobytes()).hexdigest()  # a writer that computed NaNs
    save_file(t, str(path), metadata=meta)


def _dw_span(path):
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    a, b = json.loads(raw[8:8 + n])["embeddings"]["data_offsets"]
    return bytearray(raw), 8 + n + a, 8 + n + b


def _dw_shuffle(path):
    raw, a, b = _dw_span(path)
    rows = np.frombuffer(bytes(raw[a:b]), dtype=np.float32).reshape(26, -1)
    raw[a:b] = rows[np.r_[1, 0, 2:26]].tobytes()
    path.write_bytes(bytes(raw))


def _dw_flip(path):
    raw, a, b = _dw_span(path)
    raw[(a + b) // 2] ^= 0x08
    path.write_bytes(bytes(raw))


def _dw_truncate(path):
    path.write_bytes(path.read_bytes()[:-7])


def _dw_no_checksum(path):
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(path)), str(path), metadata={"params": "{}"})  # a format-1 file


@pytest.mark.parametrize("damage", [_dw_nan, _dw_shuffle, _dw_flip, _dw_truncate, _dw_no_checksum])
def test_deepwalk_damaged_cache_is_dropped_and_recomputed(tmp_path, caplog, damage):
    _, indptr, codes = _visits(4, 60, 25)
    p = DeepWalkParams(dim=8, walks_per_node=3, walk_length=8, seed=1)
    clean, _ = deepwalk_embeddings(indptr, codes, 26, p, cache_dir=None)
    a, _ = deepwalk_embeddings(indptr, codes, 26, p, cache_dir=tmp_path)
    (path,) = (tmp_path / "deepwalk").glob("*.safetensors")
    damage(path)
    with caplog.at_level("WARNING"):
        b, rep = deepwalk_embeddings(indptr, codes, 26, p, cache_dir=tmp_path)
    assert torch.equal(b, clean) and torch.equal(a, clean)
    assert rep["cache_hit"] is False and rep["cache_rejected"] == 1
    assert path.name in caplog.text and "recomputing" in caplog.text
    assert path.with_name(path.name + ".corrupt").exists()
    c, rep_c = deepwalk_embeddings(indptr, codes, 26, p, cache_dir=tmp_path)  # the rewritten file is trusted
    assert rep_c["cache_hit"] is True and "cache_rejected" not in rep_c and torch.equal(c, clean)
