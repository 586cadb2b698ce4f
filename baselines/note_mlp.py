r"""Note-only reference: an MLP on the index visit's note embedding.

.. math:: \hat y = \mathrm{MLP}([\,m\, n ;\ m\,]),\qquad m = \text{has-notes}

``n`` is the visit's pooled LLM note embedding (``TaskData.visit_note_emb``), ``m`` its has-notes
flag, so a visit without notes reads the flag only (never a fake embedding). It answers "how
far do the notes alone go?". Shapes: ``[B, d_llm + 1] -> [B, n_labels]``.

Defaults are ours (no paper defines this reference): 2 layers, hidden 128, dropout 0.3,
Adam lr 1e-3, weight decay 1e-4, batch 64.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mingle_bench.models.base import EHRModel, batch_indices, choice, integer, uniform
from mingle_bench.models.layers import MLP
from mingle_bench.models.registry import register_model


@register_model("note-mlp", family="reference", display="Note MLP")
class NoteMLP(EHRModel):
    requires = ("visit_note_emb",)
    tiny_hparams: dict[str, Any] = {"hidden": 16}  # tests
    default_hparams: dict[str, Any] = {"hidden": 128, "layers": 2, "dropout": 0.3, "weight_decay": 1e-4, "batch_size": 64}
    search_ranges = {"hidden": choice(64, 128, 256), "layers": integer(1, 3), "dropout": uniform(0.0, 0.6)}

    def __init__(self, data, **hparams: Any) -> None:
        super().__init__(data, **hparams)
        visit = data.edge_visit.to(torch.int64)[data.sample_edge.to(torch.int64)]
        if bool((visit < 0).any()):
            raise ValueError("a sample's hyperedge is a self-loop (TaskData.sample_edge); samples must be visits")
        has = data.visit_has_notes.to(torch.bool)[visit]
        emb = torch.where(has.unsqueeze(1), data.visit_note_emb.to(torch.float32)[visit], 0.0)
        self.register_buffer("features", torch.cat([emb, has.to(torch.float32).unsqueeze(1)], dim=1), persistent=False)
        hp = self.hparams
        self.mlp = MLP(self.features.shape[1], int(hp["hidden"]), data.n_labels,
                       num_layers=int(hp["layers"]), dropout=float(hp["dropout"]))

    def forward(self, batch: dict) -> dict[str, Tensor]:
        idx = batch_indices(batch, self.device)
        return self.output(self.mlp(self.features[idx]), batch)
