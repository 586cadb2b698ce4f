r"""HyperGAT (Ding et al., EMNLP 2020) on the EHR hypergraph: dual attention, full-graph.

``L`` :class:`~mingle_bench.models.layers.HyperGATLayer` layers (node→hyperedge attention with a
learned context vector, then hyperedge→node GAT-style attention with target and source logits,
both through :func:`mingle_bench.ops.segment_softmax_aggregate`), as in the original code the
first with ELU and the last without activation; dropout between layers. A visit is a hyperedge,
so a final node→hyperedge attention (:class:`~mingle_bench.models.layers.HyperGATEdgeAttention`)
reads the last node states into each visit's representation, and a linear layer classifies the
index visit (the original classifies documents by pooling node states; here the targets are
hyperedges, as for MINGLE). Node inputs: the DeepWalk structural embedding, learnable.

Shapes: ``X^(0) [V, d_s]`` -> ``f [E, hidden]`` -> logits ``[B, n_labels]``.

**Readout normalisation (our addition).** On the EHR hypergraph, a common code node belongs to
hundreds of visits, so the alternating attention averages (node → visit → node → visit) pull
every visit's representation towards the graph mean. At initialisation the visit logits on
synthetic ``mortality`` then differ by a standard deviation of about 3e-5 (a constant predictor);
Adam needed 150-190 steps to leave that plateau, and under the old one-step-per-epoch budget
with a patience of 20 epochs 3 of 5 seeds stopped on it with the untrained model. The visit
representations are therefore standardised across the hyperedges before the classifier
(``readout_norm="batch"``: BatchNorm with the batch statistics of the whole graph in train and
eval mode, as MINGLE's BatchNorm); ``readout_norm="none"`` restores the original readout.

Defaults from the official ``run.py`` (kaize0409/HyperGAT_TextClassification): hidden 100,
2 layers, dropout 0.3, LeakyReLU 0.2, Adam lr 1e-3, L2 1e-6. The original's lr decay
(x0.1 every 3 epochs) and batch size 8 (documents) do not apply: one trainer, full-graph steps.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mingle_bench.models.base import EHRModel, batch_indices
from mingle_bench.models.layers import DeviceGraph, HyperGATEdgeAttention, HyperGATLayer
from mingle_bench.models.registry import register_model


@register_model("hypergat")
class HyperGAT(EHRModel):
    __doc__ = __doc__

    full_graph = True
    uses_op = True
    default_hparams: dict[str, Any] = {
        "hidden": 100, "layers": 2, "dropout": 0.3, "negative_slope": 0.2, "readout_norm": "batch", "impl": "auto",
        "lr": 1e-3, "weight_decay": 1e-6, "batch_size": 0,
    }

    @staticmethod
    def search_space(trial) -> dict[str, Any]:
        return {
            "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-7, 1e-3, log=True),
            "hidden": trial.suggest_categorical("hidden", [64, 100, 128]),
            "layers": trial.suggest_int("layers", 1, 3),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        }

    def __init__(self, data, **hparams: Any) -> None:
        super().__init__(data, **hparams)
        hp = self.hparams
        L, d = int(hp["layers"]), int(hp["hidden"])
        if L < 1:
            raise ValueError(f"layers must be >= 1, got {L}")
        self.graph = DeviceGraph(data.graph.incidence)
        self.register_buffer("sample_edge", data.sample_edge.to(torch.int64), persistent=False)
        self.x0 = nn.Parameter(data.structural.to(torch.float32).clone())
        self.layers = nn.ModuleList(
            HyperGATLayer(self.x0.shape[1] if l == 0 else d, d, float(hp["negative_slope"]),
                          activation="elu" if l < L - 1 else "none", attn_dropout=float(hp["dropout"]))
            for l in range(L)
        )
        self.readout = HyperGATEdgeAttention(d, d, float(hp["negative_slope"]), float(hp["dropout"]))
        if hp["readout_norm"] not in ("batch", "none"):
            raise ValueError(f"readout_norm must be 'batch' or 'none', got {hp['readout_norm']!r}")
        # batch statistics over every hyperedge of the graph, in train and eval mode (as MINGLE's BatchNorm)
        self.readout_norm = (nn.BatchNorm1d(d, track_running_stats=False) if hp["readout_norm"] == "batch"
                             else nn.Identity())
        self.out = nn.Linear(d, data.n_labels)

    def forward(self, batch: dict) -> dict[str, Tensor]:
        idx = batch_indices(batch, self.device)
        inc = self.graph(self.device)
        p = float(self.hparams["dropout"])
        h = F.dropout(self.x0, p, self.training)
        for layer in self.layers:
            h, _ = layer(h, inc.v2e, inc.e2v, self.hparams["impl"])
            h = F.dropout(h, p, self.training)
        f = self.readout_norm(self.readout(h, inc.v2e, self.hparams["impl"]))
        self.record_impl()
        return self.output(self.out(f.index_select(0, self.sample_edge[idx])), batch)
