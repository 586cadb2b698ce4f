"""mingle_bench.csr: the bottom module (imports nothing of the package), its helpers and the
ops over one CSR (ops.softmax_aggregate / ops.aggregate)."""
from __future__ import annotations

import ast
import pathlib

import pytest
import torch

from mingle_bench import ops
from mingle_bench.csr import CSR, check_csr_data, check_index_tensor, segment_ids, transpose_csr

PKG = pathlib.Path(__file__).resolve().parent.parent / "mingle_bench"


def _package_imports(module: str) -> set[str]:
    """Every mingle_bench module a file imports, at any depth (lazy imports count)."""
    tree = ast.parse((PKG / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mingle_bench"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mingle_bench")}
    return found


def test_layering():
    assert _package_imports("csr") == set()
    assert not hasattr(CSR, "softmax_aggregate") and not hasattr(CSR, "aggregate")  # the op lives in ops
    for a, b in (("ops", "incidence"), ("incidence", "ops"), ("ops_reference", "ops"),
                 ("ops_reference", "incidence")):
        assert not any(m == f"mingle_bench.{b}" or m.startswith(f"mingle_bench.{b}.") for m in _package_imports(a)), (a, b)


def test_segment_ids_and_transpose():
    indptr = torch.tensor([0, 2, 2, 5])
    indices = torch.tensor([1, 0, 2, 1, 1])
    assert segment_ids(indptr, 5).tolist() == [0, 0, 2, 2, 2]
    ti, tx, tp = transpose_csr(indptr, indices, 3)
    assert ti.tolist() == [0, 1, 4, 5] and tp.tolist() == [1, 0, 3, 4, 2] and tx.tolist() == [0, 0, 2, 2, 2]
    csr = CSR.from_csr(indptr, indices, 3)
    assert csr.validated and csr.segment_ids.tolist() == [0, 0, 2, 2, 2]


def test_validators_name_argument_and_position():
    with pytest.raises(ValueError, match="indptr: expected dtype torch.int64"):
        check_index_tensor(torch.tensor([0.0]), "indptr")
    with pytest.raises(TypeError, match="indices: expected a torch.Tensor"):
        check_index_tensor([0], "indices")
    with pytest.raises(ValueError, match=r"indptr: not monotone at position 2 \(3 > 1\)"):
        check_csr_data(torch.tensor([0, 3, 1, 3]), torch.tensor([0, 0, 0]), 1)
    with pytest.raises(ValueError, match=r"indices: value 7 at position 1 is outside \[0, 2\)"):
        check_csr_data(torch.tensor([0, 2]), torch.tensor([0, 7]), 2)
    with pytest.raises(ValueError, match="indices: value 7"):
        CSR.from_csr(torch.tensor([0, 2]), torch.tensor([0, 7]), 2)


@pytest.mark.parametrize("impl", ["reference", pytest.param("fused", marks=pytest.mark.skipif(
    not ops.fused_available(), reason="mingle_bench._C not built"))])
def test_ops_over_csr_match_the_segment_ops(impl):
    g = torch.Generator().manual_seed(0)
    indptr, indices = torch.tensor([0, 2, 2, 5]), torch.tensor([1, 0, 2, 1, 3])
    csr = CSR.from_csr(indptr, indices, 4)
    src, val, dst = torch.randn(4, 2, generator=g), torch.randn(4, 2, 3, generator=g), torch.randn(3, 2, generator=g)
    a = ops.softmax_aggregate(csr, src, val, dst, 0.2, impl)
    b = ops.segment_softmax_aggregate(src, val, indptr, indices, dst, 0.2, impl)
    assert torch.equal(a, b) and a.shape == (3, 2, 3)
    w = torch.rand(5, generator=g)
    for reduce in ("sum", "mean", "max"):
        a = ops.aggregate(csr, val[:, 0], w, reduce, impl)
        assert torch.equal(a, ops.segment_aggregate(val[:, 0], indptr, indices, w, reduce, impl))
