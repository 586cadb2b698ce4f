"""``embed_texts``: deduplicated, length-sorted, batched and cached embedding of short texts.

Used for concept descriptions (the node side of MINGLE). The steps are:

1. validate and deduplicate the texts (identical strings are embedded once);
2. look the unique texts up in the :class:`~mingle_bench.encoders.cache.EmbeddingCache`;
3. tokenize the misses once with the encoder's tokenizer hook, truncate each to the
   model window (the count is logged; use :func:`~mingle_bench.encoders.notes.embed_visit_notes`
   for long texts), sort by token length and cut into batches under a padded-token budget;
4. encode under ``torch.inference_mode`` (bf16/fp16 on CUDA, chosen by the encoder) and
   write to the cache in shards as it goes, so an interrupted run keeps its work.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch

from mingle_bench.encoders.base import Encoder, check_texts, iter_token_batches
from mingle_bench.encoders.cache import EmbeddingCache, text_key
from mingle_bench.progress import progress_bar, short_name

log = logging.getLogger(__name__)

#: Entries per cache shard written while embedding.
FLUSH_EVERY = 4096


def text_cache_params(encoder: Encoder) -> dict[str, Any]:
    """Cache params of a whole-text embedding (truncated at the model window)."""
    return {"kind": "text", **encoder.params}


def embed_texts(encoder: Encoder, texts: Sequence[str], cache: EmbeddingCache | None = None,
                progress: bool = True, *, batch_tokens: int | None = None,
                report: dict[str, Any] | None = None) -> torch.Tensor:
    """Embed texts with dedup, caching and length-sorted batches.

    Args:
        encoder: any :class:`~mingle_bench.encoders.base.Encoder`.
        texts: the texts; identical strings are embedded once.
        cache: an :class:`EmbeddingCache`; ``None`` disables caching.
        progress: show a rich progress bar with texts/s on stderr.
        batch_tokens: padded tokens per batch (default: the encoder's).
        report: if given, filled with counts (texts, unique, cached, embedded, truncated, seconds).

    Returns:
        float32 ``[len(texts), encoder.dim]``, rows L2-normalised, in the input order.
    """
    import time

    t0 = time.perf_counter()
    texts = check_texts(texts)
    uniq: dict[str, int] = {}
    inverse = np.fromiter((uniq.setdefault(t, len(uniq)) for t in texts), dtype=np.int64, count=len(texts))
    unique = list(uniq)
    stats = {"texts": len(texts), "unique": len(unique), "cached": 0, "embedded": 0, "truncated": 0}
    if not unique:
        if report is not None:
            report.update(stats, seconds=0.0)
        return torch.zeros(0, encoder.dim, dtype=torch.float32)

    keys = [text_key(t) for t in unique]
    params = text_cache_params(encoder)
    out: np.ndarray | None = None
    todo = list(range(len(unique)))
    if cache is not None:
        found, cached, _ = cache.get(encoder.identity, params, keys)
        if found.any():
            out = np.zeros((len(unique), cached.shape[1]), dtype=np.float32)
            out[found] = cached[found]
        todo = np.flatnonzero(~found).tolist()
        stats["cached"] = int(found.sum())
    if out is None:
        out = np.zeros((len(unique), encoder.dim), dtype=np.float32)

    if todo:
        toks = encoder.tokenize([unique[i] for i in todo])
        limit = encoder.max_input_tokens
        stats["truncated"] = sum(len(t) > limit for t in toks)
        if stats["truncated"]:
            log.warning("%d of %d texts exceed the %d-token window of %s and were truncated",
                        stats["truncated"], len(todo), limit, encoder.identity)
        toks = [t[:limit] for t in toks]
        order = sorted(range(len(todo)), key=lambda j: len(toks[j]))
        sorted_toks = [toks[j] for j in order]
        pending_rows: list[int] = []
        budget = batch_tokens or encoder.default_batch_tokens
        with progress_bar(f"texts · {short_name(encoder)}", len(todo), "texts", progress) as bar:
            for batch in iter_token_batches(sorted_toks, budget, encoder.max_batch_size):
                emb = encoder.encode_tokens([sorted_toks[b] for b in batch]).numpy()
                rows = [todo[order[b]] for b in batch]
                out[rows] = emb
                pending_rows.extend(rows)
                bar.advance(len(batch))
                if cache is not None and len(pending_rows) >= FLUSH_EVERY:
                    cache.put(encoder.identity, params, [keys[r] for r in pending_rows], out[pending_rows])
                    pending_rows = []
        if cache is not None and pending_rows:
            cache.put(encoder.identity, params, [keys[r] for r in pending_rows], out[pending_rows])
        stats["embedded"] = len(todo)
    if report is not None:
        report.update(stats, seconds=round(time.perf_counter() - t0, 3))
    return torch.from_numpy(out[inverse])
