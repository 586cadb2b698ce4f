"""The features stage: Cohort + Task -> :class:`~mingle_bench.taskdata.TaskData`.

:func:`build_task_data` runs, in order:

1. ``task.build(cohort)``: samples, labels and per-admission inputs (time-filtered codes and
   notes, never discharge summaries; see :mod:`mingle_bench.tasks.base`).
2. :func:`~mingle_bench.splits.split_patients`: patient-level 7:1:2 split of the sample
   patients, seeded; disjointness asserted. ``split="meds"`` uses the cohort's own MEDS subject
   splits instead (train -> train, tuning -> val, held_out -> test): sample patients without a
   MEDS split are dropped from the samples (counted in the task report's ``excluded`` and in
   the features report's ``split``, and printed once).
3. The *visit table*: the admissions the models see, in visit order (patient, time, ``hadm_id``).
   ``graph_scope="all"``: every admission of the cohort; ``"samples"``: the sample admissions
   and their history admissions (the sequence view needs them). Each visit carries the task's
   input view of that admission.
4. :class:`~mingle_bench.vocab.CodeVocab` fitted on the visits of *train* patients only;
   codes of other visits that the train visits never showed are dropped and counted per split.
5. Input views, one builder each, registered in :data:`VIEWS` (:func:`register_view`; a plugin
   adds its own): ``set`` (codes of each sample's index visit), ``sequence`` (history visits up to
   the index visit, with days before the prediction time) and ``hypergraph``
   (:class:`~mingle_bench.hypergraph.EHRHypergraph`: visit hyperedges per ``graph_scope``, then
   one self-loop per node) are built always (cheap; the input digest hashes the hypergraph);
   ``structural`` (DeepWalk on the co-occurrence graph of the *train* visits), ``concept_emb``
   and ``note_emb`` (embeddings of the node description texts and of each visit's input notes;
   skipped when ``encoder`` is ``None``) and ``note_texts`` (the raw texts of each sample's
   index-visit input notes, :func:`sample_note_texts`, for the TF-IDF references) only when
   asked for: ``views`` (the pipeline passes :func:`views_for` of its models' ``requires`` and
   ``uses``, ``pipeline.needed_views``). A view not built leaves its fields ``None``.
6. The input digest (:func:`input_digest`): the same whichever views are built.

**Transductive caveat of** ``graph_scope="all"`` (the HypEHR / MINGLE setting): all admissions,
including the later admissions of validation/test patients and unlabelled admissions, take part
in message passing. Labels never cross splits, but code nodes are shared, so information from a
patient's future admissions can reach the index visit through shared codes (for ``phenotype``, the
next visit's diagnoses are exactly the label). ``"samples"`` limits hyperedges to the labelled
samples; within one patient a later sample visit is still a hyperedge, so neither scope is fully
inductive. Report the scope with every result.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from mingle_bench.data.cohort import Cohort
from mingle_bench.deepwalk import DeepWalkParams, deepwalk_embeddings
from mingle_bench.hypergraph import EHRHypergraph
from mingle_bench.mathmode import encoding_threads
from mingle_bench.splits import SPLIT_MODES, SPLITS, SplitManifest, split_patients
from mingle_bench.taskdata import TaskData
from mingle_bench.vocab import CodeVocab
from mingle_bench.data.meds_mapping import MEDS_TO_SPLIT as MEDS_SPLITS

GRAPH_SCOPES = ("all", "samples")
NO_MEDS_SPLIT = "patient without a MEDS subject split (--split meds)"
NO_SPLIT = "unlabelled"  # visits of patients without samples


@dataclass
class VisitTable:
    """The visits the models see, their vocabulary-encoded inputs and the split."""

    task_samples: Any                  # mingle_bench.tasks.TaskSamples
    samples: pd.DataFrame              # task samples + "split" + "visit"
    manifest: SplitManifest
    visit_hadm: np.ndarray             # int64 [n_visits] admission id of each visit
    visit_patient: np.ndarray          # int64 [n_visits]
    visit_admittime: np.ndarray        # datetime64[ns] [n_visits]
    visit_split: np.ndarray            # object [n_visits]: train/val/test/unlabelled
    vocab: CodeVocab
    visit_codes_indptr: torch.Tensor   # int64 [n_visits + 1]
    visit_codes: torch.Tensor          # int64 [nnz]
    visit_unseen: list[list[str]]      # per visit, input codes dropped as unseen in train
    graph_scope: str
    report: dict

    def visit_of(self) -> dict[int, int]:
        return {int(h): i for i, h in enumerate(self.visit_hadm.tolist())}


def _resolve_task(task, code_types: Sequence[str] | None):
    from mingle_bench.tasks import Task, get_task

    if isinstance(task, str):
        return get_task(task, code_types=code_types) if code_types is not None else get_task(task)
    if not isinstance(task, Task):
        raise ValueError(f"task must be a task name or a Task instance, got {type(task).__name__}")
    if code_types is not None and tuple(code_types) != tuple(task.code_types):
        raise ValueError(f"code_types={list(code_types)} conflicts with the task instance's {list(task.code_types)}")
    return task


def _csr(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    flat = np.fromiter((x for r in rows for x in r), dtype=np.int64, count=int(indptr[-1]))
    return torch.from_numpy(indptr), torch.from_numpy(flat)


def meds_assignment(cohort: Cohort) -> dict[int, str]:
    """Patient id -> train/val/test from the cohort's MEDS subject splits; a one-line error when the
    cohort has none or uses split names other than train, tuning and held_out."""
    ss = getattr(cohort, "subject_splits", None)
    if ss is None:
        raise ValueError(f"--split meds: the cohort of {cohort.source or 'this source'} has no MEDS subject splits "
                         "(a MEDS folder with metadata/subject_splits.parquet); use --split random")
    names = set(ss["split"].astype(str))
    bad = sorted(names - set(MEDS_SPLITS))
    if bad:
        raise ValueError(f"--split meds: metadata/subject_splits.parquet of {cohort.source or 'this source'} uses split "
                         f"name(s) {bad}; expected {', '.join(MEDS_SPLITS)} (-> train, val, test)")
    return {int(p): MEDS_SPLITS[str(s)] for p, s in zip(ss["subject_id"].tolist(), ss["split"].tolist())}


def _drop_unsplit(ts, keep: np.ndarray, n_patients: int):
    """The TaskSamples restricted to the rows ``keep`` (the dropped ones counted in its report)."""
    rows = np.flatnonzero(keep)
    samples = ts.samples.iloc[rows].reset_index(drop=True)
    labels = np.asarray(ts.labels)[rows]
    report = dict(ts.report)
    report["excluded"] = {**report.get("excluded", {}), NO_MEDS_SPLIT: int((~keep).sum())}
    report["samples"] = int(len(samples))
    report["patients"] = int(samples["patient_id"].nunique())
    report["positives"] = {n: int(labels[:, i].sum()) for i, n in enumerate(ts.label_names)}
    return dataclasses.replace(ts, samples=samples, labels=labels, history=[ts.history[i] for i in rows.tolist()],
                               report=report)


def prepare_visits(cohort: Cohort, task, *, split_seed: int = 0, code_types: Sequence[str] | None = None,
                   graph_scope: str = "all", task_samples=None, split: str = "random") -> VisitTable:
    """Steps 1-4 of :func:`build_task_data`: samples, split, visit table and train-only vocabulary.

    ``task_samples`` may pass an already built ``TaskSamples`` of ``task`` to skip step 1.
    ``split``: ``"random"`` (the seeded 7:1:2 patient split) or ``"meds"`` (the cohort's MEDS
    subject splits; ``split_seed`` is then unused).
    """
    import sys

    from mingle_bench.splits import manifest_from_assignment
    from mingle_bench.tasks.base import ordered_admissions

    if graph_scope not in GRAPH_SCOPES:
        raise ValueError(f"graph_scope must be one of {GRAPH_SCOPES}, got {graph_scope!r}")
    if split not in SPLIT_MODES:
        raise ValueError(f"--split must be one of {', '.join(SPLIT_MODES)}, got {split!r}")
    mode = split  # (the name ``split`` is reused by the loops below)
    task = _resolve_task(task, code_types)
    ts = task_samples if task_samples is not None else task.build(cohort)
    if ts.task_name != task.name:
        raise ValueError(f"task_samples were built for {ts.task_name!r}, not {task.name!r}")
    if len(ts.samples) == 0:
        raise ValueError(f"task {task.name!r} has no samples in this cohort ({cohort.source or 'cohort'}); "
                         f"exclusions: {ts.report.get('excluded')}")

    n_unsplit = 0
    if mode == "meds":
        meds_of = meds_assignment(cohort)
        pids = ts.samples["patient_id"].to_numpy(dtype=np.int64)
        keep = np.fromiter((int(p) in meds_of for p in pids.tolist()), dtype=bool, count=len(pids))
        n_unsplit = int((~keep).sum())
        if n_unsplit:
            lost = len(set(pids[~keep].tolist()))
            print(f"--split meds: {n_unsplit} sample(s) of {lost} patient(s) without a MEDS subject split "
                  f"dropped (task {task.name})", file=sys.stderr, flush=True)
            ts = _drop_unsplit(ts, keep, lost)
            if len(ts.samples) == 0:
                raise ValueError(f"--split meds: no sample patient of task {task.name!r} has a MEDS subject split")
        manifest = manifest_from_assignment({int(p): meds_of[int(p)] for p in set(ts.samples["patient_id"].tolist())},
                                            method="meds")
    else:
        manifest = split_patients(ts.samples["patient_id"].to_numpy(), seed=split_seed)
    manifest.assert_disjoint()
    assignment = manifest.assignment()
    samples = ts.samples.copy()
    samples["split"] = samples["patient_id"].map(assignment).astype(object)
    if samples["split"].isna().any():
        raise AssertionError("a sample patient is missing from the split manifest")

    adm = ordered_admissions(cohort)
    if graph_scope == "samples":
        needed = {h for hist in ts.history for h in hist}
        adm = adm.loc[adm["hadm_id"].isin(needed)]
    visit_hadm = adm["hadm_id"].to_numpy(dtype=np.int64)
    visit_patient = adm["patient_id"].to_numpy(dtype=np.int64)
    visit_split = np.array([assignment.get(int(p), NO_SPLIT) for p in visit_patient.tolist()], dtype=object)
    visit_index = {int(h): i for i, h in enumerate(visit_hadm.tolist())}
    samples["visit"] = samples["hadm_id"].map(visit_index).astype("int64")

    inputs = [ts.input_codes.get(int(h), []) for h in visit_hadm.tolist()]
    vocab = CodeVocab.fit((inputs[i] for i in np.flatnonzero(visit_split == "train")), cohort.code_texts)
    encoded, unseen = [], []
    for codes in inputs:
        idx, drop = vocab.encode(codes)
        encoded.append(idx)
        unseen.append(drop)
    indptr, flat = _csr(encoded)

    unseen_report: dict[str, dict[str, int]] = {}
    for split in (*SPLITS, NO_SPLIT):
        rows = np.flatnonzero(visit_split == split)
        events = sum(len(unseen[i]) for i in rows)
        unseen_report[split] = {
            "visits": int(len(rows)),
            "input_code_events": int(sum(len(inputs[i]) for i in rows)),
            "unseen_code_events_dropped": int(events),
            "unseen_unique_codes": int(len({c for i in rows for c in unseen[i]})),
        }
    if unseen_report["train"]["unseen_code_events_dropped"]:
        raise AssertionError("train visits have codes outside the train vocabulary")
    report = {
        "task": ts.report, "graph_scope": graph_scope, "split": {"seed": int(split_seed), "sha256": manifest.sha256,
                                                                  "patients": manifest.sizes(),
                                                                  "samples": {k: int(v) for k, v in samples["split"].value_counts().items()},
                                                                  **({} if mode == "random" else
                                                                     {"method": mode, "samples_without_meds_split": n_unsplit})},
        "vocab": {"size": len(vocab), "by_type": {k: int(v) for k, v in pd.Series(vocab.code_types, dtype=object).value_counts().items()},
                  "without_description": vocab.missing_text_count()},
        "unseen_codes": unseen_report, "visits": int(len(visit_hadm)),
    }
    return VisitTable(ts, samples.reset_index(drop=True), manifest, visit_hadm, visit_patient,
                      adm["admittime"].to_numpy(dtype="datetime64[ns]"), visit_split, vocab, indptr, flat,
                      unseen, graph_scope, report)


# ---------------------------------------------------------------------------------------------
# input views: one builder per view, registered by name


@dataclass
class ViewContext:
    """What a view builder reads: the visit table and the build's settings; ``fields`` holds the
    TaskData fields built so far (views run in registration order), ``report`` the features report."""

    cohort: Cohort
    vt: VisitTable
    visit_note_ids: list[list[int]]    # per visit, the task's input note ids
    deepwalk: DeepWalkParams
    encoder: Any                       # a spec, an Encoder, or None
    root: Any                          # the cache root (pathlib.Path)
    progress: bool = True
    max_notes_per_visit: int | None = None
    max_tokens: int | None = None
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    report: dict[str, Any] = dataclasses.field(default_factory=dict)
    _enc: Any = None

    def open_encoder(self) -> Any:
        """The encoder object, loaded (and, for a fitted encoder, fitted on the train split) once."""
        if self._enc is None:
            from mingle_bench.encoders import load_encoder

            enc = load_encoder(self.encoder) if isinstance(self.encoder, str) else self.encoder
            if callable(getattr(enc, "fit", None)):  # a fitted encoder (--encoder tfidf): train split's texts only
                enc.fit(encoder_fit_texts(self.cohort, self.vt, self.visit_note_ids), cache_dir=self.root)
            self._enc = enc
        return self._enc


@dataclass(frozen=True)
class View:
    """One input view: its ``name``, the TaskData ``fields`` it fills and its builder
    ``build(ctx) -> {field: value}``. ``always``: built for every run (cheap, or the input digest
    needs it); ``needs_encoder``: skipped (its fields ``None``) when the encoder is ``None``."""

    name: str
    fields: tuple[str, ...]
    build: Callable[[ViewContext], dict[str, Any]]
    always: bool = False
    needs_encoder: bool = False


#: name -> View, in build order (the built-in views first, then any plugin's)
VIEWS: dict[str, View] = {}


def register_view(name: str, fields: Sequence[str], *, always: bool = False, needs_encoder: bool = False):
    """Decorator registering ``build(ctx) -> {field: value}`` as the view ``name`` filling ``fields``.

    A field that is not a :class:`~mingle_bench.taskdata.TaskData` attribute goes to
    ``TaskData.extras`` and reads as an attribute (``data.<field>``); a model asks for it in its
    ``requires`` like any other field. Registering a name twice, or a field another view
    fills, raises ``ValueError``."""
    def deco(fn: Callable[[ViewContext], dict[str, Any]]) -> Callable[[ViewContext], dict[str, Any]]:
        if name in VIEWS:
            raise ValueError(f"input view {name!r} is already registered")
        taken = {f: v.name for v in VIEWS.values() for f in v.fields}
        clash = [f for f in fields if f in taken]
        if clash:
            raise ValueError(f"input view {name!r}: field(s) {clash} are already filled by view {taken[clash[0]]!r}")
        VIEWS[name] = View(name, tuple(fields), fn, always=always, needs_encoder=needs_encoder)
        return fn
    return deco


def view_of_field(field: str) -> str | None:
    """The view that fills TaskData ``field``, or ``None`` (a field every build fills)."""
    return next((v.name for v in VIEWS.values() if field in v.fields), None)


def views_for(fields: Iterable[str]) -> tuple[str, ...]:
    """The views a build needs for ``fields`` (e.g. the union of the run's models' ``requires``
    and ``uses``): every ``always`` view plus the views filling them, in build order."""
    wanted = {view_of_field(f) for f in fields}
    return tuple(n for n, v in VIEWS.items() if v.always or n in wanted)


#: the views a build makes when the caller does not choose (everything but the note texts)
def default_views() -> tuple[str, ...]:
    return tuple(n for n in VIEWS if n != "note_texts")


@register_view("set", ("sample_codes_indptr", "sample_codes"), always=True)
def set_view(ctx: ViewContext) -> dict[str, Any]:
    """The set view: per sample, the vocabulary ids of its index visit's input codes, as CSR
    (``sample_codes_indptr`` int64 [n_samples + 1], ``sample_codes`` int64 [nnz]). Cheap: always built."""
    indptr, flat = ctx.vt.visit_codes_indptr, ctx.vt.visit_codes
    visits = ctx.vt.samples["visit"].to_numpy(dtype=np.int64).tolist()
    ip, codes = _csr([flat[indptr[v]:indptr[v + 1]].tolist() for v in visits])
    return {"sample_codes_indptr": ip, "sample_codes": codes}


@register_view("sequence", ("seq_visit_indptr", "seq_visits", "seq_times"), always=True)
def sequence_view(ctx: ViewContext) -> dict[str, Any]:
    """The sequence view: per sample, its history visits in time order up to and including the
    index visit (``seq_visit_indptr`` int64 [n_samples + 1], ``seq_visits`` int64 [n_rows] visit
    ids) and each one's days before the prediction time (``seq_times`` float32 [n_rows]). Cheap:
    always built."""
    vt = ctx.vt
    visit_index = vt.visit_of()
    pred = vt.samples["prediction_time"].to_numpy(dtype="datetime64[ns]")
    rows = [[visit_index[h] for h in hist] for hist in vt.task_samples.history]
    indptr, visits = _csr(rows)
    owner = np.repeat(np.arange(len(rows)), np.diff(indptr.numpy()))
    gap = (pred[owner] - vt.visit_admittime[visits.numpy()]) / np.timedelta64(1, "D")
    return {"seq_visit_indptr": indptr, "seq_visits": visits, "seq_times": torch.as_tensor(np.asarray(gap, dtype=np.float32))}


@register_view("hypergraph", ("graph", "sample_edge", "edge_visit"), always=True)
def hypergraph_view(ctx: ViewContext) -> dict[str, Any]:
    """The :class:`~mingle_bench.hypergraph.EHRHypergraph` (visit hyperedges per ``graph_scope``,
    then one self-loop per node), ``sample_edge`` int64 [n_samples] (each sample's index-visit
    hyperedge) and ``edge_visit`` int64 [num_edges] (-1 for self-loops). Always built: the input
    digest hashes its incidence."""
    vt = ctx.vt
    n_visits = len(vt.visit_hadm)
    sample_visit = torch.from_numpy(vt.samples["visit"].to_numpy(dtype=np.int64, copy=True))
    if vt.graph_scope == "all":
        edge_visits = torch.arange(n_visits, dtype=torch.int64)
    else:
        edge_visits = torch.as_tensor(np.unique(vt.samples["visit"].to_numpy()), dtype=torch.int64)
    graph = EHRHypergraph.build(vt.visit_codes_indptr, vt.visit_codes, edge_visits, len(vt.vocab))
    edge_of_visit = torch.full((n_visits,), -1, dtype=torch.int64)
    edge_of_visit[edge_visits] = torch.arange(edge_visits.numel())
    sample_edge = edge_of_visit[sample_visit]
    assert bool((sample_edge >= 0).all()) and not bool(graph.is_self_loop[sample_edge].any())
    ctx.report["graph"] = graph.report
    return {"graph": graph, "sample_edge": sample_edge, "edge_visit": graph.edge_visit}


@register_view("structural", ("structural",))
def structural_view(ctx: ViewContext) -> dict[str, Any]:
    """DeepWalk node features on the co-occurrence graph of the *train* visits only:
    ``structural`` float32 [n_nodes, deepwalk dim] (cached by content under the cache root)."""
    vt = ctx.vt
    indptr, flat = vt.visit_codes_indptr, vt.visit_codes
    rows = np.flatnonzero(vt.visit_split == "train")
    tr_indptr, tr_codes = _csr([flat[indptr[v]:indptr[v + 1]].tolist() for v in rows.tolist()])
    structural, ctx.report["deepwalk"] = deepwalk_embeddings(tr_indptr, tr_codes, len(vt.vocab), ctx.deepwalk,
                                                             cache_dir=ctx.root)
    return {"structural": structural}


@register_view("concept_emb", ("concept_emb",), needs_encoder=True)
def concept_view(ctx: ViewContext) -> dict[str, Any]:
    """Embeddings of the node description texts: ``concept_emb`` float32 [n_nodes, d_llm]
    (content-addressed embedding cache)."""
    from mingle_bench.encoders import EmbeddingCache, embed_texts

    enc = ctx.open_encoder()
    t0 = time.perf_counter()
    with encoding_threads():
        emb = embed_texts(enc, ctx.vt.vocab.texts, cache=EmbeddingCache(ctx.root / "embeddings"), progress=ctx.progress)
    ctx.report.setdefault("notes", {})["concept_seconds"] = round(time.perf_counter() - t0, 3)
    return {"concept_emb": emb.to(torch.float32)}


@register_view("note_emb", ("visit_note_emb", "visit_has_notes"), needs_encoder=True)
def note_view(ctx: ViewContext) -> dict[str, Any]:
    """Each visit's input notes embedded and pooled: ``visit_note_emb`` float32 [n_visits, d_llm]
    (zeros where a visit has none) and ``visit_has_notes`` bool [n_visits] (notes with text).
    Without this view ``visit_has_notes`` is ``len(input notes) > 0`` per visit."""
    from mingle_bench.encoders import EmbeddingCache, embed_visit_notes

    enc = ctx.open_encoder()
    n_visits = len(ctx.vt.visit_hadm)
    report: dict[str, Any] = {}
    if any(ctx.visit_note_ids):
        with encoding_threads():
            emb, has, report = embed_visit_notes(
                enc, ctx.visit_note_ids, ctx.cohort.read_note_texts, max_notes_per_visit=ctx.max_notes_per_visit,
                max_tokens=ctx.max_tokens, cache=EmbeddingCache(ctx.root / "embeddings"), progress=ctx.progress)
    else:
        emb = torch.zeros(n_visits, enc.dim, dtype=torch.float32)
        has = torch.zeros(n_visits, dtype=torch.bool)
    ctx.report["notes"] = {**ctx.report.get("notes", {}), **report}
    return {"visit_note_emb": emb, "visit_has_notes": has}


@register_view("note_texts", ("sample_note_texts",))
def note_texts_view(ctx: ViewContext) -> dict[str, Any]:
    """The text view: ``sample_note_texts`` list[str] [n_samples], each sample's index-visit
    input note texts (:func:`sample_note_texts`; the TF-IDF references read it)."""
    vt = ctx.vt
    return {"sample_note_texts": sample_note_texts(ctx.cohort, vt.task_samples.input_note_ids,
                                                   vt.samples["hadm_id"].tolist())}


def note_settings(encoder: Any) -> dict[str, Any]:
    """The note-embedding settings the input digest records (:data:`ENCODER_SETTING_KEYS`), derived
    from ``encoder`` and :func:`~mingle_bench.encoders.notes.embed_visit_notes`'s defaults without
    embedding anything (equal to what its report states)."""
    import inspect

    from mingle_bench.encoders.notes import embed_visit_notes

    defaults = {k: p.default for k, p in inspect.signature(embed_visit_notes).parameters.items()}
    chunk = int(defaults["chunk_tokens"])
    return {"chunk_tokens": chunk, "chunk_content_tokens": min(chunk, encoder.max_length) - encoder.num_special_tokens,
            "overlap": int(defaults["overlap"]), "note_pool": defaults["note_pool"], "visit_pool": defaults["visit_pool"]}


def _settings_memo_path(ctx: ViewContext):
    """Where the encoder settings of a local model spec (``default``, ``hf:PATH``) are remembered,
    keyed by the spec and its model files' names, sizes and mtimes; ``None`` for other encoders
    (a fitted encoder's identity holds its fit, an endpoint's or a plugin's is not pinned by files)."""
    from mingle_bench.encoders import parse_spec

    if not isinstance(ctx.encoder, str):
        return None
    try:
        backend, target, _ = parse_spec(ctx.encoder)
    except ValueError:
        return None
    if backend == "default":
        from mingle_bench.encoders.hf import default_model_path

        folder = default_model_path()
    elif backend == "hf":
        from pathlib import Path

        folder = Path(target)
    else:
        return None
    try:
        files = sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                       for p in folder.rglob("*") if p.is_file())
    except OSError:
        return None
    key = _sha([ctx.encoder, str(folder), files, ctx.max_notes_per_visit, ctx.max_tokens, bool(any(ctx.visit_note_ids))])
    return ctx.root / "encoder-settings" / f"{key[:32]}.json"


