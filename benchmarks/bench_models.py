"""Model benchmarks (pytest-benchmark; skipped in the default test run).

Run: ``python -m pytest benchmarks/bench_models.py --benchmark-only -q``.
``MINGLE_BENCH_SIZE=mimic`` times the MIMIC-III-scale graph (37k visits, 7.4k codes, ~3.5M
incidences; the performance goal is <= 3 s per fused epoch on 2 threads); the default is
``small`` so the file also runs quickly. ``mingle-bench profile-model --size mimic --json`` prints
the same numbers as one JSON object.
"""
from __future__ import annotations

import os

import pytest
import torch

from mingle_bench import ops
from mingle_bench.zoo import get_model
from mingle_bench.profiling.models import PAPER_HPARAMS, build_profile_data, epoch_step
from mingle_bench.training import train_step

SIZE = os.environ.get("MINGLE_BENCH_SIZE", "small")
THREADS = int(os.environ.get("MINGLE_BENCH_THREADS", "2"))


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(THREADS)
    return build_profile_data(SIZE)


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("name", ["mingle", "hypehr", "hypergat"])
def test_full_graph_epoch(benchmark, data, name, impl):
    if impl == "fused" and not ops.fused_available():
        pytest.skip("fused extension not built")
    hp = PAPER_HPARAMS if name != "hypergat" else {}
    torch.manual_seed(0)
    model = get_model(name)(data, impl=impl, **hp)
    step = epoch_step(model, data)  # what `mingle-bench profile-model` times
    step()  # warm-up
    benchmark.extra_info.update({"size": SIZE, "threads": torch.get_num_threads(),
                                 "incidences": data.graph.incidence.nnz, "impl": impl})
    benchmark.pedantic(step, rounds=3, iterations=1)
    assert model.impl_used == impl


@pytest.mark.parametrize("name", ["retain", "gram", "transformer"])
def test_minibatch_epoch(benchmark, data, name):
    torch.manual_seed(0)
    model = get_model(name)(data)
    bs = int(model.hparams["batch_size"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = data.split_idx["train"]

    def epoch():
        model.train()
        for b in torch.split(train, bs):  # the trainer's step, gradient clipping included
            train_step(model, {"idx": b, "labels": data.labels[b]}, opt)

    benchmark.extra_info.update({"size": SIZE, "threads": torch.get_num_threads(), "samples": train.numel()})
    benchmark.pedantic(epoch, rounds=1, iterations=1)
