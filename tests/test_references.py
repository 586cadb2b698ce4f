"""The references every table carries (prior, tfidf-lr, codes-notes-lr, gbm): their inputs, the
note texts the features stage reads for them, and the leakage guard of their vectorisers (fitted
on the training split's texts only)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from factories import AFTER_48H_TOKEN, DAY2_TOKEN, DISCHARGE_TOKEN, EARLY_TOKEN, LATE_TOKEN, make_cohort
from mingle_bench import pipeline as P
from mingle_bench.baselines.text_features import code_bag, history_code_counts
from mingle_bench.profiling.random_task_data import make_random_task_data
from mingle_bench.zoo import get_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TEXT_MODELS = ("tfidf-lr", "codes-notes-lr", "gbm")
SMALL_DW = dict(deepwalk_dim=4, deepwalk_walks_per_node=1, deepwalk_walk_length=5)
LEAK = "zzvalidationtestonlyzz"


@pytest.fixture(scope="module")
def toy():
    return make_random_task_data(n_samples=120, n_labels=2, n_nodes=30, note_fraction=0.9, seed=7)


def fitted(name: str, data, **hp):
    model = get_model(name)(data, **hp)
    model.fit_sklearn(data.split_idx["train"], seed=0)
    return model


def with_texts(data, fn):
    """A shallow copy of ``data`` whose val/test texts are ``fn(i, text)`` (train texts unchanged)."""
    other = copy.copy(data)
    texts = list(data.sample_note_texts)
    for split in ("val", "test"):
        for i in data.split_idx[split].tolist():
            texts[i] = fn(i, texts[i])
    other.sample_note_texts = texts
    return other


# ---------------------------------------------------------------------------------- features stage
@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("refs"), n_patients=30, seed=3)


@pytest.mark.parametrize("task", ["mortality", "readmission"])
def test_note_texts_are_exactly_the_task_inputs(cohort, task):
    """``note_texts=True`` reads each sample's index-visit input notes (the task's note ids, in its
    order), nothing more: no late note, and no discharge summary in an admit + 48 h task. Without
    it no text is read; the flag leaves the input digest unchanged."""
    from mingle_bench.features import build_task_data

    plain = build_task_data(cohort, task, encoder=None, progress=False, **SMALL_DW)
    data = build_task_data(cohort, task, encoder=None, progress=False, note_texts=True, **SMALL_DW)
    assert plain.sample_note_texts is None and len(data.sample_note_texts) == data.n_samples
    assert data.digest == plain.digest
    ts = P.get_task(task).build(cohort)
    by_id = cohort.read_note_texts([n for ids in ts.input_note_ids.values() for n in ids])
    for h, text in zip(data.samples["hadm_id"].tolist(), data.sample_note_texts):
        assert text == "\n\n".join(by_id[n] for n in ts.input_note_ids.get(int(h), []))
    blob = " ".join(data.sample_note_texts)
    assert EARLY_TOKEN in blob and LATE_TOKEN not in blob
    if task == "mortality":
        assert not {DISCHARGE_TOKEN, AFTER_48H_TOKEN, DAY2_TOKEN} & set(blob.split())
    else:  # discharge-time task, default note policy: the admission's own summary is an input
        assert DISCHARGE_TOKEN in blob


def test_the_pipeline_reads_texts_only_for_models_that_require_them():
    assert P.needs_note_texts(["tfidf-lr"]) and P.needs_note_texts(["mingle", "gbm"])
    assert not P.needs_note_texts(["mingle", "hypehr", "retain", "gram", "hypergat", "logreg", "prior", "note-mlp"])
    for name in TEXT_MODELS:
        assert get_model(name).missing_inputs(make_random_task_data(n_samples=20, with_notes=False)) == \
            ["sample_note_texts"]


def test_adding_a_text_model_resumes_the_other_cells(toy_pipeline, tmp_path, monkeypatch):
    """The note-text flag is no part of the fingerprint or the input hash: a run that adds
    tfidf-lr reuses the finished logreg cell, and the features stage is asked for texts only then."""
    from mingle_bench import runner
    from mingle_bench.report import plots

    for fn in ("plot_curves", "plot_learning_curves"):   # figures play no part here (and cost seconds)
        monkeypatch.setattr(plots, fn, lambda *a, **kw: tmp_path / "figure.png")
    asked = []
    build = P.build_features
    monkeypatch.setattr(P, "build_features", lambda *a, **kw: (asked.append(kw.get("note_texts")), build(*a, **kw))[1])
    cfg = dict(task="mortality", data="synthetic:small", seeds=[0], out=str(tmp_path), max_steps=2, eval_every=1,
               patience=2, n_boot=20, progress=False, reference=None, encoder=None)
    first = runner.run_benchmark(runner.RunConfig(models=["logreg"], **cfg))
    second = runner.run_benchmark(runner.RunConfig(models=["logreg", "tfidf-lr", "prior"], **cfg))
    assert asked == [False, True]
    assert first.trained == [("logreg", 0)] and second.skipped == [("logreg", 0)]
    assert sorted(second.trained) == [("prior", 0), ("tfidf-lr", 0)] and not second.failed


def test_references_are_in_every_table():
    from mingle_bench.report.paper import PAPER_MODELS, REFERENCE_MODELS
    from mingle_bench.reproduce import DEFAULT_REPRODUCE_MODELS
    from mingle_bench.runner import DEFAULT_MODELS

    refs = ("prior", "logreg", "tfidf-lr", "codes-notes-lr", "gbm", "note-mlp")
    assert set(refs) <= set(DEFAULT_MODELS) and DEFAULT_MODELS[:6] == ("mingle", "hypehr", "retain", "gram",
                                                                      "hypergat", "logreg")
    assert REFERENCE_MODELS == refs and not set(refs) & set(PAPER_MODELS)
    assert DEFAULT_REPRODUCE_MODELS == PAPER_MODELS + REFERENCE_MODELS


# ------------------------------------------------------------------------------------------- models
def test_prior_predicts_the_training_prevalence_at_every_position(toy):
    from sklearn.metrics import roc_auc_score

    from mingle_bench.training import predict

    model = fitted("prior", toy)
    prevalence = toy.labels[toy.split_idx["train"]].mean(0)
    idx = torch.arange(toy.n_samples)
    probs, _ = predict(model, idx)
    assert np.allclose(probs, prevalence.numpy()[None, :], atol=1e-6)
    for l in range(toy.n_labels):   # one value per label, whatever the position (no ulp ranking)
        assert np.unique(probs[:, l]).size == 1
        assert roc_auc_score(toy.labels[:, l].numpy(), probs[:, l]) == 0.5
    assert model.n_params() == toy.n_labels


def test_input_matrices(toy):
    counts = history_code_counts(toy).toarray()
    for i in range(toy.n_samples):
        want = np.zeros(toy.n_nodes)
        for v in toy.seq_visits[toy.seq_visit_indptr[i]:toy.seq_visit_indptr[i + 1]].tolist():
            np.add.at(want, toy.visit_codes[toy.visit_codes_indptr[v]:toy.visit_codes_indptr[v + 1]].numpy(), 1)
        assert np.array_equal(counts[i], want)
    assert counts.sum() > code_bag(toy).sum()   # histories hold earlier visits too
    tfidf, both = fitted("tfidf-lr", toy), fitted("codes-notes-lr", toy)
    n_terms = len(tfidf.vectorizer.vocabulary_)
    assert tfidf.x.shape == (toy.n_samples, n_terms) and both.x.shape == (toy.n_samples, toy.n_nodes + n_terms)
    assert np.array_equal(both.x[:, :toy.n_nodes].toarray(), code_bag(toy).toarray())
    assert (tfidf.x != both.x[:, toy.n_nodes:]).nnz == 0
    assert "lactate" in tfidf.vectorizer.vocabulary_ and "4.2" in tfidf.vectorizer.vocabulary_  # numbers kept


def test_text_references_learn_a_phrase_in_the_notes(toy):
    """A decisive phrase planted in the notes of most positives (and a few negatives) of label 0."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y0 = toy.labels[:, 0].numpy()
    planted = copy.copy(toy)
    planted.sample_note_texts = [f"{t} dnr status confirmed" if rng.random() < (0.8 if y0[i] else 0.1) else t
                                 for i, t in enumerate(toy.sample_note_texts)]
    idx = toy.split_idx["test"]
    y = y0[idx.numpy()]
    for name, hp in (("tfidf-lr", {}), ("codes-notes-lr", {}), ("gbm", {"min_data_in_leaf": 5})):
        model = fitted(name, planted, **hp)
        p = torch.sigmoid(model({"idx": idx})["logits"][:, 0]).numpy()
        assert roc_auc_score(y, p) > 0.75, name
        assert model.input_report == {"notes": "on"}


