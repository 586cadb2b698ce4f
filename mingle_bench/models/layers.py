"""Shared layers: MLP, PairNorm, the AllSetTransformer PMA block and HyperGAT's dual attention.

Notation (PyG style): ``N`` sources, ``S`` segments, ``H`` heads, ``d`` hidden width,
``d_h = d / H``. A *direction* is a :class:`mingle_bench.incidence.CSR`: for V→E the segments
are hyperedges and the sources nodes; for E→V the reverse. All attention aggregation goes
through :func:`mingle_bench.ops.segment_softmax_aggregate` (fused C++/CUDA op or its pure-PyTorch
reference), via ``CSR.softmax_aggregate`` so the cached transpose is reused and nothing is
rebuilt per layer.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLP(nn.Module):
    r"""Multi-layer perceptron.

    .. math:: h_{k+1} = \mathrm{Dropout}(\mathrm{ReLU}(\mathrm{Norm}(W_k h_k + b_k))),\quad
              \mathrm{out} = W_K h_K + b_K

    ``num_layers`` linear layers (1 = a single Linear). ``norm`` is ``"none"``, ``"ln"``
    (LayerNorm, as in HypEHR's classifier) or ``"bn"``. Shapes: ``[*, in_dim] -> [*, out_dim]``.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int = 2,
                 dropout: float = 0.0, norm: str = "none") -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLP num_layers must be >= 1, got {num_layers}")
        if norm not in ("none", "ln", "bn"):
            raise ValueError(f"MLP norm must be none|ln|bn, got {norm!r}")
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        make = {"none": lambda d: nn.Identity(), "ln": nn.LayerNorm, "bn": nn.BatchNorm1d}[norm]
        self.norms = nn.ModuleList(make(d) for d in dims[1:-1])
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        for lin, norm in zip(self.linears[:-1], self.norms):
            x = F.dropout(F.relu(norm(lin(x))), self.dropout, self.training)
        return self.linears[-1](x)


class PairNorm(nn.Module):
    r"""PairNorm (Zhao & Akoglu 2020), the "PN" mode with scale 1 used by HypEHR/AllSet.

    .. math:: \tilde x_i = x_i - \frac1n\sum_j x_j,\qquad
              x_i' = s\,\tilde x_i \Big/ \sqrt{\epsilon + \frac1n\sum_j \lVert\tilde x_j\rVert^2}

    Shapes: ``[n, d] -> [n, d]``. No parameters.
    """

    def __init__(self, scale: float = 1.0, eps: float = 1e-5) -> None:
        super().__init__()
        self.scale, self.eps = scale, eps

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] == 0:
            return x
        x = x - x.mean(dim=0, keepdim=True)
        return self.scale * x / (self.eps + x.pow(2).sum(dim=1).mean()).sqrt()


