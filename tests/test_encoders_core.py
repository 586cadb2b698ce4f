"""Encoders without a real model: chunking and pooling math, the cache, budgets, masks, specs, CLI."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch

from mingle_bench.encoders import EmbeddingCache, chunk_token_ids, embed_texts, embed_visit_notes, pool_rows
from mingle_bench.encoders.base import Encoder, iter_token_batches
from mingle_bench.encoders.cache import namespace_id, text_key
from mingle_bench.encoders.registry import parse_spec

ROOT = Path(__file__).resolve().parents[1]


class CountingEncoder(Encoder):
    """Texts are space-separated integers; a chunk's embedding is its normalised bag of ids (mod dim).

    Records every chunk it embeds, so tests can count model work and check pooling by hand.
    """

    identity = "test-counting@1"
    num_special_tokens = 1  # pretend one special token, like [CLS]

    def __init__(self, dim: int = 6, max_length: int = 5):
        self._dim = dim
        self.max_length = max_length
        self.default_batch_tokens = 12
        self.max_batch_size = 3
        self.calls: list[list[list[int]]] = []

    @property
    def dim(self) -> int:
        return self._dim

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [[int(w) for w in t.split()] for t in texts]

    def vec(self, chunk: Sequence[int]) -> torch.Tensor:
        v = torch.zeros(self._dim)
        for t in chunk:
            v[t % self._dim] += 1.0
        return torch.nn.functional.normalize(v, dim=0)

    def encode_tokens(self, token_lists):
        assert all(len(t) <= self.max_input_tokens for t in token_lists)
        self.calls.append([list(t) for t in token_lists])
        if not token_lists:
            return torch.zeros(0, self._dim)
        return torch.stack([self.vec(t) for t in token_lists])

    @property
    def n_embedded(self) -> int:
        return sum(len(c) for c in self.calls)


def norm(v: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(v, dim=-1)


# -- chunking ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,size,overlap,expected", [
    (10, 4, 1, [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]),
    (4, 4, 1, [[0, 1, 2, 3]]),
    (3, 4, 2, [[0, 1, 2]]),
    (5, 4, 0, [[0, 1, 2, 3], [4]]),
    (7, 4, 2, [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6]]),
    (0, 4, 1, []),
])
def test_chunk_windows(n, size, overlap, expected):
    assert chunk_token_ids(list(range(n)), size, overlap) == expected


@pytest.mark.parametrize("n", [1, 9, 50, 255, 256, 257, 1000])
def test_chunks_cover_every_token_with_exact_overlap(n):
    size, overlap = 254, 32
    chunks = chunk_token_ids(list(range(n)), size, overlap)
    assert sorted(set(t for c in chunks for t in c)) == list(range(n))
    assert all(1 <= len(c) <= size for c in chunks)
    for a, b in zip(chunks, chunks[1:]):
        assert a[-overlap:] == b[:overlap]
    assert len(chunks) == max(1, -(-(n - overlap) // (size - overlap)))


@pytest.mark.parametrize("size,overlap", [(0, 0), (4, 4), (4, -1)])
def test_chunk_rejects_bad_params(size, overlap):
    with pytest.raises(ValueError):
        chunk_token_ids([1, 2, 3], size, overlap)


def test_pool_rows():
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0], [2.0, 1.0]])
    assert torch.allclose(pool_rows(x, "mean"), torch.tensor([1.0, 4 / 3]))
    assert torch.equal(pool_rows(x, "max"), torch.tensor([2.0, 3.0]))
    w = torch.tensor([1.0, 1.0, 2.0])
    assert torch.allclose(pool_rows(x, "token_mean", w), torch.tensor([5 / 4, 5 / 4]))
    with pytest.raises(ValueError):
        pool_rows(x, "median")


def test_token_batches_respect_budget():
    lists = [[0] * n for n in (1, 2, 2, 3, 5, 5, 9)]
    batches = list(iter_token_batches(lists, 10, 3))
    assert [i for b in batches for i in b] == list(range(7))
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * max(len(lists[i]) for i in b) <= 10


# -- note pooling on hand-made token sequences ------------------------------------------------------
def notes_store(d):
    return lambda ids: {i: d[i] for i in ids if i in d}


def test_note_and_visit_pooling_by_hand():
    enc = CountingEncoder(dim=6, max_length=5)  # 4 content tokens per chunk
    notes = {10: "0 1 2 3 4 5 6 7 8 9", 11: "5 5", 12: "2"}
    emb, has, rep = embed_visit_notes(enc, [[10, 11], [12], []], notes_store(notes), chunk_tokens=5, overlap=1,
                                      progress=False)
    c = [enc.vec(x) for x in ([0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9])]
    note10 = norm(torch.stack(c).mean(0))
    note11 = enc.vec([5, 5])
    expect0 = norm((note10 + note11) / 2)
    assert torch.allclose(emb[0], expect0, atol=1e-6)
    assert torch.allclose(emb[1], enc.vec([2]), atol=1e-6)
    assert torch.equal(emb[2], torch.zeros(6))
    assert has.tolist() == [True, True, False]
    assert has.dtype == torch.bool and emb.dtype == torch.float32 and emb.shape == (3, 6)
    assert rep["chunks_embedded"] == 5 and rep["notes_embedded"] == 3
    assert rep["tokens_total"] == rep["tokens_embedded"] == 13
    assert rep["chunk_content_tokens"] == 4
    assert rep["visits_with_notes"] == 2 and rep["visits_without_notes"] == 1


def test_max_and_token_mean_pooling():
    enc = CountingEncoder(dim=6, max_length=5)
    notes = {1: "0 1 2 3 4 5", 2: "1"}
    emb, _, _ = embed_visit_notes(enc, [[1, 2]], notes_store(notes), chunk_tokens=5, overlap=0,
                                  note_pool="token_mean", visit_pool="max", progress=False)
    a, b = enc.vec([0, 1, 2, 3]), enc.vec([4, 5])
    note1 = norm((4 * a + 2 * b) / 6)
    expect = norm(torch.maximum(note1, enc.vec([1])))
    assert torch.allclose(emb[0], expect, atol=1e-6)


def test_chunk_tokens_capped_by_model_window_and_overlap_checked():
    enc = CountingEncoder(max_length=5)
    _, _, rep = embed_visit_notes(enc, [[1]], notes_store({1: "1 2 3"}), chunk_tokens=512, overlap=1,
                                  progress=False)
    assert rep["chunk_content_tokens"] == 4
    with pytest.raises(ValueError, match="overlap"):
        embed_visit_notes(enc, [[1]], notes_store({1: "1"}), chunk_tokens=5, overlap=4, progress=False)
    with pytest.raises(ValueError, match="note_pool"):
        embed_visit_notes(enc, [[1]], notes_store({1: "1"}), note_pool="median", progress=False)


def test_has_notes_mask_missing_and_empty_notes():
    enc = CountingEncoder()
    notes = {1: "1 2", 2: "   ", 4: "3"}
    emb, has, rep = embed_visit_notes(enc, [[1], [2], [3], [], [2, 3, 4]], notes_store(notes), overlap=1,
                                      progress=False)
    assert has.tolist() == [True, False, False, False, True]
    assert torch.equal(emb[~has], torch.zeros(3, enc.dim))
    assert torch.allclose(emb[has].norm(dim=1), torch.ones(2))
    assert torch.allclose(emb[4], enc.vec([3]))  # empty and missing notes do not dilute the visit
    assert rep["notes_missing_text"] == 1 and rep["notes_empty"] == 1
    assert rep["notes_unique"] == 4 and rep["notes_requested"] == 6


def test_budgets_are_applied_and_reported():
    enc = CountingEncoder(max_length=5)
    notes = {i: " ".join(str(t) for t in range(i)) for i in range(1, 8)}
    emb, has, rep = embed_visit_notes(enc, [[1, 2, 3, 7], [6]], notes_store(notes), chunk_tokens=5, overlap=1,
                                      max_notes_per_visit=2, max_tokens=5, progress=False)
    # visit 0 keeps its last two notes (3 and 7); note 7 is cut to its first 5 tokens
    assert rep["notes_dropped_max_notes"] == 2 and rep["visits_capped_max_notes"] == 1
    assert rep["notes_truncated_max_tokens"] == 2  # notes 7 and 6
    assert rep["tokens_dropped_max_tokens"] == (7 - 5) + (6 - 5)
    assert rep["tokens_total"] == 3 + 7 + 6 and rep["tokens_embedded"] == 3 + 5 + 5
    embedded = {tuple(c) for call in enc.calls for c in call}
    assert embedded == {(0, 1, 2), (0, 1, 2, 3), (3, 4)}
    note7 = norm((enc.vec([0, 1, 2, 3]) + enc.vec([3, 4])) / 2)
    assert torch.allclose(emb[0], norm((enc.vec([0, 1, 2]) + note7) / 2), atol=1e-6)


def test_identical_chunks_and_notes_embedded_once():
    enc = CountingEncoder(max_length=5)
    notes = {1: "1 2 3 4 1 2 3 4", 2: "1 2 3 4 1 2 3 4", 3: "1 2 3 4"}
    _, _, rep = embed_visit_notes(enc, [[1], [2, 3]], notes_store(notes), chunk_tokens=5, overlap=0,
                                  progress=False)
    assert enc.n_embedded == 1
    assert rep["notes_duplicate_text"] == 1 and rep["chunks_deduplicated"] == 2


def test_streaming_reads_in_bounded_batches():
    enc = CountingEncoder()
    notes = {i: str(i) for i in range(25)}
    asked: list[int] = []

    def read(ids):
        asked.append(len(ids))
        return {i: notes[i] for i in ids}

    embed_visit_notes(enc, [[i] for i in range(25)], read, overlap=1, read_batch_size=10, progress=False)
    assert asked == [10, 10, 5]


def test_note_cache_second_run_embeds_nothing(tmp_path):
    enc = CountingEncoder()
    cache = EmbeddingCache(tmp_path)
    notes = {i: f"{i} {i + 1} {i + 2} {i + 3} {i + 4} 9" for i in range(12)}
    visits = [[i, i + 1] for i in range(0, 12, 2)]
    e1, h1, r1 = embed_visit_notes(enc, visits, notes_store(notes), cache=cache, overlap=1, progress=False,
                                   read_batch_size=5)
    n_first = enc.n_embedded
    assert n_first > 0 and r1["notes_cached"] == 0
    e2, h2, r2 = embed_visit_notes(enc, visits, notes_store(notes), cache=EmbeddingCache(tmp_path), overlap=1,
                                   progress=False)
    assert enc.n_embedded == n_first, "second run must embed nothing"
    assert r2["notes_cached"] == 12 and r2["notes_embedded"] == 0
    assert r2["tokens_total"] == r1["tokens_total"]  # counters come back from the cache
    assert torch.equal(e1, e2) and torch.equal(h1, h2)
    # other chunking params are a different namespace
    embed_visit_notes(enc, visits, notes_store(notes), cache=cache, overlap=0, progress=False)
    assert enc.n_embedded > n_first


# -- embed_texts and the cache ---------------------------------------------------------------------------
def test_embed_texts_dedup_order_and_cache_accounting(tmp_path):
    enc = CountingEncoder()
    cache = EmbeddingCache(tmp_path)
    texts = ["3 4", "1", "3 4", "2 2 2", "1", ""]
    rep: dict = {}
    out = embed_texts(enc, texts, cache=cache, progress=False, report=rep)
    assert out.shape == (6, enc.dim) and out.dtype == torch.float32
    for i, t in enumerate(texts):
        assert torch.allclose(out[i], enc.vec([int(w) for w in t.split()]))
    assert enc.n_embedded == 4 and rep["unique"] == 4 and rep["embedded"] == 4
    assert cache.hits == 0 and cache.misses == 4 and cache.written == 4
    lengths = [len(c) for call in enc.calls for c in call]
    assert lengths == sorted(lengths), "texts are embedded in length order"

    enc2 = CountingEncoder()
    cache2 = EmbeddingCache(tmp_path)
    out2 = embed_texts(enc2, texts + ["5"], cache=cache2, progress=False, report=rep)
    assert enc2.calls == [[[5]]], "only the new text is embedded"
    assert cache2.hits == 4 and cache2.misses == 1 and rep["cached"] == 4
    assert torch.equal(out2[:6], out)


def test_embed_texts_truncates_and_counts(tmp_path, caplog):
    enc = CountingEncoder(max_length=5)
    rep: dict = {}
    out = embed_texts(enc, ["1 2 3 4 5 6", "1"], progress=False, report=rep)
    assert rep["truncated"] == 1 and "truncated" in caplog.text
    assert torch.allclose(out[0], enc.vec([1, 2, 3, 4]))


def test_embed_texts_rejects_non_strings():
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        embed_texts(CountingEncoder(), ["a", None], progress=False)
    assert embed_texts(CountingEncoder(), [], progress=False).shape == (0, 6)


def test_cache_namespaces_and_persisted_format(tmp_path):
    cache = EmbeddingCache(tmp_path)
    keys = [text_key("a"), text_key("b")]
    emb = np.arange(8, dtype=np.float32).reshape(2, 4)
    path = cache.put("enc@1", {"pooling": "mean"}, keys, emb, aux=np.array([[1, 2], [3, 4]]))
    assert path.suffix == ".safetensors" and path.parent.name == namespace_id("enc@1", {"pooling": "mean"})
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["identity"] == "enc@1" and manifest["dim"] == 4 and manifest["params"] == {"pooling": "mean"}
    found, got, aux = EmbeddingCache(tmp_path).get("enc@1", {"pooling": "mean"}, [keys[1], text_key("c"), keys[0]])
    assert found.tolist() == [True, False, True]
    assert np.array_equal(got[[0, 2]], emb[[1, 0]]) and np.array_equal(aux[0], [3, 4])
    found, _, _ = cache.get("enc@1", {"pooling": "cls"}, keys)
    assert not found.any()
    assert not list(tmp_path.rglob(".tmp-*")), "no temp files left behind"
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pt"))


def test_corrupt_shard_is_skipped_and_counted(tmp_path, caplog):
    cache = EmbeddingCache(tmp_path)
    keys = [text_key("a")]
    good = cache.put("e", {}, keys, np.ones((1, 3), dtype=np.float32))
    (good.parent / "shard-0-0-bad.safetensors").write_bytes(b"\x10\x00garbage")
    fresh = EmbeddingCache(tmp_path)
    found, emb, _ = fresh.get("e", {}, keys + [text_key("b")])
    assert found.tolist() == [True, False] and fresh.corrupt_shards == 1
    assert "shard-0-0-bad.safetensors failed its integrity check (unreadable" in caplog.text
    info = fresh.info()
    assert info["namespaces"][0]["quarantined_shards"] == 1 and info["namespaces"][0]["entries"] == 1
    assert (good.parent / "shard-0-0-bad.safetensors.corrupt").exists()


def _tensor_span(path: Path, name: str) -> tuple[int, int]:
    """Byte range of tensor ``name`` in a safetensors file."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    a, b = json.loads(raw[8:8 + n])[name]["data_offsets"]
    return 8 + n + a, 8 + n + b


