r"""Reference: the training prevalence of each label (a constant predictor, by design).

.. math:: \hat y_l = \bar y_l = \frac{1}{|\text{train}|} \sum_{i \in \text{train}} y_{il}
          \quad\text{for every sample}

The floor every table should beat: its AUROC is 50 for each label, but on a multi-label task the
flattened AUROC / AUPR of the label matrix credit it with the spread of the prevalences. Fitted in
closed form on the training split (``fit_sklearn``, 0 optimiser steps); ``n_labels`` parameters
(the logits ``log(p / (1 - p))``, ``p`` clipped to ``[1e-6, 1 - 1e-6]``). No hyperparameters.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from mingle_bench.models.base import EHRModel, batch_indices
from mingle_bench.models.registry import register_model


def constant_logit(logit: float, tries: int = 64) -> float:
    """The float32 value nearest ``logit`` whose float32 sigmoid is the same at every position of
    a tensor. Torch's CPU sigmoid computes the vectorised body and the scalar tail of a tensor
    differently, so a constant logit can give probabilities one ulp apart by position (and an
    AUROC away from 0.5, ranked by sample order); a neighbouring float32 (|change| ~ 1e-7) that
    both paths agree on keeps the predictor constant."""
    up = down = np.float32(logit)
    for _ in range(tries):
        for cand in (up, down):
            if torch.sigmoid(torch.full((1027,), float(cand), dtype=torch.float32)).unique().numel() == 1:
                return float(cand)
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(-np.inf))
    return float(np.float32(logit))


@register_model("prior", family="reference", display="Prior (training prevalence)")
class Prior(EHRModel):
    sklearn = True
    # fitted in closed form: the trainer keys are unused (0) and nothing is searched
    default_hparams: dict[str, Any] = {"lr": 0.0, "weight_decay": 0.0, "batch_size": 0}
    search_ranges = {"lr": None, "weight_decay": None}

    def __init__(self, data, **hparams: Any) -> None:
        super().__init__(data, **hparams)
        self.labels = data.labels.numpy()
        self.register_buffer("_bias", torch.zeros(data.n_labels, dtype=torch.float64))
        self.fitted = False

    def fit_sklearn(self, train_idx: Tensor, seed: int = 0) -> None:
        """The logit of each label's prevalence on the training samples (``seed`` is unused)."""
        p = np.clip(self.labels[train_idx.cpu().numpy()].astype(np.float64).mean(axis=0), 1e-6, 1 - 1e-6)
        self._bias.copy_(torch.tensor([constant_logit(v) for v in np.log(p / (1 - p)).tolist()], dtype=torch.float64))
        self.fitted = True
        self.hit_iteration_cap = False

    def n_params(self) -> int:
        return int(self._bias.numel())

    def forward(self, batch: dict) -> dict[str, Tensor]:
        if not self.fitted:
            raise RuntimeError("prior: call fit_sklearn(train_idx) before forward")
        idx = batch_indices(batch, torch.device("cpu"))
        logits = self._bias.cpu().to(torch.float32).repeat(idx.numel(), 1)   # materialised, not a stride-0 view
        return self.output(logits.to(self.device), batch)
