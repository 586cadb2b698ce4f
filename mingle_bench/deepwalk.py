"""DeepWalk structural node features on the code co-occurrence graph (MINGLE's level-1 input).

Graph: codes are vertices; two codes are adjacent when they occur together in at least one of
the given visits (``build_task_data`` passes the *train* visits only, so nothing about
validation/test patients shapes the features). DeepWalk (Perozzi et al. 2014): from every vertex
start ``walks_per_node`` truncated uniform random walks of ``walk_length`` vertices (the next
vertex is a uniform neighbour of the current one), then learn skip-gram embeddings of the walks
(gensim ``Word2Vec``, ``sg=1``, negative sampling, window ``window``). A vertex without
neighbours yields a walk of length one and keeps its seeded initial vector.

Determinism: walks use ``numpy.random.default_rng(seed)``; Word2Vec runs with ``workers=1``,
the same seed and a hash function independent of ``PYTHONHASHSEED``, so the same inputs give
bit-identical embeddings. Results are cached as safetensors, keyed by a SHA-256 of the graph and
every parameter.

Checked cache: each file records the sha256 of its embedding bytes in its metadata
(``sha256``, ``format`` 2). A cached file is used only if the checksum, the shape, the dtype
and the finiteness of every value check out. A file that fails (NaNs, shuffled rows, flipped
bytes, truncation) or that has no checksum (written before checksums existed, so it cannot be
verified) is renamed to ``<name>.corrupt``, reported with a warning naming it, counted in the
report (``cache_rejected``) and recomputed; the recomputed file replaces it. DeepWalk is
deterministic, so the recomputed vectors are the ones the file should have held.

Output: float32 [num_nodes, dim].
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from mingle_bench.io import array_bytes_sha256, atomic_path

CACHE_VERSION = 1  # part of the cache key: changing it changes every key
#: file format: 2 adds the ``sha256`` of the embedding bytes to the metadata (the key is unchanged)
FILE_FORMAT = 2

log = logging.getLogger(__name__)


def _load_checked(path: Path, shape: tuple[int, int]) -> tuple[Tensor | None, str | None]:
    """The cached embeddings if they pass every check, else ``(None, why)``."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            emb = f.get_tensor("embeddings")
    except Exception as exc:  # noqa: BLE001 - truncated or garbled file
        return None, f"unreadable: {exc}"
    if emb.dtype != torch.float32 or tuple(emb.shape) != shape:
        return None, f"embeddings of shape {tuple(emb.shape)} and dtype {emb.dtype}, expected {shape} float32"
    if "sha256" not in meta:
        return None, "no checksum (written before checksums existed), so it cannot be verified"
    if array_bytes_sha256(emb) != meta["sha256"]:
        return None, "sha256 of the embeddings does not match its checksum"
    if not torch.isfinite(emb).all():
        return None, "embeddings contain NaN or inf"
    return emb, None


@dataclass(frozen=True)
class DeepWalkParams:
    """DeepWalk hyperparameters (defaults: 64-d as in the released HypEHR/CACHE features,
    walk length 40 and window 5 as in DeepWalk; 10 walks per vertex to keep CPU runs short)."""

    dim: int = 64
    walks_per_node: int = 10
    walk_length: int = 40
    window: int = 5
    epochs: int = 1
    negative: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("dim", "walks_per_node", "walk_length", "window", "epochs", "negative"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"deepwalk {name} must be >= 1, got {getattr(self, name)}")


def cooccurrence_graph(indptr: np.ndarray, indices: np.ndarray, num_nodes: int) -> sp.csr_matrix:
    """Symmetric 0/1 adjacency [N, N] of codes sharing a visit (no self-loops), from the visit CSR."""
    n_visits = len(indptr) - 1
    data = np.ones(len(indices), dtype=np.float32)
    h = sp.csr_matrix((data, np.asarray(indices, dtype=np.int64), np.asarray(indptr, dtype=np.int64)),
                      shape=(n_visits, num_nodes))
    adj = (h.T @ h).tocsr()
    adj.setdiag(0)
    adj.eliminate_zeros()
    adj.data[:] = 1.0
    adj.sort_indices()
    return adj


