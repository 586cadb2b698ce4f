r"""Reference: gradient-boosted trees (LightGBM) on code counts and TF-IDF notes.

.. math:: \hat y_l = \sigma\Big(f_{l,0} + \sum_{k=1}^{K_l} \eta\, f_{lk}([\,n\,;\ x\,])\Big)

``n \in \mathbb{N}^V``: how often each code occurs over the sample's visits up to and including
the index visit (the sequence view; :func:`~mingle_bench.baselines.text_features.history_code_counts`),
as in the count-based baselines of EHRSHOT and MEDS-Tab (without their time windows); ``x``: the
TF-IDF of the index visit's notes of ``tfidf-lr`` (vocabulary and IDF fitted on the training
split's texts only). One binary LightGBM booster per label (``f_{l,0}`` the training log-odds;
``f_{lk}`` regression trees, shrinkage ``\eta``); a label constant on train predicts that
constant. Fitted by LightGBM's own loop inside :meth:`fit_sklearn`: 0 optimiser steps of the
budget. Shapes: ``[n_samples, V + n_terms]`` (sparse) -> ``[n_samples, n_labels]`` logits.

**Early stopping on the validation split** (stated in every run's hyperparameters): each booster
adds trees up to ``n_estimators`` and keeps the round of its best validation log-loss, stopping
after ``early_stopping_rounds`` rounds without improvement (``0``: no early stopping, all
``n_estimators`` trees). The validation labels thus choose the number of trees, as the validation
split chooses every neural model's best step; the test split plays no part.

Deterministic: ``seed`` (the cell's seed), ``deterministic=True``, ``force_row_wise=True`` and a
fixed ``num_threads`` (default 1, so a cell gives the same trees on any machine).

Defaults are ours (LightGBM's, with a smaller learning rate and leaves for small cohorts):
``learning_rate=0.05``, ``num_leaves=15``, ``min_data_in_leaf=20``, ``feature_fraction=0.8``,
``lambda_l2=1.0``, ``n_estimators=500``, ``early_stopping_rounds=50``; TF-IDF as ``tfidf-lr``.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from mingle_bench.baselines.text_features import TFIDF_DEFAULTS, fit_tfidf, history_code_counts, note_texts
from mingle_bench.models.base import EHRModel, batch_indices, choice, integer, log_uniform, uniform
from mingle_bench.models.registry import register_model


@register_model("gbm", family="reference", display="Gradient boosting (LightGBM, code counts + TF-IDF notes)")
class GBM(EHRModel):
    sklearn = True
    reads_history = True   # code counts over the visits up to the index visit
    requires = ("sample_note_texts",)
    tiny_hparams: dict[str, Any] = {"min_data_in_leaf": 3, "n_estimators": 50}  # tests
    default_hparams: dict[str, Any] = {
        "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 20, "feature_fraction": 0.8, "lambda_l2": 1.0,
        "n_estimators": 500, "early_stopping_rounds": 50, "num_threads": 1, **TFIDF_DEFAULTS,
        # fitted by LightGBM: the trainer keys are unused (0) and not searched
        "lr": 0.0, "weight_decay": 0.0, "batch_size": 0,
    }
    search_ranges = {"lr": None, "weight_decay": None, "learning_rate": log_uniform(0.01, 0.2),
                     "num_leaves": choice(7, 15, 31, 63), "min_data_in_leaf": integer(5, 100),
                     "feature_fraction": uniform(0.3, 1.0), "lambda_l2": log_uniform(1e-3, 10.0)}

    def __init__(self, data, **hparams: Any) -> None:
        super().__init__(data, **hparams)
        self.texts = note_texts(data, self.name)
        self.counts = history_code_counts(data)
        self.labels = data.labels.numpy()
        self.val_idx = data.split_idx["val"].cpu().numpy()
        self.boosters: list[Any] = [None] * data.n_labels
        self.x: sp.csr_matrix | None = None
        # per label: the constant logit of a label constant on train, and the trees kept
        self.register_buffer("_bias", torch.zeros(data.n_labels, dtype=torch.float64))
        self.register_buffer("_n_trees", torch.zeros(data.n_labels, dtype=torch.int64))
        self.fitted = False

    def params(self, seed: int) -> dict[str, Any]:
        """LightGBM parameters of one booster."""
        hp = self.hparams
        return {"objective": "binary", "learning_rate": float(hp["learning_rate"]), "num_leaves": int(hp["num_leaves"]),
                "min_data_in_leaf": int(hp["min_data_in_leaf"]), "feature_fraction": float(hp["feature_fraction"]),
                "lambda_l2": float(hp["lambda_l2"]), "num_threads": int(hp["num_threads"]), "seed": int(seed),
                "deterministic": True, "force_row_wise": True, "verbosity": -1, "metric": "binary_logloss"}

    def fit_sklearn(self, train_idx: Tensor, seed: int = 0) -> None:
        """Fit the TF-IDF on the training texts, then one booster per label (early stopping on
        the validation split's log-loss when ``early_stopping_rounds > 0``)."""
        import lightgbm as lgb

        tr = train_idx.cpu().numpy()
        vec, tfidf = fit_tfidf(self.texts, tr, self.hparams)
        self.input_report = {"notes": "on" if vec is not None else "off: no note term in the training split"}
        self.x = sp.hstack([self.counts, tfidf], format="csr")
        y = self.labels[tr]
        rounds, patience = int(self.hparams["n_estimators"]), int(self.hparams["early_stopping_rounds"])
        use_val = patience > 0 and self.val_idx.size > 0
        self.hit_iteration_cap = False
        for l in range(y.shape[1]):
            yl = y[:, l]
            if yl.min() == yl.max():          # constant on train: predict that constant
                p = np.clip(yl.mean(), 1e-6, 1 - 1e-6)
                self._bias[l] = float(np.log(p / (1 - p)))
                self.boosters[l] = None
                continue
            params = self.params(seed)
            train = lgb.Dataset(self.x[tr], label=yl, params=params, free_raw_data=False)
            kw: dict[str, Any] = {}
            if use_val:
                val = lgb.Dataset(self.x[self.val_idx], label=self.labels[self.val_idx, l], reference=train)
                kw = {"valid_sets": [val], "callbacks": [lgb.early_stopping(patience, verbose=False)]}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                booster = lgb.train(params, train, num_boost_round=rounds, **kw)
            best = int(booster.best_iteration or 0) if use_val else 0
            kept = best if best > 0 else booster.current_iteration()
            self.boosters[l] = (booster, kept)
            self._n_trees[l] = kept
            self.hit_iteration_cap |= kept >= rounds
        self.fitted = True

    def n_params(self) -> int:
        """Leaf values of the trees kept, plus one constant per label."""
        leaves = 0
        for entry in self.boosters:
            if entry is not None:
                booster, kept = entry
                leaves += sum(t["num_leaves"] for t in booster.dump_model(num_iteration=kept)["tree_info"])
        return int(leaves + self._bias.numel())

    def forward(self, batch: dict) -> dict[str, Tensor]:
        if not self.fitted:
            raise RuntimeError("gbm: call fit_sklearn(train_idx) before forward")
        idx = batch_indices(batch, torch.device("cpu")).numpy()
        logits = np.repeat(self._bias.cpu().numpy()[None, :], idx.size, axis=0)
        if idx.size:
            xb = self.x[idx]
            for l, entry in enumerate(self.boosters):
                if entry is not None:
                    booster, kept = entry
                    logits[:, l] = booster.predict(xb, num_iteration=kept, raw_score=True)
        return self.output(torch.from_numpy(logits).to(torch.float32).to(self.device), batch)