def _nan_shard(path: Path) -> None:
    from safetensors.numpy import load_file, save_file
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    t = load_file(str(path))
    t["emb"][1] = np.nan
    # a writer that computed NaNs records the checksum of the NaNs: only the finiteness check catches it
    from mingle_bench.io import array_bytes_sha256
    meta["sha256:emb"] = array_bytes_sha256(t["emb"])
    save_file(t, str(path), metadata=meta)


def _shuffle_rows(path: Path) -> None:
    a, b = _tensor_span(path, "emb")
    raw = bytearray(path.read_bytes())
    emb = np.frombuffer(bytes(raw[a:b]), dtype=np.float32).reshape(-1, 6)
    raw[a:b] = emb[::-1].copy().tobytes()  # rows reversed, keys untouched
    path.write_bytes(bytes(raw))


def _flip_byte(path: Path) -> None:
    a, b = _tensor_span(path, "emb")
    raw = bytearray(path.read_bytes())
    raw[(a + b) // 2] ^= 0x40
    path.write_bytes(bytes(raw))


def _flip_key_byte(path: Path) -> None:
    a, b = _tensor_span(path, "keys")
    raw = bytearray(path.read_bytes())
    raw[a + 3] ^= 0x01
    path.write_bytes(bytes(raw))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


@pytest.mark.parametrize("damage", [_nan_shard, _shuffle_rows, _flip_byte, _flip_key_byte, _truncate])
def test_damaged_shard_is_dropped_recomputed_and_named(tmp_path, caplog, damage):
    texts = ["3 4", "1", "2 2 2", "5 1", "0"]
    clean = embed_texts(CountingEncoder(), texts, cache=EmbeddingCache(tmp_path / "clean"), progress=False)
    cache = EmbeddingCache(tmp_path / "c")
    first = embed_texts(CountingEncoder(), texts, cache=cache, progress=False)
    assert torch.equal(first, clean)
    (shard,) = (tmp_path / "c").rglob("shard-*.safetensors")
    damage(shard)
    enc = CountingEncoder()
    fresh = EmbeddingCache(tmp_path / "c")
    with caplog.at_level("WARNING"):
        again = embed_texts(enc, texts, cache=fresh, progress=False)
    assert torch.equal(again, clean), "results equal a clean run"
    assert enc.n_embedded == len(texts), "every entry of the dropped shard is recomputed"
    assert fresh.corrupt_shards == 1 and fresh.stats()["corrupt_shards"] == 1
    assert shard.name in caplog.text and "recomputed" in caplog.text
    assert not shard.exists() and shard.with_name(shard.name + ".corrupt").exists()
    # the recomputed shard is checked and trusted: a third run embeds nothing
    enc3 = CountingEncoder()
    third = embed_texts(enc3, texts, cache=EmbeddingCache(tmp_path / "c"), progress=False)
    assert enc3.n_embedded == 0 and torch.equal(third, clean)


def test_shard_without_checksum_is_recomputed_once(tmp_path, caplog):
    """Format-1 shards (no checksum) cannot be verified: they are dropped and recomputed once."""
    from safetensors.numpy import save_file

    enc0 = CountingEncoder()
    texts = ["3 4", "1", "2 2 2"]
    clean = embed_texts(enc0, texts, cache=None, progress=False)
    cache = EmbeddingCache(tmp_path)
    from mingle_bench.encoders.embed import text_cache_params

    ns_dir = tmp_path / namespace_id(enc0.identity, text_cache_params(enc0))
    ns_dir.mkdir(parents=True)
    keys = np.stack([np.frombuffer(text_key(t), dtype=np.uint8) for t in texts])
    old = ns_dir / "shard-1-1-old.safetensors"
    save_file({"keys": keys, "emb": clean.numpy()[::-1].copy()}, str(old), metadata={"count": "3", "format": "1"})
    enc = CountingEncoder()
    with caplog.at_level("WARNING"):
        out = embed_texts(enc, texts, cache=cache, progress=False)
    assert torch.equal(out, clean) and enc.n_embedded == 3
    assert cache.unverified_shards == 1 and cache.corrupt_shards == 0
    assert "shard-1-1-old.safetensors is not trusted (no checksum" in caplog.text
    enc2 = CountingEncoder()
    assert torch.equal(embed_texts(enc2, texts, cache=EmbeddingCache(tmp_path), progress=False), clean)
    assert enc2.n_embedded == 0, "recomputed once, then trusted"


def test_shard_checksums_in_metadata(tmp_path):
    from safetensors import safe_open

    from mingle_bench.encoders.cache import FORMAT_VERSION
    from mingle_bench.io import array_bytes_sha256

    cache = EmbeddingCache(tmp_path)
    emb = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = cache.put("e", {}, [text_key("a"), text_key("b")], emb, aux=np.ones((2, 2), dtype=np.int64))
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    assert meta["format"] == str(FORMAT_VERSION) == "2"
    assert meta["sha256:emb"] == array_bytes_sha256(emb) and set(meta) >= {"sha256:keys", "sha256:aux"}
    # the namespace (hashed into feature digests through the encoder identity) does not depend on the format
    assert path.parent.name == namespace_id("e", {})


_WRITER = textwrap.dedent("""
    import sys, numpy as np
    from mingle_bench.encoders.cache import EmbeddingCache, text_key
    root, wid = sys.argv[1], int(sys.argv[2])
    cache = EmbeddingCache(root)
    for rnd in range(15):
        ids = [(wid * 7 + rnd * 3 + j) % 60 for j in range(20)]  # overlapping keys across writers
        emb = np.array([[i, i * 0.5, -i, 1.0] for i in ids], dtype=np.float32)
        cache.put("conc@1", {"k": 1}, [text_key(str(i)) for i in ids], emb)
        cache.get("conc@1", {"k": 1}, [text_key(str(i)) for i in range(60)])
""")


def test_concurrent_writers_do_not_corrupt(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(w)], cwd=ROOT,
                              stderr=subprocess.PIPE) for w in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    cache = EmbeddingCache(tmp_path)
    written = {(w * 7 + r * 3 + j) % 60 for w in range(4) for r in range(15) for j in range(20)}
    found, emb, _ = cache.get("conc@1", {"k": 1}, [text_key(str(i)) for i in sorted(written)])
    assert found.all() and cache.corrupt_shards == 0
    expect = np.array([[i, i * 0.5, -i, 1.0] for i in sorted(written)], dtype=np.float32)
    assert np.array_equal(emb, expect)
    ns = next(tmp_path.iterdir())
    assert len(list(ns.glob("shard-*.safetensors"))) == 60
    assert not list(ns.glob(".*.tmp"))  # no temporary file of mingle_bench.io.atomic_write_bytes left


