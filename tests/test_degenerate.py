"""Degenerate labels and diverged training are outcomes, never plausible-looking results (issue 23, items 1-2).

* one class overall, or in a binary task's training split: one line before any model trains;
* a validation split on which the monitor is undefined: a documented fallback to validation loss,
  said in the log, the cell record and the config; never ``stopped: early`` on an undefined monitor;
* a one-class test split: a warning (AUROC/AUPR n/a);
* diverged training (non-finite or exploding validation loss, predictions saturated at 0/1): the
  trainer raises :class:`TrainingDiverged`, the runner records a failed cell (``failures.json``,
  ``kind: diverged``) and the table never shows it;
* constant test predictions: a ``constant_predictions`` flag on the cell.
"""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from mingle_bench import pipeline as P
from mingle_bench.pipeline import RunError
from mingle_bench.profiling.random_task_data import make_random_task_data
from mingle_bench.training import (
    DIVERGENCE_LOSS_FACTOR,
    Budget,
    TrainingDiverged,
    fit,
    monitor_undefined_reason,
    prior_bce,
)

RETAIN_TINY = {"emb_dim": 8, "alpha_hidden": 8, "beta_hidden": 8, "batch_size": 16}
MINGLE_TINY = {"hidden": 8, "heads": 2, "cls_hidden": 8, "sem_dim": 8}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy():
    return make_random_task_data(n_samples=60, n_labels=1, n_nodes=24, seed=5)


def with_labels(data, split_values: dict[str, float]):
    """A copy of ``data`` whose labels are set to a constant on the named splits."""
    d = copy.copy(data)
    y = data.labels.clone()
    for split, value in split_values.items():
        y[data.split_idx[split]] = value
    d.labels = y
    return d


def test_monitor_undefined_reason():
    assert monitor_undefined_reason(np.zeros((5, 1)), "aupr") == "0 positive and 5 negative label cells"
    assert monitor_undefined_reason(np.ones((5, 1)), "auroc") is not None
    assert monitor_undefined_reason(np.ones((5, 1)), "aupr") is None          # AUPR is defined with positives
    assert monitor_undefined_reason(np.array([[0], [1]]), "auroc") is None
    assert monitor_undefined_reason(np.zeros((5, 1)), "brier") is None        # always defined
    assert monitor_undefined_reason(np.zeros((5, 1)), "loss") is None


def test_prior_bce_is_the_prevalence_predictors_loss():
    ytr = np.array([[1], [0], [0], [0]])
    yev = np.array([[1], [0]])
    p = 0.25
    assert math.isclose(prior_bce(ytr, yev), -(math.log(p) + math.log(1 - p)) / 2)


def test_one_class_overall_fails_with_one_line(toy):
    data = with_labels(toy, {"train": 0, "val": 0, "test": 0})
    with pytest.raises(RunError, match=r"has one class: every label is negative \(train 0/\d+, val 0/\d+, test 0/\d+ positives\)"):
        P.check_labels(data, "aupr")


def test_one_class_training_split_fails(toy):
    data = with_labels(toy, {"train": 0})
    with pytest.raises(RunError, match="the training split holds one class"):
        P.check_labels(data, "aupr")


def test_validation_without_positives_warns_and_falls_back(toy):
    data = with_labels(toy, {"val": 0})
    lines = P.check_labels(data, "aupr")
    assert any("validation aupr is undefined" in line and "validation loss" in line for line in lines)
    assert P.check_labels(data, "brier") == []  # Brier is defined on one class: no fallback needed

    res = fit("mingle", data, MINGLE_TINY, seed=0, device="cpu", budget=Budget(30, 2, 3))
    assert res.monitor_used == "loss"
    assert [f["kind"] for f in res.flags] == ["monitor_fallback"]
    assert "validation aupr is undefined" in res.flags[0]["message"]
    # the best step is the one with the lowest validation loss, not the first evaluation
    losses = {h["step"]: h["val_loss"] for h in res.history}
    assert losses[res.best_step] == min(losses.values())
    assert [s for s, _ in res.curve("aupr")] == sorted(losses)  # the curve is that of the value that selected
    assert all(v == losses[s] for s, v in res.curve("aupr"))


def test_one_class_test_split_warns(toy):
    lines = P.check_labels(with_labels(toy, {"test": 0}), "aupr")
    assert any("test split holds one class" in line and "n/a" in line for line in lines)


def test_multilabel_constant_label_warns():
    data = make_random_task_data(n_samples=60, n_labels=3, n_nodes=24, seed=5)
    y = data.labels.clone()
    y[:, 1] = 0
    d = copy.copy(data)
    d.labels = y
    lines = P.check_labels(d, "aupr")
    assert any("1 of 3 labels have one class overall" in line for line in lines)


def test_exploding_learning_rate_is_divergence_not_a_result(toy):
    with pytest.raises(TrainingDiverged, match="retain: .*(diverged|not finite|exactly 0 or 1|over)"):
        fit("retain", toy, {**RETAIN_TINY, "lr": 1e12}, seed=0, device="cpu", budget=Budget(20, 5, 3))


