r"""Visit embeddings from clinical notes: chunk by tokens, embed chunks, pool to notes, pool to visits.

MINGLE's hyperedge side needs one vector per visit from the notes the task allows. Notes are
longer than encoder windows (MIMIC notes often exceed 512 tokens), so nothing is truncated
silently:

1. **Chunk.** A note's token sequence :math:`t_1..t_n` (no special tokens) is cut into
   windows of :math:`c` tokens with :math:`o` tokens of overlap, i.e. stride :math:`s=c-o`:
   :math:`[0, c), [s, s+c), [2s, 2s+c), \dots` until a window reaches :math:`n`; the last
   window may be shorter. :math:`c = \min(\text{chunk\_tokens}, \text{max\_length}) -
   \text{special tokens}`, so with ``chunk_tokens=256`` each MiniLM chunk fills the model's
   256-position window exactly. Example: :math:`n=10, c=4, o=1` gives
   ``[0:4], [3:7], [6:10]``.
2. **Embed** every chunk (length-sorted batches; identical chunks are embedded once).
3. **Pool chunks to a note:** :math:`z_{note} = \mathrm{norm}(\mathrm{pool}_k\, e_k)`.
4. **Pool notes to a visit:** :math:`z_{visit} = \mathrm{norm}(\mathrm{pool}_j\, z_j)`.

``pool`` is ``mean`` (default), ``max`` (element-wise) or ``token_mean`` (mean weighted by
the tokens each chunk/note contributes); ``norm`` is L2 normalisation. A visit with no
usable note gets a zero vector and ``has_notes=False``, so models can tell "no note" from a note.

Budgets (both off by default) are applied and *reported*, never silent:

* ``max_notes_per_visit=K`` keeps the last ``K`` notes of a visit in the order given (tasks
  list notes chronologically, so these are the most recent before the prediction time);
* ``max_tokens=T`` embeds only the first ``T`` tokens of each note.

Note texts are streamed through ``read_texts`` in batches of ``read_batch_size`` ids, and
visit vectors are accumulated as notes finish, so memory is bounded by one batch of texts
plus ``[n_visits, dim]``. Note embeddings are cached per note text (sha256) under a
namespace that includes the chunking and pooling parameters and the token budget.
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mingle_bench.encoders.base import Encoder, iter_token_batches, l2_normalize
from mingle_bench.encoders.cache import EmbeddingCache, text_key
from mingle_bench.progress import progress_bar, short_name

log = logging.getLogger(__name__)

POOLS = ("mean", "max", "token_mean")
#: aux columns stored with each cached note embedding
NOTE_AUX = ("tokens_total", "tokens_embedded", "chunks")


def chunk_token_ids(tokens: Sequence, size: int, overlap: int) -> list[list]:
    """Cut a token sequence into windows of ``size`` with ``overlap`` tokens shared.

    >>> chunk_token_ids(list(range(10)), 4, 1)
    [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    >>> chunk_token_ids([], 4, 1)
    []
    """
    if size <= 0:
        raise ValueError(f"chunk size must be positive, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, chunk size={size}), got {overlap}")
    tokens = list(tokens)
    n = len(tokens)
    if n == 0:
        return []
    stride = size - overlap
    chunks = []
    start = 0
    while True:
        chunks.append(tokens[start:start + size])
        if start + size >= n:
            return chunks
        start += stride


def pool_rows(x: torch.Tensor, how: str = "mean", weights: torch.Tensor | None = None) -> torch.Tensor:
    """Pool rows ``[k, d] -> [d]`` by ``mean``, ``max`` or ``token_mean`` (weights ``[k]``); not normalised."""
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"pool_rows needs a non-empty [k, d] tensor, got shape {tuple(x.shape)}")
    if how == "mean":
        return x.mean(0)
    if how == "max":
        return x.max(0).values
    if how == "token_mean":
        if weights is None or weights.shape != (x.shape[0],):
            raise ValueError("token_mean pooling needs one weight per row")
        w = weights.to(x.dtype)
        return (x * w[:, None]).sum(0) / w.sum().clamp(min=1e-12)
    raise ValueError(f"pooling must be one of {POOLS}, got {how!r}")


#: sentence ends: ., ! or ? before white space, or a line break (a simple rule: abbreviations such
#: as "Dr." also end a sentence, which only makes a chunk shorter)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """The sentences of a note, stripped, empty ones dropped.

    >>> split_sentences("Code: DNR/DNI. Lactate 4.2 mmol/L!\\nFrail")
    ['Code: DNR/DNI.', 'Lactate 4.2 mmol/L!', 'Frail']
    """
    return [p.strip() for p in _SENTENCE_END.split(text) if p.strip()]


def note_segments(encoder: Encoder, texts: list[str]) -> list[list[list]]:
    """Per note, its token segments: the whole note (``chunking="tokens"``, the default) or one
    segment per sentence (an encoder whose ``chunking`` is ``"sentence"``). Each segment is then
    cut into windows on its own, so no chunk spans two sentences."""
    if getattr(encoder, "chunking", "tokens") != "sentence":
        return [[t] for t in encoder.tokenize(texts)]
    sentences = [split_sentences(t) for t in texts]
    flat = encoder.tokenize([x for sents in sentences for x in sents])
    out, pos = [], 0
    for sents in sentences:
        out.append([t for t in flat[pos:pos + len(sents)] if t])
        pos += len(sents)
    return out


def _first_tokens(segments: list[list], limit: int) -> list[list]:
    """The segments cut to their first ``limit`` tokens in total."""
    out, left = [], limit
    for g in segments:
        if left <= 0:
            break
        out.append(g[:left])
        left -= len(out[-1])
    return out


def note_cache_params(encoder: Encoder, chunk: int, overlap: int, note_pool: str, max_tokens: int | None) -> dict:
    return {"kind": "note", **encoder.params, "chunk_content_tokens": chunk, "overlap": overlap,
            "note_pool": note_pool, "max_tokens": max_tokens}


def embed_visit_notes(
    encoder: Encoder,
    visit_note_ids: Sequence[Sequence[int]],
    read_texts: Callable[[list[int]], dict[int, str]],
    *,
    chunk_tokens: int = 256,
    overlap: int = 32,
    note_pool: str = "mean",
    visit_pool: str = "mean",
    max_notes_per_visit: int | None = None,
    max_tokens: int | None = None,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
    read_batch_size: int = 512,
    batch_tokens: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Embed each visit's notes into one vector (see the module docstring for the math).

    Args:
        encoder: the text encoder (its tokenizer hook does the chunking).
        visit_note_ids: per visit, the note ids the task allows (chronological).
        read_texts: ``note ids -> {note_id: text}``, e.g. ``Cohort.read_note_texts``; ids it
            does not return are counted as missing.
        chunk_tokens: model input length per chunk, special tokens included (capped at the
            encoder's ``max_length``).
        overlap: tokens shared by consecutive chunks of a note.
        note_pool, visit_pool: ``mean``, ``max`` or ``token_mean``.
        max_notes_per_visit: keep only the last K notes of each visit (reported).
        max_tokens: embed only the first T tokens of each note (reported).
        cache: an :class:`EmbeddingCache` for note embeddings; ``None`` disables it.
        progress: rich progress bar (notes/s) on stderr.
        read_batch_size: note ids per ``read_texts`` call (bounds memory).
        batch_tokens: padded tokens per forward batch (default: the encoder's).

    Returns:
        ``(visit_emb float32 [n_visits, dim], has_notes bool [n_visits], report dict)``.
    """
    t0 = time.perf_counter()
    for name, how in (("note_pool", note_pool), ("visit_pool", visit_pool)):
        if how not in POOLS:
            raise ValueError(f"{name} must be one of {POOLS}, got {how!r}")
    if chunk_tokens <= 0:
        raise ValueError(f"chunk_tokens must be positive, got {chunk_tokens}")
    content = min(int(chunk_tokens), encoder.max_length) - encoder.num_special_tokens
    if content <= 0:
        raise ValueError(f"chunk_tokens={chunk_tokens} leaves no room for text after "
                         f"{encoder.num_special_tokens} special tokens")
    if not 0 <= overlap < content:
        raise ValueError(f"overlap must be in [0, {content}) for {content}-token chunks, got {overlap}")
    if max_notes_per_visit is not None and max_notes_per_visit < 1:
        raise ValueError(f"max_notes_per_visit must be >= 1, got {max_notes_per_visit}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if read_batch_size < 1:
        raise ValueError(f"read_batch_size must be >= 1, got {read_batch_size}")

    n_visits = len(visit_note_ids)
    dim = encoder.dim
    report: dict[str, Any] = {
        "encoder": encoder.identity, "chunk_tokens": int(chunk_tokens), "chunk_content_tokens": content,
        "overlap": int(overlap), "note_pool": note_pool, "visit_pool": visit_pool,
        "max_notes_per_visit": max_notes_per_visit, "max_tokens": max_tokens,
        "n_visits": n_visits, "notes_requested": 0, "notes_dropped_max_notes": 0, "visits_capped_max_notes": 0,
        "notes_unique": 0, "notes_duplicate_text": 0, "notes_missing_text": 0, "notes_empty": 0, "notes_cached": 0, "notes_embedded": 0,
        "chunks_embedded": 0, "chunks_deduplicated": 0, "chunk_tokens_processed": 0,
        "tokens_total": 0, "tokens_embedded": 0, "tokens_dropped_max_tokens": 0, "notes_truncated_max_tokens": 0,
    }

    # -- budgets and the note -> visits map ---------------------------------------------------
    note_visits: dict[int, list[int]] = {}
    for v, ids in enumerate(visit_note_ids):
        ids = [int(i) for i in ids]
        report["notes_requested"] += len(ids)
        if max_notes_per_visit is not None and len(ids) > max_notes_per_visit:
            report["notes_dropped_max_notes"] += len(ids) - max_notes_per_visit
            report["visits_capped_max_notes"] += 1
            ids = ids[-max_notes_per_visit:]
        for nid in dict.fromkeys(ids):  # a note listed twice for one visit counts once
            note_visits.setdefault(nid, []).append(v)
    unique_ids = list(note_visits)
    report["notes_unique"] = len(unique_ids)

    acc = torch.full((n_visits, dim), float("-inf") if visit_pool == "max" else 0.0, dtype=torch.float32)
    weight = torch.zeros(n_visits, dtype=torch.float64)
    params = note_cache_params(encoder, content, overlap, note_pool, max_tokens)
    missing_examples: list[int] = []

    def add_to_visits(nid: int, vec: torch.Tensor, tokens: int) -> None:
        for v in note_visits[nid]:
            if visit_pool == "max":
                torch.maximum(acc[v], vec, out=acc[v])
                weight[v] += 1
            else:
                w = float(tokens) if visit_pool == "token_mean" else 1.0
                acc[v] += vec * w
                weight[v] += w

    with progress_bar(f"notes · {short_name(encoder)}", len(unique_ids), "notes",
                      progress) as bar:
        for start in range(0, len(unique_ids), read_batch_size):
            batch_ids = unique_ids[start:start + read_batch_size]
            texts = read_texts(batch_ids)
            if not isinstance(texts, dict):
                raise ValueError(f"read_texts must return a dict note_id -> text, got {type(texts).__name__}")
            present: list[tuple[int, str]] = []
            for nid in batch_ids:
                t = texts.get(nid)
                if not isinstance(t, str):
                    report["notes_missing_text"] += 1
                    if len(missing_examples) < 5:
                        missing_examples.append(nid)
                    bar.advance(1)
                elif not t.strip():
                    report["notes_empty"] += 1
                    bar.advance(1)
                else:
                    present.append((nid, t))
            if not present:
                continue
            vecs, aux = _embed_note_texts(encoder, [t for _, t in present], content, overlap, note_pool,
                                          max_tokens, cache, params, report, bar, batch_tokens)
            for (nid, _), vec, a in zip(present, vecs, aux):
                add_to_visits(nid, vec, int(a[1]))

    has_notes = weight > 0
    out = torch.zeros(n_visits, dim, dtype=torch.float32)
    if has_notes.any():
        if visit_pool == "max":
            pooled = acc[has_notes]
        else:
            pooled = acc[has_notes] / weight[has_notes].to(torch.float32)[:, None]
        out[has_notes] = l2_normalize(pooled)
    seconds = time.perf_counter() - t0
    report.update(
        visits_with_notes=int(has_notes.sum()), visits_without_notes=int(n_visits - has_notes.sum()),
        seconds=round(seconds, 3),
        notes_per_s=round(report["notes_embedded"] / seconds, 2) if report["notes_embedded"] and seconds > 0 else None,
    )
    if cache is not None:
        report["cache"] = cache.stats()
    if report["notes_missing_text"]:
        log.warning("%d notes had no text in the note store and were skipped (e.g. note_id %s)",
                    report["notes_missing_text"], missing_examples)
    if report["notes_dropped_max_notes"]:
        log.warning("max_notes_per_visit=%s dropped %d notes from %d visits", max_notes_per_visit,
                    report["notes_dropped_max_notes"], report["visits_capped_max_notes"])
    if report["notes_truncated_max_tokens"]:
        log.warning("max_tokens=%s cut %d notes (%d of %d tokens not embedded)", max_tokens,
                    report["notes_truncated_max_tokens"], report["tokens_dropped_max_tokens"], report["tokens_total"])
    return out, has_notes.to(torch.bool), report


def _embed_note_texts(encoder: Encoder, texts: list[str], content: int, overlap: int, note_pool: str,
                      max_tokens: int | None, cache: EmbeddingCache | None, params: dict, report: dict,
                      bar, batch_tokens: int | None) -> tuple[torch.Tensor, np.ndarray]:
    """Note vectors ``[n, dim]`` (normalised) and aux ``[n, 3]`` (tokens_total, tokens_embedded, chunks)."""
    n = len(texts)
    dim = encoder.dim
    keys = [text_key(t) for t in texts]
    vecs = torch.zeros(n, dim, dtype=torch.float32)
    aux = np.zeros((n, len(NOTE_AUX)), dtype=np.int64)
    todo = list(range(n))
    if cache is not None:
        found, cached, cached_aux = cache.get(encoder.identity, params, keys, dim=dim)
        hit = np.flatnonzero(found)
        if len(hit):
            vecs[hit] = torch.from_numpy(cached[hit])
            aux[hit] = cached_aux[hit] if cached_aux is not None else 0
            report["notes_cached"] += len(hit)
            bar.skip(len(hit))
        todo = np.flatnonzero(~found).tolist()

    # identical texts within the batch are embedded once
    first: dict[bytes, int] = {}
    dup_of: dict[int, int] = {}
    work: list[int] = []
    for i in todo:
        j = first.setdefault(keys[i], i)
        if j == i:
            work.append(i)
        else:
            dup_of[i] = j
    if work:
        segments = note_segments(encoder, [texts[i] for i in work])
        chunk_key_row: dict[tuple, int] = {}
        chunk_list: list[list] = []
        owners: list[list[int]] = []  # per note (position in work), its chunk rows
        for w, segs in enumerate(segments):
            total = sum(len(g) for g in segs)
            if max_tokens is not None and total > max_tokens:
                report["notes_truncated_max_tokens"] += 1
                report["tokens_dropped_max_tokens"] += total - max_tokens
                segs = _first_tokens(segs, max_tokens)
            chunks = [c for g in segs for c in chunk_token_ids(g, content, overlap)]
            rows = []
            for c in chunks:
                report["chunk_tokens_processed"] += len(c)
                key = tuple(c)
                row = chunk_key_row.get(key)
                if row is None:
                    row = chunk_key_row[key] = len(chunk_list)
                    chunk_list.append(c)
                else:
                    report["chunks_deduplicated"] += 1
                rows.append(row)
            owners.append(rows)
            aux[work[w]] = (total, sum(len(g) for g in segs), len(chunks))
        chunk_emb = torch.zeros(len(chunk_list), dim, dtype=torch.float32)
        # progress: a note advances by 1/its chunks for each chunk embedded
        share = np.zeros(len(chunk_list))
        for rows in owners:
            for r in rows:
                share[r] += 1.0 / len(rows)
        order = sorted(range(len(chunk_list)), key=lambda r: len(chunk_list[r]))
        sorted_chunks = [chunk_list[r] for r in order]
        for b in iter_token_batches(sorted_chunks, batch_tokens or encoder.default_batch_tokens,
                                    encoder.max_batch_size):
            rows = [order[i] for i in b]
            chunk_emb[rows] = encoder.encode_tokens([chunk_list[r] for r in rows])
            bar.advance(float(share[rows].sum()))
        for w, rows in enumerate(owners):
            i = work[w]
            weights = torch.tensor([len(chunk_list[r]) for r in rows], dtype=torch.float32)
            vecs[i] = l2_normalize(pool_rows(chunk_emb[rows], note_pool, weights)[None])[0]
        report["notes_embedded"] += len(work)
        report["chunks_embedded"] += len(chunk_list)
        if cache is not None:
            cache.put(encoder.identity, params, [keys[i] for i in work], vecs[work].numpy(), aux[work])
    report["notes_duplicate_text"] += len(dup_of)
    for i, j in dup_of.items():
        vecs[i] = vecs[j]
        aux[i] = aux[j]
        bar.advance(1)
    report["tokens_total"] += int(aux[:, 0].sum())
    report["tokens_embedded"] += int(aux[:, 1].sum())
    return vecs, aux
