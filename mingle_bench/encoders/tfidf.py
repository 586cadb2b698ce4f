r"""``--encoder tfidf``: TF-IDF then truncated SVD, fitted on the training split's texts only.

A count-based text encoder with the :class:`~mingle_bench.encoders.base.Encoder` contract of the
transformer encoders, so MINGLE (node and hyperedge side), every model and the embedding cache
use it unchanged. It keeps what a mean-pooled sentence encoder blurs: short decisive phrases
("DNR/DNI", "fall risk") and numbers ("lactate 4.2", "HbA1c 9.1").

**Fit** (:meth:`TfidfEncoder.fit`, called by the features stage with the input notes of the train
patients' visits plus the train vocabulary's concept descriptions; see
:func:`mingle_bench.features.encoder_fit_texts`). On the training texts, sorted (so the fit does
not depend on their order), with terms = lower-cased words and decimal numbers (``4.2``) and, for
``ngram=2``, word bigrams, kept when seen in at least ``min_df`` training texts (at most
``max_features``, the most frequent):

.. math::
    x_{it} = \frac{(1 + \log \mathrm{tf}_{it})\,\mathrm{idf}_t}{\lVert\cdot\rVert_2},\qquad
    \mathrm{idf}_t = \log\frac{1 + n}{1 + \mathrm{df}_t} + 1 ,

the matrix :math:`X \in \mathbb{R}^{n \times V}` is reduced by a truncated SVD
:math:`X \approx U \Sigma W^\top` with :math:`W \in \mathbb{R}^{V \times k}`,
:math:`k = \min(\text{dim}, n - 1, V - 1)` (ARPACK, ``random_state=0``: bit-identical reruns;
the sign of each component fixed by scikit-learn's ``svd_flip``). Rows of
:math:`W^\top` beyond :math:`k` are zero, so the output always has ``dim`` columns.

**Encode**: :math:`e = \mathrm{norm}(x W)`, float32 ``[n, dim]``; a text without a known term
gets the zero vector.

**State and cache** (no pickle): ``<cache root>/tfidf/<key>.safetensors`` holds ``idf`` float64
``[V]`` and ``components`` float32 ``[dim, V]``; its metadata holds the settings and the
vocabulary (terms in column order, JSON) and the sha256 of each tensor, checked at load. ``key``
is the sha256 of the settings and of the sorted training texts' sha256s, so the same texts and
settings reuse the fit and anything else refits. The fit's key enters :attr:`identity` (and so
:meth:`describe`, the embedding cache's namespace and the features' input digest): vectors of
two different fits never mix, and a TF-IDF run never shares an input hash with a MiniLM run.
Before :meth:`fit` the encoder refuses to encode (a one-line error).

Tokens for chunking (:meth:`tokenize`) are the word/number units; a chunk is re-joined with
spaces, which gives back the same unigrams and bigrams. The window is unlimited
(:attr:`max_length`), so concept descriptions are never truncated; notes are still cut into the
features stage's 256-token windows and pooled like any encoder's (most notes fit one window).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mingle_bench.encoders.base import Encoder, check_texts, l2_normalize

log = logging.getLogger(__name__)

#: words and decimal numbers ("lactate", "4.2", "hba1c"); the pattern of the TF-IDF references
#: (baselines/text_features.py), so both read the same terms
TOKEN_PATTERN = r"(?u)\b\w+(?:\.\d+)?\b"
#: the defaults: ``dim`` = MINGLE's ``sem_dim`` default (64; models/mingle.py), the references'
#: ``min_df``, bigrams and vocabulary cap
TFIDF_DEFAULTS: dict[str, int] = {"dim": 64, "min_df": 2, "ngram": 2, "max_features": 50000}
#: bump when the fit or the file layout changes (enters the cache key)
FORMAT = 1
#: "no window": token lists are never cut for the model
UNLIMITED = 1 << 20


def _sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


class TfidfEncoder(Encoder):
    """TF-IDF + truncated SVD encoder (see the module docstring for the formula and the cache).

    Args:
        dim: output dimension ``k`` (default 64, MINGLE's ``sem_dim``).
        min_df: a term must occur in at least this many training texts (default 2).
        ngram: 1 (words) or 2 (words and word bigrams; default).
        max_features: vocabulary cap, the most frequent terms in training (default 50000).
        cache_dir: cache root for fitted states (default :func:`mingle_bench.io.cache_root`).
    """

    max_length = UNLIMITED
    num_special_tokens = 0
    default_batch_tokens = 1 << 18
    max_batch_size = 4096

    def __init__(self, dim: int = TFIDF_DEFAULTS["dim"], min_df: int = TFIDF_DEFAULTS["min_df"],
                 ngram: int = TFIDF_DEFAULTS["ngram"], max_features: int = TFIDF_DEFAULTS["max_features"],
                 cache_dir: str | os.PathLike | None = None):
        for name, value, low in (("dim", dim, 1), ("min_df", min_df, 1), ("max_features", max_features, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"encoder tfidf: {name} must be an integer >= {low}, got {value!r}")
        if ngram not in (1, 2):
            raise ValueError(f"encoder tfidf: ngram must be 1 or 2, got {ngram!r}")
        self.settings = {"dim": int(dim), "min_df": int(min_df), "ngram": int(ngram),
                         "max_features": int(max_features)}
        self.cache_dir = cache_dir
        self.fit_key: str | None = None
        self.fit_info: dict[str, Any] = {}
        self.terms: list[str] = []
        self._index: dict[str, int] = {}
        self._idf = np.zeros(0, dtype=np.float64)
        self._components = np.zeros((int(dim), 0), dtype=np.float32)
        self.identity = "tfidf@unfitted"
        from sklearn.feature_extraction.text import TfidfVectorizer

        proto = TfidfVectorizer(lowercase=True, token_pattern=TOKEN_PATTERN, ngram_range=(1, int(ngram)))
        self._analyzer = proto.build_analyzer()        # text -> terms (unigrams, bigrams)
        self._tokenizer = proto.build_tokenizer()      # text -> word/number units

    # -- contract -------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.settings["dim"]

    @property
    def fitted(self) -> bool:
        return self.fit_key is not None

    @property
    def params(self) -> dict[str, Any]:
        return {**self.settings, "fit": None if self.fit_key is None else self.fit_key[:16]}

    def describe(self) -> dict[str, Any]:
        """Identity, settings and the fit (full key, training texts, terms, SVD rank)."""
        return {**super().describe(), "fit_sha256": self.fit_key, **self.fit_info}

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        """Lower-cased word and decimal-number units of each text (no n-grams: those are formed
        when a chunk is encoded)."""
        return [self._tokenizer(t.lower()) for t in check_texts(texts)]

    def encode_tokens(self, token_lists: Sequence[Sequence[str]]) -> torch.Tensor:
        return self._embed([" ".join(t) for t in token_lists])

    # -- fit ------------------------------------------------------------------------------------
    def fit(self, texts: Sequence[str], cache_dir: str | os.PathLike | None = None) -> "TfidfEncoder":
        """Fit the vocabulary, IDF and SVD on ``texts`` (the training split's texts only), or load
        the fit of the same texts and settings from the cache. Returns ``self``."""
        texts = sorted(check_texts(texts))
        h = hashlib.sha256(json.dumps({"format": FORMAT, **self.settings}, sort_keys=True).encode())
        for t in texts:
            h.update(hashlib.sha256(t.encode("utf-8")).digest())
        key = h.hexdigest()
        from mingle_bench.io import cache_root

        path = cache_root(cache_dir if cache_dir is not None else self.cache_dir) / "tfidf" / f"{key}.safetensors"
        state = _load_state(path) if path.is_file() else None
        if state is None:
            state = self._compute(texts)
            _save_state(path, state, {**self.settings, "format": FORMAT, "key": key})
        terms, idf, components, info = state
        self.terms, self._idf, self._components = terms, idf, components
        self._index = {t: i for i, t in enumerate(terms)}
        self.fit_key = key
        self.fit_info = info
        self.identity = f"tfidf@fit:{key[:16]}"
        return self

    def _compute(self, texts: list[str]):
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        s = self.settings
        vec = TfidfVectorizer(lowercase=True, token_pattern=TOKEN_PATTERN, ngram_range=(1, s["ngram"]),
                              min_df=s["min_df"], max_features=s["max_features"], sublinear_tf=True,
                              dtype=np.float64)
        try:
            vec.fit(texts)
            terms = [str(t) for t in vec.get_feature_names_out()]
            idf = np.asarray(vec.idf_, dtype=np.float64)
        except ValueError:  # no term seen min_df times (or no text): every vector will be zero
            terms, idf = [], np.zeros(0, dtype=np.float64)
        self.terms, self._idf = terms, idf
        self._index = {t: i for i, t in enumerate(terms)}
        components = np.zeros((s["dim"], len(terms)), dtype=np.float32)
        rank = min(s["dim"], len(texts) - 1, len(terms) - 1)
        if rank >= 1:
            x = self._tfidf(texts)
            svd = TruncatedSVD(n_components=rank, algorithm="arpack", random_state=0).fit(x)
            components[:rank] = svd.components_.astype(np.float32)
        info = {"train_texts": len(texts), "terms": len(terms), "svd_rank": max(rank, 0)}
        if rank < s["dim"]:
            log.warning("tfidf encoder: SVD rank %d < dim %d (%d training texts, %d terms); the last "
                        "%d dimensions are zero", max(rank, 0), s["dim"], len(texts), len(terms),
                        s["dim"] - max(rank, 0))
        return terms, idf, components, info

    # -- transform -----------------------------------------------------------------------------
    def _tfidf(self, texts: Sequence[str]):
        """Sublinear TF-IDF rows over the fitted vocabulary, L2-normalised: csr float64 ``[n, V]``."""
        import scipy.sparse as sp

        indptr, indices, data = [0], [], []
        for t in texts:
            counts = Counter(self._index[g] for g in self._analyzer(t) if g in self._index)
            cols = sorted(counts)
            vals = np.array([(1.0 + math.log(counts[c])) * self._idf[c] for c in cols], dtype=np.float64)
            norm = float(np.sqrt((vals * vals).sum())) if cols else 0.0
            indices.extend(cols)
            data.extend((vals / norm).tolist() if norm > 0 else vals.tolist())
            indptr.append(len(indices))
        return sp.csr_matrix((np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int64),
                              np.asarray(indptr, dtype=np.int64)), shape=(len(texts), len(self.terms)))

    def _embed(self, texts: Sequence[str]) -> torch.Tensor:
        if not self.fitted:
            raise ValueError("encoder tfidf is not fitted: the features stage fits it on the training split's "
                             "texts (build_task_data); in Python call enc.fit(train_texts) first")
        if not len(texts):
            return torch.zeros(0, self.dim, dtype=torch.float32)
        y = self._tfidf(texts) @ self._components.astype(np.float64).T
        return l2_normalize(torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)))


def _save_state(path: Path, state, meta: dict[str, Any]) -> None:
    from safetensors.numpy import save

    from mingle_bench.io import atomic_write_bytes

    terms, idf, components, info = state
    tensors = {"idf": np.ascontiguousarray(idf, dtype=np.float64),
               "components": np.ascontiguousarray(components, dtype=np.float32)}
    metadata = {"meta": json.dumps(meta, sort_keys=True), "info": json.dumps(info, sort_keys=True),
                "terms": json.dumps(terms, ensure_ascii=False),
                **{f"sha256:{k}": _sha256_bytes(v.tobytes()) for k, v in tensors.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def _load_state(path: Path):
    """The fitted state in ``path``, or ``None`` (with a warning, the file renamed ``*.corrupt``)
    when it does not pass its checks: then the caller refits."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            md = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in ("idf", "components")}
        terms = json.loads(md["terms"])
        info = json.loads(md["info"])
        for k, v in tensors.items():
            if _sha256_bytes(np.ascontiguousarray(v).tobytes()) != md[f"sha256:{k}"]:
                raise ValueError(f"sha256 of {k} does not match")
        if tensors["idf"].shape != (len(terms),) or tensors["components"].shape[1] != len(terms):
            raise ValueError("tensor shapes do not match the vocabulary")
    except Exception as exc:  # noqa: BLE001 - any unreadable or altered file is refitted
        log.warning("tfidf cache %s failed its check (%s); refitting", path, exc)
        try:
            os.replace(path, f"{path}.corrupt")
        except OSError:
            pass
        return None
    return terms, tensors["idf"].astype(np.float64), tensors["components"].astype(np.float32), info
