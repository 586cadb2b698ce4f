r"""RETAIN (Choi et al., NeurIPS 2016): reverse-time attention over the visit sequence.

For a sample with visits ``x_1..x_T`` (multi-hot code vectors; ``T`` = the index visit):

.. math::
    v_j &= W_{emb} x_j \\
    g_T..g_1 &= \mathrm{GRU}_\alpha([v_T;\tau_T] .. [v_1;\tau_1]),\quad
    e_j = w_\alpha^\top g_j + b_\alpha,\quad \alpha = \mathrm{softmax}(e_1..e_T) \\
    h_T..h_1 &= \mathrm{GRU}_\beta([v_T;\tau_T] .. [v_1;\tau_1]),\quad
    \beta_j = \tanh(W_\beta h_j + b_\beta) \\
    c &= \textstyle\sum_j \alpha_j\, \beta_j \odot v_j,\qquad \hat y = W c + b

with :math:`\tau_j = \log(1 + \text{days before the prediction time})` (the official code's
``useLogTime``). Both GRUs read the sequence in reverse time (most recent visit first).
Shapes: visits ``[B, T]`` -> ``v [B, T, d]`` -> ``α [B, T]``, ``β [B, T, d]`` -> logits ``[B, n_labels]``.

Defaults from the official ``retain.py`` (mp2893/retain): embedding 128, α/β GRU hidden 128,
batch 100, dropout 0.5 on the embedding and the context (keep probability 0.5), L2 1e-3.
Deviations: Adam (lr 1e-3) instead of Adadelta, so one optimiser serves every model; the L2 is
Adam weight decay on all weights rather than on the four named matrices.

``retain-index`` (family ``baseline``, "RETAIN (index visit only)") is the same model on the index
visit alone, as the hypergraph models see it: ``T = 1``, :math:`\tau_T = 0`, so
:math:`\alpha_T = 1` and :math:`c = \beta_T \odot v_T` with :math:`h_T = \mathrm{GRU}_\beta` one step
from a zero state. The parameters a one-visit sequence never reaches (the α GRU and
:math:`w_\alpha`, and the β GRU's hidden-to-hidden weights) are frozen, so ``n_params`` counts
what trains.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mingle_bench.baselines.sequence import bag_embed, index_only, reverse_padded, visit_sequences
from mingle_bench.models.base import EHRModel, batch_indices, choice, uniform
from mingle_bench.models.registry import register_model

WIDTHS = choice(64, 128, 256)


@register_model("retain", family="baseline", display="RETAIN")
class Retain(EHRModel):
    reads_history: ClassVar[bool] = True   # the visits before the index visit (unless history=False)
    # EHRModel's trainer defaults are the original's (lr 1e-3, L2 1e-3, batch 100)
    tiny_hparams: dict[str, Any] = {"emb_dim": 16, "alpha_hidden": 16, "beta_hidden": 16}  # tests
    default_hparams: dict[str, Any] = {
        "emb_dim": 128, "alpha_hidden": 128, "beta_hidden": 128,
        "dropout_emb": 0.5, "dropout_context": 0.5, "use_time": True,
    }
    search_ranges = {"emb_dim": WIDTHS, "alpha_hidden": WIDTHS, "beta_hidden": WIDTHS,
                     "dropout_emb": uniform(0.0, 0.6), "dropout_context": uniform(0.0, 0.6)}

    def __init__(self, data, **hparams: Any) -> None:
        super().__init__(data, **hparams)
        hp = self.hparams
        d = int(hp["emb_dim"])
        for name in ("seq_visit_indptr", "seq_visits", "seq_times", "visit_codes_indptr", "visit_codes"):
            self.register_buffer(name, getattr(data, name), persistent=False)
        self.emb = nn.Parameter(torch.empty(data.n_nodes, d))
        nn.init.normal_(self.emb, std=d ** -0.5)
        in_dim = d + (1 if hp["use_time"] else 0)
        self.gru_alpha = nn.GRU(in_dim, int(hp["alpha_hidden"]), batch_first=True)
        self.gru_beta = nn.GRU(in_dim, int(hp["beta_hidden"]), batch_first=True)
        self.w_alpha = nn.Linear(int(hp["alpha_hidden"]), 1)
        self.w_beta = nn.Linear(int(hp["beta_hidden"]), d)
        self.out = nn.Linear(d, data.n_labels)
        self.history = bool(hp.get("history", True))
        if not self.history:  # α = softmax over one visit = 1, and one GRU step from h = 0 never reads W_hh
            for p in [*self.gru_alpha.parameters(), *self.w_alpha.parameters(), self.gru_beta.weight_hh_l0]:
                p.requires_grad_(False)

    def attention(self, idx: Tensor) -> dict[str, Tensor]:
        """α ``[B, T]`` (0 on padding, sums to 1 over each sample's visits), β ``[B, T, d]``,
        visit embeddings ``v [B, T, d]`` and the mask, all in time order (last = index visit)."""
        visits, times, mask, lengths = visit_sequences(self.seq_visit_indptr, self.seq_visits, self.seq_times, idx,
                                                       self.history)
        v_flat = bag_embed(self.emb, self.visit_codes_indptr, self.visit_codes, visits[mask])
        v = v_flat.new_zeros(*visits.shape, v_flat.shape[1])
        v[mask] = v_flat
        v = F.dropout(v, float(self.hparams["dropout_emb"]), self.training)
        x = v
        if self.hparams["use_time"]:
            x = torch.cat([v, torch.log1p(times.clamp_min(0)).unsqueeze(-1)], dim=-1)
        x_rev = reverse_padded(x, lengths)
        lengths_cpu = lengths.cpu()
        g = self._run(self.gru_alpha, x_rev, lengths_cpu)
        h = self._run(self.gru_beta, x_rev, lengths_cpu)
        e = self.w_alpha(g).squeeze(-1).masked_fill(~mask, float("-inf"))
        alpha_rev = torch.softmax(e, dim=1)
        beta_rev = torch.tanh(self.w_beta(h))
        alpha = reverse_padded(alpha_rev.unsqueeze(-1), lengths).squeeze(-1).masked_fill(~mask, 0.0)
        beta = reverse_padded(beta_rev, lengths)
        return {"alpha": alpha, "beta": beta, "v": v, "mask": mask}

    @staticmethod
    def _run(gru: nn.GRU, x: Tensor, lengths_cpu: Tensor) -> Tensor:
        packed = pack_padded_sequence(x, lengths_cpu, batch_first=True, enforce_sorted=False)
        out, _ = gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out

    def forward(self, batch: dict) -> dict[str, Tensor]:
        idx = batch_indices(batch, self.device)
        att = self.attention(idx)
        c = (att["alpha"].unsqueeze(-1) * att["beta"] * att["v"]).sum(1)
        c = F.dropout(c, float(self.hparams["dropout_context"]), self.training)
        return self.output(self.out(c), batch)


register_model("retain-index", family="baseline", display="RETAIN (index visit only)", history=False)(index_only(Retain))