def test_exploded_restored_step_is_refused(toy, monkeypatch):
    """A finite validation loss over the limit at the restored step fails the cell (the limit lowered
    below any real loss stands in for an exploding one)."""
    import mingle_bench.training as T

    monkeypatch.setattr(T, "DIVERGENCE_LOSS_FACTOR", 1e-6)
    with pytest.raises(TrainingDiverged, match="validation loss .* is over"):
        fit("mingle", toy, MINGLE_TINY, seed=0, device="cpu", budget=Budget(4, 2, 3))
    assert DIVERGENCE_LOSS_FACTOR >= 5


def test_saturated_predictions_are_divergence(toy, monkeypatch):
    import mingle_bench.training as T

    real_predict = T.predict

    def saturated(model, idx, labels=None):
        probs, loss = real_predict(model, idx, labels)
        return np.round(probs), loss

    monkeypatch.setattr(T, "predict", saturated)
    with pytest.raises(TrainingDiverged, match=r"exactly 0 or 1 .*collapsed"):
        fit("mingle", toy, MINGLE_TINY, seed=0, device="cpu", budget=Budget(2, 1, 3))


def test_constant_predictions_are_flagged(toy, monkeypatch):
    import mingle_bench.training as T

    real_predict = T.predict

    def constant(model, idx, labels=None):
        probs, loss = real_predict(model, idx, labels)
        return np.full_like(probs, 0.25), loss

    monkeypatch.setattr(T, "predict", constant)
    res = fit("mingle", toy, MINGLE_TINY, seed=0, device="cpu", budget=Budget(2, 1, 3))
    assert [f["kind"] for f in res.flags] == ["constant_predictions"]
    assert "0.25" in res.flags[0]["message"]


def _run(tmp_path, **kw):
    from mingle_bench.runner import RunConfig, run_benchmark

    cfg = RunConfig(task="mortality", data="synthetic:small", models=kw.pop("models", ("retain",)), seeds=[0],
                    out=str(tmp_path), max_steps=20, eval_every=5, patience=3, progress=False, reference=None,
                    n_boot=0, hparam_overrides=kw.pop("overrides", {"retain": RETAIN_TINY}), **kw)
    return run_benchmark(cfg)


def test_run_records_the_fallback(tmp_path, toy_pipeline, monkeypatch):
    import pipeline_fakes

    real = pipeline_fakes.toy_build
    monkeypatch.setattr(P, "build_features", lambda *a, **k: with_labels(real(*a, **k), {"val": 0}))
    s = _run(tmp_path)
    rec = json.loads((s.folder / "runs.jsonl").read_text().splitlines()[0])
    assert rec["monitor_used"] == "loss"
    assert [f["kind"] for f in rec["flags"]] == ["monitor_fallback"]
    cfg = json.loads((s.folder / "config.json").read_text())
    assert any("validation aupr is undefined" in w for w in cfg["label_warnings"])


def test_run_refuses_one_class_before_training(tmp_path, toy_pipeline, monkeypatch):
    import pipeline_fakes

    real = pipeline_fakes.toy_build
    monkeypatch.setattr(P, "build_features", lambda *a, **k: with_labels(real(*a, **k), {"train": 0, "val": 0, "test": 0}))
    with pytest.raises(RunError, match="has one class"):
        _run(tmp_path)
    assert not list(tmp_path.rglob("runs.jsonl"))


def test_run_fails_a_diverged_cell_and_never_tabulates_it(tmp_path, toy_pipeline):
    s = _run(tmp_path, models=("retain", "mingle"),
             overrides={"retain": {**RETAIN_TINY, "lr": 1e12}, "mingle": MINGLE_TINY})
    failures = json.loads((s.folder / "failures.json").read_text())
    assert [(f["model"], f["kind"]) for f in failures] == [("retain", "diverged")]
    assert "TrainingDiverged" in failures[0]["error"]
    models = {json.loads(line)["model"] for line in (s.folder / "runs.jsonl").read_text().splitlines()}
    assert models == {"mingle"}
    assert "RETAIN" not in (s.folder / "table.md").read_text().split("Paired comparison")[0]


def test_solver_fitted_models_never_report_a_fallback(toy):
    """logreg selects no step on validation, so an undefined monitor changes nothing for it."""
    res = fit("logreg", with_labels(toy, {"val": 0}), seed=0, device="cpu", budget=Budget(4, 2, 3))
    assert res.flags == [] and res.monitor_used == "aupr"


def test_without_fallback_an_undefined_monitor_is_refused(toy):
    with pytest.raises(RunError, match=r"validation aupr is undefined .*tuning needs a defined validation objective"):
        P.check_labels(with_labels(toy, {"val": 0}), "aupr", fallback=False)
    assert P.check_labels(toy, "aupr", fallback=False) == []


def test_tune_refuses_an_undefined_objective(tmp_path, toy_pipeline, monkeypatch):
    import pipeline_fakes

    from mingle_bench import tuning

    real = pipeline_fakes.toy_build
    monkeypatch.setattr(P, "build_features", lambda *a, **k: with_labels(real(*a, **k), {"val": 0}))
    with pytest.raises(RunError, match="tuning needs a defined validation objective"):
        tuning.tune(task="mortality", model="logreg", trials=2, data="synthetic:small", encoder=None, out=tmp_path,
                    progress=False, max_steps=4, eval_every=2, patience=2)
