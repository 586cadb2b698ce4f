"""A seeded random :class:`~mingle_bench.taskdata.TaskData` for model tests and profiling.

Models read only ``TaskData``; this factory builds one directly, with a real
:class:`~mingle_bench.incidence.Incidence` (visits + one self-loop hyperedge per node), a sequence
view for RETAIN/GRAM, a set view, random stand-ins for DeepWalk / concept / note embeddings, and
labels that depend on the index visit's codes (and notes), so a model can learn them.

It is a test fixture, not data: nothing here resembles a real cohort beyond its shapes. Its
task name, sample ids (``toy-<i>``) and report source are ``toy``.
``mingle-bench profile-model`` uses it at MIMIC-III scale (37k visits, 7.4k codes, ~94 codes per
visit) because timing does not depend on feature values.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from mingle_bench.incidence import Incidence
from mingle_bench.taskdata import TaskData

# Real ICD-9-CM diagnosis codes (so GRAM's ontology lookups exercise the real hierarchy),
# then procedure and drug codes of the shapes the cohort uses.
_DX = ["4019", "4280", "42731", "41401", "5849", "25000", "2724", "51881", "5990", "53081",
       "2720", "V053", "2859", "2449", "486", "2851", "2762", "496", "99592", "0389"]
_PX = ["3893", "9604", "966", "9671", "3961", "8856", "9904", "3891", "9672", "331"]


@dataclass
class RandomVocab:
    """Minimal code vocabulary: ``codes[i]`` is the ``code_id`` of node ``i``."""

    codes: list[str]
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {c: i for i, c in enumerate(self.codes)}

    def __len__(self) -> int:
        return len(self.codes)


@dataclass
class RandomHypergraph:
    """The attributes of ``mingle_bench.hypergraph.EHRHypergraph`` that models read."""

    num_nodes: int
    num_edges: int
    is_self_loop: torch.Tensor
    edge_visit: torch.Tensor
    incidence: Incidence


def _random_codes(n_nodes: int) -> list[str]:
    codes = []
    for i in range(n_nodes):
        kind = i % 3
        if kind == 0:
            base = _DX[(i // 3) % len(_DX)]
            codes.append(f"dx9:{base}" if i // 3 < len(_DX) else f"dx9:{base}#{i}")
        elif kind == 1:
            codes.append(f"rx:drug{i}")
        else:
            base = _PX[(i // 3) % len(_PX)]
            codes.append(f"px9:{base}" if i // 3 < len(_PX) else f"px9:{base}#{i}")
    return codes


def make_random_task_data(
    n_samples: int = 60,
    n_labels: int = 1,
    n_nodes: int = 30,
    codes_per_visit: float = 5.0,
    max_visits: int = 3,
    d_struct: int = 16,
    d_llm: int = 24,
    with_concepts: bool = True,
    with_notes: bool = True,
    note_fraction: float = 0.7,
    seed: int = 0,
) -> TaskData:
    """Build a seeded random ``TaskData``.

    Each of ``n_samples`` patients has 1..``max_visits`` visits (the last is the index visit
    and the sample); each visit holds ~Poisson(``codes_per_visit``) distinct codes drawn from a
    Zipf-like distribution over ``n_nodes`` codes. Hyperedges ``0..n_visits-1`` are the visits,
    followed by one self-loop hyperedge per node. Labels: per label a random linear score of
    the index visit's codes (plus its note embedding when present), thresholded at its 60th
    percentile. Splits 60/20/20 by a seeded permutation. ``with_concepts`` / ``with_notes``
    False give ``concept_emb`` / ``visit_note_emb`` (and ``sample_note_texts``) = ``None``; with
    notes, ``sample_note_texts`` holds a stand-in text per sample (:func:`_random_note_texts`).
    """
    if n_samples < 5 or n_nodes < 2 or n_labels < 1:
        raise ValueError("make_random_task_data needs n_samples >= 5, n_nodes >= 2, n_labels >= 1")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)

    n_vis_pp = rng.integers(1, max_visits + 1, size=n_samples) if max_visits > 1 else np.ones(n_samples, np.int64)
    n_visits = int(n_vis_pp.sum())
    index_visit = np.cumsum(n_vis_pp) - 1

    # codes per visit (distinct), Zipf-like popularity
    sizes = np.maximum(1, rng.poisson(codes_per_visit, size=n_visits))
    popularity = 1.0 / np.arange(1, n_nodes + 1) ** 0.8
    popularity = popularity[rng.permutation(n_nodes)]
    popularity /= popularity.sum()
    draws = rng.choice(n_nodes, size=int(sizes.sum()), p=popularity)
    visit_of = np.repeat(np.arange(n_visits), sizes)
    key = np.unique(visit_of.astype(np.int64) * n_nodes + draws)
    pair_visit, pair_node = key // n_nodes, key % n_nodes
    visit_codes_indptr = np.searchsorted(pair_visit, np.arange(n_visits + 1))

    # hypergraph: visits then self-loops
    n_edges = n_visits + n_nodes
    node_idx = np.concatenate([pair_node, np.arange(n_nodes)])
    edge_idx = np.concatenate([pair_visit, n_visits + np.arange(n_nodes)])
    inc = Incidence.from_pairs(torch.from_numpy(node_idx), torch.from_numpy(edge_idx), n_nodes, n_edges)
    is_loop = torch.zeros(n_edges, dtype=torch.bool)
    is_loop[n_visits:] = True
    edge_visit = torch.cat([torch.arange(n_visits), torch.full((n_nodes,), -1)]).to(torch.int64)
    graph = RandomHypergraph(n_nodes, n_edges, is_loop, edge_visit, inc)

    # features
    structural = torch.randn(n_nodes, d_struct, generator=gen) * 0.5
    concept = torch.nn.functional.normalize(torch.randn(n_nodes, d_llm, generator=gen), dim=1) if with_concepts else None
    has_notes = torch.from_numpy(rng.random(n_visits) < note_fraction) if with_notes else torch.zeros(n_visits, dtype=torch.bool)
    note = None
    if with_notes:
        note = torch.nn.functional.normalize(torch.randn(n_visits, d_llm, generator=gen), dim=1)
        note[~has_notes] = 0.0

    # labels from the index visit's codes (+ notes)
    w = torch.randn(n_nodes, n_labels, generator=gen)
    visit_score = torch.zeros(n_visits, n_labels).index_add_(0, torch.from_numpy(pair_visit), w[torch.from_numpy(pair_node)])
    visit_score /= torch.from_numpy(np.maximum(1, np.diff(visit_codes_indptr))).float().sqrt().unsqueeze(1)
    if note is not None:
        visit_score += note @ torch.randn(d_llm, n_labels, generator=gen) * 2.0
    score = visit_score[torch.from_numpy(index_visit)]
    thresh = torch.quantile(score, 0.6, dim=0, keepdim=True)
    labels = (score > thresh).to(torch.float32)

    # views
    idx_t = torch.from_numpy(index_visit).to(torch.int64)
    starts = torch.from_numpy(visit_codes_indptr[index_visit]).to(torch.int64)
    counts = torch.from_numpy(np.diff(visit_codes_indptr)[index_visit]).to(torch.int64)
    sample_codes_indptr = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    sample_codes = torch.from_numpy(pair_node)[
        torch.repeat_interleave(starts, counts) + torch.arange(int(counts.sum())) - torch.repeat_interleave(sample_codes_indptr[:-1], counts)
    ]
    seq_visit_indptr = torch.from_numpy(np.concatenate([[0], np.cumsum(n_vis_pp)])).to(torch.int64)
    seq_visits = torch.arange(n_visits, dtype=torch.int64)   # patients' visits are contiguous, in time order
    pos_from_end = torch.from_numpy(np.concatenate([np.arange(k - 1, -1, -1) for k in n_vis_pp])).float()
    seq_times = pos_from_end * 90.0

    perm = torch.randperm(n_samples, generator=gen)
    n_tr, n_va = int(0.6 * n_samples), int(0.2 * n_samples)
    split_idx = {"train": perm[:n_tr].sort().values, "val": perm[n_tr:n_tr + n_va].sort().values,
                 "test": perm[n_tr + n_va:].sort().values}
    split = np.empty(n_samples, dtype=object)
    for name, ix in split_idx.items():
        split[ix.numpy()] = name
    samples = pd.DataFrame({
        "sample_id": [f"toy-{i}" for i in range(n_samples)],
        "patient_id": np.arange(n_samples, dtype=np.int64),
        "hadm_id": index_visit.astype(np.int64),
        "prediction_time": pd.Timestamp("2100-01-01") + pd.to_timedelta(np.arange(n_samples), unit="D"),
        "split": split,
    })
    texts = _random_note_texts(index_visit, visit_codes_indptr, pair_node, has_notes.numpy(), seed) if with_notes else None
    return TaskData(
        task_name="toy", label_names=[f"label{i}" for i in range(n_labels)], samples=samples,
        labels=labels, split_idx=split_idx, manifest=None, vocab=RandomVocab(_random_codes(n_nodes)),
        sample_codes_indptr=sample_codes_indptr, sample_codes=sample_codes,
        seq_visit_indptr=seq_visit_indptr, seq_visits=seq_visits, seq_times=seq_times,
        visit_codes_indptr=torch.from_numpy(visit_codes_indptr).to(torch.int64),
        visit_codes=torch.from_numpy(pair_node).to(torch.int64),
        graph=graph, sample_edge=idx_t.clone(), edge_visit=edge_visit, structural=structural,
        concept_emb=concept, visit_note_emb=note, visit_has_notes=has_notes,
        report={"source": "toy", "seed": seed}, sample_note_texts=texts,
    )


_FILLER = ["patient", "stable", "resting", "comfortable", "afebrile", "ambulating", "lactate", "4.2", "family",
           "updated", "plan", "continue"]


def _random_note_texts(index_visit: np.ndarray, indptr: np.ndarray, codes: np.ndarray, has_notes: np.ndarray,
                       seed: int) -> list[str]:
    """Per sample, a stand-in note text of its index visit (``""`` where the visit has no notes):
    one word per code of the visit (``codeN``; the labels depend on the codes, so a text model can
    learn them) among seeded filler words. Drawn from a generator of its own, so the other fields
    are the same as without texts."""
    rng = np.random.default_rng([seed, 17])
    out = []
    for v in index_visit.tolist():
        filler = rng.choice(_FILLER, size=3).tolist()
        if not has_notes[v]:
            out.append("")
            continue
        words = [f"code{c}" for c in codes[indptr[v]:indptr[v + 1]].tolist()]
        out.append(" ".join(filler[:2] + words + filler[2:]))
    return out
