r"""Reference: logistic regression on the index visit's codes and the TF-IDF of its notes.

.. math:: \hat y_l = \sigma(w_l^\top [\,c\,;\ x\,] + b_l),\qquad c \in \{0,1\}^{V},\quad
          x = \text{TF-IDF}(\text{notes of the index visit})

``c`` is the bag of codes of ``logreg`` (the train-only code vocabulary), ``x`` the TF-IDF of
``tfidf-lr`` (vocabulary and IDF fitted on the training split's texts only), side by side as one
sparse matrix ``[n_samples, V + n_terms]``. One L2-regularised ``LogisticRegression`` per label,
fitted by its solver (0 optimiser steps). Defaults: those of ``tfidf-lr`` (``C=1.0``,
``min_df=2``, unigrams + bigrams, at most 50,000 terms). Tuned: ``C`` only.
"""
from __future__ import annotations

import scipy.sparse as sp
from torch import Tensor

from mingle_bench.baselines.tfidf_lr import TfidfLR
from mingle_bench.models.registry import register_model


@register_model("codes-notes-lr", family="reference", display="Logistic regression (codes + TF-IDF notes)")
class CodesNotesLR(TfidfLR):
    def features(self, train_idx: Tensor) -> sp.csr_matrix:
        """``[bag of codes ; TF-IDF of the notes]``, the TF-IDF fitted on ``train_idx``."""
        return sp.hstack([self.codes_x, super().features(train_idx)], format="csr")
