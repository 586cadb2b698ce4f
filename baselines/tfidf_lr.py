r"""Reference: logistic regression on TF-IDF of the index visit's notes (scikit-learn).

.. math:: \hat y_l = \sigma(w_l^\top x + b_l),\qquad x = \text{TF-IDF}(\text{notes of the index visit})

``x`` is :func:`~mingle_bench.baselines.text_features.fit_tfidf` of ``TaskData.sample_note_texts``:
exactly the notes the task exposes as the index visit's inputs (``TaskSamples.input_note_ids``,
so the task's note policy and leakage guards apply), joined in the task's order. The vocabulary
and IDF are fitted on the **training split's texts only**, then every sample is transformed.
One L2-regularised ``LogisticRegression`` per label, fitted by its solver like ``logreg``
(:meth:`fit_sklearn`, 0 optimiser steps; a label constant on train predicts that constant).
A task whose training notes hold no term gives one all-zero feature: the intercept alone (the
training prevalence), reported as ``notes: off`` in the model's input report.

Defaults are ours: ``C=1.0`` (lbfgs, ``max_iter=1000``), unigrams and bigrams of words and
decimal numbers, ``min_df=2`` training texts, at most 50,000 terms, sublinear tf, smooth IDF, L2
row norm. Tuned: ``C`` only.
"""
from __future__ import annotations

from typing import Any

import scipy.sparse as sp
import torch
from torch import Tensor

from mingle_bench.baselines.logreg import LogReg
from mingle_bench.baselines.text_features import TFIDF_DEFAULTS, fit_tfidf, note_texts
from mingle_bench.models.registry import register_model


@register_model("tfidf-lr", family="reference", display="Logistic regression (TF-IDF notes)")
class TfidfLR(LogReg):
    requires = ("sample_note_texts",)
    default_hparams: dict[str, Any] = dict(TFIDF_DEFAULTS)

    def __init__(self, data, **hparams: Any) -> None:
        super().__init__(data, **hparams)
        self.texts = note_texts(data, self.name)
        self.codes_x = self.x          # the index visit's bag of codes (codes-notes-lr reads it)
        self.vectorizer = None

    def features(self, train_idx: Tensor) -> sp.csr_matrix:
        """The model's input matrix ``[n_samples, n_features]``; its vectoriser fitted on ``train_idx``."""
        self.vectorizer, x = fit_tfidf(self.texts, train_idx, self.hparams)
        self.input_report = {"notes": "on" if self.vectorizer is not None else "off: no note term in the training split"}
        return x

    def fit_sklearn(self, train_idx: Tensor, seed: int = 0) -> None:
        """Fit the vectoriser on the training texts, then one logistic regression per label."""
        self.x = self.features(train_idx)
        self._coef = torch.zeros(self.x.shape[1], self.n_labels, dtype=torch.float64, device=self._coef.device)
        super().fit_sklearn(train_idx, seed)
