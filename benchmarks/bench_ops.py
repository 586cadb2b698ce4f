"""pytest-benchmark benchmarks of the segment-attention op: fused vs reference vs torch.sparse.

Not part of the default test run (``--benchmark-skip`` in pytest.ini). Run with::

    pytest benchmarks/bench_ops.py --benchmark-enable --benchmark-only -p no:randomly
    MINGLE_BENCH_SIZE=mimic pytest benchmarks/bench_ops.py --benchmark-enable --benchmark-only

Sizes come from :data:`mingle_bench.profiling.kernel.SIZES` (default ``small``); the device from
``MINGLE_BENCH_DEVICE`` (default cpu). ``mingle-bench profile-kernel`` reports the same arms with
bandwidth figures and writes result files.
"""
from __future__ import annotations

import os

import pytest
import torch

from mingle_bench import ops
from mingle_bench.profiling.kernel import arm_fn, make_case, sync

SIZE = os.environ.get("MINGLE_BENCH_SIZE", "small")
DEVICE = os.environ.get("MINGLE_BENCH_DEVICE", "cpu")


@pytest.fixture(scope="module")
def case():
    if DEVICE == "cuda" and not torch.cuda.is_available():
        pytest.skip("MINGLE_BENCH_DEVICE=cuda but no GPU is visible")
    return make_case(SIZE, DEVICE)


@pytest.mark.parametrize("passes", ["fwd", "fwdbwd"])
@pytest.mark.parametrize("arm", ["fused", "reference", "sparse"])
def test_segment_softmax_aggregate(benchmark, case, arm, passes):
    if arm == "fused" and not ops.fused_available(DEVICE):
        pytest.skip("mingle_bench._C not built for this device")
    csr, src, dst, val = case
    fn = arm_fn(arm, passes, csr, src, dst, val, 0.2)

    def run():
        fn()
        sync(DEVICE)

    benchmark.group = f"segment_softmax_aggregate-{SIZE}-{passes}"
    benchmark.extra_info.update(size=SIZE, nnz=csr.nnz, device=DEVICE, threads=torch.get_num_threads())
    benchmark.pedantic(run, rounds=5, warmup_rounds=1)
