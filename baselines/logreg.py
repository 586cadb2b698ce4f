r"""Reference: logistic regression on the index visit's bag of codes (scikit-learn).

.. math:: \hat y_l = \sigma(w_l^\top x + b_l),\qquad x \in \{0,1\}^{V}\ \text{(codes of the index visit)}

One L2-regularised ``LogisticRegression`` per label (one-vs-rest for multi-label;
a label constant on the training set predicts that constant). It is fitted in closed loop by
scikit-learn, not by gradient steps: the trainer calls :meth:`fit_sklearn` on the training split
and then evaluates through ``forward`` like any other model, so the metrics path is shared.

Defaults: scikit-learn's (``C=1.0``, lbfgs), ``max_iter=1000``.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mingle_bench.baselines.text_features import code_bag
from mingle_bench.models.base import EHRModel, batch_indices, log_uniform
from mingle_bench.models.registry import register_model


@register_model("logreg", family="reference", display="Logistic regression (bag of codes)")
class LogReg(EHRModel):
    sklearn = True
    # fitted by its solver: the trainer keys are unused (0) and not searched
    default_hparams: dict[str, Any] = {"C": 1.0, "max_iter": 1000, "lr": 0.0, "weight_decay": 0.0, "batch_size": 0}
    search_ranges = {"lr": None, "weight_decay": None, "C": log_uniform(1e-3, 1e2)}

    def __init__(self, data, **hparams: Any) -> None:
        super().__init__(data, **hparams)
        self.x = code_bag(data)
        self.labels = data.labels.numpy()
        self.register_buffer("_coef", torch.zeros(data.n_nodes, data.n_labels, dtype=torch.float64))
        self.register_buffer("_bias", torch.zeros(data.n_labels, dtype=torch.float64))
        self.fitted = False

    def fit_sklearn(self, train_idx: Tensor, seed: int = 0) -> None:
        """Fit one logistic regression per label on the training samples."""
        from sklearn.linear_model import LogisticRegression

        tr = train_idx.cpu().numpy()
        x, y = self.x[tr], self.labels[tr]
        coef = np.zeros((self.x.shape[1], y.shape[1]))
        self.solver_iters = 0
        bias = np.zeros(y.shape[1])
        for l in range(y.shape[1]):
            yl = y[:, l]
            if yl.min() == yl.max():          # constant on train: predict that constant
                p = np.clip(yl.mean(), 1e-6, 1 - 1e-6)
                bias[l] = np.log(p / (1 - p))
                continue
            clf = LogisticRegression(C=float(self.hparams["C"]), max_iter=int(self.hparams["max_iter"]),
                                     random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # convergence warnings are reported via n_iter
                clf.fit(x, yl)
            coef[:, l], bias[l] = clf.coef_[0], clf.intercept_[0]
            self.solver_iters = max(self.solver_iters, int(np.max(clf.n_iter_)))
        self._coef.copy_(torch.from_numpy(coef))
        self._bias.copy_(torch.from_numpy(bias))
        self.fitted = True
        self.hit_iteration_cap = self.solver_iters >= int(self.hparams["max_iter"])

    def n_params(self) -> int:
        return int(self._coef.numel() + self._bias.numel())

    def forward(self, batch: dict) -> dict[str, Tensor]:
        if not self.fitted:
            raise RuntimeError("logreg: call fit_sklearn(train_idx) before forward")
        idx = batch_indices(batch, torch.device("cpu")).numpy()
        logits = torch.from_numpy(np.asarray(self.x[idx] @ self._coef.cpu().numpy())) + self._bias.cpu()
        return self.output(logits.to(torch.float32).to(self.device), batch)
