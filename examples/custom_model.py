r"""A small model of your own, registered with the public API: a bag-of-codes MLP.

Run it beside the registered models, under the same budget and seeds, with::

    mingle-bench run --plugin examples/custom_model.py --models bag-mlp,logreg --data synthetic:small

**Model.** For sample :math:`i` with index-visit codes :math:`C_i` (the task's input view,
``TaskData.sample_codes`` in CSR form),

.. math::

    h_i = \frac{1}{|C_i|}\sum_{c \in C_i} E_c, \qquad
    \hat y_i = W_2\,\mathrm{ReLU}(W_1 h_i + b_1) + b_2,

with a learned code embedding :math:`E \in \mathbb{R}^{n_\text{nodes} \times d}`. Shapes:
``[B] sample indices -> [B, d] -> [B, hidden] -> [B, n_labels]`` logits; the loss is
binary cross-entropy with logits over every label (``EHRModel.output``), so the same model
serves binary and multi-label tasks.

**The contract** (docs/extending.md): a subclass of ``EHRModel`` built as
``cls(data: TaskData, **hparams)``, whose ``forward(batch)`` takes ``{"idx": int64 [B],
"labels": float32 [B, n_labels]}`` and returns ``{"logits": [B, n_labels], "loss": scalar}``.
``default_hparams`` and ``search_ranges`` are merged over the base's (lr, weight decay, batch
size), so ``mingle-bench tune --plugin examples/custom_model.py --model bag-mlp`` tunes it;
``tiny_hparams`` are the widths the model tests use; ``requires`` names the ``TaskData`` views it
needs beyond the codes (none here).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mingle_bench.models.base import EHRModel, batch_indices, choice, uniform
from mingle_bench.models.registry import register_model


@register_model("bag-mlp", family="baseline", display="Bag-of-codes MLP (example)")
class BagOfCodesMLP(EHRModel):
    requires: tuple[str, ...] = ()
    tiny_hparams: dict[str, Any] = {"dim": 8, "hidden": 8}
    default_hparams: dict[str, Any] = {"dim": 32, "hidden": 64, "dropout": 0.1, "batch_size": 64}
    search_ranges = {"dim": choice(16, 32, 64), "hidden": choice(32, 64, 128), "dropout": uniform(0.0, 0.5)}

    def __init__(self, data, **hparams: Any) -> None:
        super().__init__(data, **hparams)
        hp = self.hparams
        # the index visit's codes of every sample (node indices in CSR form)
        self.register_buffer("codes", data.sample_codes.to(torch.int64), persistent=False)
        self.register_buffer("indptr", data.sample_codes_indptr.to(torch.int64), persistent=False)
        self.embed = nn.EmbeddingBag(data.n_nodes, int(hp["dim"]), mode="mean")  # an empty bag gives zeros
        self.mlp = nn.Sequential(nn.Linear(int(hp["dim"]), int(hp["hidden"])), nn.ReLU(),
                                 nn.Dropout(float(hp["dropout"])), nn.Linear(int(hp["hidden"]), data.n_labels))
        # start from the training prevalence (bias = its log-odds): the first steps refine a sane
        # predictor instead of climbing down from p = 0.5 on a rare label
        prevalence = data.labels[data.split_idx["train"]].float().mean(0).clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.mlp[-1].bias.copy_(torch.log(prevalence / (1 - prevalence)))

    def forward(self, batch: dict) -> dict[str, Tensor]:
        idx = batch_indices(batch, self.device)
        starts = self.indptr[idx]
        lengths = self.indptr[idx + 1] - starts
        offsets = torch.cumsum(lengths, 0) - lengths  # where each sample's bag starts in `flat`
        within = torch.arange(int(lengths.sum()), device=idx.device) - torch.repeat_interleave(offsets, lengths)
        flat = self.codes[torch.repeat_interleave(starts, lengths) + within]
        return self.output(self.mlp(self.embed(flat, offsets)), batch)
