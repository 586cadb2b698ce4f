r"""Reference: a Transformer encoder over the index visit's code set (codes + concept embeddings).

Each code of the visit is a token; there is no position (a visit is a set):

.. math::
    t_i = E[c_i] + P\,\phi(c_i),\qquad
    [z_{cls}; z_1..z_k] = \mathrm{TransformerEncoder}([\,t_{cls};\ t_1..t_k\,]),\qquad
    \hat y = W z_{cls} + b

with :math:`E` a learned code embedding, :math:`\phi(c)` the frozen LLM embedding of the code's
description (``TaskData.concept_emb``; omitted when ``None`` or ``use_concept=False``) and
:math:`P` a learned projection. Padding is masked. Shapes: codes ``[B, k]`` -> tokens
``[B, k+1, d]`` -> logits ``[B, n_labels]``.

Defaults follow PyHealth's ``Transformer`` model (embedding 128, 1 layer... raised to 2 here,
heads 4, dropout 0.5 -> 0.3 on these small sets); Adam lr 1e-3, weight decay 1e-4, batch 64.
``max_codes`` caps tokens per visit (the first ``max_codes`` in vocabulary order are kept and
the number truncated is counted in ``input_report``).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mingle_bench.baselines.sequence import pad_ragged, ragged_gather
from mingle_bench.models.base import EHRModel, batch_indices, choice, integer, uniform
from mingle_bench.models.registry import register_model


@register_model("transformer", family="reference", display="Set Transformer")
class SetTransformerBaseline(EHRModel):
    uses = ("concept_emb",)  # read when present (use_concept)
    tiny_hparams: dict[str, Any] = {"emb_dim": 16, "heads": 2, "ff_dim": 32, "layers": 1}  # tests
    default_hparams: dict[str, Any] = {
        "emb_dim": 128, "heads": 4, "layers": 2, "ff_dim": 256, "dropout": 0.3,
        "use_concept": True, "max_codes": 512, "weight_decay": 1e-4, "batch_size": 64,
    }
    search_ranges = {"emb_dim": choice(64, 128), "layers": integer(1, 3), "dropout": uniform(0.0, 0.5)}

    def __init__(self, data, **hparams: Any) -> None:
        super().__init__(data, **hparams)
        hp = self.hparams
        d = int(hp["emb_dim"])
        if d % int(hp["heads"]):
            raise ValueError(f"emb_dim ({d}) must be divisible by heads ({hp['heads']})")
        self.register_buffer("codes_indptr", data.sample_codes_indptr, persistent=False)
        self.register_buffer("codes", data.sample_codes, persistent=False)
        counts = data.sample_codes_indptr[1:] - data.sample_codes_indptr[:-1]
        self.input_report["truncated_codes"] = str(int((counts - int(hp["max_codes"])).clamp_min(0).sum()))
        self.use_concept = bool(hp["use_concept"]) and data.concept_emb is not None
        self.input_report["concept"] = "on" if self.use_concept else "off"
        self.emb = nn.Embedding(data.n_nodes, d)
        if self.use_concept:
            self.register_buffer("concept", data.concept_emb.to(torch.float32), persistent=False)
            self.concept_proj = nn.Linear(self.concept.shape[1], d)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.normal_(self.cls, std=0.02)
        layer = nn.TransformerEncoderLayer(d, int(hp["heads"]), int(hp["ff_dim"]), float(hp["dropout"]),
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, int(hp["layers"]), enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, data.n_labels)

    def forward(self, batch: dict) -> dict[str, Tensor]:
        idx = batch_indices(batch, self.device)
        flat, lengths = ragged_gather(self.codes_indptr, self.codes, idx)
        codes, mask = pad_ragged(flat, lengths, 0)
        k = int(self.hparams["max_codes"])
        codes, mask = codes[:, :k], mask[:, :k]
        tokens = self.emb(codes)
        if self.use_concept:
            tokens = tokens + self.concept_proj(self.concept[codes])
        B = idx.numel()
        tokens = torch.cat([self.cls.expand(B, -1, -1), tokens], dim=1)
        keep = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=mask.device), mask], dim=1)
        z = self.encoder(tokens, src_key_padding_mask=~keep)
        return self.output(self.out(self.norm(z[:, 0])), batch)
