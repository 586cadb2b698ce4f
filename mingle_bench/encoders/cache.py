"""A content-addressed, append-only embedding cache on disk (safetensors + JSON; no pickle).

Layout under the root (default ``<cache root>/embeddings``, the cache root being ``$MINGLE_CACHE``,
else ``$XDG_CACHE_HOME/mingle-bench``, else ``~/.cache/mingle-bench``: :func:`mingle_bench.io.cache_root`)::

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
writers (threads or processes) never touch each other's files; no lock is needed among them.
Deleting the cache while a run reads it is what ``mingle-bench cache clear`` guards against: it
takes the exclusive cache lock (:mod:`mingle_bench.cachelock`) that reading commands share.
Duplicate keys across shards are harmless (same content, same value).

Checked values (shard format 2): every shard's safetensors metadata holds the sha256 of the
bytes of each of its tensors (``sha256:keys``, ``sha256:emb``, ``sha256:aux``). The first time
a process reads entries from a shard, the whole shard is read and checked: the checksums, the
shapes and dtypes, and that every embedding is finite. A shard that fails (NaNs, shuffled or
flipped bytes, a truncated or unreadable file) or that has no checksum (format 1, written
before checksums existed: it cannot be verified, so it is not trusted and its entries are
recomputed once) is dropped: renamed to ``<name>.corrupt`` (kept for inspection, never read
again; ``cache clear`` deletes it), counted in ``corrupt_shards`` / ``unverified_shards`` and
reported with a warning naming the file. Its entries count as misses, so the caller embeds
them again and writes a fresh, checked shard. The namespace (and so the encoder identity
that feature digests hash) does not depend on the shard format.
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

from mingle_bench.io import array_bytes_sha256, atomic_write_bytes, cache_root

log = logging.getLogger(__name__)

#: shard format: 2 adds the per-tensor sha256 checksums (format 1 shards are not trusted)
FORMAT_VERSION = 2
KEY_BYTES = 32
#: suffix of dropped shards (the ``shard-*.safetensors`` glob no longer matches them)
QUARANTINE_SUFFIX = ".corrupt"


class ShardCheckError(ValueError):
    """A shard failed its integrity check; ``unverified`` when it simply has no checksum."""

    def __init__(self, msg: str, unverified: bool = False):
        super().__init__(msg)
        self.unverified = unverified


def check_shard(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None) -> None:
    """Raise :class:`ShardCheckError` unless ``tensors`` match their recorded checksums and are sane."""
    meta = metadata or {}
    if "keys" not in tensors or "emb" not in tensors:
        raise ShardCheckError(f"missing tensors (has {sorted(tensors)})")
    keys, emb = tensors["keys"], tensors["emb"]
    if keys.ndim != 2 or keys.shape[1] != KEY_BYTES or keys.dtype != np.uint8:
        raise ShardCheckError(f"keys tensor has shape {keys.shape} and dtype {keys.dtype}")
    if emb.ndim != 2 or emb.shape[0] != keys.shape[0] or emb.dtype != np.float32:
        raise ShardCheckError(f"emb tensor has shape {emb.shape} and dtype {emb.dtype} for {keys.shape[0]} keys")
    aux = tensors.get("aux")
    if aux is not None and (aux.ndim != 2 or aux.shape[0] != keys.shape[0] or aux.dtype != np.int64):
        raise ShardCheckError(f"aux tensor has shape {aux.shape} and dtype {aux.dtype} for {keys.shape[0]} keys")
    if "count" in meta and meta["count"] != str(keys.shape[0]):
        raise ShardCheckError(f"metadata says {meta['count']} entries, tensors hold {keys.shape[0]}")
    if not all(f"sha256:{n}" in meta for n in tensors):
        raise ShardCheckError(f"no checksum (shard format {meta.get('format', '?')}, written before checksums)",
                              unverified=True)
    for n, a in tensors.items():
        if array_bytes_sha256(a) != meta[f"sha256:{n}"]:
            raise ShardCheckError(f"sha256 of tensor {n!r} does not match its checksum")
    if not np.isfinite(emb).all():
        raise ShardCheckError(f"{int((~np.isfinite(emb)).any(axis=1).sum())} embeddings contain NaN or inf")


def default_cache_root() -> Path:
    """``<cache root>/embeddings`` (:func:`mingle_bench.io.cache_root`)."""
    return cache_root() / "embeddings"


def text_key(text: str) -> bytes:
    """The content address of a text: sha256 of its UTF-8 bytes (32 bytes)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def namespace_id(identity: str, params: dict[str, Any]) -> str:
    blob = json.dumps({"identity": identity, "params": params}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def key_prefixes(keys: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each 32-byte key as uint64 (the in-memory index key)."""
    return np.ascontiguousarray(keys[:, :8]).view("<u8").ravel()


@dataclass
class _Namespace:
    """In-memory index of one namespace: 16 bytes per entry.

    ``prefix`` (sorted uint64 key prefixes) with ``shard``/``row`` (int32) locate entries of
    the shards read so far; entries this process wrote since the last merge sit in
    ``pending``. Matches are confirmed against the full 32-byte key stored in the shard
    when the embedding is read, so a prefix collision can only cause a recompute, never a
    wrong vector.
    """

    dir: Path
    shards: list[str] = field(default_factory=list)  # shard id -> file name
    seen: set[str] = field(default_factory=set)       # shard names indexed (or found unreadable)
    prefix: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    shard: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int32))
    row: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int32))
    pending: dict[int, tuple[int, int]] = field(default_factory=dict)
    verified: set[int] = field(default_factory=set)  # shard ids whose checksums passed in this process
    dropped: set[int] = field(default_factory=set)   # shard ids that failed (their entries are removed)

    def add(self, name: str, keys: np.ndarray, bulk: list | None = None) -> None:
        sid = len(self.shards)
        self.shards.append(name)
        self.seen.add(name)
        pre = key_prefixes(keys)
        if bulk is not None:
            bulk.append((pre, sid))
            return
        for r, k in enumerate(pre.tolist()):
            self.pending.setdefault(k, (sid, r))
        if len(self.pending) > PENDING_MAX:
            self.merge([])

    def merge(self, bulk: list) -> None:
        """Fold ``bulk`` ``(prefixes, shard id)`` pairs and the pending entries into the sorted arrays."""
        parts_p, parts_s, parts_r = [self.prefix], [self.shard], [self.row]
        for pre, sid in bulk:
            parts_p.append(pre)
            parts_s.append(np.full(len(pre), sid, dtype=np.int32))
            parts_r.append(np.arange(len(pre), dtype=np.int32))
        if self.pending:
            parts_p.append(np.fromiter(self.pending.keys(), dtype=np.uint64, count=len(self.pending)))
            loc = np.array(list(self.pending.values()), dtype=np.int32).reshape(-1, 2)
            parts_s.append(loc[:, 0])
            parts_r.append(loc[:, 1])
            self.pending = {}
        if len(parts_p) == 1:
            return
        prefix = np.concatenate(parts_p)
        order = np.argsort(prefix, kind="stable")  # earlier shards first among equal keys
        self.prefix, self.shard, self.row = prefix[order], np.concatenate(parts_s)[order], np.concatenate(parts_r)[order]

    def drop(self, sid: int) -> None:
        """Forget every entry of shard ``sid`` (duplicates held by other shards become visible)."""
        self.dropped.add(sid)
        keep = self.shard != sid
        self.prefix, self.shard, self.row = self.prefix[keep], self.shard[keep], self.row[keep]
        self.pending = {k: v for k, v in self.pending.items() if v[0] != sid}

    def find(self, pre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shard id (-1 if absent) and row of each prefix."""
        sid = np.full(len(pre), -1, dtype=np.int64)
        row = np.zeros(len(pre), dtype=np.int64)
        if len(self.prefix):
            pos = np.searchsorted(self.prefix, pre)
            ok = pos < len(self.prefix)
            ok[ok] = self.prefix[pos[ok]] == pre[ok]
            sid[ok], row[ok] = self.shard[pos[ok]], self.row[pos[ok]]
        if self.pending:
            for i in np.flatnonzero(sid < 0).tolist():
                loc = self.pending.get(int(pre[i]))
                if loc is not None:
                    sid[i], row[i] = loc
        return sid, row


#: entries this process writes before they are merged into the sorted index
PENDING_MAX = 200_000


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
        self.unverified_shards = 0
        self._spaces: dict[str, _Namespace] = {}

    def __repr__(self) -> str:
        return f"EmbeddingCache(root={str(self.root)!r}, hits={self.hits}, misses={self.misses})"

    def reset_counters(self) -> None:
        self.hits = self.misses = self.written = 0

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "written": self.written,
                "corrupt_shards": self.corrupt_shards, "unverified_shards": self.unverified_shards}

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
        bulk: list = []
        for path in sorted(space.dir.glob("shard-*.safetensors")):
            if path.name in space.seen:
                continue
            try:
                keys = self._read(path, ("keys",))["keys"]
                if keys.ndim != 2 or keys.shape[1] != KEY_BYTES or keys.dtype != np.uint8:
                    raise ValueError(f"keys tensor has shape {keys.shape} and dtype {keys.dtype}")
            except FileNotFoundError:  # removed meanwhile (`cache clear`, another process's quarantine)
                continue
            except Exception as exc:  # noqa: BLE001 - any unreadable shard is dropped and reported
                space.seen.add(path.name)
                if not path.exists():
                    continue
                self._reject(path, ShardCheckError(f"unreadable: {exc}"))
                continue
            space.add(path.name, keys, bulk)
        if bulk:
            space.merge(bulk)

    def _reject(self, path: Path, exc: ShardCheckError) -> None:
        """Count, report and quarantine a shard that failed its check (its entries get recomputed)."""
        if exc.unverified:
            self.unverified_shards += 1
            what = "is not trusted"
        else:
            self.corrupt_shards += 1
            what = "failed its integrity check"
        log.warning("embedding cache: shard %s %s (%s); dropping it (renamed to *%s), its entries will be recomputed",
                    path, what, exc, QUARANTINE_SUFFIX)
        try:
            os.replace(path, path.with_name(path.name + QUARANTINE_SUFFIX))
        except OSError:  # already moved by another process, or a read-only cache: still never used here
            pass

    def _verified_shard(self, space: _Namespace, sid: int) -> dict[str, np.ndarray] | None:
        """Read and check the whole shard ``sid`` once per process; its tensors, or None if dropped."""
        from safetensors import safe_open

        path = space.dir / space.shards[sid]
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata()
                tensors = {n: f.get_tensor(n) for n in f.keys()}
            check_shard(tensors, meta)
        except FileNotFoundError as exc:  # e.g. removed by `cache clear` meanwhile
            log.warning("embedding cache: could not read shard %s (%s); recomputing its entries", path, exc)
            space.drop(sid)
            return None
        except Exception as exc:  # noqa: BLE001 - checksum mismatch, NaNs, truncated file ...
            self._reject(path, exc if isinstance(exc, ShardCheckError) else ShardCheckError(f"unreadable: {exc}"))
            space.drop(sid)
            return None
        space.verified.add(sid)
        return tensors

    @staticmethod
    def _read(path: Path, names: Iterable[str]) -> dict[str, np.ndarray]:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            available = set(f.keys())
            return {n: f.get_tensor(n) for n in names if n in available}

    @staticmethod
    def _read_rows(path: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
        """``keys``/``emb``/``aux`` at ``rows`` of a shard, reading only the runs of rows needed
        when they are a small part of the shard (the file is memory-mapped)."""
        from safetensors import safe_open

        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        with safe_open(str(path), framework="numpy") as f:
            names = [n for n in ("keys", "emb", "aux") if n in set(f.keys())]
            total = f.get_slice("keys").get_shape()[0]
            if len(srt) and srt[-1] >= total:
                raise ValueError(f"row {int(srt[-1])} out of range for {total} entries")
            if len(srt) * 8 >= total:  # most of the shard: one read per tensor
                out = {n: f.get_tensor(n)[rows] for n in names}
                return out
            breaks = np.flatnonzero(np.diff(srt) != 1) + 1
            runs = np.split(srt, breaks)
            got = {n: np.concatenate([f.get_slice(n)[int(r[0]):int(r[-1]) + 1] for r in runs]) for n in names}
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return {n: a[inverse] for n, a in got.items()}

    # -- lookups and writes ------------------------------------------------------------------------
    def get(self, identity: str, params: dict[str, Any], keys: Sequence[bytes], dim: int | None = None,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Look keys up. Returns ``(found bool [n], emb float32 [n, dim], aux int64 [n, k] or None)``;
        rows of keys not found are zero. Counts hits and misses."""
        space = self._space(identity, params)
        n = len(keys)
        found = np.zeros(n, dtype=bool)
        emb: np.ndarray | None = None
        aux: np.ndarray | None = None
        if n:
            key_arr = _key_array(keys)
            sid, row = space.find(key_prefixes(key_arr))
            for s_id in np.unique(sid[sid >= 0]).tolist():
                dst = np.flatnonzero(sid == s_id)
                src = row[dst]
                shard = space.shards[s_id]
                if s_id not in space.verified:  # first use in this process: check the whole shard
                    full = self._verified_shard(space, s_id)
                    if full is None:
                        continue
                    data = {n: a[src] for n, a in full.items()}
                else:
                    try:
                        data = self._read_rows(space.dir / shard, src)
                        if not np.isfinite(data["emb"]).all():
                            raise ShardCheckError("embeddings contain NaN or inf (changed since it was checked)")
                    except ShardCheckError as exc:
                        self._reject(space.dir / shard, exc)
                        space.drop(s_id)
                        continue
                    except Exception as exc:  # noqa: BLE001 - e.g. removed by `cache clear` meanwhile
                        log.warning("embedding cache: could not read shard %s (%s); recomputing its entries",
                                    shard, exc)
                        continue
                same = (data["keys"] == key_arr[dst]).all(axis=1)  # confirm the full key
                if emb is None:
                    emb = np.zeros((n, data["emb"].shape[1]), dtype=np.float32)
                if "aux" in data and aux is None:
                    aux = np.zeros((n, data["aux"].shape[1]), dtype=np.int64)
                emb[dst[same]] = data["emb"][same]
                if aux is not None and "aux" in data:
                    aux[dst[same]] = data["aux"][same]
                found[dst[same]] = True
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
        key_arr = _key_array(keys)
        tensors = {"keys": key_arr, "emb": emb}
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
            atomic_write_bytes(manifest, json.dumps(meta, indent=2, sort_keys=True, default=str).encode())
        name = f"shard-{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.safetensors"
        meta = {"count": str(n), "format": str(FORMAT_VERSION),
                **{f"sha256:{k}": array_bytes_sha256(a) for k, a in tensors.items()}}
        atomic_write_bytes(space.dir / name, save(tensors, metadata=meta))
        space.add(name, key_arr)
        space.verified.add(len(space.shards) - 1)  # written from memory by this process
        self.written += n
        return space.dir / name

    # -- maintenance ---------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Namespaces with entry/shard counts and sizes, plus sizes of sibling cache folders (hidden
        ones, such as the cache lock's ``.in-use/`` or a folder being deleted, left out)."""
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
                               "quarantined_shards": len(list(d.glob("shard-*" + QUARANTINE_SUFFIX))),
                               "bytes": size})
        others = {}
        parent = self.root.parent
        if parent.is_dir():
            for d in sorted(p for p in parent.iterdir()
                            if p.is_dir() and not p.name.startswith(".") and p.resolve() != self.root.resolve()):
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


def _key_array(keys: Sequence[bytes]) -> np.ndarray:
    """Keys as a uint8 ``[n, 32]`` array; raises on a key that is not a 32-byte digest."""
    joined = b"".join(bytes(k) for k in keys)
    if len(joined) != KEY_BYTES * len(keys) or any(len(k) != KEY_BYTES for k in keys):
        raise ValueError("embedding cache keys must be 32-byte sha256 digests (see text_key)")
    return np.frombuffer(joined, dtype=np.uint8).reshape(len(keys), KEY_BYTES).copy()


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