def test_without_any_note_term_the_text_models_fall_back_to_the_intercept(toy):
    empty = copy.copy(toy)
    empty.sample_note_texts = [""] * toy.n_samples
    model = fitted("tfidf-lr", empty)
    assert model.vectorizer is None and model.input_report["notes"].startswith("off")
    logits = model({"idx": torch.arange(toy.n_samples)})["logits"]
    assert torch.equal(logits, logits[:1].expand_as(logits))
    prevalence = toy.labels[toy.split_idx["train"]].mean(0)
    assert torch.allclose(torch.sigmoid(logits[0]), prevalence, atol=0.02)


def test_gbm_is_deterministic_and_stops_on_validation(toy):
    a, b = fitted("gbm", toy, min_data_in_leaf=5), fitted("gbm", toy, min_data_in_leaf=5)
    idx = torch.arange(toy.n_samples)
    assert torch.equal(a({"idx": idx})["logits"], b({"idx": idx})["logits"])
    kept = a._n_trees.tolist()
    assert all(0 < k < 500 for k in kept)   # early stopping on the validation log-loss
    full = fitted("gbm", toy, min_data_in_leaf=5, early_stopping_rounds=0, n_estimators=40)
    assert full._n_trees.tolist() == [40, 40] and full.hit_iteration_cap


