"""The trainer: contract, determinism, early stopping, best-weights restore, no label leakage."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from mingle_bench.models.toy import make_toy_task_data
from mingle_bench.training import FitResult, fit, predict, resolve_device

MINGLE_SMALL = {"hidden": 16, "heads": 2, "cls_hidden": 16, "sem_dim": 8}
RETAIN_SMALL = {"emb_dim": 16, "alpha_hidden": 16, "beta_hidden": 16, "batch_size": 8}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy():
    return make_toy_task_data(n_samples=60, n_labels=2, n_nodes=24, seed=5)


def test_fit_result_contract(toy):
    res = fit("mingle", toy, MINGLE_SMALL, seed=0, device="cpu", max_epochs=4, patience=10)
    assert isinstance(res, FitResult)
    assert 0 <= res.best_epoch < 4 and len(res.history) == 4
    assert res.impl in ("fused", "reference")
    assert res.test_probs.shape == (toy.split_idx["test"].numel(), 2)
    assert res.val_probs.shape == (toy.split_idx["val"].numel(), 2)
    assert ((res.test_probs >= 0) & (res.test_probs <= 1)).all()
    assert {"acc", "auroc", "aupr", "f1", "brier", "ece", "loss"} <= set(res.val_metrics)
    assert res.n_params == res.model.n_params() > 0 and res.train_s > 0
    assert res.hparams["hidden"] == 16 and res.hparams["lr"] == 1e-3
    assert res.input_report["notes"] == "on"
    for row in res.history:
        assert {"epoch", "train_loss", "epoch_s", "val_aupr"} <= set(row)


def test_best_weights_are_restored(toy):
    res = fit("mingle", toy, {**MINGLE_SMALL, "lr": 3e-2}, seed=1, device="cpu", max_epochs=6, patience=10)
    best = res.history[res.best_epoch]["val_aupr"]
    assert best == max(r["val_aupr"] for r in res.history)
    assert math.isclose(res.val_metrics["aupr"], best, rel_tol=1e-9)
    probs, _ = predict(res.model, toy.split_idx["val"])
    np.testing.assert_array_equal(probs, res.val_probs)


@pytest.mark.parametrize("name,hp", [("mingle", MINGLE_SMALL), ("retain", RETAIN_SMALL)])
def test_deterministic_under_seed(name, hp, toy):
    a = fit(name, toy, hp, seed=3, device="cpu", max_epochs=3, patience=5)
    b = fit(name, toy, hp, seed=3, device="cpu", max_epochs=3, patience=5)
    c = fit(name, toy, hp, seed=4, device="cpu", max_epochs=3, patience=5)
    np.testing.assert_array_equal(a.test_probs, b.test_probs)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert not np.array_equal(a.test_probs, c.test_probs)


def test_early_stopping(toy):
    # lr 0: nothing changes, so validation never improves after the first epoch
    res = fit("retain", toy, {**RETAIN_SMALL, "lr": 0.0}, seed=0, device="cpu", max_epochs=50, patience=2)
    assert res.stopped_early and len(res.history) == 3 and res.best_epoch == 0


def test_no_test_label_leakage(toy):
    """Test labels never influence training or model selection: scrambling them changes nothing."""
    scrambled = copy.copy(toy)
    labels = toy.labels.clone()
    test = toy.split_idx["test"]
    labels[test] = 1.0 - labels[test]
    scrambled.labels = labels
    for name, hp in (("mingle", MINGLE_SMALL), ("retain", RETAIN_SMALL)):
        a = fit(name, toy, hp, seed=0, device="cpu", max_epochs=3, patience=5)
        b = fit(name, scrambled, hp, seed=0, device="cpu", max_epochs=3, patience=5)
        np.testing.assert_array_equal(a.test_probs, b.test_probs)


def test_validation_labels_only_select(toy):
    """Validation labels choose the epoch but never enter a gradient: the epoch-0 train loss
    is the same whatever the validation labels are."""
    flipped = copy.copy(toy)
    labels = toy.labels.clone()
    val = toy.split_idx["val"]
    labels[val] = 1.0 - labels[val]
    flipped.labels = labels
    a = fit("mingle", toy, MINGLE_SMALL, seed=0, device="cpu", max_epochs=3, patience=5)
    b = fit("mingle", flipped, MINGLE_SMALL, seed=0, device="cpu", max_epochs=3, patience=5)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]


def test_on_epoch_can_prune(toy):
    import optuna

    seen = []

    def on_epoch(epoch, metrics):
        seen.append((epoch, metrics["aupr"]))
        if epoch == 1:
            raise optuna.TrialPruned()

    with pytest.raises(optuna.TrialPruned):
        fit("retain", toy, RETAIN_SMALL, seed=0, device="cpu", max_epochs=10, patience=10, on_epoch=on_epoch)
    assert [e for e, _ in seen] == [0, 1]


def test_logreg_through_the_trainer(toy):
    res = fit("logreg", toy, {}, seed=0, device="cpu", max_epochs=5, patience=2)
    assert res.impl == "none" and res.best_epoch == 0 and len(res.history) == 1
    assert res.test_probs.shape == (toy.split_idx["test"].numel(), 2)
    assert res.val_metrics["auroc"] > 0.5


def test_training_improves_validation(toy):
    res = fit("mingle", toy, {**MINGLE_SMALL, "lr": 1e-2}, seed=0, device="cpu", max_epochs=30, patience=30)
    assert res.history[-1]["train_loss"] < 0.7 * res.history[0]["train_loss"]
    assert res.val_metrics["auroc"] > 0.6


def test_bad_arguments(toy):
    with pytest.raises(ValueError, match="unknown model"):
        fit("nope", toy, {}, seed=0, device="cpu", max_epochs=1, patience=1)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        fit("retain", toy, {"hiden": 3}, seed=0, device="cpu", max_epochs=1, patience=1)
    with pytest.raises(ValueError, match="max_epochs"):
        fit("retain", toy, {}, seed=0, device="cpu", max_epochs=0, patience=1)
    with pytest.raises(ValueError, match="monitor"):
        fit("retain", toy, RETAIN_SMALL, seed=0, device="cpu", max_epochs=1, patience=1, monitor="nope")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")
    assert resolve_device("auto").type in ("cpu", "cuda")
