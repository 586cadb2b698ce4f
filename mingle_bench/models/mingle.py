"""MINGLE (Cui et al., arXiv 2403.08818) on the HypEHR backbone, with its ablations.

Backbone (HypEHR = AllSetTransformer + PairNorm + jumping knowledge, Xu et al. 2023; the
group's released CACHE/TACCO code): ``L`` layers of

    A^(l)  = PMA_V→E(X^(l-1))                                  [E, d]
    E^(l)  = Fuse_l(A^(l), H)           (level-2 fusion; identity when off)
    E^(l)  = Dropout(ReLU(BN(PairNorm(E^(l)))))   (the PairNorm output is kept for JK)
    X^(l)  = Dropout(ReLU(BN(PairNorm(PMA_E→V(E^(l))))))      [V, d]

then one final ``PMA_V→E`` (+ fusion, PairNorm), and ``z_e = [E^(1) || ... || E^(L+1)]``
(jumping knowledge, ``[E, (L+1) d]``) read by a 2-layer LayerNorm MLP classifier for the
hyperedge of each sample's index visit. Nodes are updated from the fresh ``E^(l)`` (the code's
sequential order). Input dropout 0.2 on ``X^(0)`` (hard-coded in HypEHR).

Normalisation (a deviation from HypEHR's code, which keeps BatchNorm's running statistics):
PairNorm rescales the rows to a mean squared norm of 1, so each column's batch variance is
about ``1/d``, while BatchNorm's running variance starts at 1 and moves with momentum 0.1. In
eval mode the running statistics then lag far behind the batch statistics early in training
(activations shrunk by a factor of ~0.24 after 10 steps at d=48), which depresses validation
scores and pushes the best step towards the end of the budget. Every forward of a full-graph
model normalises the same set of rows (all hyperedges / all nodes of the graph), so the batch
statistics *are* the population statistics: the BatchNorm layers use them in both modes
(``track_running_stats=False``), and with dropout off, train-mode and eval-mode outputs agree.

Level-1 fusion (concept semantics): ``X^(0) = [S ; P c]`` with ``S`` the DeepWalk structural
embedding (a learnable ``nn.Parameter`` initialised from DeepWalk, HypEHR's ``LearnFeat``) and
``P`` a learned linear projection of the frozen LLM embedding ``c`` of the code's description.

Level-2 fusion (note semantics): semantic hyperedge features ``H = MLP1(n_e)`` for visits with
notes (``n_e`` = the visit's note embedding) and ``H = MLP1(c_v)`` for the self-loop hyperedge of
node ``v``; rows without semantics carry a mask ``m_e = 0`` and ``H_e = 0`` (no fake embedding,
and the missing embedding is never read). The fusion operator (``fusion``):

* ``concat`` (paper): ``E = MLP2([A ; H ; m])``;
* ``gated``: ``g = σ(W_g [A ; H])``, ``E = (1 - m g) ⊙ A + m g ⊙ H``;
* ``sum``: ``E = A + m ⊙ H``.

Ablations (config switches, each also a registered name): ``mingle-no-concept`` (no ``c`` in
``X^(0)`` nor in the self-loop rows of ``H``), ``mingle-no-notes`` (no ``n_e``; self-loop rows
keep their concept semantics), ``mingle-no-structural`` (no DeepWalk in ``X^(0)``),
``mingle-gated``, ``mingle-sum``. With neither concept nor note semantics this class is the plain
HypEHR backbone (no MLP1/MLP2), registered as the baseline ``hypehr`` in ``baselines/hypehr.py``.
When ``TaskData.concept_emb`` / ``visit_note_emb`` is ``None`` (or no visit has notes) the
corresponding part switches off by itself and :attr:`input_report` says why.

Defaults (method notes §7.2): d=48, h=4, L=2 (the reproduction's MINGLE setting), rFF
``MLP_num_layers`` 2 and dropout 0 (CACHE / HypEHR), classifier 2 layers hidden 64 with
LayerNorm, Adam lr 1e-3, weight decay 1e-3. ``sem_dim`` = 64 is ours (TACCO PCA-reduces the
text features to ``feature_dim`` instead of learning a projection).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mingle_bench.models.base import EHRModel, batch_indices, choice, integer, uniform
from mingle_bench.models.layers import MLP, PMA, DeviceGraph, PairNorm
from mingle_bench.models.registry import register_model

FUSIONS = ("concat", "gated", "sum")


class SemanticFusion(nn.Module):
    """Level-2 fusion of pooled hyperedge states ``A [E, d]`` with semantics ``H [E, d]``, mask ``m [E, 1]``.

    See the module docstring for the three operators. Output ``[E, d]``.
    """

    def __init__(self, hidden: int, mode: str, mlp_layers: int) -> None:
        super().__init__()
        if mode not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {mode!r}")
        self.mode = mode
        if mode == "concat":
            self.mlp2 = MLP(2 * hidden + 1, hidden, hidden, num_layers=mlp_layers)
        elif mode == "gated":
            self.gate = nn.Linear(2 * hidden, hidden)

    def forward(self, a: Tensor, h: Tensor, m: Tensor) -> Tensor:
        if self.mode == "concat":
            return self.mlp2(torch.cat([a, h, m], dim=1))
        if self.mode == "gated":
            g = m * torch.sigmoid(self.gate(torch.cat([a, h], dim=1)))
            return (1 - g) * a + g * h
        return a + m * h


@register_model("mingle-sum", fusion="sum", display="MINGLE (sum fusion)")
@register_model("mingle-gated", fusion="gated", display="MINGLE (gated fusion)")
@register_model("mingle-no-structural", use_structural=False, display="MINGLE w/o structural (DeepWalk)")
@register_model("mingle-no-notes", use_notes=False, display="MINGLE w/o note semantics")
@register_model("mingle-no-concept", use_concept=False, display="MINGLE w/o concept semantics")
@register_model("mingle", display="MINGLE")
class Mingle(EHRModel):
    family = "mingle"
    full_graph = True
    uses_op = True
    uses = ("structural", "concept_emb", "visit_note_emb")  # the input views it reads when present
    # over EHRModel's trainer defaults (Adam lr 1e-3, weight decay 1e-3); batch_size 0: full graph
    tiny_hparams: dict[str, Any] = {"hidden": 16, "heads": 2, "cls_hidden": 16, "sem_dim": 8}  # tests
    default_hparams: dict[str, Any] = {
        "hidden": 48, "heads": 4, "layers": 2, "mlp_layers": 2,
        "cls_hidden": 64, "cls_layers": 2, "dropout": 0.0, "input_dropout": 0.2,
        "sem_dim": 64, "fusion": "concat", "learn_features": True,
        "use_structural": True, "use_concept": True, "use_notes": True,
        "impl": "auto", "batch_size": 0,
    }
    search_ranges = {"hidden": choice(32, 48, 64, 96), "heads": choice(1, 2, 4), "layers": integer(1, 3),
                     "dropout": uniform(0.0, 0.5), "sem_dim": choice(32, 64, 128)}

    def __init__(self, data, **hparams: Any) -> None:
        super().__init__(data, **hparams)
        hp = self.hparams
        if hp["fusion"] not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {hp['fusion']!r}")
        d, L = int(hp["hidden"]), int(hp["layers"])
        if L < 1:
            raise ValueError(f"layers must be >= 1, got {L}")
        graph = data.graph
        self.graph = DeviceGraph(graph.incidence)
        self.num_edges = int(graph.num_edges)
        self.register_buffer("sample_edge", data.sample_edge.to(torch.int64), persistent=False)

        # ---- which inputs are read ------------------------------------------------------
        self.use_structural = bool(hp["use_structural"])
        self.use_concept = bool(hp["use_concept"]) and data.concept_emb is not None
        has_notes = data.visit_has_notes.to(torch.bool)
        self.use_notes = bool(hp["use_notes"]) and data.visit_note_emb is not None and bool(has_notes.any())
        rep = self.input_report
        rep["structural"] = "on" if self.use_structural else "off (use_structural=False)"
        rep["concept"] = ("on" if self.use_concept else
                          "off (use_concept=False)" if not hp["use_concept"] else "off (TaskData.concept_emb is None)")
        rep["notes"] = ("on" if self.use_notes else
                        "off (use_notes=False)" if not hp["use_notes"] else
                        "off (TaskData.visit_note_emb is None)" if data.visit_note_emb is None else
                        "off (no visit has notes)")
        if not (self.use_structural or self.use_concept):
            raise ValueError(f"model {self.name or 'mingle'!r}: no node features left "
                             f"(structural: {rep['structural']}, concept: {rep['concept']})")

        # ---- level 1: X^(0) = [S ; P c] ---------------------------------------------------
        in_dim = 0
        if self.use_structural:
            s = data.structural.to(torch.float32).clone()
            if hp["learn_features"]:
                self.structural = nn.Parameter(s)
            else:
                self.register_buffer("structural", s, persistent=False)
            in_dim += s.shape[1]
        if self.use_concept:
            self.register_buffer("concept", data.concept_emb.to(torch.float32), persistent=False)
            self.concept_proj = nn.Linear(self.concept.shape[1], int(hp["sem_dim"]))
            in_dim += int(hp["sem_dim"])

        # ---- level 2: semantic hyperedge rows H = MLP1(.) --------------------------------
        self.level2 = self.use_concept or self.use_notes
        if self.level2:
            sem_rows, sem_edges = [], []
            edge_visit = data.edge_visit.to(torch.int64)
            if self.use_notes:
                real = (edge_visit >= 0).nonzero().squeeze(1)
                real = real[has_notes[edge_visit[real]]]
                sem_rows.append(data.visit_note_emb.to(torch.float32)[edge_visit[real]])
                sem_edges.append(real)
            if self.use_concept:
                loops = torch.as_tensor(graph.is_self_loop, dtype=torch.bool).nonzero().squeeze(1)
                v2e = graph.incidence.v2e
                loop_node = v2e.indices[v2e.indptr[loops]]   # a self-loop's single member
                sem_rows.append(self.concept[loop_node])
                sem_edges.append(loops)
            rows = torch.cat(sem_rows)
            self.register_buffer("sem_feats", rows, persistent=False)            # [E_sem, d_llm]
            self.register_buffer("sem_edges", torch.cat(sem_edges), persistent=False)  # [E_sem]
            self.mlp1 = MLP(rows.shape[1], d, d, num_layers=2)
            self.fusions = nn.ModuleList(SemanticFusion(d, hp["fusion"], int(hp["mlp_layers"])) for _ in range(L + 1))

        # ---- backbone -----------------------------------------------------------------------
        heads, mlp_layers = int(hp["heads"]), int(hp["mlp_layers"])
        self.v2e = nn.ModuleList([PMA(in_dim if l == 0 else d, d, heads, mlp_layers) for l in range(L + 1)])
        self.e2v = nn.ModuleList([PMA(d, d, heads, mlp_layers) for _ in range(L)])
        # batch statistics in train and eval mode alike: see "Normalisation" in the module docstring
        self.bn_e = nn.ModuleList([nn.BatchNorm1d(d, track_running_stats=False) for _ in range(L)])
        self.bn_v = nn.ModuleList([nn.BatchNorm1d(d, track_running_stats=False) for _ in range(L)])
        self.pairnorm = PairNorm()
        self.classifier = MLP((L + 1) * d, int(hp["cls_hidden"]), data.n_labels,
                              num_layers=int(hp["cls_layers"]), dropout=float(hp["dropout"]), norm="ln")

    def initial_features(self) -> Tensor:
        """``X^(0)`` [V, in_dim]."""
        parts = []
        if self.use_structural:
            parts.append(self.structural)
        if self.use_concept:
            parts.append(self.concept_proj(self.concept))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def semantic_edges(self) -> tuple[Tensor, Tensor]:
        """``H [E, d]`` (zeros where masked) and mask ``m [E, 1]``."""
        h_rows = self.mlp1(self.sem_feats)
        h = h_rows.new_zeros(self.num_edges, h_rows.shape[1]).index_copy(0, self.sem_edges, h_rows)
        m = h_rows.new_zeros(self.num_edges, 1).index_fill(0, self.sem_edges, 1.0)
        return h, m

    def edge_embeddings(self) -> list[Tensor]:
        """The ``L+1`` hyperedge embeddings ``E^(l)`` [E, d] of the whole graph (jumping knowledge)."""
        inc = self.graph(self.device)
        impl, p = self.hparams["impl"], float(self.hparams["dropout"])
        x = F.dropout(self.initial_features(), float(self.hparams["input_dropout"]), self.training)
        h, m = self.semantic_edges() if self.level2 else (None, None)
        jk = []
        for l in range(len(self.e2v)):
            e = self.v2e[l](x, inc.v2e, impl)
            if self.level2:
                e = self.fusions[l](e, h, m)
            e = self.pairnorm(e)
            jk.append(e)
            e = F.dropout(F.relu(self.bn_e[l](e)), p, self.training)
            x = self.pairnorm(self.e2v[l](e, inc.e2v, impl))
            x = F.dropout(F.relu(self.bn_v[l](x)), p, self.training)
        e = self.v2e[-1](x, inc.v2e, impl)
        if self.level2:
            e = self.fusions[-1](e, h, m)
        jk.append(self.pairnorm(e))
        self.record_impl()
        return jk

    def forward(self, batch: dict) -> dict[str, Tensor]:
        idx = batch_indices(batch, self.device)
        rows = self.sample_edge[idx]
        z = torch.cat([e.index_select(0, rows) for e in self.edge_embeddings()], dim=1)   # [B, (L+1) d]
        return self.output(self.classifier(z), batch)
