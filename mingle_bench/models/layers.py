"""Layers of MINGLE, some shared with the baselines: MLP, PairNorm, the AllSetTransformer PMA
block, and :class:`DeviceGraph` (the incidence per device, for every full-graph model).

Notation (PyG style): ``N`` sources, ``S`` segments, ``H`` heads, ``d`` hidden width,
``d_h = d / H``. A *direction* is a :class:`mingle_bench.csr.CSR`: for V→E the segments
are hyperedges and the sources nodes; for E→V the reverse. All attention aggregation goes
through :func:`mingle_bench.ops.softmax_aggregate` (fused C++/CUDA op or its pure-PyTorch
reference) over one direction, so the cached transpose is reused and nothing is rebuilt per
layer. Layers used only by a baseline live with it in ``baselines/`` (HyperGAT's dual
attention in ``baselines/hypergat.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mingle_bench import ops
from mingle_bench.csr import CSR
from mingle_bench.incidence import Incidence


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
        pooled = ops.softmax_aggregate(csr, scores, values, None, self.negative_slope, impl)  # [S, H, d_h]
        y = self.ln0(pooled.reshape(pooled.shape[0], -1) + self.seed.reshape(1, -1))
        return self.ln1(y + F.relu(self.rff(y)))


class DeviceGraph:
    """Holds an :class:`~mingle_bench.incidence.Incidence` and hands out a copy per device.

    ``nn.Module.to`` does not move plain attributes; models call ``graph(device)`` in forward
    and the move happens once per device. An incidence whose CSR is not marked validated is
    validated once here (``CSR.from_csr(validate=True)``), so the op skips its per-call index
    checks on every layer.
    """

    def __init__(self, incidence) -> None:
        if not (incidence.v2e.validated and incidence.e2v.validated):
            v2e = CSR.from_csr(incidence.v2e.indptr, incidence.v2e.indices, incidence.num_nodes, validate=True)
            incidence = Incidence(incidence.num_nodes, incidence.num_edges, v2e, v2e.transpose(),
                                  incidence.num_duplicates)
        self._by_device = {str(incidence.v2e.indptr.device): incidence}

    def __call__(self, device: torch.device):
        key = str(device)
        if key not in self._by_device:
            self._by_device[key] = next(iter(self._by_device.values())).to(device)
        return self._by_device[key]