def test_cache_info_and_clear(tmp_path):
    root = tmp_path / "embeddings"
    (tmp_path / "cohorts").mkdir()
    (tmp_path / "cohorts" / "x.parquet").write_bytes(b"0" * 100)
    cache = EmbeddingCache(root)
    cache.put("e@1", {"kind": "text"}, [text_key("a"), text_key("b")], np.zeros((2, 4), dtype=np.float32))
    cache.put("e@1", {"kind": "text"}, [text_key("a")], np.zeros((1, 4), dtype=np.float32))
    info = cache.info()
    assert info["namespaces"][0]["entries"] == 2 and info["namespaces"][0]["shards"] == 2
    assert info["other_cache_folders"] == {"cohorts": 100}
    assert cache.clear() == info["bytes"] > 0
    assert not root.exists() and (tmp_path / "cohorts" / "x.parquet").exists()
    found, _, _ = cache.get("e@1", {"kind": "text"}, [text_key("a")])
    assert not found.any()


def test_default_cache_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MINGLE_CACHE", str(tmp_path))
    assert EmbeddingCache().root == tmp_path / "embeddings"


# -- specs and CLI -----------------------------------------------------------------------------------------
def test_parse_spec():
    assert parse_spec("default") == ("default", "", {})
    assert parse_spec("hf:/m/sapbert?pooling=cls&max_length=64") == ("hf", "/m/sapbert", {"pooling": "cls", "max_length": 64})
    assert parse_spec("openai:text-embedding-3-small?dimensions=256") == (
        "openai", "text-embedding-3-small", {"dimensions": 256})
    assert parse_spec("hf:/weird?dir/model") == ("hf", "/weird?dir/model", {})
    for bad, msg in [("bert", "unknown encoder spec"), ("hf:/m?poolin=cls", "unknown option 'poolin'"),
                     ("hf:/m?max_length=ten", "max_length"), ("", "--encoder")]:
        with pytest.raises(ValueError, match=msg):
            parse_spec(bad)


