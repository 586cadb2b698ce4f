"""Encoder throughput benchmarks (pytest-benchmark; skipped in the default test run).

Run: ``python -m pytest benchmarks/bench_encoders.py --benchmark-only -q``.
``MINGLE_BENCH_ENCODER`` picks the encoder spec (default ``default``, the bundled MiniLM) and
``MINGLE_BENCH_THREADS`` the torch threads (default 2) and ``MINGLE_BENCH_PRECISION`` the compute
precision (``fp32``, the default, ``bf16`` or ``auto``). Each benchmark's ``extra_info`` holds
its items/s. ``mingle-bench profile-encoder [--precision fp32,bf16] --json -`` prints the same numbers
as one JSON object;
both time the workloads of :func:`mingle_bench.profiling.encoders.workloads`.

Targets on a 2-core CPU with MiniLM: >= ~250 concept names/s and >= ~20 notes/s with each note
cut to one 256-token window.
"""
from __future__ import annotations

import os

import pytest
import torch

from mingle_bench.encoders import load_encoder
from mingle_bench.profiling.encoders import clinical_notes, concept_names, workloads

SPEC = os.environ.get("MINGLE_BENCH_ENCODER", "default")
THREADS = int(os.environ.get("MINGLE_BENCH_THREADS", "2"))
PRECISION = os.environ.get("MINGLE_BENCH_PRECISION", "fp32")
N_NAMES, N_NOTES = 512, 48


@pytest.fixture(scope="module")
def encoder():
    torch.set_num_threads(THREADS)
    return load_encoder(SPEC, precision=PRECISION)


@pytest.fixture(scope="module")
def work(encoder):
    # notes of 200 words: ~350 tokens each, cut to the 256-token window by notes_window
    return workloads(encoder, concept_names(N_NAMES), clinical_notes(N_NOTES, words=200))


def _rate(benchmark, n: int, unit: str) -> None:
    benchmark.extra_info[f"{unit}_per_s"] = round(n / benchmark.stats.stats.median, 1)


def test_concept_names_per_second(benchmark, encoder, work):
    out = benchmark.pedantic(work["names"], rounds=3, warmup_rounds=1)
    assert out.shape == (N_NAMES, encoder.dim)
    _rate(benchmark, N_NAMES, "names")


def test_notes_one_window_per_second(benchmark, encoder, work):
    out = benchmark.pedantic(work["notes_window"], rounds=3, warmup_rounds=1)
    assert out.shape == (N_NOTES, encoder.dim)
    _rate(benchmark, N_NOTES, "notes")


def test_notes_chunked_per_second(benchmark, work):
    emb, has, report = benchmark.pedantic(work["notes_chunked"], rounds=3, warmup_rounds=1)
    assert bool(has.all()) and report["tokens_embedded"] == report["tokens_total"]
    _rate(benchmark, N_NOTES, "notes")
    benchmark.extra_info["chunks"] = report["chunks_embedded"]
