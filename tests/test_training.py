"""The trainer: step budget, contract, determinism, early stopping, best-weights restore, no label leakage."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from mingle_bench.profiling.random_task_data import make_random_task_data
from mingle_bench.devices import resolve_device
from mingle_bench.training import Budget, FitResult, fit, predict

MINGLE_SMALL = {"hidden": 16, "heads": 2, "cls_hidden": 16, "sem_dim": 8}
RETAIN_SMALL = {"emb_dim": 16, "alpha_hidden": 16, "beta_hidden": 16, "batch_size": 8}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy():
    return make_random_task_data(n_samples=60, n_labels=2, n_nodes=24, seed=5)


def test_fit_result_contract(toy):
    res = fit("mingle", toy, MINGLE_SMALL, seed=0, device="cpu", budget=Budget(4, 1, 10))
    assert isinstance(res, FitResult)
    assert 1 <= res.best_step <= 4 and len(res.history) == 4 and res.steps_run == 4
    assert res.max_steps == 4 and res.stopped == "budget"
    assert res.impl in ("fused", "reference")
    assert res.test_probs.shape == (toy.split_idx["test"].numel(), 2)
    assert res.val_probs.shape == (toy.split_idx["val"].numel(), 2)
    assert ((res.test_probs >= 0) & (res.test_probs <= 1)).all()
    assert {"acc", "auroc", "aupr", "f1", "brier", "ece", "loss"} <= set(res.val_metrics)
    assert res.n_params == res.model.n_params() > 0 and res.train_s > 0
    assert res.hparams["hidden"] == 16 and res.hparams["lr"] == 1e-3
    assert res.input_report["notes"] == "on"
    for row in res.history:
        assert {"step", "train_loss", "elapsed_s", "val_aupr"} <= set(row)
    assert [s for s, _ in res.curve("aupr")] == [1, 2, 3, 4]


def test_best_weights_are_restored(toy):
    res = fit("mingle", toy, {**MINGLE_SMALL, "lr": 3e-2}, seed=1, device="cpu", budget=Budget(6, 1, 10))
    best = next(r["val_aupr"] for r in res.history if r["step"] == res.best_step)
    assert best == max(r["val_aupr"] for r in res.history)
    assert math.isclose(res.val_metrics["aupr"], best, rel_tol=1e-9)
    probs, _ = predict(res.model, toy.split_idx["val"])
    np.testing.assert_array_equal(probs, res.val_probs)


@pytest.mark.parametrize("name,hp", [("mingle", MINGLE_SMALL), ("retain", RETAIN_SMALL)])
def test_deterministic_under_seed(name, hp, toy):
    a = fit(name, toy, hp, seed=3, device="cpu", budget=Budget(3, 1, 5))
    b = fit(name, toy, hp, seed=3, device="cpu", budget=Budget(3, 1, 5))
    c = fit(name, toy, hp, seed=4, device="cpu", budget=Budget(3, 1, 5))
    np.testing.assert_array_equal(a.test_probs, b.test_probs)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert not np.array_equal(a.test_probs, c.test_probs)


def test_early_stopping(toy):
    # lr 0: nothing changes, so validation never improves after the first evaluation
    res = fit("retain", toy, {**RETAIN_SMALL, "lr": 0.0}, seed=0, device="cpu", budget=Budget(50, 1, 2))
    assert res.stopped == "early" and len(res.history) == 3 and res.best_step == 1 and res.steps_run == 3


def test_eval_every_and_patience_count_evaluations(toy):
    res = fit("retain", toy, {**RETAIN_SMALL, "lr": 0.0}, seed=0, device="cpu", budget=Budget(100, 4, 3))
    assert [r["step"] for r in res.history] == [4, 8, 12, 16]
    assert res.stopped == "early" and res.best_step == 4 and res.steps_run == 16


def test_budget_counts_optimiser_steps_for_every_model(toy, monkeypatch):
    """A minibatch step and a full-graph step count alike; the last step is always validated."""
    steps = []
    real = torch.optim.Adam.step

    def counting(self, *a, **k):
        steps.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", counting)
    for name, hp in (("retain", RETAIN_SMALL), ("mingle", MINGLE_SMALL)):
        steps.clear()
        res = fit(name, toy, hp, seed=0, device="cpu", budget=Budget(7, 3, 100))
        assert len(steps) == 7 == res.steps_run and res.stopped == "budget"
        assert [r["step"] for r in res.history] == [3, 6, 7]


def test_budget_rejects_bad_values():
    for bad in ({"max_steps": 0}, {"eval_every": 0}, {"patience": 0}, {"max_steps": 2.5}):
        with pytest.raises(ValueError):
            Budget(**{"max_steps": 10, "eval_every": 1, "patience": 1, **bad})
    with pytest.raises(ValueError, match="eval_every"):
        Budget(max_steps=5, eval_every=6, patience=1)


def test_no_test_label_leakage(toy):
    """Test labels never influence training or model selection: scrambling them changes nothing."""
    scrambled = copy.copy(toy)
    labels = toy.labels.clone()
    test = toy.split_idx["test"]
    labels[test] = 1.0 - labels[test]
    scrambled.labels = labels
    for name, hp in (("mingle", MINGLE_SMALL), ("retain", RETAIN_SMALL)):
        a = fit(name, toy, hp, seed=0, device="cpu", budget=Budget(3, 1, 5))
        b = fit(name, scrambled, hp, seed=0, device="cpu", budget=Budget(3, 1, 5))
        np.testing.assert_array_equal(a.test_probs, b.test_probs)


def test_validation_labels_only_select(toy):
    """Validation labels choose the epoch but never enter a gradient: the epoch-0 train loss
    is the same whatever the validation labels are."""
    flipped = copy.copy(toy)
    labels = toy.labels.clone()
    val = toy.split_idx["val"]
    labels[val] = 1.0 - labels[val]
    flipped.labels = labels
    a = fit("mingle", toy, MINGLE_SMALL, seed=0, device="cpu", budget=Budget(3, 1, 5))
    b = fit("mingle", flipped, MINGLE_SMALL, seed=0, device="cpu", budget=Budget(3, 1, 5))
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]


def test_on_eval_can_prune(toy):
    import optuna

    seen = []

    def on_eval(step, metrics):
        seen.append((step, metrics["aupr"]))
        if step == 4:
            raise optuna.TrialPruned()

    with pytest.raises(optuna.TrialPruned):
        fit("retain", toy, RETAIN_SMALL, seed=0, device="cpu", budget=Budget(10, 2, 10), on_eval=on_eval)
    assert [e for e, _ in seen] == [2, 4]


def test_logreg_through_the_trainer(toy):
    res = fit("logreg", toy, {}, seed=0, device="cpu", budget=Budget(5, 1, 2))
    assert res.impl == "none" and res.best_step == 0 == res.steps_run and len(res.history) == 1
    assert res.stopped == "early"   # lbfgs converged before its own iteration cap
    assert res.test_probs.shape == (toy.split_idx["test"].numel(), 2)
    assert res.val_metrics["auroc"] > 0.5


def test_training_improves_validation(toy):
    res = fit("mingle", toy, {**MINGLE_SMALL, "lr": 1e-2}, seed=0, device="cpu", budget=Budget(30, 1, 30))
    assert res.history[-1]["train_loss"] < 0.7 * res.history[0]["train_loss"]
    assert res.val_metrics["auroc"] > 0.6


def test_bad_arguments(toy):
    with pytest.raises(ValueError, match="unknown model"):
        fit("nope", toy, {}, seed=0, device="cpu", budget=Budget(1, 1, 1))
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        fit("retain", toy, {"hiden": 3}, seed=0, device="cpu", budget=Budget(1, 1, 1))
    with pytest.raises(ValueError, match="max_steps"):
        fit("retain", toy, {}, seed=0, device="cpu", budget=Budget(0, 1, 1))
    with pytest.raises(ValueError, match="monitor"):
        fit("retain", toy, RETAIN_SMALL, seed=0, device="cpu", budget=Budget(1, 1, 1), monitor="nope")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            fit("retain", toy, RETAIN_SMALL, seed=0, device="cuda", budget=Budget(1, 1, 1))
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda:1")
    with pytest.raises(ValueError, match="--device must be auto, cpu or cuda"):
        resolve_device("tpu")
    assert resolve_device("auto").type in ("cpu", "cuda") and resolve_device(None) == resolve_device("auto")


def test_mingle_eval_mode_matches_train_mode_after_training(toy):
    """The BatchNorm-after-PairNorm lag is gone: after 10 steps, with dropout off, eval-mode
    outputs equal train-mode outputs (running statistics would shrink eval activations)."""
    hp = {**MINGLE_SMALL, "dropout": 0.0, "input_dropout": 0.0, "lr": 1e-2}
    res = fit("mingle", toy, hp, seed=0, device="cpu", budget=Budget(10, 10, 10))
    model, idx = res.model, toy.split_idx["val"]
    captured = {}
    hook = model.bn_e[0].register_forward_hook(lambda m, i, o: captured.__setitem__(model.training, o.detach()))
    try:
        with torch.no_grad():
            model.train()
            train_logits = model({"idx": idx})["logits"]
            model.eval()
            eval_logits = model({"idx": idx})["logits"]
    finally:
        hook.remove()
    torch.testing.assert_close(eval_logits, train_logits)
    # normalised columns in eval mode too: unit variance, not the ~1/sqrt(d) scale PairNorm leaves
    std = captured[False].std(dim=0, unbiased=False)
    assert 0.9 < float(std.mean()) < 1.1


def test_train_step_is_the_one_step_of_trainer_and_profiler(monkeypatch, one_torch_thread):
    """``train_step`` is the hand-written step (forward, zero_grad, backward, clip, Adam), bit for
    bit, and the trainer and the model profiler both take it (issue 22 item 8)."""
    from mingle_bench import training
    from mingle_bench.profiling.models import epoch_step
    from mingle_bench.zoo import get_model

    data = make_random_task_data(n_samples=40, seed=1)
    cls = get_model("mingle")
    idx = data.split_idx["train"]
    batch = {"idx": idx, "labels": data.labels[idx]}
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(cls(data, **cls.tiny_hparams).train())
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in models]
    for step in range(2):
        torch.manual_seed(10 + step)  # the same dropout masks for both
        loss = models[0](batch)["loss"]
        opts[0].zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(models[0].parameters(), training.GRAD_CLIP)
        opts[0].step()
        torch.manual_seed(10 + step)
        got = training.train_step(models[1], batch, opts[1])
        assert got.item() == loss.item() and not got.requires_grad
    assert all(torch.equal(a, b) for a, b in zip(models[0].parameters(), models[1].parameters()))

    calls = []
    real = training.train_step
    monkeypatch.setattr(training, "train_step", lambda *a, **k: calls.append(1) or real(*a, **k))
    fit("mingle", data, dict(cls.tiny_hparams), seed=0, device="cpu", budget=Budget(3, 3, 5))
    assert len(calls) == 3
    epoch_step(models[1], data)()
    assert len(calls) == 4