def test_cli_cache_info_and_clear(tmp_path, capsys):
    from mingle_bench.cli import main

    root = tmp_path / "emb"
    EmbeddingCache(root).put("e@1", {"kind": "text"}, [text_key("a")], np.zeros((1, 4), dtype=np.float32))
    assert main(["cache", "info", "--root", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["namespaces"][0]["identity"] == "e@1"
    assert main(["cache", "info", "--root", str(root)]) == 0
    assert "e@1" in capsys.readouterr().out
    assert main(["cache", "clear", "--root", str(root)]) == 0
    assert "cleared" in capsys.readouterr().out and not root.exists()


def test_cli_profile_rejects_bad_counts(capsys):
    from mingle_bench.cli import main

    assert main(["profile-encoder", "--names", "0"]) == 1
    assert "--names must be >= 1" in capsys.readouterr().err


def test_cache_prefix_collision_never_returns_a_wrong_vector(tmp_path):
    a = bytes(range(32))
    b = a[:8] + bytes(24)  # same 8-byte index prefix, different key
    cache = EmbeddingCache(tmp_path)
    cache.put("e", {}, [a], np.ones((1, 2), dtype=np.float32))
    for c in (cache, EmbeddingCache(tmp_path)):  # pending entries and the sorted index
        found, _, _ = c.get("e", {}, [b, a])
        assert found.tolist() == [False, True]
    with pytest.raises(ValueError, match="32-byte"):
        cache.get("e", {}, [b"short"])


def test_cache_sparse_row_reads_and_index_merges(tmp_path, monkeypatch):
    import mingle_bench.encoders.cache as cache_mod

    monkeypatch.setattr(cache_mod, "PENDING_MAX", 50)
    cache = EmbeddingCache(tmp_path)
    keys = [text_key(str(i)) for i in range(400)]
    emb = np.arange(400 * 3, dtype=np.float32).reshape(400, 3)
    cache.put("e", {}, keys[:300], emb[:300])  # merged into the sorted index (> PENDING_MAX)
    cache.put("e", {}, keys[300:330], emb[300:330])  # stays pending
    want = [299, 3, 4, 5, 150, 320, 3, 399]  # a few scattered rows of a large shard, a duplicate, a miss
    found, got, _ = cache.get("e", {}, [keys[i] for i in want])
    assert found.tolist() == [True] * 7 + [False]
    assert np.array_equal(got[:7], emb[want[:7]])
    found, got, _ = EmbeddingCache(tmp_path).get("e", {}, keys[:330])
    assert found.all() and np.array_equal(got, emb[:330])