def encoder_settings(ctx: ViewContext) -> dict | None:
    """The encoder part of the input digest: identity (``describe()``), note budgets and, when
    any visit has input notes, the note settings; ``None`` without an encoder. Computed the same
    whichever views are built; a local model spec's settings are remembered in the cache
    (:func:`_settings_memo_path`), so a run that embeds nothing does not load the encoder twice."""
    import json

    if ctx.encoder is None:
        return None
    memo = _settings_memo_path(ctx) if ctx._enc is None else None
    if memo is not None and memo.is_file():
        try:
            return json.loads(memo.read_text())
        except (OSError, ValueError):
            pass
    enc = ctx.open_encoder()
    notes = any(ctx.visit_note_ids)
    # "describe" is what the features report's "encoder" entry has always held: the note report's
    # identity string when any visit has notes, else the encoder's describe() dict
    settings = {"describe": enc.identity if notes else enc.describe(), "max_notes_per_visit": ctx.max_notes_per_visit,
                "max_tokens": ctx.max_tokens, **(note_settings(enc) if notes else {})}
    memo = _settings_memo_path(ctx)
    if memo is not None:
        from mingle_bench.io import atomic_write_json

        try:
            atomic_write_json(memo, json.loads(json.dumps(settings, default=str)))
        except OSError:
            pass
    return settings