class PMA(nn.Module):
    r"""AllSetTransformer set pooling by multihead attention with a learned seed (HypEHR).

    For a segment ``s`` (a hyperedge's nodes for V→E, a node's hyperedges for E→V) with
    members ``j`` and head ``h`` with seed :math:`\theta_h \in \mathbb{R}^{d_h}`:

    .. math::
        \alpha_{sj}^h &= \mathrm{softmax}_{j\in s}\ \mathrm{LeakyReLU}_{0.2}
                         \big(\langle W_K^h x_j,\ \theta_h\rangle\big) \\
        o_s &= \big\Vert_{h=1}^{H} \textstyle\sum_{j\in s} \alpha_{sj}^h\, W_V^h x_j \\
        Y_s &= \mathrm{LN}_0(\theta + o_s),\qquad
        \mathrm{out}_s = \mathrm{LN}_1\big(Y_s + \mathrm{ReLU}(\mathrm{rFF}(Y_s))\big)

    As in the released AllSet/CACHE code: GAT-style scores (no :math:`1/\sqrt{d}`), no output
    projection :math:`W_O`, and rFF an MLP of ``mlp_layers`` layers without norm or dropout.
    The score depends only on the member (the query is the seed), so it is computed once per
    source row (``[N, H]``) and the op does the per-incidence softmax and weighted sum without
    materialising ``[nnz, H, d_h]`` (fused impl). An empty segment pools to zeros.

    Shapes: ``x [N, in_dim]`` -> ``[S, hidden]``.
    """

    def __init__(self, in_dim: int, hidden: int, heads: int, mlp_layers: int = 2,
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.heads, self.dh, self.negative_slope = heads, hidden // heads, negative_slope
        self.w_k = nn.Linear(in_dim, hidden)
        self.w_v = nn.Linear(in_dim, hidden)
        self.seed = nn.Parameter(torch.empty(heads, self.dh))
        nn.init.xavier_uniform_(self.seed)
        self.ln0 = nn.LayerNorm(hidden)
        self.ln1 = nn.LayerNorm(hidden)
        self.rff = MLP(hidden, hidden, hidden, num_layers=mlp_layers)

    def forward(self, x: Tensor, csr, impl: str = "auto") -> Tensor:
        n = x.shape[0]
        # <W_K x + b, θ_h> = x · (W_K^h)^T θ_h + <b^h, θ_h>: fold the seed into a [H, in_dim]
        # weight so the [N, H, d_h] keys are never materialised
        w = self.w_k.weight.view(self.heads, self.dh, -1)
        w_eff = (w * self.seed.unsqueeze(-1)).sum(1)                            # [H, in_dim]
        b_eff = (self.w_k.bias.view(self.heads, self.dh) * self.seed).sum(-1)   # [H]
        scores = F.linear(x, w_eff, b_eff)                                      # [N, H]
        values = self.w_v(x).view(n, self.heads, self.dh)                  # [N, H, d_h]
        pooled = csr.softmax_aggregate(scores, values, None, self.negative_slope, impl)  # [S, H, d_h]
        y = self.ln0(pooled.reshape(pooled.shape[0], -1) + self.seed.reshape(1, -1))
        return self.ln1(y + F.relu(self.rff(y)))


class HyperGATEdgeAttention(nn.Module):
    r"""HyperGAT's node → hyperedge attention with a learned context vector :math:`c`.

    .. math:: \alpha_{jk} = \mathrm{softmax}_{k\in e_j}\ \mathrm{LeakyReLU}
                  \big(a_1^\top [\,c\ ;\ W_2 h_k\,]\big),\qquad
              f_j = \textstyle\sum_{k\in e_j}\alpha_{jk}\, W_1 h_k

    :math:`a_1^\top[c; u]` splits into a per-segment constant (passed as ``dst_logits``) and a
    per-source logit, so this is one :func:`segment_softmax_aggregate` call. Attention dropout
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
        return v2e.softmax_aggregate(src, self.w1(h).unsqueeze(1), ctx, self.negative_slope, impl).squeeze(1)


class HyperGATLayer(nn.Module):
    r"""One HyperGAT layer (Ding et al. 2020): dual node-level and edge-level attention.

    Node → hyperedge (:class:`HyperGATEdgeAttention`):
    :math:`f_j = \sigma\big(\sum_{k\in e_j}\alpha_{jk} W_1 h_k\big)`.

    Hyperedge → node, GAT-style with target and source terms:

    .. math:: \beta_{ij} = \mathrm{softmax}_{j\ni i}\ \mathrm{LeakyReLU}
                  \big(a_2^\top [\,W_2 h_i\ ;\ W_3 f_j\,]\big),\qquad
              h_i' = \sigma\Big(\textstyle\sum_{j\ni i}\beta_{ij}\, W_3 f_j\Big)

    :math:`a_2^\top[u;v]` splits into a target logit (``dst_logits``, per node) and a source
    logit (per hyperedge), so the step is one :func:`segment_softmax_aggregate` call.
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
        out = e2v.softmax_aggregate(src, f3.unsqueeze(1), dst, self.negative_slope, impl).squeeze(1)
        return self._act(out), f


class DeviceGraph:
    """Holds an :class:`~mingle_bench.incidence.Incidence` and hands out a copy per device.

    ``nn.Module.to`` does not move plain attributes; models call ``graph(device)`` in forward
    and the move happens once per device. An incidence whose CSR is not marked validated is
    validated once here (``CSR.from_csr(validate=True)``), so the op skips its per-call index
    checks on every layer.
    """

    def __init__(self, incidence) -> None:
        if not (incidence.v2e.validated and incidence.e2v.validated):
            from mingle_bench.incidence import CSR, Incidence

            v2e = CSR.from_csr(incidence.v2e.indptr, incidence.v2e.indices, incidence.num_nodes, validate=True)
            incidence = Incidence(incidence.num_nodes, incidence.num_edges, v2e, v2e.transpose(),
                                  incidence.num_duplicates)
        self._by_device = {str(incidence.v2e.indptr.device): incidence}

    def __call__(self, device: torch.device):
        key = str(device)
        if key not in self._by_device:
            self._by_device[key] = next(iter(self._by_device.values())).to(device)
        return self._by_device[key]
