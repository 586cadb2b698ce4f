r"""Sparse inputs of the reference models: TF-IDF of the notes, the bag of codes, code counts.

Not a model: the helpers :mod:`~mingle_bench.baselines.tfidf_lr`,
:mod:`~mingle_bench.baselines.codes_notes_lr` and :mod:`~mingle_bench.baselines.gbm` share.

* :func:`fit_tfidf`: a ``TfidfVectorizer`` whose vocabulary and IDF are fitted on the
  **training split's texts only** (``TaskData.sample_note_texts``: the index visit's notes the task
  allows), then applied to every sample. With ``sublinear_tf`` and the default smooth IDF,

  .. math:: x_{it} = \frac{(1 + \log \mathrm{tf}_{it})\,\mathrm{idf}_t}{\lVert\cdot\rVert_2},\qquad
            \mathrm{idf}_t = \log\frac{1 + n_\text{train}}{1 + \mathrm{df}_t} + 1

  over the terms (words, decimal numbers such as ``4.2``, and word bigrams) seen in at least
  ``min_df`` training texts, at most ``max_features`` of them (the most frequent in train).
  Validation and test texts never change the vocabulary, the IDF or the model.
* :func:`code_bag`: the index visit's codes, one-hot ``{0,1}^V`` (the input of ``logreg``).
* :func:`history_code_counts`: per sample, how often each code occurs over its visit history up
  to and including the index visit (the sequence view), as in the count-based baselines of
  EHRSHOT and MEDS-Tab.

Shapes: every matrix is ``scipy.sparse.csr_matrix`` float64 ``[n_samples, n_features]``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from torch import Tensor

from mingle_bench.encoders.tfidf import TOKEN_PATTERN

#: TF-IDF settings shared by the text references (their hyperparameters)
TFIDF_DEFAULTS: dict[str, Any] = {"min_df": 2, "max_features": 50000, "ngram_max": 2}


def note_texts(data, who: str) -> list[str]:
    """``data.sample_note_texts``, or a one-line error naming the model when it is missing."""
    texts = getattr(data, "sample_note_texts", None)
    if texts is None:
        raise ValueError(f"model {who!r} needs TaskData.sample_note_texts (build the task data with note_texts=True)")
    if len(texts) != data.n_samples:
        raise ValueError(f"TaskData.sample_note_texts has {len(texts)} texts for {data.n_samples} samples")
    return texts


def tfidf_vectorizer(hparams: dict[str, Any], vocabulary: dict[str, int] | None = None):
    """The references' ``TfidfVectorizer`` (words and decimal numbers, the encoder's
    :data:`~mingle_bench.encoders.tfidf.TOKEN_PATTERN`; sublinear tf) with ``hparams``' settings;
    ``vocabulary`` fixes the terms (a checkpoint's)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(lowercase=True, token_pattern=TOKEN_PATTERN, ngram_range=(1, int(hparams["ngram_max"])),
                           min_df=int(hparams["min_df"]), max_features=int(hparams["max_features"]),
                           sublinear_tf=True, dtype=np.float64, vocabulary=vocabulary)


def fit_tfidf(texts: list[str], train_idx: Tensor | np.ndarray, hparams: dict[str, Any]):
    """Fit the TF-IDF vectoriser on ``texts[train_idx]`` only and transform every text.

    Returns ``(vectorizer or None, X)``: ``X`` csr float64 ``[len(texts), n_terms]``. When the
    training texts hold no term (no notes in the task), the vectoriser is ``None`` and ``X`` has
    one all-zero column, so a linear model on it learns its intercept only (the prevalence).
    """
    tr = np.asarray(train_idx.cpu().numpy() if isinstance(train_idx, Tensor) else train_idx, dtype=np.int64)
    train_texts = [texts[i] for i in tr.tolist()]
    vec = tfidf_vectorizer(hparams)
    try:
        vec.fit(train_texts)
    except ValueError:  # empty vocabulary: no training text holds a term seen min_df times
        return None, sp.csr_matrix((len(texts), 1), dtype=np.float64)
    return vec, sp.csr_matrix(vec.transform(texts), dtype=np.float64)


def code_bag(data) -> sp.csr_matrix:
    """One-hot of the index visit's codes: csr float64 ``[n_samples, n_nodes]``."""
    indptr = data.sample_codes_indptr.numpy()
    codes = data.sample_codes.numpy()
    x = sp.csr_matrix((np.ones(codes.size, dtype=np.float64), codes, indptr), shape=(data.n_samples, data.n_nodes))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def history_code_counts(data) -> sp.csr_matrix:
    """Code counts over each sample's visits up to and including the index visit (the sequence
    view ``seq_visits`` / ``visit_codes``): csr float64 ``[n_samples, n_nodes]``."""
    s_indptr = data.seq_visit_indptr.numpy()
    visits = data.seq_visits.numpy()
    v_indptr = data.visit_codes_indptr.numpy()
    v_codes = data.visit_codes.numpy()
    lengths = v_indptr[visits + 1] - v_indptr[visits]              # codes per sequence row
    owner = np.repeat(np.repeat(np.arange(data.n_samples), np.diff(s_indptr)), lengths)
    offsets = np.repeat(v_indptr[visits] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    codes = v_codes[offsets + np.arange(int(lengths.sum()))]
    x = sp.csr_matrix((np.ones(codes.size, dtype=np.float64), (owner, codes)), shape=(data.n_samples, data.n_nodes))
    x.sum_duplicates()
    return x
