"""build_task_data: views agree with the task's inputs, train-only fitting, determinism."""
from __future__ import annotations

import pytest
import torch

from factories import CohortBuilder, RecordingEncoder, make_cohort
from mingle_bench.features import build_task_data, prepare_visits
from mingle_bench.tasks import get_task

DW = dict(deepwalk_dim=8, deepwalk_walks_per_node=2, deepwalk_walk_length=8)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("feat"), n_patients=40, seed=0)


@pytest.fixture(scope="module")
def data(cohort, tmp_path_factory):
    return build_task_data(cohort, "mortality", encoder=None, cache_dir=tmp_path_factory.mktemp("c"), **DW)


def _rows(indptr, values, i):
    return values[indptr[i]:indptr[i + 1]].tolist()


def test_shapes_and_dtypes(data):
    n, v = data.n_samples, data.n_visits
    assert data.labels.shape == (n, 1) and data.labels.dtype == torch.float32
    assert data.sample_codes_indptr.shape == (n + 1,) and data.seq_visit_indptr.shape == (n + 1,)
    assert data.visit_codes_indptr.shape == (v + 1,)
    assert data.seq_times.shape == data.seq_visits.shape and data.seq_times.dtype == torch.float32
    assert data.structural.shape == (len(data.vocab), 8) and data.structural.dtype == torch.float32
    assert data.sample_edge.shape == (n,) and data.edge_visit.shape == (data.graph.num_edges,)
    assert data.concept_emb is None and data.visit_note_emb is None
    assert data.visit_has_notes.shape == (v,) and data.visit_has_notes.dtype == torch.bool
    assert list(data.samples.columns[:5]) == ["sample_id", "patient_id", "hadm_id", "prediction_time", "split"]


def test_views_agree_with_the_task_inputs(cohort, data):
    ts = get_task("mortality").build(cohort)
    visit_of = {int(h): i for i, h in enumerate(data.samples["hadm_id"])}
    for i, h in enumerate(data.samples["hadm_id"].tolist()):
        codes = [data.vocab.code_ids[c] for c in _rows(data.sample_codes_indptr, data.sample_codes, i)]
        expected = [c for c in ts.input_codes[h] if c in data.vocab]
        assert codes == expected
        # the set view is the index visit's row of the visit table, and its hyperedge
        v = int(data.samples["visit"].iat[i])
        assert _rows(data.visit_codes_indptr, data.visit_codes, v) == _rows(data.sample_codes_indptr, data.sample_codes, i)
        e = int(data.sample_edge[i])
        assert int(data.edge_visit[e]) == v and not bool(data.graph.is_self_loop[e])
        g = data.graph.v2e
        assert sorted(g.indices[g.indptr[e]:g.indptr[e + 1]].tolist()) == sorted(_rows(data.sample_codes_indptr, data.sample_codes, i))
        # sequence view: ends with the index visit, time order, days before the prediction time
        seq = _rows(data.seq_visit_indptr, data.seq_visits, i)
        times = _rows(data.seq_visit_indptr, data.seq_times, i)
        assert seq[-1] == v and seq == sorted(seq)
        assert times[-1] == pytest.approx(2.0) and all(t >= 2.0 for t in times)
    assert visit_of  # non-empty


def test_vocab_is_fitted_on_train_visits_only(cohort, data):
    train_patients = set(data.manifest.train)
    train_hadm = set(cohort.admissions.loc[cohort.admissions["patient_id"].isin(train_patients), "hadm_id"])
    ts = get_task("mortality").build(cohort)
    train_codes = {c for h in train_hadm for c in ts.input_codes[h]}
    assert set(data.vocab.code_ids) == train_codes
    other = {c for h, codes in ts.input_codes.items() if h not in train_hadm for c in codes}
    unseen = other - train_codes
    assert unseen, "the factory cohort should have codes only outside the train split"
    rep = data.report["unseen_codes"]
    assert rep["train"]["unseen_code_events_dropped"] == 0
    assert sum(r["unseen_unique_codes"] for k, r in rep.items() if k != "train") >= len(unseen) > 0


def test_structural_features_ignore_validation_and_test_visits(cohort, tmp_path):
    """Changing only val/test visits leaves DeepWalk features unchanged."""
    a = build_task_data(cohort, "mortality", encoder=None, cache_dir=tmp_path, **DW)
    held_out = set(a.manifest.val) | set(a.manifest.test)
    edited = cohort.codes.copy()
    rows = edited.index[edited["patient_id"].isin(held_out) & (edited["code_type"] == "diagnosis")]
    edited.loc[rows, "code_id"] = "dx9:4019"  # rewires val/test visits onto one train code
    changed = type(cohort)(**{**cohort.__dict__, "codes": edited})
    b = build_task_data(changed, "mortality", encoder=None, cache_dir=tmp_path, **DW)
    assert a.vocab.code_ids == b.vocab.code_ids
    assert torch.equal(a.structural, b.structural)
    assert b.report["deepwalk"]["cache_hit"]


