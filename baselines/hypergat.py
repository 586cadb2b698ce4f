r"""HyperGAT (Ding et al., EMNLP 2020) on the EHR hypergraph: dual attention, full-graph.

``L`` :class:`HyperGATLayer` layers (node→hyperedge attention with a
learned context vector, then hyperedge→node GAT-style attention with target and source logits,
both through :func:`mingle_bench.ops.softmax_aggregate`), as in the original code the
first with ELU and the last without activation; dropout between layers. A visit is a hyperedge,
so a final node→hyperedge attention (:class:`HyperGATEdgeAttention`)
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

from mingle_bench import ops
from mingle_bench.models.base import EHRModel, batch_indices, choice, integer, log_uniform, uniform
from mingle_bench.models.layers import DeviceGraph
from mingle_bench.models.registry import register_model


class HyperGATEdgeAttention(nn.Module):
    r"""HyperGAT's node → hyperedge attention with a learned context vector :math:`c`.

    .. math:: \alpha_{jk} = \mathrm{softmax}_{k\in e_j}\ \mathrm{LeakyReLU}
                  \big(a_1^\top [\,c\ ;\ W_2 h_k\,]\big),\qquad
              f_j = \textstyle\sum_{k\in e_j}\alpha_{jk}\, W_1 h_k

    :math:`a_1^\top[c; u]` splits into a per-segment constant (passed as ``dst_logits``) and a
    per-source logit, so this is one :func:`mingle_bench.ops.softmax_aggregate` call. Attention dropout
    is applied to the source logits. Shapes: ``h [N, in_dim]`` -> ``f [E, out_dim]`` (before the
    activation, which the caller applies).
    """

    def __init__(self, in_dim: int, out_dim: int, negative_slope: float = 0.2, attn_dropout: float = 0.0) -> None:
        super().__init__()
        self.w1 = nn.Linear(in_dim, out_dim, bias=False)
        self.w2 = nn.Linear(in_dim, out_dim, bias=False)
        self.context = nn.Parameter(torch.empty(1, out_dim))
        self.a1_ctx = nn.Parameter(torch.empty(out_dim))
        self.a1_src = nn.Parameter(torch.empty(out_dim))
        for p in (self.context, self.a1_ctx, self.a1_src):
            nn.init.uniform_(p, -out_dim ** -0.5, out_dim ** -0.5)
        self.negative_slope, self.attn_dropout = negative_slope, attn_dropout

    def forward(self, h: Tensor, v2e, impl: str = "auto", h2: Tensor | None = None) -> Tensor:
        h2 = self.w2(h) if h2 is None else h2
        src = F.dropout((h2 @ self.a1_src).unsqueeze(1), self.attn_dropout, self.training)   # [N, 1]
        ctx = (self.context @ self.a1_ctx).expand(v2e.num_segments).unsqueeze(1)          # [E, 1]
        return ops.softmax_aggregate(v2e, src, self.w1(h).unsqueeze(1), ctx, self.negative_slope, impl).squeeze(1)


class HyperGATLayer(nn.Module):
    r"""One HyperGAT layer (Ding et al. 2020): dual node-level and edge-level attention.

    Node → hyperedge (:class:`HyperGATEdgeAttention`):
    :math:`f_j = \sigma\big(\sum_{k\in e_j}\alpha_{jk} W_1 h_k\big)`.

    Hyperedge → node, GAT-style with target and source terms:

    .. math:: \beta_{ij} = \mathrm{softmax}_{j\ni i}\ \mathrm{LeakyReLU}
                  \big(a_2^\top [\,W_2 h_i\ ;\ W_3 f_j\,]\big),\qquad
              h_i' = \sigma\Big(\textstyle\sum_{j\ni i}\beta_{ij}\, W_3 f_j\Big)

    :math:`a_2^\top[u;v]` splits into a target logit (``dst_logits``, per node) and a source
    logit (per hyperedge), so the step is one :func:`mingle_bench.ops.softmax_aggregate` call.
    ``activation`` :math:`\sigma` is ``"elu"`` (the original's first layer) or ``"none"`` (its
    second layer).

    Shapes: ``h [N_nodes, in_dim]`` -> ``(h' [N_nodes, out_dim], f [N_edges, out_dim])``.
    """

    def __init__(self, in_dim: int, out_dim: int, negative_slope: float = 0.2,
                 activation: str = "elu", attn_dropout: float = 0.0) -> None:
        super().__init__()
        if activation not in ("elu", "none"):
            raise ValueError(f"HyperGATLayer activation must be elu|none, got {activation!r}")
        self.node_to_edge = HyperGATEdgeAttention(in_dim, out_dim, negative_slope, attn_dropout)
        self.w3 = nn.Linear(out_dim, out_dim, bias=False)
        self.a2_dst = nn.Parameter(torch.empty(out_dim))
        self.a2_src = nn.Parameter(torch.empty(out_dim))
        for p in (self.a2_dst, self.a2_src):
            nn.init.uniform_(p, -out_dim ** -0.5, out_dim ** -0.5)
        self.negative_slope, self.activation, self.attn_dropout = negative_slope, activation, attn_dropout

    def _act(self, x: Tensor) -> Tensor:
        return F.elu(x) if self.activation == "elu" else x

    def forward(self, h: Tensor, v2e, e2v, impl: str = "auto") -> tuple[Tensor, Tensor]:
        h2 = self.node_to_edge.w2(h)                                      # [N, d]
        f = self._act(self.node_to_edge(h, v2e, impl, h2=h2))             # [E, d]
        f3 = self.w3(f)                                                   # [E, d]
        src = F.dropout((f3 @ self.a2_src).unsqueeze(1), self.attn_dropout, self.training)  # [E, 1]
        dst = (h2 @ self.a2_dst).unsqueeze(1)                             # [N, 1]
        out = ops.softmax_aggregate(e2v, src, f3.unsqueeze(1), dst, self.negative_slope, impl).squeeze(1)
        return self._act(out), f


@register_model("hypergat", family="baseline", display="HyperGAT")
class HyperGAT(EHRModel):
    full_graph = True
    uses_op = True
    requires = ("structural",)  # DeepWalk features initialise the node embeddings
    # over EHRModel's trainer defaults: L2 1e-6 (the original's); batch_size 0: full graph
    tiny_hparams: dict[str, Any] = {"hidden": 16}  # tests
    default_hparams: dict[str, Any] = {
        "hidden": 100, "layers": 2, "dropout": 0.3, "negative_slope": 0.2, "readout_norm": "batch", "impl": "auto",
        "weight_decay": 1e-6, "batch_size": 0,
    }
    search_ranges = {"weight_decay": log_uniform(1e-7, 1e-3), "hidden": choice(64, 100, 128),
                     "layers": integer(1, 3), "dropout": uniform(0.0, 0.5)}

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