def random_walks(adj: sp.csr_matrix, walks_per_node: int, walk_length: int, seed: int) -> list[list[str]]:
    """Uniform random walks, ``walks_per_node`` from every vertex (vertex order, then rounds)."""
    rng = np.random.default_rng(seed)
    n = adj.shape[0]
    indptr, indices = adj.indptr.astype(np.int64), adj.indices.astype(np.int64)
    deg = np.diff(indptr)
    start = np.tile(np.arange(n, dtype=np.int64), walks_per_node)
    walks = np.empty((len(start), walk_length), dtype=np.int64)
    walks[:, 0] = start
    cur = start
    for step in range(1, walk_length):
        d = deg[cur]
        pick = np.floor(rng.random(len(cur)) * np.maximum(d, 1)).astype(np.int64)
        if len(indices):
            nxt = np.where(d > 0, indices[np.minimum(indptr[cur] + pick, len(indices) - 1)], cur)
        else:
            nxt = cur
        walks[:, step] = nxt
        cur = nxt
    isolated = deg[start] == 0
    tokens = np.char.mod("%d", walks).tolist()
    return [row[:1] if iso else row for row, iso in zip(tokens, isolated.tolist())]


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode())


def graph_key(adj: sp.csr_matrix, params: DeepWalkParams) -> str:
    import gensim

    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "gensim": gensim.__version__, "n": adj.shape[0], **asdict(params)},
                        sort_keys=True).encode())
    h.update(np.ascontiguousarray(adj.indptr, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(adj.indices, dtype=np.int64).tobytes())
    return h.hexdigest()


def deepwalk_embeddings(indptr, indices, num_nodes: int, params: DeepWalkParams | None = None,
                        cache_dir: str | os.PathLike | None = None) -> tuple[Tensor, dict]:
    """DeepWalk embeddings float32 [num_nodes, dim] of the co-occurrence graph of the given visits.

    ``indptr``/``indices``: CSR of the visits' node ids (only the visits the features may see).
    Returns the embeddings and a small report (edges, isolated vertices, cache hit, key).
    """
    from gensim.models import Word2Vec

    params = params or DeepWalkParams()
    indptr = np.asarray(torch.as_tensor(indptr).cpu().numpy() if isinstance(indptr, Tensor) else indptr)
    indices = np.asarray(torch.as_tensor(indices).cpu().numpy() if isinstance(indices, Tensor) else indices)
    adj = cooccurrence_graph(indptr, indices, num_nodes)
    key = graph_key(adj, params)
    report = {"graph_edges": int(adj.nnz // 2), "isolated_nodes": int((np.diff(adj.indptr) == 0).sum()),
              "cache_key": key, "cache_hit": False, **asdict(params)}
    path = Path(cache_dir) / "deepwalk" / f"{key}.safetensors" if cache_dir is not None else None
    if path is not None and path.exists():
        emb, why = _load_checked(path, (num_nodes, params.dim))
        if emb is not None:
            report["cache_hit"] = True
            return emb, report
        report["cache_rejected"] = 1
        log.warning("DeepWalk cache: %s is not used (%s); renamed to *.corrupt, recomputing", path, why)
        try:
            os.replace(path, path.with_name(path.name + ".corrupt"))
        except OSError:  # moved by another process meanwhile, or a read-only cache
            pass
    if num_nodes == 0:
        return torch.zeros(0, params.dim), report
    walks = random_walks(adj, params.walks_per_node, params.walk_length, params.seed)
    gensim_log = logging.getLogger("gensim")
    level = gensim_log.level
    gensim_log.setLevel(logging.WARNING)  # gensim logs every epoch at INFO
    try:
        model = Word2Vec(sentences=walks, vector_size=params.dim, window=params.window, min_count=0, sg=1,
                         negative=params.negative, workers=1, seed=params.seed, epochs=params.epochs,
                         hashfxn=_stable_hash, sorted_vocab=0)
    finally:
        gensim_log.setLevel(level)
    emb = torch.from_numpy(np.stack([model.wv[str(v)] for v in range(num_nodes)]).astype(np.float32))
    if path is not None:
        from safetensors.torch import save_file

        with atomic_path(path) as tmp:
            save_file({"embeddings": emb.contiguous()}, str(tmp),
                      metadata={"params": json.dumps(asdict(params)), "format": str(FILE_FORMAT),
                                "sha256": array_bytes_sha256(emb)})
    return emb, report