# ------------------------------------------------------------------------------------------ leakage
@pytest.mark.parametrize("name", TEXT_MODELS)
def test_vectorisers_are_fitted_on_the_training_texts_only(name, toy):
    """A token present only in validation/test notes never enters the fitted vocabulary, and
    rewriting every validation/test text leaves the vocabulary, the IDF and the fitted model
    unchanged (gbm: its validation early stopping off, as the validation split may choose its
    number of trees; with it on, test texts still change nothing)."""
    hp = {"min_data_in_leaf": 5, "early_stopping_rounds": 0, "n_estimators": 30} if name == "gbm" else {}
    leaky = with_texts(toy, lambda i, t: f"{t} {LEAK} {LEAK}")
    rewritten = with_texts(toy, lambda i, t: f"unrelated words {i} {LEAK}")
    base = fitted(name, toy, **hp)
    models = [base, fitted(name, leaky, **hp), fitted(name, rewritten, **hp)]
    for m in models:
        vec = getattr(m, "vectorizer", None)
        if vec is not None:
            assert LEAK not in vec.vocabulary_ and not any(LEAK in t for t in vec.vocabulary_)
            assert vec.vocabulary_ == base.vectorizer.vocabulary_ and np.array_equal(vec.idf_, base.vectorizer.idf_)
        for a, b in zip(base.buffers(), m.buffers()):
            assert torch.equal(a, b)
    if name == "gbm":
        assert all(_trees(m) == _trees(base) for m in models)
    train = toy.split_idx["train"]
    assert all(torch.equal(m({"idx": train})["logits"], base({"idx": train})["logits"]) for m in models)
    if name == "gbm":  # with early stopping: rewriting the test texts alone changes nothing
        es = {"min_data_in_leaf": 5}
        test_only = copy.copy(toy)
        texts = list(toy.sample_note_texts)
        for i in toy.split_idx["test"].tolist():
            texts[i] = f"{LEAK} {i}"
        test_only.sample_note_texts = texts
        a, b = fitted(name, toy, **es), fitted(name, test_only, **es)
        assert _trees(a) == _trees(b)


def _trees(model) -> list[str | None]:
    return [None if e is None else e[0].model_to_string(num_iteration=e[1]) for e in model.boosters]