def build_task_data(
    cohort: Cohort,
    task,
    *,
    split_seed: int = 0,
    encoder: Any = "default",
    code_types: Sequence[str] | None = None,
    graph_scope: str = "all",
    deepwalk_dim: int = 64,
    deepwalk_walks_per_node: int = 10,
    deepwalk_walk_length: int = 40,
    deepwalk_window: int = 5,
    deepwalk_epochs: int = 1,
    deepwalk_seed: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    max_notes_per_visit: int | None = None,
    max_tokens: int | None = None,
    task_samples=None,
    split: str = "random",
    note_texts: bool = False,
    views: Iterable[str] | None = None,
) -> TaskData:
    """Build what the models of a run read for ``task`` on ``cohort`` (see the module docstring).

    Args:
        cohort: a validated :class:`~mingle_bench.data.cohort.Cohort`.
        task: a task name (``mingle_bench.tasks.list_tasks()``) or a ``Task`` instance.
        split_seed: seed of the patient-level split (and of DeepWalk unless ``deepwalk_seed``).
        encoder: an encoder spec for :func:`mingle_bench.encoders.load_encoder`, an ``Encoder``
            instance, or ``None`` for no semantic features (``concept_emb``/``visit_note_emb`` None).
        code_types: input code types (default: the task's).
        graph_scope: ``"all"`` or ``"samples"``: which admissions become hyperedges.
        deepwalk_*: DeepWalk parameters (:class:`~mingle_bench.deepwalk.DeepWalkParams`).
        cache_dir: cache root for DeepWalk features and embeddings (default ``$MINGLE_CACHE``
            or ``~/.cache/mingle-bench``).
        progress: progress bars while embedding.
        max_notes_per_visit, max_tokens: note budgets passed to the note encoder.
        task_samples: an already built ``TaskSamples`` for ``task`` (skips rebuilding it).
        split: ``"random"`` (seeded 7:1:2) or ``"meds"`` (the cohort's MEDS subject splits).
        note_texts: also build the ``note_texts`` view (``TaskData.sample_note_texts``).
        views: the input views to build (:data:`VIEWS` names; :func:`views_for` of the run's
            models' fields); ``None``: :func:`default_views`. The ``always`` views (set, sequence,
            hypergraph) are built regardless; a view not built leaves its fields ``None``.

    The input digest (:func:`input_digest`) is the same whichever views are built: the hypergraph
    it hashes is always built, DeepWalk enters by its parameters and the encoder by its settings
    (:func:`encoder_settings`), never by their outputs.
    """
    from mingle_bench.io import cache_root

    chosen = set(default_views() if views is None else views) | ({"note_texts"} if note_texts else set())
    unknown = sorted(chosen - set(VIEWS))
    if unknown:
        raise ValueError(f"unknown input view(s) {unknown}; registered: {', '.join(VIEWS)}")
    vt = prepare_visits(cohort, task, split_seed=split_seed, code_types=code_types, graph_scope=graph_scope,
                        task_samples=task_samples, split=split)
    ts, samples = vt.task_samples, vt.samples
    params = DeepWalkParams(dim=deepwalk_dim, walks_per_node=deepwalk_walks_per_node, walk_length=deepwalk_walk_length,
                            window=deepwalk_window, epochs=deepwalk_epochs,
                            seed=split_seed if deepwalk_seed is None else deepwalk_seed)
    visit_note_ids = [ts.input_note_ids.get(int(h), []) for h in vt.visit_hadm.tolist()]
    ctx = ViewContext(cohort, vt, visit_note_ids, params, encoder, cache_root(cache_dir), progress=progress,
                      max_notes_per_visit=max_notes_per_visit, max_tokens=max_tokens)
    built = []
    for name, view in VIEWS.items():
        if not (view.always or name in chosen) or (view.needs_encoder and encoder is None):
            continue
        out = view.build(ctx)
        missing = [f for f in view.fields if f not in out]
        if missing:
            raise ValueError(f"input view {name!r} did not fill its field(s) {missing}")
        ctx.fields.update(out)
        built.append(name)
    fields = {f: None for v in VIEWS.values() for f in v.fields} | ctx.fields
    if fields["visit_has_notes"] is None:  # without the note view: whether the task allows the visit any note
        fields["visit_has_notes"] = torch.tensor([len(n) > 0 for n in visit_note_ids], dtype=torch.bool)

    settings = encoder_settings(ctx)
    note_report = dict(ctx.report.get("notes", {}))
    if settings is not None:
        note_report = {"encoder": settings["describe"], **note_report}
    digest = input_digest(repr(_resolve_task(task, code_types)), vt, visit_note_ids, fields["graph"], params, settings)
    split_idx = {s: torch.as_tensor(np.flatnonzero(samples["split"].to_numpy() == s), dtype=torch.int64) for s in SPLITS}
    report = {
        **vt.report, "graph": ctx.report.get("graph"), "deepwalk": ctx.report.get("deepwalk"), "notes": note_report,
        "views": built,
        "visits_with_input_notes": int(sum(1 for n in visit_note_ids if n)),
        "positives_by_split": {s: {n: int(ts.labels[split_idx[s].numpy(), i].sum()) for i, n in enumerate(ts.label_names)}
                               for s in SPLITS},
        "empty_sample_visits": int((fields["sample_codes_indptr"].diff() == 0).sum()),
    }
    known = {f.name for f in dataclasses.fields(TaskData)}
    return TaskData(
        task_name=ts.task_name, label_names=list(ts.label_names),
        samples=samples[["sample_id", "patient_id", "hadm_id", "prediction_time", "split", "visit"]],
        labels=torch.as_tensor(ts.labels, dtype=torch.float32), split_idx=split_idx, manifest=vt.manifest,
        vocab=vt.vocab, visit_codes_indptr=vt.visit_codes_indptr, visit_codes=vt.visit_codes,
        report=report, digest=digest, **{f: v for f, v in fields.items() if f in known},
        extras={f: v for f, v in fields.items() if f not in known},
    )


