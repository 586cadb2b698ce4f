"""A content-addressed, append-only embedding cache on disk (safetensors + JSON; no pickle).

Layout under the root (default ``$MINGLE_CACHE/embeddings``, else
``~/.cache/mingle-bench/embeddings``)::

    <namespace>/manifest.json            identity, params, dim, format version
    <namespace>/shard-<time>-<pid>-<rand>.safetensors
        keys  uint8   [n, 32]   sha256 of each text (UTF-8)
        emb   float32 [n, dim]  the embeddings
        aux   int64   [n, k]    optional per-entry counters (e.g. tokens, chunks of a note)

``<namespace>`` is the first 24 hex digits of the sha256 of the canonical JSON of
``{"identity": encoder.identity, "params": {...}}``, where params hold the encoder's
pooling/length/precision settings and, for notes, the chunking and pooling parameters.
Changing any of them starts a new namespace; nothing is ever overwritten.

Concurrency: every write creates a new, uniquely named shard through a temp file in the
same folder and ``os.replace``, so readers only ever see complete shards and concurrent
writers (threads or processes) never touch each other's files; no lock is needed.
Duplicate keys across shards are harmless (same content, same value). A shard that cannot
be read (truncated by a crash of the file system, say) is skipped, counted in
``corrupt_shards`` and reported with a warning, never silently trusted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
KEY_BYTES = 32


def default_cache_root() -> Path:
    """``$MINGLE_CACHE/embeddings``, else ``~/.cache/mingle-bench/embeddings``."""
    base = os.environ.get("MINGLE_CACHE")
    base_path = Path(base).expanduser() if base else Path.home() / ".cache" / "mingle-bench"
    return base_path / "embeddings"


def text_key(text: str) -> bytes:
    """The content address of a text: sha256 of its UTF-8 bytes (32 bytes)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def namespace_id(identity: str, params: dict[str, Any]) -> str:
    blob = json.dumps({"identity": identity, "params": params}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class _Namespace:
    dir: Path
    index: dict[bytes, tuple[str, int]] = field(default_factory=dict)  # key -> (shard name, row)
    seen: set[str] = field(default_factory=set)                        # shard names indexed (or corrupt)


class EmbeddingCache:
    """Content-addressed store of embeddings, keyed by encoder identity + params + text hash.

    ``hits`` and ``misses`` count looked-up keys over the cache object's life
    (:meth:`reset_counters` zeroes them); ``written`` counts stored entries.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_root()
        self.hits = 0
        self.misses = 0
        self.written = 0
        self.corrupt_shards = 0
        self._spaces: dict[str, _Namespace] = {}

    def __repr__(self) -> str:
        return f"EmbeddingCache(root={str(self.root)!r}, hits={self.hits}, misses={self.misses})"

    def reset_counters(self) -> None:
        self.hits = self.misses = self.written = 0

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "written": self.written,
                "corrupt_shards": self.corrupt_shards}

    # -- namespaces ----------------------------------------------------------------------------
    def _space(self, identity: str, params: dict[str, Any]) -> _Namespace:
        ns = namespace_id(identity, params)
        if ns not in self._spaces:
            self._spaces[ns] = _Namespace(self.root / ns)
        space = self._spaces[ns]
        self._refresh(space)
        return space

    def _refresh(self, space: _Namespace) -> None:
        """Index shards written since the last look (by this or any other process)."""
        if not space.dir.is_dir():
            return
        for path in sorted(space.dir.glob("shard-*.safetensors")):
            if path.name in space.seen:
                continue
            space.seen.add(path.name)
            try:
                keys = self._read(path, ("keys",))["keys"]
            except Exception as exc:  # noqa: BLE001 - any unreadable shard is skipped and reported
                self.corrupt_shards += 1
                log.warning("embedding cache: skipping unreadable shard %s (%s)", path, exc)
                continue
            for row, k in enumerate(keys):
                space.index.setdefault(k.tobytes(), (path.name, row))

    @staticmethod
    def _read(path: Path, names: Iterable[str]) -> dict[str, np.ndarray]:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            available = set(f.keys())
            return {n: f.get_tensor(n) for n in names if n in available}

    # -- lookups and writes ------------------------------------------------------------------------
    def get(self, identity: str, params: dict[str, Any], keys: Sequence[bytes], dim: int | None = None,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Look keys up. Returns ``(found bool [n], emb float32 [n, dim], aux int64 [n, k] or None)``;
        rows of keys not found are zero. Counts hits and misses."""
        space = self._space(identity, params)
        n = len(keys)
        found = np.zeros(n, dtype=bool)
        by_shard: dict[str, list[tuple[int, int]]] = {}
        for i, k in enumerate(keys):
            loc = space.index.get(bytes(k))
            if loc is not None:
                by_shard.setdefault(loc[0], []).append((i, loc[1]))
        emb: np.ndarray | None = None
        aux: np.ndarray | None = None
        for shard, pairs in by_shard.items():
            try:
                data = self._read(space.dir / shard, ("emb", "aux"))
            except Exception as exc:  # noqa: BLE001 - e.g. removed by `cache clear` meanwhile
                log.warning("embedding cache: could not read shard %s (%s); recomputing its entries", shard, exc)
                continue
            if emb is None:
                emb = np.zeros((n, data["emb"].shape[1]), dtype=np.float32)
            if "aux" in data and aux is None:
                aux = np.zeros((n, data["aux"].shape[1]), dtype=np.int64)
            dst = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
            src = np.fromiter((p[1] for p in pairs), dtype=np.int64, count=len(pairs))
            emb[dst] = data["emb"][src]
            if aux is not None and "aux" in data:
                aux[dst] = data["aux"][src]
            found[dst] = True
        if emb is None:
            emb = np.zeros((n, dim or 0), dtype=np.float32)
        hits = int(found.sum())
        self.hits += hits
        self.misses += n - hits
        return found, emb, aux

    def put(self, identity: str, params: dict[str, Any], keys: Sequence[bytes], emb: np.ndarray,
            aux: np.ndarray | None = None) -> Path | None:
        """Store entries as one new shard (atomically). Returns its path (None if nothing to write)."""
        from safetensors.numpy import save

        emb = np.ascontiguousarray(np.asarray(emb, dtype=np.float32))
        n = len(keys)
        if n == 0:
            return None
        if emb.ndim != 2 or emb.shape[0] != n:
            raise ValueError(f"embedding cache: {n} keys but embeddings of shape {emb.shape}")
        key_arr = np.frombuffer(b"".join(bytes(k) for k in keys), dtype=np.uint8).reshape(n, KEY_BYTES)
        tensors = {"keys": key_arr.copy(), "emb": emb}
        if aux is not None:
            aux = np.ascontiguousarray(np.asarray(aux, dtype=np.int64))
            if aux.ndim != 2 or aux.shape[0] != n:
                raise ValueError(f"embedding cache: {n} keys but aux of shape {aux.shape}")
            tensors["aux"] = aux
        space = self._space(identity, params)
        space.dir.mkdir(parents=True, exist_ok=True)
        manifest = space.dir / "manifest.json"
        if not manifest.exists():
            meta = {"format": FORMAT_VERSION, "identity": identity, "params": params, "dim": int(emb.shape[1]),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            _atomic_write_bytes(manifest, json.dumps(meta, indent=2, sort_keys=True, default=str).encode())
        name = f"shard-{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.safetensors"
        _atomic_write_bytes(space.dir / name, save(tensors, metadata={"count": str(n), "format": str(FORMAT_VERSION)}))
        space.seen.add(name)
        for row, k in enumerate(keys):
            space.index.setdefault(bytes(k), (name, row))
        self.written += n
        return space.dir / name

    # -- maintenance ---------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Namespaces with entry/shard counts and sizes, plus sizes of sibling cache folders."""
        spaces = []
        total = 0
        if self.root.is_dir():
            for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
                shards = list(d.glob("shard-*.safetensors"))
                size = sum(_size(p) for p in d.iterdir() if p.is_file())
                total += size
                meta: dict[str, Any] = {}
                try:
                    meta = json.loads((d / "manifest.json").read_text())
                except (OSError, ValueError):
                    pass
                entries = set()
                n_bad = 0
                for s in shards:
                    try:
                        entries.update(k.tobytes() for k in self._read(s, ("keys",))["keys"])
                    except Exception:  # noqa: BLE001 - reported as unreadable
                        n_bad += 1
                spaces.append({"namespace": d.name, "identity": meta.get("identity", "?"),
                               "params": meta.get("params", {}), "dim": meta.get("dim"),
                               "entries": len(entries), "shards": len(shards), "unreadable_shards": n_bad,
                               "bytes": size})
        others = {}
        parent = self.root.parent
        if parent.is_dir():
            for d in sorted(p for p in parent.iterdir() if p.is_dir() and p.resolve() != self.root.resolve()):
                others[d.name] = _tree_size(d)
        return {"root": str(self.root), "bytes": total, "namespaces": spaces, "other_cache_folders": others}

    def clear(self) -> int:
        """Delete every cached embedding under the root; returns the bytes freed.

        The folder is first renamed away (atomic), so a concurrent reader sees either the
        whole cache or none of it; concurrent writers simply recreate their namespace.
        """
        self._spaces.clear()
        if not self.root.exists():
            return 0
        size = _tree_size(self.root)
        doomed = self.root.with_name(f".{self.root.name}-deleting-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        os.replace(self.root, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return size


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _tree_size(d: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(d):
        for f in files:
            total += _size(Path(root) / f)
    return total
