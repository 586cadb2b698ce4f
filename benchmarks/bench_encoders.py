"""Encoder throughput benchmarks (pytest-benchmark; skipped in the default test run).

Run: ``python -m pytest benchmarks/bench_encoders.py --benchmark-only -q``.
``MINGLE_BENCH_ENCODER`` picks the encoder spec (default ``default``, the bundled MiniLM) and
``MINGLE_BENCH_THREADS`` the torch threads (default 2). Each benchmark's ``extra_info`` holds
its items/s. ``mingle-bench profile-encoder --json -`` prints the same numbers as one JSON object.

Targets on a 2-core CPU with MiniLM: >= ~250 concept names/s and >= ~20 notes/s with each note
cut to one 256-token window.
"""
from __future__ import annotations

import os

import pytest
import torch

from mingle_bench.encoders import embed_texts, embed_visit_notes, load_encoder
from mingle_bench.profiling.encoders import clinical_notes, concept_names

SPEC = os.environ.get("MINGLE_BENCH_ENCODER", "default")
THREADS = int(os.environ.get("MINGLE_BENCH_THREADS", "2"))
N_NAMES, N_NOTES = 512, 48


@pytest.fixture(scope="module")
def encoder():
    torch.set_num_threads(THREADS)
    return load_encoder(SPEC)


def _rate(benchmark, n: int, unit: str) -> None:
    benchmark.extra_info[f"{unit}_per_s"] = round(n / benchmark.stats.stats.median, 1)


def test_concept_names_per_second(benchmark, encoder):
    names = concept_names(N_NAMES)
    out = benchmark.pedantic(embed_texts, args=(encoder, names), kwargs={"progress": False},
                             rounds=3, warmup_rounds=1)
    assert out.shape == (N_NAMES, encoder.dim)
    _rate(benchmark, N_NAMES, "names")


def test_notes_one_window_per_second(benchmark, encoder):
    notes = clinical_notes(N_NOTES, words=200)  # ~350 tokens each, cut to the 256-token window
    out = benchmark.pedantic(embed_texts, args=(encoder, notes), kwargs={"progress": False},
                             rounds=3, warmup_rounds=1)
    assert out.shape == (N_NOTES, encoder.dim)
    _rate(benchmark, N_NOTES, "notes")


def test_notes_chunked_per_second(benchmark, encoder):
    notes = dict(enumerate(clinical_notes(N_NOTES, words=200)))
    visits = [[i] for i in notes]

    def run():
        return embed_visit_notes(encoder, visits, lambda ids: {i: notes[i] for i in ids}, progress=False)

    emb, has, report = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    assert bool(has.all()) and report["tokens_embedded"] == report["tokens_total"]
    _rate(benchmark, N_NOTES, "notes")
    benchmark.extra_info["chunks"] = report["chunks_embedded"]
