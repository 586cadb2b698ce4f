"""`TaskData`: everything a model may read for one task, after splitting and featurising.

Produced by :func:`mingle_bench.features.build_task_data`; consumed by models and the trainer.
Each group of fields is one input view (``features.VIEWS``); a run builds only the views its
models need (``requires`` and ``uses``), so the fields of a view not built are ``None``.
Every fitted piece (vocabulary, DeepWalk, projections) was fitted on the train split only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import pandas as pd
import torch


#: TaskData fields whose float values are computed at run time (embeddings, DeepWalk) and can
#: differ in their last bits between machines or cache histories (:meth:`TaskData.computed_sha256`)
COMPUTED_FIELDS = ("concept_emb", "visit_note_emb", "structural")


@dataclass
class TaskData:
    task_name: str
    label_names: list[str]
    samples: pd.DataFrame                 # sample_id, patient_id, hadm_id, prediction_time, split
    labels: torch.Tensor                  # float32 [n_samples, n_labels]
    split_idx: dict[str, torch.Tensor]    # "train"/"val"/"test" -> int64 sample indices
    manifest: Any                         # mingle_bench.splits.SplitManifest
    vocab: Any                            # mingle_bench.vocab.CodeVocab (train-only)
    # set view: per sample, vocab indices of its input codes (CSR)
    sample_codes_indptr: torch.Tensor     # int64 [n_samples + 1]
    sample_codes: torch.Tensor            # int64 [nnz]
    # sequence view: per sample, its visits in time order up to and including the index visit
    seq_visit_indptr: torch.Tensor        # int64 [n_samples + 1]
    seq_visits: torch.Tensor              # int64 [n_seq_rows] visit ids
    seq_times: torch.Tensor               # float32 [n_seq_rows] days before the prediction time
    visit_codes_indptr: torch.Tensor      # int64 [n_visits + 1]
    visit_codes: torch.Tensor             # int64 [...] vocab indices per visit (task's input view)
    # hypergraph view
    graph: Any                            # mingle_bench.hypergraph.EHRHypergraph
    sample_edge: torch.Tensor             # int64 [n_samples] hyperedge of each sample's index visit
    edge_visit: torch.Tensor              # int64 [num_edges] visit id of each hyperedge, -1 for self-loops
    structural: torch.Tensor | None       # float32 [n_nodes, d_s] DeepWalk (None: view not built)
    concept_emb: torch.Tensor | None      # float32 [n_nodes, d_llm]
    visit_note_emb: torch.Tensor | None   # float32 [n_visits, d_llm], zeros where no notes
    visit_has_notes: torch.Tensor         # bool [n_visits]
    report: dict = field(default_factory=dict)
    digest: dict = field(default_factory=dict)   # part -> sha256 of the inputs (features.input_digest)
    # text view (only when built with note_texts=True; the text references ask for it): per sample,
    # the texts of its index visit's input notes (TaskSamples.input_note_ids), in the task's note
    # order (available time, note id), joined by a blank line; "" for a visit without input notes
    sample_note_texts: list[str] | None = None
    # fields of views registered outside this module (features.register_view), read as attributes
    extras: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        extras = self.__dict__.get("extras")
        if extras is not None and name in extras:
            return extras[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def computed_sha256(self, fields: Iterable[str] | None = None) -> dict[str, str]:
        """sha256 (dtype, shape and bytes) of the float inputs computed on this machine, per field
        of :data:`COMPUTED_FIELDS` that is present (of ``fields`` only, when given).

        These are the values a cell reads beyond what ``input_hash`` names: the input hash
        fixes the encoder, its settings and the texts, not the last bits of the vectors, which
        depend on the CPU and, for a batched encoder, on the texts padded into the same batch.
        The reference check compares them to say why a cell with the same inputs is not
        bit-identical. Memoised per instance.
        """
        from mingle_bench.results import array_sha256

        memo = self.__dict__.setdefault("_computed_sha256", {})
        out = {}
        for name in COMPUTED_FIELDS:
            if fields is not None and name not in fields:
                continue
            value = getattr(self, name, None)
            if not isinstance(value, torch.Tensor):
                continue
            if name not in memo:
                memo[name] = array_sha256(value.detach().cpu().contiguous().numpy())
            out[name] = memo[name]
        return out

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    @property
    def n_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_nodes(self) -> int:
        return len(self.vocab) if self.vocab is not None else int(self.structural.shape[0])

    @property
    def n_visits(self) -> int:
        return int(self.visit_codes_indptr.numel() - 1)