def encoder_fit_texts(cohort: Cohort, vt: VisitTable, visit_note_ids: Sequence[Sequence[int]]) -> list[str]:
    """What an encoder that learns from data (``--encoder tfidf``) is fitted on: the input notes of
    the *train* patients' visits (each note once, non-empty) plus the train vocabulary's concept
    descriptions (code descriptions, not patient data; they give the node side its terms).
    Validation and test notes never reach the fit."""
    ids = list(dict.fromkeys(int(n) for v in np.flatnonzero(vt.visit_split == "train") for n in visit_note_ids[v]))
    texts: dict[int, str] = {}
    for batch in cohort.iter_note_texts(ids, batch_size=20000):
        texts.update(batch)
    notes = [texts[n] for n in ids if isinstance(texts.get(n), str) and texts[n].strip()]
    return notes + [t for t in vt.vocab.texts if t.strip()]


def sample_note_texts(cohort: Cohort, input_note_ids: dict[int, list[int]], hadm_ids: Sequence[int]) -> list[str]:
    """Per sample (index admission ``hadm_ids[i]``), the texts of exactly the notes the task allows
    as its inputs (``input_note_ids``: time-filtered, note policy applied), in the task's order
    (available time, then note id), joined by a blank line; ``""`` when it has none. Reads only
    those notes' rows of the cohort's text store."""
    per_sample = [list(input_note_ids.get(int(h), [])) for h in hadm_ids]
    wanted = list(dict.fromkeys(int(n) for ids in per_sample for n in ids))
    texts: dict[int, str] = {}
    for batch in cohort.iter_note_texts(wanted, batch_size=20000):
        texts.update(batch)
    missing = [n for n in wanted if n not in texts]
    if missing:
        raise ValueError(f"the note text store {cohort.notes_text_path} lacks {len(missing)} input note(s) "
                         f"of the task, e.g. note_id {missing[0]}")
    return ["\n\n".join(texts[int(n)] for n in ids) for ids in per_sample]


