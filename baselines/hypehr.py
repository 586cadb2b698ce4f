"""HypEHR (Xu et al., 2023): the hypergraph backbone MINGLE builds on, as a baseline.

It is :class:`~mingle_bench.models.mingle.Mingle` with both semantic fusions off
(``use_concept=False``, ``use_notes=False``): DeepWalk node features, AllSetTransformer PMA
layers with PairNorm, jumping knowledge and the LayerNorm MLP classifier, no MLP1/MLP2. See
:mod:`mingle_bench.models.mingle` for the equations and defaults.
"""
from __future__ import annotations

from mingle_bench.models.mingle import Mingle
from mingle_bench.models.registry import register_model

register_model("hypehr", family="baseline", display="HypEHR", use_concept=False, use_notes=False)(Mingle)