def test_deterministic_and_seeded(cohort, tmp_path):
    a = build_task_data(cohort, "phenotype", encoder=None, cache_dir=tmp_path / "a", **DW)
    b = build_task_data(cohort, "phenotype", encoder=None, cache_dir=tmp_path / "b", **DW)
    assert a.manifest == b.manifest and a.vocab.code_ids == b.vocab.code_ids
    for name in ("labels", "sample_codes", "seq_visits", "visit_codes", "structural", "sample_edge"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    c = build_task_data(cohort, "phenotype", encoder=None, split_seed=1, cache_dir=tmp_path / "a", **DW)
    assert c.manifest.sha256 != a.manifest.sha256
    assert a.labels.shape[1] == 25


def test_splits_partition_samples_by_patient(data):
    idx = data.split_idx
    all_idx = torch.cat([idx["train"], idx["val"], idx["test"]]).sort().values
    assert torch.equal(all_idx, torch.arange(data.n_samples))
    pats = {k: set(data.samples["patient_id"].iloc[v.numpy()]) for k, v in idx.items()}
    assert not pats["train"] & pats["val"] and not pats["train"] & pats["test"] and not pats["val"] & pats["test"]
    assert (data.samples["split"].iloc[idx["test"].numpy()] == "test").all()


def test_graph_scopes(cohort, tmp_path):
    full = build_task_data(cohort, "mortality", encoder=None, graph_scope="all", cache_dir=tmp_path, **DW)
    only = build_task_data(cohort, "mortality", encoder=None, graph_scope="samples", cache_dir=tmp_path, **DW)
    assert full.graph.num_visit_edges == len(cohort.admissions) == full.n_visits
    assert only.graph.num_visit_edges == only.n_samples
    assert sorted(only.edge_visit[~only.graph.is_self_loop].tolist()) == sorted(only.samples["visit"].tolist())
    assert only.graph.num_edges == only.n_samples + len(only.vocab)
    with pytest.raises(ValueError, match="graph_scope"):
        build_task_data(cohort, "mortality", encoder=None, graph_scope="nope", cache_dir=tmp_path, **DW)


def test_semantic_features_with_an_encoder(cohort, tmp_path):
    enc = RecordingEncoder(dim=6)
    d = build_task_data(cohort, "readmission", encoder=enc, cache_dir=tmp_path, progress=False, **DW)
    assert d.concept_emb.shape == (len(d.vocab), 6) and d.visit_note_emb.shape == (d.n_visits, 6)
    assert set(d.vocab.texts) <= set(enc.seen_texts)
    norms = d.visit_note_emb.norm(dim=1)
    assert torch.allclose(norms[d.visit_has_notes], torch.ones(int(d.visit_has_notes.sum())), atol=1e-5)
    assert bool((norms[~d.visit_has_notes] == 0).all())


def test_unseen_codes_are_dropped_and_counted(tmp_path):
    b = CohortBuilder()
    for p in range(20):
        pid = b.patient(dob="2040-01-01")
        h = b.admission(pid, "2100-01-01 10:00", "2100-01-09 10:00")
        b.code(h, "diagnosis", "4019", seq_num=1)
        b.code(h, "diagnosis", f"99{p:03d}", seq_num=2)  # one code per patient: never seen in train elsewhere
    cohort = b.build(tmp_path)
    d = build_task_data(cohort, "mortality", encoder=None, cache_dir=tmp_path, **DW)
    n_train = len(d.manifest.train)
    assert len(d.vocab) == 1 + n_train
    rep = d.report["unseen_codes"]
    assert rep["val"]["unseen_code_events_dropped"] == len(d.manifest.val)
    assert rep["test"]["unseen_code_events_dropped"] == len(d.manifest.test)
    assert d.sample_codes.numel() == n_train * 2 + (20 - n_train)


def test_task_without_samples_and_conflicting_arguments(tmp_path):
    b = CohortBuilder()
    p = b.patient(dob="2040-01-01")
    b.admission(p, "2100-01-01 10:00", "2100-01-01 20:00")
    cohort = b.build(tmp_path)
    with pytest.raises(ValueError, match="task 'mortality' has no samples"):
        build_task_data(cohort, "mortality", encoder=None, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="conflicts"):
        prepare_visits(cohort, get_task("mortality"), code_types=["diagnosis"])