#: keys of the note-embedding report that are settings (everything else there is a count or a timing)
ENCODER_SETTING_KEYS = ("chunk_tokens", "chunk_content_tokens", "overlap", "note_pool", "visit_pool")


def _sha(obj: Any) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def input_digest(task_desc: str, vt: VisitTable, visit_note_ids: list[list[int]], graph: EHRHypergraph, deepwalk: DeepWalkParams,
                 encoder: dict | None) -> dict[str, str]:
    """sha256 digests of everything a model reads, by part (the provenance of a cell's inputs).

    ``task``: the task and its configuration (code types, note policy, age limit); ``samples``:
    sample ids, patients, index admissions, prediction times and labels; ``split``: the
    manifest; ``codes``: every visit's input codes; ``notes``: every visit's input note ids (the
    note selection; the note texts are covered by the cohort's content hash); ``vocab``: the
    train-only vocabulary and its description texts; ``graph``: the incidence; ``deepwalk``: its
    parameters; ``encoder``: the encoder identity and note budgets (``None`` without semantics).
    """
    ts = vt.task_samples
    s = ts.samples
    samples = {
        "ids": s["sample_id"].astype(str).tolist(), "patients": s["patient_id"].astype("int64").tolist(),
        "hadm": s["hadm_id"].astype("int64").tolist(),
        "time": s["prediction_time"].astype("int64").tolist(), "labels": np.asarray(ts.labels).astype(int).tolist(),
    }
    hadm = vt.visit_hadm.tolist()
    inc = graph.incidence.v2e
    return {
        "task": _sha(task_desc),
        "samples": _sha(samples),
        "split": vt.manifest.sha256,
        "codes": _sha([hadm, [vt.vocab.code_ids[i] for i in vt.visit_codes.tolist()], vt.visit_codes_indptr.tolist()]),
        "notes": _sha([hadm, [list(map(int, n)) for n in visit_note_ids]]),
        "vocab": _sha([list(vt.vocab.code_ids), list(vt.vocab.texts)]),
        "graph": _sha([vt.graph_scope, inc.indptr.tolist(), inc.indices.tolist()]),
        "deepwalk": _sha(dataclasses.asdict(deepwalk)),
        "encoder": _sha(encoder),
    }


def sample_view(vt: VisitTable, cohort: Cohort, limit: int | None = None, with_texts: bool = True):
    """Yield one JSON-serialisable dict per sample, exactly the inputs models receive:
    ``sample_id``, ``patient_id``, ``hadm_id``, ``split``, ``prediction_time`` (ISO 8601),
    ``labels`` (name -> 0/1), ``codes`` (input ``code_id`` s kept by the train vocabulary),
    ``dropped_unseen_codes``, ``note_ids``, ``note_texts`` (input notes after filtering, in
    chart order) and ``history`` (admission ids of the sequence view)."""
    ts, samples = vt.task_samples, vt.samples
    n = len(samples) if limit is None else min(int(limit), len(samples))
    indptr, flat = vt.visit_codes_indptr, vt.visit_codes
    batch = 256
    for start in range(0, n, batch):
        rows = range(start, min(n, start + batch))
        hadms = [int(samples["hadm_id"].iat[i]) for i in rows]
        note_ids = {h: ts.input_note_ids.get(h, []) for h in hadms}
        texts = cohort.read_note_texts([i for ids in note_ids.values() for i in ids]) if with_texts else {}
        for i, h in zip(rows, hadms):
            v = int(samples["visit"].iat[i])
            yield {
                "sample_id": str(samples["sample_id"].iat[i]),
                "patient_id": int(samples["patient_id"].iat[i]),
                "hadm_id": h,
                "split": str(samples["split"].iat[i]),
                "prediction_time": pd.Timestamp(samples["prediction_time"].iat[i]).isoformat(),
                "labels": {name: int(ts.labels[i, k]) for k, name in enumerate(ts.label_names)},
                "codes": [vt.vocab.code_ids[c] for c in flat[indptr[v]:indptr[v + 1]].tolist()],
                "dropped_unseen_codes": list(vt.visit_unseen[v]),
                "note_ids": [int(x) for x in note_ids[h]],
                "note_texts": [texts.get(int(x), "") for x in note_ids[h]] if with_texts else [],
                "history": [int(x) for x in ts.history[i]],
            }
